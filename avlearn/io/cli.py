"""``avlearn probe FILE``: what a media file holds."""

from __future__ import annotations

import argparse
import json

from avlearn.io.probe import probe


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="FILE", help="media files to describe")
    parser.add_argument("--json", action="store_true", help="print one JSON object per file")


def run(args: argparse.Namespace) -> int:
    for path in args.paths:
        info = probe(path)
        if args.json:
            print(json.dumps(info.to_dict()))
            continue
        print(f"{path}: {info.format}, {info.duration:.3f} s")
        v, a = info.video, info.audio
        if v:
            rate = f"{v.fps:.3f} fps" + (" (variable)" if v.variable_fps else "")
            turn = f", rotated {v.rotation} deg" if v.rotation else ""
            print(f"  video: {v.codec} {v.width}x{v.height}{turn}, {rate}, starts at {v.start:.3f} s")
        else:
            print("  video: none")
        if a:
            print(f"  audio: {a.codec} {a.sample_rate} Hz, {a.channels} ch, starts at {a.start:.3f} s")
        else:
            print("  audio: none")
    return 0
