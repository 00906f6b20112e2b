"""Every command x every damaged or odd input (issue 17): a correct result or one clear line, never a
traceback, never a changed input, never a changed or half-written --out.

Each cell runs ``avlearn.cli.main`` in this process (models load fast; a cell takes well under a second)
on media made once per session from a shipped demo clip (two speakers talking, 4 s, 160x160, 25 fps,
16 kHz AAC) with FFmpeg. Python warnings the command does not turn into its own lines are recorded: on a
terminal they would print raw, so there must be none. ``--out`` starts out holding another run's results
and a file of the user's; a failed cell must leave the whole cell folder exactly as it was, a successful
one must leave ``--out`` holding exactly its own results and the user's file.

New findings go into ``CASES`` (and ``XFAIL`` while their fix is pending).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest

from avlearn.cli import main
from avlearn.io.outdir import MARKER

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / "assets" / "demo" / "speakers" / "test" / "000001.mp4"
CHECKPOINTS = ROOT / "assets" / "checkpoints"

COMMANDS = ("sync-offset", "localize", "separate", "recognize", "probe", "demo")
WRITES = {  # the files each command writes into --out
    "localize": {"heatmap.mp4", "grid.png", "peaks.json"},
    "separate": {"speaker_0.wav", "speaker_0.mp4", "speaker_1.wav", "speaker_1.mp4", "result.json"},
    "recognize": {"result.json"},
    "demo": {"probe.json", "window.wav", "contact_sheet.png"},
}
WRONG_TASK = {  # a checkpoint of another task for each command that takes one
    "sync-offset": "separate_speakers",
    "localize": "separate_speakers",  # (localize also takes sync checkpoints)
    "separate": "sync_speakers",
    "recognize": "sync_speakers",
}

# how each input is made from the demo clip (ffmpeg arguments, or a special maker below)
MEDIA = {
    "webm_vp9_opus": ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-c:a", "libopus", "x.webm"],
    "mkv_h264_flac": ["-c:v", "copy", "-c:a", "flac", "x.mkv"],
    "raw_h264": ["-an", "-c:v", "copy", "-bsf:v", "h264_mp4toannexb", "-f", "h264", "x.h264"],
    "audio_only": ["-vn", "-c:a", "copy", "x.m4a"],
    "video_only": ["-an", "-c:v", "copy", "x.mp4"],
    "too_short": ["-t", "0.12", "-c:v", "libx264", "-c:a", "aac", "x.mp4"],
    "indexed_cut": ["-c", "copy", "-movflags", "+faststart", "x.mp4"],  # then cut at 50%
}

# exit status per (case, command); "ok" cells must give a correct result, "error" cells one line
OK, ERROR, EITHER = {0}, {1}, {0, 1}
AV = ("sync-offset", "localize", "separate")  # need picture and sound
CASES: dict[str, dict[str, set[int]]] = {
    "missing": dict.fromkeys(COMMANDS, ERROR),
    "empty": dict.fromkeys(COMMANDS, ERROR),
    "text_as_mp4": dict.fromkeys(COMMANDS, ERROR),
    "mp4_without_moov": dict.fromkeys(COMMANDS, ERROR),
    "indexed_cut": {**dict.fromkeys(COMMANDS, EITHER)},  # the readable half, or one line
    "audio_only": {**dict.fromkeys(COMMANDS, ERROR), "probe": OK},
    "video_only": {**dict.fromkeys(COMMANDS, ERROR), "probe": OK, "recognize": OK},  # recognize: densely
    "too_short": {**dict.fromkeys(COMMANDS, ERROR), "probe": OK, "demo": EITHER},
    "directory": dict.fromkeys(COMMANDS, ERROR),
    "fifo": dict.fromkeys(COMMANDS, ERROR),
    "webm_vp9_opus": dict.fromkeys(COMMANDS, OK),
    "mkv_h264_flac": dict.fromkeys(COMMANDS, OK),
    "raw_h264": {**dict.fromkeys(COMMANDS, ERROR), "probe": OK, "recognize": OK},  # no audio in a raw stream
    "clip_name_too_long": dict.fromkeys(COMMANDS, ERROR),  # 300 bytes: no file system takes it
    "clip_name_long": dict.fromkeys(COMMANDS, OK),  # 250 bytes: fits, and so must every file made from it
    "input_is_an_earlier_result": dict.fromkeys(WRITES, ERROR),  # finding 2: a result of the run in --out
    "out_is_a_file": dict.fromkeys(WRITES, ERROR),
    "out_holds_another_run": dict.fromkeys(WRITES, OK),
    "out_name_too_long": dict.fromkeys(WRITES, ERROR),
    "out_unwritable": dict.fromkeys(WRITES, ERROR),
    "wrong_task_checkpoint": dict.fromkeys(WRONG_TASK, ERROR),
    "ckpt_checkpoint": dict.fromkeys(WRONG_TASK, ERROR),
    "pt_checkpoint": dict.fromkeys(WRONG_TASK, ERROR),
}
OWN_OUT = ("out_is_a_file", "out_name_too_long", "out_unwritable", "input_is_an_earlier_result")  # make --out
XFAIL: dict[tuple[str, str], str] = {}  # (case, command) -> reason, while another fix is pending

CELLS = [
    pytest.param(case, cmd, id=f"{cmd}-{case}", marks=[pytest.mark.xfail(strict=True, reason=XFAIL[case, cmd])])
    if (case, cmd) in XFAIL
    else pytest.param(case, cmd, id=f"{cmd}-{case}")
    for case, expect in CASES.items()
    for cmd in COMMANDS
    if cmd in expect
]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(folder: Path) -> dict[str, str]:
    """Every entry under ``folder``: files by content hash, folders and FIFOs by kind."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        out[rel] = sha(p) if p.is_file() else ("dir" if p.is_dir() else "other")
    return out


