"""Validation curves of training runs in one picture: a metric of each run's ``metrics.csv`` over its steps.

    python benchmarks/plot_curves.py --metric val/si_sdri --out docs/img/separation_real_pit_curve.png \
        "GPU, 27 voices=runs/separation/real_pit_long/version_0" "CPU, 99 voices=runs/separation/real_pit/version_1"
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from avlearn.io.write import atomic_path  # noqa: E402


def read_metric(run: Path, metric: str) -> tuple[list[int], list[float]]:
    """``(steps, values)`` of ``metric`` in a run folder's ``metrics.csv`` (Lightning's CSVLogger)."""
    steps, values = [], []
    with open(run / "metrics.csv") as f:
        for row in csv.DictReader(f):
            if row.get(metric):
                steps.append(int(row["step"]) + 1)
                values.append(float(row[metric]))
    return steps, values


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="LABEL=RUN_FOLDER")
    p.add_argument("--metric", default="val/si_sdri")
    p.add_argument("--ylabel", default="validation SI-SDRi (dB)")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for spec in args.runs:
        label, run = spec.split("=", 1)
        steps, values = read_metric(Path(run), args.metric)
        ax.plot(steps, values, marker="o", markersize=3, label=label)
        print(f"{label}: best {max(values):.2f} at step {steps[values.index(max(values))]}, last {values[-1]:.2f}")
    ax.set_xlabel("training steps (16 mixtures each)")
    ax.set_ylabel(args.ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(args.out) as tmp:
        fig.savefig(tmp, format="png")
    print(args.out)


if __name__ == "__main__":
    main()
