"""Results are written as a whole (avlearn.io.outdir): checked before any work, staged beside --out, locked,
moved into place at the end; a failed or refused run changes nothing (issue 17, findings 2, 3 and 7)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from avlearn.cli import main
from avlearn.io import OutputError, OverwriteInputError, staged_output, write_audio
from avlearn.io.outdir import MARKER, output_lock

ROOT = Path(__file__).resolve().parents[1]
SPEAKERS = ROOT / "assets" / "demo" / "speakers" / "test"


def snapshot(folder: Path) -> dict[str, str]:
    """Relative name -> sha256 of every file under ``folder`` (folders too, as "dir")."""
    if not folder.exists():
        return {}
    out = {}
    for p in sorted(folder.rglob("*")):
        out[str(p.relative_to(folder))] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def previous_run(folder: Path, files: dict[str, bytes], user_files: dict[str, bytes] = ()) -> Path:
    """A folder as an earlier avlearn run left it: its files and the marker listing them (+ user files)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in {**files, **dict(user_files)}.items():
        (folder / name).write_bytes(data)
    (folder / MARKER).write_text(json.dumps({"command": "test", "files": sorted(files)}))
    return folder


def one_error_line(err: str, command: str) -> str:
    lines = err.strip().splitlines()
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith(f"avlearn {command}: error: "), err
    return lines[0]


# --- the context manager ---------------------------------------------------------------------------------


def test_results_replace_the_previous_run_and_keep_user_files(tmp_path):
    out = previous_run(tmp_path / "D", {"a.txt": b"old a", "b.txt": b"old b"}, {"notes.md": b"mine"})
    with staged_output(out, outputs=("*.txt",), command="test") as tmp:
        assert tmp.parent == out.parent and tmp != out and not any(tmp.iterdir())
        (tmp / "a.txt").write_text("new a")
        (tmp / "c.txt").write_text("new c")
        assert (out / "b.txt").read_bytes() == b"old b"  # nothing moves before the end
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "a.txt", "c.txt", "notes.md"]
    assert (out / "a.txt").read_text() == "new a" and (out / "notes.md").read_bytes() == b"mine"
    assert json.loads((out / MARKER).read_text())["files"] == ["a.txt", "c.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["D"]  # no staging folder or lock left behind


def test_an_existing_folder_stays_the_same_folder(tmp_path):
    out = previous_run(tmp_path / "D", {"speaker_0.wav": b"0", "speaker_1.wav": b"1", "speaker_2.wav": b"2"})
    out.chmod(0o750)
    inode = out.stat().st_ino  # (a shell sitting in it stays in it)
    with staged_output(out) as tmp:
        (tmp / "speaker_0.wav").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "speaker_0.wav"]
    assert out.stat().st_ino == inode and out.stat().st_mode & 0o777 == 0o750
    with staged_output(tmp_path / "new") as tmp:  # a new folder gets the usual permissions, not mkdtemp's 0o700
        (tmp / "r.txt").write_text("new")
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o777 & ~_umask()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["D", "new"]


def test_a_run_killed_while_moving_its_results_in_is_cleared_by_the_next(tmp_path, monkeypatch):
    out = previous_run(tmp_path / "D", {"a.txt": b"old a", "b.txt": b"old b"}, {"notes.md": b"mine"})
    real_replace, moved = os.replace, []

    def killed_after_one(src, dst):
        if not str(dst).endswith(MARKER):  # a result, not the record
            if moved:
                raise KeyboardInterrupt  # as if killed between two renames
            moved.append(dst)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", killed_after_one)
    with pytest.raises(KeyboardInterrupt):
        with staged_output(out) as tmp:
            for name in ("c.txt", "d.txt"):
                (tmp / name).write_text("first")
    monkeypatch.setattr(os, "replace", real_replace)
    assert (out / "c.txt").exists() and not (out / "d.txt").exists()  # the mixed moment
    with staged_output(out) as tmp:
        (tmp / "e.txt").write_text("second")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "e.txt", "notes.md"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("failure", [RuntimeError, KeyboardInterrupt])