class _Trap:
    """Unpickling this object creates a file: proof that a checkpoint was unpickled."""

    def __init__(self, flag: Path):
        self.flag = flag

    def __reduce__(self):
        return (Path.touch, (self.flag,))


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> dict[str, Path]:
    """The odd media, made once: name -> file."""
    if not shutil.which("ffmpeg"):
        pytest.skip("ffmpeg is needed to make the odd media")
    folder = tmp_path_factory.mktemp("media")
    made = {}
    for name, args in MEDIA.items():
        path = folder / f"{name}{Path(args[-1]).suffix}"
        cmd = ["ffmpeg", "-v", "error", "-y", "-i", str(CLIP), *args[:-1], str(path)]
        subprocess.run(cmd, check=True, capture_output=True)
        made[name] = path
    data = made["indexed_cut"].read_bytes()
    made["indexed_cut"].write_bytes(data[: len(data) // 2])
    data = CLIP.read_bytes()
    assert data.find(b"moov") > len(data) // 2  # the demo clip keeps its index at the end
    (folder / "no_moov.mp4").write_bytes(data[: len(data) // 2])
    made["mp4_without_moov"] = folder / "no_moov.mp4"
    (folder / "empty.mp4").write_bytes(b"")
    made["empty"] = folder / "empty.mp4"
    (folder / "text.mp4").write_text("this is not a video\n" * 50)
    made["text_as_mp4"] = folder / "text.mp4"
    return made


@pytest.fixture(scope="session")
def read_only(tmp_path_factory) -> Path | None:
    """A folder nobody may write into (chmod for a user, a read-only bind mount for root), or None."""
    folder = tmp_path_factory.mktemp("readonly")
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    if (
        shutil.which("mount") is None
        or subprocess.run(["mount", "--bind", folder, folder], capture_output=True).returncode
    ):
        yield None
        return
    ok = not subprocess.run(["mount", "-o", "remount,bind,ro", folder], capture_output=True).returncode
    yield folder if ok else None
    subprocess.run(["umount", "-l", str(folder)], check=True)


def _previous_run(out: Path, command: str) -> None:
    """``out`` as another (earlier) run of ``command`` left it, plus a file of the user's."""
    out.mkdir()
    names = sorted(WRITES[command] | ({"speaker_2.wav", "speaker_2.mp4"} if command == "separate" else set()))
    for name in names:
        (out / name).write_bytes(f"earlier result {name}".encode())
    (out / MARKER).write_text(json.dumps({"command": command, "files": names}))
    (out / "my_notes.txt").write_text("the user's own file")


def _check_result(command: str, case: str, stdout: str, out: Path) -> None:
    """A successful run gave a plausible result (the clip: 4 s, two speakers, in sync)."""
    if case == "indexed_cut":
        return  # whatever half could be read
    if command in WRITES:
        produced = {p.name for p in out.iterdir()} - {MARKER, "my_notes.txt"}
        expected = WRITES[command]
        assert produced == expected, f"--out holds {sorted(produced)}, expected {sorted(expected)}"
        assert (out / "my_notes.txt").read_text() == "the user's own file"
        assert json.loads((out / MARKER).read_text())["command"] == command
    if command == "sync-offset":
        assert "in sync" in stdout.splitlines()[-1], stdout
    elif command == "probe":
        assert " s\n" in stdout and "video:" in stdout
    elif command == "localize":
        frames = json.loads((out / "peaks.json").read_text())["frames"]
        assert abs(len(frames) - 100) <= 1
    elif command == "separate":
        assert len(json.loads((out / "result.json").read_text())["speakers"]) == 2
    elif command == "recognize":
        assert json.loads((out / "result.json").read_text())["top"]


@pytest.mark.timeout(90)  # a FIFO nobody writes must fail the cell, not hang the suite
@pytest.mark.parametrize("case,command", CELLS)
def test_cell(case, command, media, read_only, tmp_path, capsys):
    expect = CASES[case][command]
    clip, out, extra = CLIP, tmp_path / "out", []
    if case in media:
        clip = media[case]
    elif case == "missing":
        clip = tmp_path / "no_such_clip.mp4"
    elif case == "directory":
        clip = tmp_path / "folder.mp4"
        clip.mkdir()
    elif case == "fifo":
        clip = tmp_path / "pipe.mp4"
        os.mkfifo(clip)
    elif case == "clip_name_too_long":
        clip = tmp_path / ("c" * 300 + ".mp4")
    elif case == "clip_name_long":
        clip = tmp_path / ("c" * 246 + ".mp4")
        shutil.copy(CLIP, clip)
    elif case == "input_is_an_earlier_result":
        _previous_run(out, "separate")
        clip = out / "speaker_0.mp4"
        shutil.copy(CLIP, clip)
    elif case == "out_unwritable":
        if read_only is None:
            pytest.skip("cannot make a read-only folder here")
        out = read_only / "out"
    elif case == "out_is_a_file":
        out.write_text("a file where the output folder should go")
    elif case == "out_name_too_long":
        out = tmp_path / ("o" * 300)
    elif case == "wrong_task_checkpoint":
        extra = ["--checkpoint", str(CHECKPOINTS / WRONG_TASK[command])]
    elif case in ("ckpt_checkpoint", "pt_checkpoint"):
        ckpt = tmp_path / ("model.ckpt" if case == "ckpt_checkpoint" else "model.pt")
        ckpt.write_bytes(pickle.dumps({"state_dict": _Trap(tmp_path / "UNPICKLED")}))
        extra = ["--checkpoint", str(ckpt)]
    if command in WRITES and case not in OWN_OUT:
        _previous_run(out, command)
    argv = [command, str(clip), *extra] + (["--out", str(out)] if command in WRITES else [])
    before = snapshot(tmp_path)
    clip_hash = sha(clip) if case != "clip_name_too_long" and clip.is_file() else None

    capsys.readouterr()
    with warnings.catch_warnings(record=True) as raw:
        warnings.simplefilter("always")
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse
            code = exc.code
    stdout, stderr = capsys.readouterr()
    # warnings the command did not turn into its own lines would print raw (as Python shows them by default)
    raw = [str(w.message) for w in raw if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning))]

    assert "Traceback" not in stdout + stderr
    assert code in expect, f"exit {code}, expected {sorted(expect)}; stderr: {stderr.strip()}"
    assert not (tmp_path / "UNPICKLED").exists(), "a pickle checkpoint was unpickled"
    if clip_hash is not None:
        assert sha(clip) == clip_hash, "the input changed"
    lines = [line for line in stderr.splitlines() if line.strip()]
    if code == 1:
        assert len(lines) == 1 and lines[0].startswith(f"avlearn {command}: error: "), stderr
        assert not raw, f"raw Python warnings would print too: {raw}"
        assert snapshot(tmp_path) == before, "a failed run changed files"
        if extra:  # names the file the user gave, not one derived from it
            assert Path(extra[1]).name in lines[0], lines[0]
    else:
        _check_result(command, case, stdout, out)
        assert not raw, f"raw Python warnings would print: {raw}"
        changed = {k for k in set(snapshot(tmp_path)) ^ set(before) if not k.startswith(out.name)}
        assert not changed, f"written outside --out: {sorted(changed)}"
