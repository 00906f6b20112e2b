"""``avlearn synth WORLD --out DIR --num-clips N --seed S [--split train|val|test]``: render a synthetic world.

Writes ``DIR/SPLIT.jsonl`` plus the clips, stems and annotations under ``DIR/SPLIT/`` (layout in
:mod:`avlearn.data.worlds`). Clips are rendered by a pool of worker processes; each clip is a pure function
of (world, seed, split, index), so the output does not depend on the number of workers. With
``--contact-sheet`` it also writes ``DIR/SPLIT_contact.png``: frames of a few clips with their boxes and
their waveform, read back from the written files.

Example::

    avlearn synth speakers --out data/speakers --num-clips 2000 --seed 0 --split train --workers 2
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any

from avlearn import progress
from avlearn.data.manifest import write_manifest
from avlearn.data.worlds import SPLITS, WORLDS, WorldConfig, get_world, write_clip
from avlearn.io.outdir import locked_output


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("world", choices=WORLDS, help="which world to render")
    parser.add_argument("--out", required=True, help="output folder (SPLIT.jsonl and SPLIT/ are written inside)")
    parser.add_argument("--num-clips", type=int, default=16, help="number of clips (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--split", choices=SPLITS, default="train", help="identities to draw from (default train)")
    parser.add_argument(
        "--start-index", type=int, default=0, help="index of the first clip; > 0 adds rows to an existing manifest"
    )
    parser.add_argument("--duration", type=float, default=None, help="clip seconds (default: 2; actions 20-60)")
    parser.add_argument("--size", type=int, default=160, help="frame height and width in pixels (default 160)")
    parser.add_argument("--fps", type=int, default=25, help="frames per second (default 25)")
    parser.add_argument("--sample-rate", type=int, default=16000, help="audio rate in Hz (default 16000)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2; 0 renders inline)")
    parser.add_argument("--contact-sheet", action="store_true", help="also write SPLIT_contact.png")


def _job(job: tuple[str, int, int, str, WorldConfig, str]) -> dict[str, Any]:
    world_name, index, seed, split, config, out = job
    clip = get_world(world_name).render(index, seed, split, config)
    return write_clip(clip, out, world=world_name, split=split, seed=seed, index=index, config=config)


def synthesize(
    world: str,
    out: str | Path,
    num_clips: int,
    *,
    seed: int = 0,
    split: str = "train",
    start_index: int = 0,
    config: WorldConfig | None = None,
    workers: int = 2,
) -> list[dict[str, Any]]:
    """Renders ``num_clips`` clips of ``world`` into ``out`` and writes the manifest ``out/split.jsonl``
    (a progress bar on a terminal: :mod:`avlearn.progress`).

    Returns:
        The manifest rows (absolute paths), ordered by clip index.
    """
    if num_clips < 1:
        raise ValueError(f"num_clips must be at least 1, got {num_clips}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    config = config or WorldConfig()
    module = get_world(world)
    module.prepare(config)  # fills the sound caches once, before workers start
    jobs = [(world, i, seed, split, config, str(out)) for i in range(start_index, start_index + num_clips)]
    if workers <= 0:
        rows = [_job(job) for job in progress.bar(jobs, desc=f"synth {world}", unit="clip")]
    else:
        # fork is fine here (no threads yet); spawn would re-import torch in every worker
        ctx = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
        with ctx.Pool(workers) as pool:
            clips = pool.imap(_job, jobs, chunksize=1)
            rows = list(progress.bar(clips, total=num_clips, desc=f"synth {world}", unit="clip"))
    manifest = Path(out) / f"{split}.jsonl"
    if start_index > 0 and manifest.exists():  # extending a set: keep the rows of the other indices
        from avlearn.data.manifest import read_manifest

        new = {r["id"] for r in rows}
        rows = [r for r in read_manifest(manifest) if r.get("id") not in new] + rows
        rows.sort(key=lambda r: (r.get("meta") or {}).get("index", 0))
    write_manifest(manifest, rows)
    return rows


def run(args: argparse.Namespace) -> int:
    config = WorldConfig(size=args.size, fps=args.fps, sample_rate=args.sample_rate, duration=args.duration)
    t0 = time.perf_counter()
    try:
        with locked_output(args.out):  # --out checked first; a second run into it refuses
            rows = synthesize(
                args.world,
                args.out,
                args.num_clips,
                seed=args.seed,
                split=args.split,
                start_index=args.start_index,
                config=config,
                workers=args.workers,
            )
    except (FileNotFoundError, ValueError) as err:  # a missing synthesizer or soundfont, a bad argument
        print(f"avlearn synth: error: {err}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - t0
    made = [r for r in rows if args.start_index <= r["meta"]["index"] < args.start_index + args.num_clips]
    seconds = sum(r["end"] - r["start"] for r in made)
    manifest = Path(args.out) / f"{args.split}.jsonl"
    print(
        f"{args.world}: {len(made)} clips ({seconds:.0f} s of media) in {elapsed:.1f} s "
        f"= {len(made) / elapsed:.2f} clips/s with {args.workers} workers -> {manifest} ({len(rows)} rows)"
    )
    if args.contact_sheet:
        from avlearn.data.contact_sheet import write_contact_sheet

        png = write_contact_sheet(manifest, Path(args.out) / f"{args.split}_contact.png")
        print(f"contact sheet -> {png}")
    return 0
