"""`avlearn sync-offset` on the real talking heads of ../shared/real/video with known audio shifts.

Each clip's audio is delayed by -320, -120, 0, +200 and +400 ms (the tool's --shift-audio-ms) and the
estimate is printed beside the truth; "ok" means within one video frame (40 ms at 25 fps).

Run:  .venv/bin/python benchmarks/sync_real.py --checkpoint assets/checkpoints/sync_speakers
"""

from __future__ import annotations

import argparse
from pathlib import Path

from avlearn.pipelines.sync_offset import DEFAULT_CHECKPOINT, sync_offset

REAL = Path(__file__).resolve().parents[2] / "shared" / "real" / "video"
SHIFTS_MS = (-320, -120, 0, 200, 400)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    parser.add_argument("--real", type=Path, default=REAL)
    args = parser.parse_args()
    print(f"| clip | {' | '.join(f'{s:+d} ms' for s in SHIFTS_MS)} |")
    print("|---|" + "---:|" * len(SHIFTS_MS))
    hits = total = 0
    for clip in sorted(args.real.glob("talking_head_*.mp4")):
        cells = []
        for shift in SHIFTS_MS:
            result = sync_offset(clip, args.checkpoint, shift_audio_ms=shift)
            ok = abs(result.offset_ms - shift) <= result.frame_ms
            hits, total = hits + ok, total + 1
            cells.append(f"{result.offset_ms:+.0f} ({result.confidence:.2f}){' ok' if ok else ''}")
        print(f"| {clip.name} | {' | '.join(cells)} |")
    print(f"\nwithin one frame: {hits}/{total}; checkpoint {args.checkpoint}")


if __name__ == "__main__":
    main()
