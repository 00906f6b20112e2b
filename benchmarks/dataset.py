"""How fast does the dataset layer feed a model on CPU? Items/s of ManifestDataset through a DataLoader.

    python benchmarks/dataset.py --num-clips 100 --workers 2

Renders ``--num-clips`` instruments clips (2 s, 160x160) into a temporary folder, then reads one random
1 s window per clip (video resized to 112x112, 16 kHz audio, stems and masks included) for two epochs with
``--workers`` DataLoader workers, and prints windows per second.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from avlearn.data import ManifestDataset, RandomClipSampler, collate
from avlearn.data.synth import synthesize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-clips", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="avlearn-bench-data-") as out:
        synthesize("instruments", out, args.num_clips, seed=0, workers=2)
        for extras in (False, True):
            ds = ManifestDataset(Path(out) / "train.jsonl", clip_sampler=RandomClipSampler(1.0), size=112,
                                 with_sources=extras, with_annotations=extras)  # fmt: skip
            loader = torch.utils.data.DataLoader(
                ds, batch_size=args.batch_size, shuffle=True, num_workers=args.workers, collate_fn=collate
            )
            t0, n = time.perf_counter(), 0
            for _ in range(2):
                for batch in loader:
                    n += len(batch["index"])
            elapsed = time.perf_counter() - t0
            what = "video + audio + stems + boxes + masks" if extras else "video + audio"
            print(f"{what:40s} {n / elapsed:7.1f} windows/s ({args.workers} workers, 1 s windows at 112x112)")


if __name__ == "__main__":
    main()
