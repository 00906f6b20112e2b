"""``avlearn probe FILE...``: what media files hold.

Every file is described, whatever happened to the ones before it: a bad file gets one error line on
stderr and the command exits 1 once all are done, so ``avlearn probe *.mp4`` finds every broken file in
one run.
"""

from __future__ import annotations

import argparse
import json
import sys

from avlearn.io.errors import MediaError
from avlearn.io.probe import MediaInfo, probe


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="FILE", help="media files to describe")
    parser.add_argument("--json", action="store_true", help="print one JSON object per file")


def describe(path: str, info: MediaInfo) -> list[str]:
    """The human-readable lines for one probed file."""
    lines = [f"{path}: {info.format}, {info.duration:.3f} s"]
    if info.truncated:
        lines[0] += (
            f" readable (cut off: the file announces {info.announced_duration:.3f} s; only the first part can be read)"
        )
    v, a = info.video, info.audio
    if v:
        rate = f"{v.fps:.3f} fps" + (" (variable)" if v.variable_fps else "")
        turn = f", rotated {v.rotation} deg" if v.rotation else ""
        lines.append(f"  video: {v.codec} {v.width}x{v.height}{turn}, {rate}, starts at {v.start:.3f} s")
    else:
        lines.append("  video: none")
    if a:
        lines.append(f"  audio: {a.codec} {a.sample_rate} Hz, {a.channels} ch, starts at {a.start:.3f} s")
    else:
        lines.append("  audio: none")
    return lines


def run(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.paths:
        try:
            info = probe(path)
        except MediaError as err:
            print(f"avlearn probe: error: {err}", file=sys.stderr)
            failed += 1
            continue
        print(json.dumps(info.to_dict()) if args.json else "\n".join(describe(path, info)), flush=True)
    if failed and len(args.paths) > 1:
        print(f"avlearn probe: {failed} of {len(args.paths)} files could not be read", file=sys.stderr)
    return 1 if failed else 0