def test_a_failed_run_changes_nothing(tmp_path, failure):
    out = previous_run(tmp_path / "D", {"a.txt": b"old"}, {"notes.md": b"mine"})
    before = snapshot(tmp_path)
    with pytest.raises(failure):
        with staged_output(out) as tmp:
            (tmp / "a.txt").write_text("half written")
            raise failure()
    assert snapshot(tmp_path) == before
    # a new nested --out: the folders made for it are removed again
    with pytest.raises(failure):
        with staged_output(tmp_path / "x" / "y" / "D") as tmp:
            raise failure()
    assert snapshot(tmp_path) == before


def test_a_folder_where_a_result_goes_fails_before_any_result_moves(tmp_path):
    """QA: with ``speaker_1.wav`` replaced by a folder, the refusal came after result.json and speaker_0.* had
    already been replaced."""
    out = previous_run(tmp_path / "D", {"a.txt": b"old a", "b.txt": b"old b"})
    (out / "b.txt").unlink()
    (out / "b.txt").mkdir()
    before = snapshot(tmp_path)
    with pytest.raises(OutputError, match="is a folder where a result of this run goes"):
        with staged_output(out) as tmp:
            (tmp / "a.txt").write_text("new a")
            (tmp / "b.txt").write_text("new b")
    assert snapshot(tmp_path) == before


def test_checks_come_before_any_work(tmp_path):
    ran = []
    (tmp_path / "file").write_text("keep")
    for out in (tmp_path / "file", tmp_path / "file" / "D", tmp_path / ("x" * 300), tmp_path / ("y" * 300) / "D"):
        with pytest.raises(OutputError) as info:
            with staged_output(out):
                ran.append(out)
        assert str(out) in str(info.value) and "--out" in str(info.value)
    assert not ran and (tmp_path / "file").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_an_input_where_a_result_would_land_is_refused_before_the_run(tmp_path):
    out = previous_run(tmp_path / "D", {"speaker_0.mp4": b"earlier result"}, {"clip.mp4": b"user clip"})
    os.link(out / "clip.mp4", tmp_path / "hardlink.mp4")
    for clip, patterns in (
        (out / "speaker_0.mp4", ()),  # listed in the marker: the run would remove or replace it
        (out / "clip.mp4", ("*.mp4",)),  # has a result's name
        (tmp_path / "hardlink.mp4", ("clip.mp4",)),  # the same file under another name
    ):
        with pytest.raises(OverwriteInputError):
            with staged_output(out, inputs=[clip], outputs=patterns):
                pytest.fail("the run started")
    # a user's file in --out that no result touches is a fine input
    with staged_output(out, inputs=[out / "clip.mp4"], outputs=("speaker_*",)) as tmp:
        (tmp / "speaker_0.mp4").write_text("new")
    assert (out / "clip.mp4").read_bytes() == b"user clip"


def test_a_second_run_into_the_same_folder_refuses(tmp_path):
    out = tmp_path / "D"
    with staged_output(out):
        with pytest.raises(OutputError, match=rf"another avlearn run \(pid {os.getpid()}\) is writing"):
            with staged_output(out):
                pytest.fail("two runs into one folder")
    with staged_output(out) as tmp:  # released: the next run goes ahead
        (tmp / "r.txt").write_text("ok")
    assert (out / "r.txt").exists()


def test_the_lock_holds_across_processes_and_a_dead_holder_releases_it(tmp_path):
    out = tmp_path / "D"
    code = (
        "import sys, time\nfrom avlearn.io.outdir import staged_output\n"
        f"with staged_output({str(out)!r}):\n    print('locked', flush=True)\n    time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputError, match=rf"another avlearn run \(pid {holder.pid}\)"):
            with staged_output(out):
                pass
    finally:
        holder.kill()  # SIGKILL: no cleanup runs; the kernel drops its lock
        holder.wait()
    left = sorted(p.name for p in tmp_path.iterdir())  # the killed run's lock file and staging folder
    assert left[0] == ".D.avlearn-lock" and left[1].startswith(".D.avlearn-tmp-") and len(left) == 2
    with staged_output(out) as tmp:
        (tmp / "r.txt").write_text("ok")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["D"]  # taken over and cleaned up


def test_disk_full_and_permission_errors_become_one_line(tmp_path):
    out = tmp_path / "D"
    for code, words in ((errno.ENOSPC, "disk is full"), (errno.EACCES, "permission denied")):
        with pytest.raises(OutputError, match=words) as info:
            with staged_output(out) as tmp:
                raise OSError(code, os.strerror(code), str(tmp / "speaker_0.wav"))
        assert str(info.value).startswith(str(out))
    # an OSError about another file (an unreadable input) is not blamed on --out
    with pytest.raises(PermissionError):
        with staged_output(out):
            raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "clip.mp4"))
    assert not out.exists()


