"""Sync figures on a held-out split: binary sync accuracy and offset estimation.

- binary: each test clip gives one fixed 1 s window with its aligned audio and the same clip's audio
  shifted by 0.5-1.5 s (the training distribution of negatives); accuracy = (logit > 0) == label.
- offsets: each clip's audio is delayed by a known whole number of frames k in [-10, 10] (drawn per clip),
  the model gives a distribution over +-15 frames in three 1 s windows (starting at 1.0, 1.5 and 2.0 s), the
  windows' log-probabilities are summed as `avlearn sync-offset` does, and the estimate counts as right
  when it is within one frame of k. The candidates are scored as `sync-offset` scores them (encoders once per
  window, the 31 alignments through the fusion as one batch), and, for the time comparison, by 31 separate
  passes; a model with an offset head is also measured through it. The time of each way is printed.

Run:  .venv/bin/python benchmarks/sync.py --checkpoint runs/.../weights/best --manifest data/instruments/test.jsonl
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from avlearn import progress
from avlearn.data.cache import decode_clips
from avlearn.data.manifest import read_manifest
from avlearn.data.sync import SyncWindows
from avlearn.pipelines.sync_offset import _scorer, delay


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--max-shift-frames", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(2)
    net, pre = _scorer(args.checkpoint)
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
        vt = net.video_tokens(b["video"])
        pos = net.score(vt, net.audio_tokens(b["audio"], vt.shape[1]))
        neg = net.score(vt, net.audio_tokens(b["shifted"][:, 0], vt.shape[1]))
        correct += int((pos > 0).sum() + (neg <= 0).sum())
    binary = correct / (2 * n)
    print(f"{args.manifest}: {n} held-out clips; checkpoint {args.checkpoint}")
    print(f"binary sync accuracy (aligned vs. shifted 0.5-1.5 s): {binary:.3f}")
    spf = round(sr / fps)
    rng = np.random.default_rng(11)
    truth = rng.integers(-args.max_shift_frames, args.max_shift_frames + 1, size=n)
    num_frames = round(window * fps)

    def per_candidate(frames, auds, margin):  # the search as 31 separate passes, for the time comparison
        vt = net.video_tokens(frames)
        scores = [net.score(vt, net.audio_tokens(auds[:, margin + k * spf :][:, : num_frames * spf], num_frames))
                  for k in range(-15, 16)]  # fmt: skip
        return torch.arange(-15, 16) / fps, torch.stack(scores, 1).float().log_softmax(1)

    ways = {
        "encoders once, 31 candidates batched (sync-offset)": lambda f, a, m: net.offsets(f, a, m, 15),
        "31 passes, one per candidate": per_candidate,
    }
    if net.offset_head is not None:
        ways["offset head, one pass"] = lambda f, a, m: net.offsets(f, a, m, use_offset_head=True)
    for way, estimate_fn in ways.items():
        errors, t1 = [], time.perf_counter()
        for i in progress.bar(range(n), desc=way[:24], unit="clip"):
            audio = delay(clips.audio[i], int(truth[i]) * spf)
            starts = [round(start * fps) for start in (1.0, 1.5, 2.0)]
            frames = torch.stack([clips.video[i, f0 : f0 + num_frames] for f0 in starts])
            margin = 15 * spf
            padded = torch.nn.functional.pad(audio, (margin, margin))
            auds = torch.stack([padded[f0 * spf : f0 * spf + num_frames * spf + 2 * margin] for f0 in starts])
            offsets, logp = estimate_fn(frames, auds, margin)
            estimate = round(float(offsets[int(logp.sum(0).argmax())]) * fps)
            errors.append(estimate - int(truth[i]))
        errors = np.abs(np.array(errors))
        print(f"offset within +-1 frame ({way}): {np.mean(errors <= 1):.3f}; exact: {np.mean(errors == 0):.3f}; "
              f"median error {np.median(errors):.0f} frames; {time.perf_counter() - t1:.1f} s")  # fmt: skip
    elapsed = time.perf_counter() - t0
    print(f"evaluation time {elapsed:.0f} s on {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
