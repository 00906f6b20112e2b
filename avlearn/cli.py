"""The ``avlearn`` command line.

Each subcommand lives in the module that does the work; that module exposes ``add_arguments(parser)``
and ``run(args) -> int``. Modules are imported only when their subcommand runs, so ``avlearn --help``
stays fast and a broken optional feature cannot break the others.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from avlearn import progress

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "probe": ("avlearn.io.cli", "print what a media file holds (streams, fps, duration, rotation)"),
    "demo": ("avlearn.demo", "read a window of a clip and write a contact sheet PNG and its audio"),
    "summary": ("avlearn.models.summary", "per-layer output size, receptive field and MACs of a model"),
    "synth": ("avlearn.data.synth", "render a synthetic audio-visual world to mp4 files and a manifest"),
    "sync-offset": ("avlearn.pipelines.sync_offset", "estimate how far a clip's audio is out of sync (ms)"),
    "separate": ("avlearn.pipelines.separate", "write one voice per visible speaker of a clip (wav + mp4)"),
    "localize": ("avlearn.pipelines.localize", "heat map of where the sound comes from in each frame of a clip"),
    "recognize": (
        "avlearn.pipelines.recognize",
        "which action an untrimmed video shows, and when, by previewing its audio",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="avlearn", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


@contextmanager
def warnings_as_lines(command: str) -> Iterator[None]:
    """Every warning a subcommand raises prints as one line, ``avlearn COMMAND: warning: MESSAGE``, instead
    of Python's two (source file, line number and the code that warned); the one place that formats them.
    A message is printed once per run, whichever code raised it (a cut-off file is read in several passes)."""
    seen: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = " ".join(str(message).split())
        if text in seen:
            return
        seen.add(text)
        try:
            print(f"avlearn {command}: warning: {text}", file=file or sys.stderr)
        except OSError:  # stderr closed: a warning is not worth a crash
            pass

    previous, warnings.showwarning = warnings.showwarning, show
    try:
        yield
    finally:
        warnings.showwarning = previous


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``) raised as an interrupt, so a command cleans up as after Ctrl-C."""


@contextmanager
def interrupts_as_lines(command: str) -> Iterator[list[int]]:
    """Ctrl-C and SIGTERM stop a command with one line and status 128 + the signal (130, 143) instead of a
    traceback; the work in progress unwinds first (staged results are removed, ``--out`` stays as it was).
    Yields a one-item list holding the status to return, 0 while not interrupted."""

    owner = os.getpid()

    def terminate(signum, frame):
        if os.getpid() != owner:  # a forked worker (a Pool ending its workers): die as SIGTERM would
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
        raise Terminated()

    status = [0]
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield status
    except KeyboardInterrupt as err:
        signum = signal.SIGTERM if isinstance(err, Terminated) else signal.SIGINT
        print(f"avlearn {command}: interrupted ({signal.Signals(signum).name})", file=sys.stderr)
        status[0] = 128 + signum
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "fit":  # Lightning handles its own signals (graceful shutdown, checkpoints)
        with warnings_as_lines("fit"):
            return _main(argv)
    if argv and argv[0] in COMMANDS:
        with warnings_as_lines(argv[0]), interrupts_as_lines(argv[0]) as interrupted:
            return _main(argv)
        return interrupted[0]
    return _main(argv)


def _main(argv: list[str]) -> int:
    if argv and argv[0] == "fit":
        from avlearn.tasks.fit import fit_main  # LightningCLI owns the parsing of training recipes

        return fit_main(argv[1:])
    if not argv or argv[0] not in COMMANDS:
        parser = build_parser()
        parser.print_help() if not argv or argv[0] in ("-h", "--help") else parser.parse_args(argv)
        return 0 if argv else 2
    name = argv[0]
    module_name, help_text = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"avlearn {name}", description=help_text)
    module.add_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bars (shown only on a terminal anyway)")
    args = parser.parse_args(argv[1:])
    progress.set_quiet(args.quiet)
    try:
        return int(module.run(args) or 0)
    except Exception as err:
        if not isinstance(err, _user_errors()):
            raise
        print(f"avlearn {name}: error: {err}", file=sys.stderr)  # a user's bad file: one clear line, no traceback
        return 1


def _user_errors() -> tuple[type[Exception], ...]:
    """The errors that mean a bad input file, checkpoint or ``--device``. ``CheckpointError`` and
    ``DeviceError`` are looked up only when their modules were loaded (they cannot have been raised
    otherwise): importing them would import torch, and ``avlearn probe`` needs none."""
    from avlearn.io.errors import MediaError

    errors: tuple[type[Exception], ...] = (MediaError,)
    weights = sys.modules.get("avlearn.models.weights")
    checkpoints = sys.modules.get("avlearn.pipelines.checkpoints")
    errors += () if weights is None else (weights.CheckpointError,)
    return errors + (() if checkpoints is None else (checkpoints.DeviceError,))


if __name__ == "__main__":
    sys.exit(main())
