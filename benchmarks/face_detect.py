"""How often does OpenCV's Haar face detector find the faces of the ``speakers`` world's test split?

    python benchmarks/face_detect.py --num-clips 100 --seed 0

Renders the clips into --out, decodes every frame of the mp4 files and runs
``haarcascade_frontalface_default.xml`` with OpenCV's default settings.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from avlearn.data.manifest import read_manifest
from avlearn.data.synth import synthesize
from avlearn.data.worlds.face_check import face_hit_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-clips", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default="test")
    parser.add_argument("--out", default="out/bench/speakers")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--real", help="also run on the talking-head mp4s of this folder (e.g. ../shared/real/video)")
    args = parser.parse_args()
    synthesize("speakers", args.out, args.num_clips, seed=args.seed, split=args.split, workers=args.workers)
    rows = read_manifest(Path(args.out) / f"{args.split}.jsonl")
    t0 = time.perf_counter()
    stats = face_hit_rate(rows[: args.num_clips])
    print(
        f"speakers/{args.split}: {stats['faces']} faces in {stats['frames']} frames of {args.num_clips} clips; "
        f"faces found {100 * stats['face_rate']:.1f}%, frames with every face found {100 * stats['frame_rate']:.1f}%, "
        f"frames with a face found {100 * stats['any_rate']:.1f}%, false detections per frame "
        f"{stats['false_per_frame']:.3f} ({time.perf_counter() - t0:.1f} s)"
    )
    if args.real:
        real_rates(Path(args.real))


def real_rates(folder: Path) -> None:
    """Frames (every 5th at 25 fps) of real talking heads with at least one face, at full size and at 160 px."""
    import cv2

    from avlearn.io import probe, read_clip
    from avlearn.video.detect import haar_cascade

    cascade = haar_cascade()
    for path in sorted(folder.glob("talking_head*")):
        duration = probe(path).duration
        for size in (None, 160):
            clip = read_clip(path, 0.0, duration, fps=5, size=size, audio=False)
            frames = clip.video.permute(1, 2, 3, 0).numpy()
            found = [len(cascade.detectMultiScale(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY))) > 0 for f in frames]
            label = "full size" if size is None else f"{size} px"
            print(f"real {path.name} ({label}): a face in {100 * sum(found) / len(found):.0f}% of {len(found)} frames")


if __name__ == "__main__":
    main()