def mount(*args: str) -> bool:
    """Runs ``mount ARGS``; False where there is no mount program or no right to mount."""
    return shutil.which("mount") is not None and not subprocess.run(["mount", *args], capture_output=True).returncode


@pytest.fixture
def tiny_disk(tmp_path):
    """A 300 kB tmpfs (needs root and mount; skipped otherwise)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if not mount("-t", "tmpfs", "-o", "size=300k", "tmpfs", str(disk)):
        pytest.skip("cannot mount a small tmpfs here")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


def test_write_audio_reports_a_full_disk_as_enospc(tiny_disk):
    with pytest.raises(OSError) as info:
        write_audio(tiny_disk / "a.wav", np.zeros(16000 * 20, np.float32), 16000)
    assert info.value.errno == errno.ENOSPC  # not libsndfile's bare "System error."
    assert list(tiny_disk.iterdir()) == []


def test_separate_on_a_full_disk_says_so_in_one_line(tiny_disk, capsys):
    code = main(["separate", str(SPEAKERS / "000001.mp4"), "--out", str(tiny_disk / "D")])
    line = one_error_line(capsys.readouterr().err, "separate")
    assert code == 1 and "disk is full" in line
    assert list(tiny_disk.iterdir()) == []


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder nobody may write into: chmod for users, a read-only bind mount for root (else skipped)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "keep.txt").write_text("keep")
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    if not mount("--bind", str(folder), str(folder)):
        pytest.skip("cannot make a read-only folder as root here")
    if not mount("-o", "remount,bind,ro", str(folder)):
        subprocess.run(["umount", str(folder)])
        pytest.skip("cannot make a read-only folder as root here")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=True)


@pytest.mark.parametrize("sub", ["D", "new/D"])
def test_an_unwritable_out_is_refused_before_any_work(read_only_dir, capsys, sub, monkeypatch):
    import avlearn.pipelines.localize as localize

    def no_work(*args, **kwargs):
        raise AssertionError("the model was loaded before --out was checked")

    monkeypatch.setattr(localize, "Localizer", no_work)
    before = snapshot(read_only_dir)
    code = main(["localize", str(SPEAKERS / "000001.mp4"), "--out", str(read_only_dir / sub)])
    line = one_error_line(capsys.readouterr().err, "localize")
    assert code == 1 and "--out" in line and ("read-only" in line or "cannot write" in line)
    assert snapshot(read_only_dir) == before


# --- the commands: findings 2 and 3 ---------------------------------------------------------------------


def test_refused_separate_leaves_the_earlier_result_untouched(tmp_path, capsys):
    """Finding 2: ``separate D/speaker_0.mp4 --out D`` replaced D/speaker_0.wav before refusing."""
    out = previous_run(tmp_path / "D", {"speaker_0.wav": b"earlier voice", "result.json": b"{}"})
    shutil.copy(SPEAKERS / "000001.mp4", out / "speaker_0.mp4")  # an earlier result, read as a clip
    doc = json.loads((out / MARKER).read_text())
    (out / MARKER).write_text(json.dumps({**doc, "files": [*doc["files"], "speaker_0.mp4"]}))
    before = snapshot(out)
    code = main(["separate", str(out / "speaker_0.mp4"), "--out", str(out)])
    line = one_error_line(capsys.readouterr().err, "separate")
    assert code == 1 and "speaker_0.mp4" in line and "choose another --out" in line
    assert snapshot(out) == before


def test_two_separate_runs_into_one_folder_do_not_mix(tmp_path, capsys):
    """Finding 3: the second run's results replace the first's as a whole; a concurrent run refuses."""
    out = tmp_path / "D"
    (tmp_path / "D").mkdir()
    (out / "my_notes.txt").write_text("kept")
    assert main(["separate", str(SPEAKERS / "000002.mp4"), "--out", str(out)]) == 0  # three speakers
    assert (out / "speaker_2.wav").exists()
    assert main(["separate", str(SPEAKERS / "000001.mp4"), "--out", str(out)]) == 0  # two speakers
    names = sorted(p.name for p in out.iterdir())
    speakers = [f"speaker_{k}.{e}" for k in (0, 1) for e in ("mp4", "wav")]
    assert names == [MARKER, "my_notes.txt", "result.json", *speakers]
    assert json.loads((out / "result.json").read_text())["clip"].endswith("000001.mp4")
    capsys.readouterr()
    before = snapshot(out)
    with output_lock(out):  # another run holds the folder
        code = main(["separate", str(SPEAKERS / "000002.mp4"), "--out", str(out)])
    line = one_error_line(capsys.readouterr().err, "separate")
    assert code == 1 and "another avlearn run" in line and "wait for it or choose another --out" in line
    assert snapshot(out) == before


def test_python_writers_stage_too(tmp_path):
    """``localize(path, out)`` and ``write_result`` called from Python write their folder as a whole."""
    from avlearn.pipelines.localize import localize

    out = previous_run(tmp_path / "D", {"heatmap.mp4": b"old", "stale.png": b"old"})
    result = localize(SPEAKERS / "000001.mp4", out)
    assert result.out == str(out)
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "grid.png", "heatmap.mp4", "peaks.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["D"]


def test_synth_checks_and_locks_its_folder_before_rendering(tmp_path, capsys):
    """``synth`` grows a data set in place (no staging), but an unusable or busy --out is refused first."""
    (tmp_path / "file").write_text("keep")
    args = ["speakers", "--num-clips", "1", "--workers", "0", "--quiet"]
    assert main(["synth", *args, "--out", str(tmp_path / "file")]) == 1
    assert "exists and is not a folder" in one_error_line(capsys.readouterr().err, "synth")
    with output_lock(tmp_path / "set"):
        assert main(["synth", *args, "--out", str(tmp_path / "set")]) == 1
    assert "another avlearn run" in one_error_line(capsys.readouterr().err, "synth")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
    assert (tmp_path / "file").read_text() == "keep"


def test_a_mount_point_or_symlink_as_out_stays_what_it_is(tiny_disk, tmp_path):
    """A mount point cannot be renamed: results are staged inside it and moved in file by file. A symlink
    to a folder stays a symlink: the results land in the folder it points to."""
    previous_run(tiny_disk, {"a.txt": b"old a", "b.txt": b"old b"}, {"notes.md": b"mine"})
    with staged_output(tiny_disk) as tmp:
        assert tmp.parent == tiny_disk
        (tmp / "a.txt").write_text("new a")
    assert sorted(p.name for p in tiny_disk.iterdir()) == [MARKER, "a.txt", "notes.md"]
    real = previous_run(tmp_path / "real", {"a.txt": b"old"})
    (tmp_path / "link").symlink_to(real)
    with staged_output(tmp_path / "link") as tmp:
        (tmp / "c.txt").write_text("new c")
    assert (tmp_path / "link").is_symlink() and sorted(p.name for p in real.iterdir()) == [MARKER, "c.txt"]


def test_ctrl_c_is_one_line_and_changes_nothing(tmp_path, capsys, monkeypatch):
    import avlearn.pipelines.separate as separate

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    out = previous_run(tmp_path / "D", {"speaker_0.wav": b"old"})
    before = snapshot(tmp_path)
    monkeypatch.setattr(separate, "separate_clip", interrupted)
    assert main(["separate", str(SPEAKERS / "000001.mp4"), "--out", str(out)]) == 130
    assert capsys.readouterr().err == "avlearn separate: interrupted (SIGINT)\n"
    assert snapshot(tmp_path) == before


def test_sigterm_cleans_up_like_ctrl_c(tmp_path):
    """``timeout`` and ``kill`` send SIGTERM: the run's staging folder and lock used to stay beside --out."""
    out = tmp_path / "D"
    proc = subprocess.Popen(
        [sys.executable, "-m", "avlearn.cli", "separate", str(SPEAKERS / "000002.mp4"), "--out", str(out)],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not any(p.name.startswith(".D.avlearn-tmp-") for p in tmp_path.iterdir()):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it staged"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and err.strip() == "avlearn separate: interrupted (SIGTERM)", err
    assert list(tmp_path.iterdir()) == []  # no results, no staging folder, no lock
