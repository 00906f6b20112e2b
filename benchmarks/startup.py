"""Start-up of every avlearn command beside ``python -c "import torch"``, measured in the same run.

A command's start-up is the time from launching it to its exit on ``--help`` (its module and all it imports,
the argument parser), or, for ``probe``, on a demo clip: what a user waits before any work starts. Each
command line runs ``--repeats`` times, each in a fresh interpreter, alternating with the others so a busy
machine slows all alike; the median is printed with its ratio to importing torch, and which heavy libraries
the command imported (from one more run under ``python -X importtime``).

Run:  .venv/bin/python benchmarks/startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import avlearn
from avlearn import progress
from avlearn.cli import COMMANDS

HEAVY = ("torch", "torchvision", "lightning", "matplotlib", "cv2", "scipy", "librosa")


def command_lines() -> dict[str, list[str]]:
    """Label -> argv of every command line measured; ``avlearn`` is the installed entry point when there is
    one (what users run), else ``python -m avlearn.cli``."""
    script = Path(sys.executable).with_name("avlearn")
    avlearn_cmd = [str(script)] if script.exists() else [sys.executable, "-m", "avlearn.cli"]
    lines = {
        "python -c pass": [sys.executable, "-c", "pass"],
        'python -c "import torch"': [sys.executable, "-c", "import torch"],
        "avlearn --help": [*avlearn_cmd, "--help"],
        "avlearn probe CLIP": [*avlearn_cmd, "probe", str(avlearn.demo_clip("speakers"))],
    }
    for name in [*COMMANDS, "fit"]:
        if name != "probe":
            lines[f"avlearn {name} --help"] = [*avlearn_cmd, name, "--help"]
    return lines


def seconds(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def heavy_imports(argv: list[str]) -> list[str]:
    """The libraries of ``HEAVY`` that ``argv`` imports (``-X importtime`` lists every import on stderr)."""
    if argv[0] != sys.executable:  # the entry-point script: its module under the same interpreter
        argv = [sys.executable, "-m", "avlearn.cli", *argv[1:]]
    err = subprocess.run([sys.executable, "-X", "importtime", *argv[1:]], capture_output=True, text=True).stderr
    names = {line.rsplit("|", 1)[-1].strip() for line in err.splitlines() if line.startswith("import time:")}
    return [m for m in HEAVY if m in names]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs of each command line (default 5)")
    args = parser.parse_args()
    lines = command_lines()
    times: dict[str, list[float]] = {label: [] for label in lines}
    for _ in progress.bar(range(args.repeats), desc="rounds"):
        for label, argv in lines.items():
            times[label].append(seconds(argv))
    base = statistics.median(times['python -c "import torch"'])
    rows = []
    for label, argv in lines.items():
        median = statistics.median(times[label])
        rows.append({"command": label, "median_s": round(median, 3), "vs_import_torch": round(median / base, 2),
                     "imports": heavy_imports(argv)})  # fmt: skip
    width = max(len(r["command"]) for r in rows)
    print(f"{'command':<{width}}  {'median s':>8}  {'x import torch':>14}  heavy imports")
    for r in rows:
        print(
            f"{r['command']:<{width}}  {r['median_s']:>8.2f}  {r['vs_import_torch']:>14.2f}  "
            f"{', '.join(r['imports']) or '-'}"
        )
    print(f"({args.repeats} runs each, median; {sys.executable})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
