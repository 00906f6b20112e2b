"""Sync figures on a held-out split: binary sync accuracy and offset estimation.

- binary: each test clip gives one fixed 1 s window with its aligned audio and the same clip's audio
  shifted by 0.5-1.5 s (the training distribution of negatives); accuracy = (logit > 0) == label.
- offsets: each clip's audio is delayed by a known whole number of frames k in [-10, 10] (drawn per clip),
  the model scores the +-15-frame candidates in three 1 s windows (starting at 1.0, 1.5 and 2.0 s), the
  windows' log-probabilities are summed as `avlearn sync-offset` does, and the estimate counts as right
  when it is within one frame of k.

Run:  .venv/bin/python benchmarks/sync.py --checkpoint runs/.../weights/best --manifest data/instruments/test.jsonl
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from avlearn.data.cache import decode_clips
from avlearn.data.manifest import read_manifest
from avlearn.data.sync import SyncWindows
from avlearn.pipelines.sync_offset import _scorer, delay
from avlearn.tasks.sync import estimate_offset


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--max-shift-frames", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(2)
    task, pre = _scorer(args.checkpoint)
    fps, sr, window = pre["fps"], pre["sample_rate"], pre["window"]
    clips = decode_clips(
        read_manifest(args.manifest), fps=fps, size=pre["size"], sample_rate=sr,
        cache_dir=Path(args.manifest).parent / ".avlearn-cache",
    )  # fmt: skip
    n = len(clips.rows)
    t0 = time.perf_counter()
    pairs = SyncWindows(clips, window, min_shift=0.5 * window, max_shift=1.5 * window, deterministic=True, seed=7)
    batch = torch.utils.data.default_collate([pairs[i] for i in range(n)])
    correct = 0
    for i in range(0, n, 50):
        b = {k: v[i : i + 50] for k, v in batch.items()}
        logits, labels = task.binary_logits(b, task.video_tokens(b["video"]))
        correct += int(((logits > 0) == labels.bool()).sum())
    binary = correct / (2 * n)
    spf = round(sr / fps)
    rng = np.random.default_rng(11)
    truth = rng.integers(-args.max_shift_frames, args.max_shift_frames + 1, size=n)
    errors = []
    num_frames = round(window * fps)
    for i in range(n):
        audio = delay(clips.audio[i], int(truth[i]) * spf)[None]
        total = 0
        for start in (1.0, 1.5, 2.0):
            f0 = round(start * fps)
            frames = clips.video[i, f0 : f0 + num_frames][None]
            offsets, logp = estimate_offset(task, frames, audio, f0 * spf, fps, sr, 15)
            total = total + logp[0]
        estimate = round(float(offsets[int(total.argmax())]) * fps)
        errors.append(estimate - int(truth[i]))
    errors = np.abs(np.array(errors))
    elapsed = time.perf_counter() - t0
    print(f"{args.manifest}: {n} held-out clips; checkpoint {args.checkpoint}")
    print(f"binary sync accuracy (aligned vs. shifted 0.5-1.5 s): {binary:.3f}")
    print(f"offset within +-1 frame: {np.mean(errors <= 1):.3f}; exact: {np.mean(errors == 0):.3f}; "
          f"median error {np.median(errors):.0f} frames")  # fmt: skip
    print(f"evaluation time {elapsed:.0f} s on {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
