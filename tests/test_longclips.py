"""Long clips in bounded memory (issue 17, finding 8): separate, localize and sync-offset stream a clip over
windows and chunks, so their peak memory must not grow with the clip's length.

Each command runs in a child process on a short and on a longer clip (the two-speaker demo clip looped and
scaled to 640x360: 4 s and 16 s; 48 s for the cheaper sync-offset), and the child's peak resident memory
(``ru_maxrss`` from ``wait4``) is compared. The children shrink the chunk sizes (seconds read at a time,
windows per batch) so that every clip spans several chunks and the test stays quick; the streaming is the
same as with the shipped sizes. Before streaming, separate and localize held every frame (and more per
frame: float crops, maps, overlays) and grew by 1.6 GB from 4 s to 16 s; sync-offset held every decoded
picture and grew by 360 MB from 4 s to 48 s. Streamed, each grows by less than 80 MB (the allocator's
warm-up over the first chunks, then flat).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parents[1] / "assets" / "demo" / "speakers" / "test" / "000001.mp4"  # 4 s
SHORT_S, LONG_S = 4, {"separate": 16, "localize": 16, "sync-offset": 48}
# What may grow with the clip: the 16 kHz mixture and voices (64 KB a second each), per-frame boxes and
# peaks, result.json; and the allocator's warm-up over the first few chunks.
SLACK_MB = 100

CHILD = """
import sys
import avlearn.pipelines.localize as loc, avlearn.pipelines.separate as sep, avlearn.pipelines.sync_offset as syn
sep.READ_CHUNK_S, loc.CHUNK_S = 1.0, 2.0
command, clip, out = sys.argv[1:]
if command == "separate":
    sep.write_result(sep.separate_clip(clip, batch_size=2), out)
elif command == "localize":
    loc.localize(clip, out)
else:
    syn.sync_offset(clip, hop=3.0, batch_size=2)
"""


def _clip(dst: Path, seconds: int) -> Path:
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-stream_loop", str(seconds // 4), "-i", str(DEMO), "-t", str(seconds),
         "-vf", "scale=360:360,pad=640:360:140:0", "-c:v", "libx264", "-preset", "ultrafast", "-g", "25",
         "-c:a", "copy", str(dst)],
        check=True,
    )  # fmt: skip
    return dst


def _peak_mb(command: str, clip: Path, out: Path) -> float:
    """Runs ``command`` on ``clip`` in a child process; its peak resident memory in MB."""
    return _peak_mb_of(CHILD, out.parent, command, str(clip), str(out))


def _peak_mb_of(code: str, cwd: Path, *args: str) -> float:
    """Runs ``python -c code args`` in a child process; its peak resident memory in MB."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=cwd,  # not the checkout: the child imports the avlearn that python finds (PYTHONPATH, installed)
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:  # the test timed out or was interrupted: stop the child too
        proc.kill()
        proc.wait()
        raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.returncode == 0, err
    return usage.ru_maxrss / 1024  # KB on Linux


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg command line tool")
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss is in KB on Linux")
def test_peak_memory_does_not_grow_with_the_clip(tmp_path):
    clips = {s: _clip(tmp_path / f"{s}s.mp4", s) for s in {SHORT_S, *LONG_S.values()}}
    peaks = {}
    for command, long_s in LONG_S.items():
        peaks[command] = {
            s: round(_peak_mb(command, clips[s], tmp_path / f"{command}_{s}s")) for s in (SHORT_S, long_s)
        }
    print(f"peak RSS (MB) by clip length (s): {peaks}")
    grew = {k: v for k, v in peaks.items() if v[LONG_S[k]] > v[SHORT_S] + SLACK_MB}
    assert not grew, f"peak RSS (MB) grows with the clip: {grew}"
    # and the long results are whole: every frame localized, every frame of the speakers' videos boxed
    frames = json.loads((tmp_path / "localize_16s" / "peaks.json").read_text())["frames"]
    assert len(frames) == 16 * 25
    result = json.loads((tmp_path / "separate_16s" / "result.json").read_text())
    assert len(result["speakers"]) == 2 and all(len(s["boxes"]) == 16 * 25 for s in result["speakers"])


LIMIT_MB = 3500  # what a 2-minute clip may take at most; the old code needed about 6 GB (separate), 16 GB (localize)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg command line tool")
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss is in KB on Linux")
def test_two_minutes_of_video_under_a_memory_limit(tmp_path):
    """The shipped chunk sizes on minutes of video, as a user runs them (`avlearn separate|localize`)."""
    clip = tmp_path / "two_minutes.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-stream_loop", "30", "-i", str(DEMO), "-t", "120",
         "-vf", "scale=180:180,pad=320:180:70:0", "-c:v", "libx264", "-preset", "ultrafast", "-g", "25",
         "-c:a", "copy", str(clip)],
        check=True,
    )  # fmt: skip
    for command in ("separate", "localize"):
        out = tmp_path / command
        code = f"import sys; from avlearn.cli import main; sys.exit(main(['{command}', '{clip}', '--out', '{out}']))"
        peak = _peak_mb_of(code, out.parent)
        assert peak < LIMIT_MB, f"{command}: peak RSS {peak:.0f} MB on 2 minutes of video"
    assert len(json.loads((tmp_path / "localize" / "peaks.json").read_text())["frames"]) == 120 * 25
