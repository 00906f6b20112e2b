"""Start-up and terminal output of the commands, each run as a user runs it: in a process of its own.

``avlearn probe`` and ``avlearn --help`` import no torch (seconds to import); inference commands import no
trainer (Lightning) and, but for recognize, no torchvision (a second more); a command whose output is not a
terminal prints nothing on stderr, and one on a terminal (a pseudo-terminal here) draws a progress bar.
"""

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import avlearn

# Runs avlearn's command line on the arguments, then reports which heavy modules the run imported.
RUN = """import json, sys
from avlearn.cli import main
status = main(sys.argv[1:])
heavy = [m for m in ("torch", "torchvision", "lightning", "pytorch_lightning") if m in sys.modules]
print("MODULES " + json.dumps({"status": status, "loaded": heavy}))
"""
ROOT = Path(__file__).resolve().parents[1]


def run(*argv: str) -> tuple[dict, str, str]:
    """``(status and heavy modules loaded, stdout without that line, stderr)`` of one command line."""
    done = subprocess.run(
        [sys.executable, "-c", RUN, *argv],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )
    out, _, report = done.stdout.rpartition("MODULES ")
    assert report, f"{argv}: no report; stderr: {done.stderr[-2000:]}"
    return json.loads(report), out, done.stderr


def test_probe_and_help_import_no_torch():
    t0 = time.perf_counter()
    info, out, err = run("probe", str(avlearn.demo_clip("speakers")))
    assert info == {"status": 0, "loaded": []} and "video: h264" in out and err == "", (info, err)
    assert time.perf_counter() - t0 < 10  # 0.2 s on an idle machine; 7 s when it imported torch
    info, out, _ = run("--help")
    assert info == {"status": 0, "loaded": []} and "separate" in out


def test_inference_imports_no_trainer_and_is_quiet_off_a_terminal(tmp_path):
    """Each inference command in a process of its own, output to pipes: no Lightning, nothing on stderr."""
    speakers, instruments = str(avlearn.demo_clip("speakers")), str(avlearn.demo_clip("instruments"))
    for argv in (
        ["sync-offset", speakers, "--out", str(tmp_path / "sync")],
        ["separate", speakers, "--out", str(tmp_path / "separate")],
        ["localize", instruments, "--out", str(tmp_path / "localize")],
        ["recognize", str(avlearn.demo_clip("actions")), "--out", str(tmp_path / "recognize")],
    ):
        info, out, err = run(*argv)
        assert info["status"] == 0 and "torch" in info["loaded"], (argv, info, err)
        assert "lightning" not in info["loaded"] and "pytorch_lightning" not in info["loaded"], argv
        if argv[0] != "recognize":  # its teacher is a torchvision video network; the others' models need none
            assert "torchvision" not in info["loaded"], argv
        assert err == "", f"{argv[0]} wrote on stderr though it is not a terminal: {err!r}"
        assert out.strip(), argv


def test_progress_bar_on_a_terminal_only(tmp_path):
    """On a pseudo-terminal a bar is drawn (and cleared); --quiet or a pipe draw none."""
    clip = str(avlearn.demo_clip("instruments"))

    def on_terminal(*extra: str) -> str:
        pid, fd = pty.fork()
        if pid == 0:  # the child: stdin, stdout and stderr are the pseudo-terminal, 24 x 100 characters
            fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
            os.chdir(ROOT)
            argv = [sys.executable, "-m", "avlearn.cli", "localize", clip, "--out", str(tmp_path / "out"), *extra]
            os.execv(sys.executable, argv)
        chunks = []
        while True:
            try:
                data = os.read(fd, 4096)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        _, status = os.waitpid(pid, 0)
        os.close(fd)
        assert os.waitstatus_to_exitcode(status) == 0, b"".join(chunks)[-2000:]
        return b"".join(chunks).decode(errors="replace")

    drawn = on_terminal()
    assert "localizing" in drawn and "chunk" in drawn, drawn  # tqdm's bar: "localizing:   0%| | 0/1 [...chunk/s]"
    quiet = on_terminal("--quiet")
    assert "localizing" not in quiet and "heatmap.mp4" in quiet, quiet
