"""`avlearn sync-offset` on real talking heads of people no model trained on, with known audio shifts.

Each clip's audio is delayed by -320, -120, 0, +200 and +400 ms (the tool's --shift-audio-ms) and the estimate is
printed beside the truth; "ok" means within one video frame (40 ms at 25 fps). The clips are the held-out
(test) people of a real manifest (``python -m avlearn.data.real``) whose sound is their own voice (the
MSDWILD car and talk-show clips hold several voices and are left to the active-speaker benchmark) and the three
talking heads of ../shared/real/video. A clip whose own audio is out of sync reads its own offset plus every
shift: the ``own`` column is the median of (estimate - shift), and ``ok own`` counts estimates within a frame of
shift + own offset.

Run:  .venv/bin/python benchmarks/sync_real.py --manifest data/real/test.jsonl --checkpoint sync_real
"""

from __future__ import annotations

import argparse
import statistics
import warnings
from pathlib import Path

from avlearn.data.manifest import read_manifest
from avlearn.pipelines.checkpoints import resolve_checkpoint
from avlearn.pipelines.sync_offset import DEFAULT_CHECKPOINT, sync_offset

SHIFTS_MS = (-320, -120, 0, 200, 400)
SEVERAL_VOICES = ("msdwild-car", "msdwild-show")


def _group(row: dict) -> str:
    return row.get("meta", {}).get("group") or row.get("world", "")


def clips(manifest: str, limit: int | None = None) -> list[tuple[str, str]]:
    """``(path, name)`` of the manifest's one-voice clips (a world's clips: the first ``limit``), by group."""
    rows = [r for r in read_manifest(manifest) if _group(r) not in SEVERAL_VOICES][:limit]
    rows.sort(key=lambda r: (_group(r), r["id"]))
    return [(r["path"], f"{_group(r)}: {Path(r['id']).name}") for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", default="data/real/test.jsonl", help="real clips (avlearn.data.real)")
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    parser.add_argument("--limit", type=int, default=None, help="the first N clips of the manifest")
    args = parser.parse_args()
    checkpoint = resolve_checkpoint(args.checkpoint)
    print(f"| clip | {' | '.join(f'{s:+d} ms' for s in SHIFTS_MS)} | own (ms) |")
    print("|---|" + "---:|" * (len(SHIFTS_MS) + 1))
    hits = hits_own = total = 0
    for path, name in clips(args.manifest, args.limit):
        results = []
        for shift in SHIFTS_MS:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    results.append(sync_offset(path, checkpoint, shift_audio_ms=shift))
                except Exception as err:  # noqa: BLE001 - a clip too short for the search is reported, not fatal
                    results.append(err)
        if any(isinstance(r, Exception) for r in results):
            err = next(r for r in results if isinstance(r, Exception))
            print(f"| {name} | {str(err).split(': ', 1)[-1][:100]} |" + " |" * len(SHIFTS_MS))
            continue
        frame = results[0].frame_ms
        own = statistics.median(r.offset_ms - s for r, s in zip(results, SHIFTS_MS))
        cells = []
        for r, shift in zip(results, SHIFTS_MS):
            ok, ok_own = abs(r.offset_ms - shift) <= frame + 1e-6, abs(r.offset_ms - shift - own) <= frame + 1e-6
            hits, hits_own, total = hits + ok, hits_own + ok_own, total + 1
            cells.append(f"{r.offset_ms:+.0f} ({r.confidence:.2f}){' ok' if ok else ''}")
        print(f"| {name} | {' | '.join(cells)} | {own:+.0f} |")
    print(
        f"\nwithin one frame of the shift: {hits}/{total} ({hits / max(1, total):.1%}); of the shift plus the clip's "
        f"own offset: {hits_own}/{total} ({hits_own / max(1, total):.1%}); checkpoint {checkpoint}"
    )


if __name__ == "__main__":
    main()
