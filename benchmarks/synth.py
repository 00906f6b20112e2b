"""Generation speed of the synthetic worlds: clips/s and seconds of media per second, per world.

    python benchmarks/synth.py --num-clips 200 --workers 2

Each world renders into a temporary folder (mp4 + stems + annotations + manifest, all of it) with a pool
of ``--workers`` processes. Sound banks are rendered into the cache before timing starts. ``actions`` clips
are 20-60 s long, so fewer are rendered (``--num-actions``). Prints one line per world and the projected
time for 2,000 two-second clips.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from avlearn.data.synth import synthesize
from avlearn.data.worlds import WorldConfig, get_world


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-clips", type=int, default=200, help="clips of instruments and speakers")
    parser.add_argument("--num-actions", type=int, default=6, help="clips of actions (20-60 s each)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worlds", nargs="+", default=["instruments", "speakers", "actions"])
    args = parser.parse_args()
    config = WorldConfig()
    for world in args.worlds:
        get_world(world).prepare(config)  # warm the sound caches
        n = args.num_actions if world == "actions" else args.num_clips
        out = Path(tempfile.mkdtemp(prefix=f"avlearn-bench-{world}-"))
        try:
            t0 = time.perf_counter()
            rows = synthesize(world, out, n, seed=0, split="train", config=config, workers=args.workers)
            elapsed = time.perf_counter() - t0
        finally:
            shutil.rmtree(out, ignore_errors=True)
        media = sum(r["end"] - r["start"] for r in rows)
        line = (
            f"{world:12s} {n:5d} clips in {elapsed:6.1f} s: {n / elapsed:6.2f} clips/s, "
            f"{media / elapsed:6.1f} s of media/s ({args.workers} workers)"
        )
        if world != "actions":
            line += f"; 2,000 two-second clips in {2000 / (n / elapsed) / 60:.1f} min"
        print(line, flush=True)


if __name__ == "__main__":
    main()
