"""Is the audio-visual offset identifiable in the worlds? A hand-made oracle, no learning.

    python benchmarks/sync_oracle.py --num-clips 40

For each clip of the test split it builds one visual signal per frame from the ground truth and the
decoded video, and one audio signal from the decoded mixture, and finds the shift (in frames, +-12)
that correlates them best. The files are in sync, so a shift near 0 means the world's timing carries
the offset: ``instruments`` compares the brightening of sounding objects (inside their masks) with the
rise of the log audio envelope; ``speakers`` compares the dark area inside each speaking mouth's box with
the audio envelope. (Visual events land on the first frame at or after an onset and the audio envelope
is averaged over a frame, so +-1 frame is the resolution of this oracle.)
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np

from avlearn.data.manifest import load_annotations
from avlearn.data.synth import synthesize
from avlearn.io import read_clip


def best_lag(visual: np.ndarray, audio: np.ndarray, max_lag: int = 12) -> int:
    """Shift (frames) of ``audio`` against ``visual`` with the highest normalized correlation."""
    kernel = np.array([0.5, 1.0, 0.5])  # events are spikes sampled at frame times: blur them by one frame
    visual, audio = np.convolve(visual, kernel, "same"), np.convolve(audio, kernel, "same")
    v = (visual - visual.mean()) / (visual.std() + 1e-9)
    a = (audio - audio.mean()) / (audio.std() + 1e-9)
    n = len(v)
    scores = [
        np.mean(v[lag:] * a[: n - lag]) if lag >= 0 else np.mean(v[: n + lag] * a[-lag:])
        for lag in range(-max_lag, max_lag + 1)
    ]
    return int(np.argmax(scores)) - max_lag


def clip_lag(world: str, row: dict) -> int:
    ann = load_annotations(row["annotations"])
    clip = read_clip(row["path"], 0.0, row["end"])
    gray = clip.video.float().mean(0).numpy()  # (C, T, H, W) -> (T, H, W)
    num_frames = len(gray)
    hop = clip.sample_rate // int(row["fps"])
    audio = clip.audio[0].numpy()
    env = np.array([np.sqrt(np.mean(audio[f * hop : (f + 1) * hop] ** 2)) for f in range(num_frames)])
    visual = np.zeros(num_frames)
    for k, src in enumerate(row["sources"]):
        if not src["sounding"]:
            continue
        if world == "instruments":
            masks = ann["masks"][:, k]
            level = np.array([gray[f][masks[f]].mean() if masks[f].any() else 0.0 for f in range(num_frames)])
            visual += np.maximum(np.diff(level, prepend=level[0]), 0)  # brightening
        else:
            boxes = ann["mouth_boxes"][:, k].astype(int)
            visual += np.array([(gray[f, y0:y1, x0:x1] < 60).mean() for f, (x0, y0, x1, y1) in enumerate(boxes)])
    if world == "instruments":
        log_env = np.log(env + 1e-4)
        env = np.maximum(np.diff(log_env, prepend=log_env[0]), 0)  # onsets
    return best_lag(visual, env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-clips", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    for world in ("instruments", "speakers"):
        with tempfile.TemporaryDirectory(prefix=f"avlearn-sync-{world}-") as out:
            rows = synthesize(world, out, args.num_clips, seed=args.seed, split="test", workers=args.workers)
            lags = np.abs([clip_lag(world, row) for row in rows])
        print(
            f"{world:12s} {len(lags)} test clips: best shift 0 frames in {np.mean(lags == 0):.0%}, "
            f"within +-1 frame in {np.mean(lags <= 1):.0%}, within +-2 in {np.mean(lags <= 2):.0%}"
        )


if __name__ == "__main__":
    main()
