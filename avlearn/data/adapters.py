"""Turn the layouts of real audio-visual data sets into avlearn manifests.

None of these data sets can be downloaded by avlearn; each adapter reads the index file the data set
publishes (or the folder layout its download scripts produce) plus the local folder of media files, and
writes one manifest row per clip that is present. Clips whose file is missing (the "gone from YouTube"
problem) are counted and reported, never fatal.

    data set    index                                   local files looked for (first match wins)
    VGGSound    vggsound.csv: ytid,start,label,split     ROOT/[video/]{ytid}_{start:06d}.mp4, {ytid}_{start}.mp4,
                                                        {ytid}_{start*1000}_{(start+10)*1000}.mp4, {ytid}.mp4 (window)
    AudioSet    *_segments.csv: ytid, start, end, "mids"  ROOT/{ytid}_{start}_{end}.*, Y{ytid}.*, {ytid}.* (window)
    Kinetics    ROOT/SPLIT/CLASS/{ytid}_{t0:06d}_{t1:06d}.mp4   (folders only; the class is the folder name)
    MUSIC       MUSIC_solo_videos.json {"videos": {instrument: [ytid, ...]}}   ROOT/[instrument/]{ytid}.mp4
    AVSpeech    avspeech_train.csv: ytid,start,end,x,y     ROOT/{ytid}_{start}_{end}.mp4, {ytid}.mp4 (window)
    VoxCeleb2   ROOT/[dev|test/][mp4/]idNNNNN/VIDEO/UTT.mp4   (the speaker id is the label)

A file holding the whole YouTube video gets a row with the segment's window; a file holding just the
segment gets ``start = 0``. Usage from the shell::

    python -m avlearn.data.adapters vggsound --index vggsound.csv --root /data/vggsound --out vggsound.jsonl
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avlearn.data.manifest import write_manifest

MEDIA_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4a", ".wav", ".flac", ".mp3", ".ogg")


@dataclass
class AdapterReport:
    """What an adapter found: rows made, and the clips listed by the index whose file is missing."""

    name: str
    found: int = 0
    missing: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        total = self.found + len(self.missing)
        shown = ", ".join(self.missing[:3]) + (" ..." if len(self.missing) > 3 else "")
        tail = f"; missing: {shown}" if self.missing else ""
        return f"{self.name}: {self.found} of {total} clips found, {len(self.missing)} missing{tail}"


class _FileIndex:
    """Basename (without extension) -> path of every media file under a root, built once."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.by_stem: dict[str, Path] = {}
        for dirpath, _, files in os.walk(self.root):
            for name in sorted(files):
                p = Path(dirpath, name)
                if p.suffix.lower() in MEDIA_EXTENSIONS:
                    self.by_stem.setdefault(p.stem, p)

    def find(self, stems: Iterable[str]) -> Path | None:
        for stem in stems:
            if stem in self.by_stem:
                return self.by_stem[stem]
        return None


def _duration(path: Path) -> float:
    from avlearn.io import probe

    return float(probe(path).duration)


def _fmt(x: float) -> str:
    """Seconds as download scripts write them in file names: ``30`` or ``93.566667``."""
    return str(int(x)) if float(x).is_integer() else f"{x:.6f}".rstrip("0").rstrip(".")


def _segment_row(path: Path, whole_video: bool, start: float, end: float, **fields: Any) -> dict[str, Any]:
    if whole_video:
        return {"path": str(path), "start": float(start), "end": float(end), **fields}
    return {"path": str(path), "start": 0.0, "end": float(end - start), **fields}


def vggsound(index: str | os.PathLike, root: str | os.PathLike, *, clip_seconds: float = 10.0):
    """VGGSound's ``vggsound.csv`` (``ytid,start_seconds,label,split``, no header) -> (rows, report)."""
    files, rows, report = _FileIndex(root), [], AdapterReport("vggsound")
    with open(index, newline="", encoding="utf-8") as f:
        for rec in csv.reader(f):
            if len(rec) < 3 or rec[0].startswith("#"):
                continue
            ytid, start, label = rec[0].strip(), float(rec[1]), rec[2].strip()
            split = rec[3].strip() if len(rec) > 3 else None
            s, e = int(start), int(start + clip_seconds)
            segment = [f"{ytid}_{s:06d}", f"{ytid}_{s}", f"{ytid}_{s * 1000}_{e * 1000}", f"{ytid}_{s:06d}_{e:06d}"]
            path = files.find(segment)
            whole = path is None and (path := files.find([ytid])) is not None
            if path is None:
                report.missing.append(f"{ytid}_{s}")
                continue
            extra = {"split": split} if split else {}
            rows.append(
                _segment_row(path, whole, start, start + clip_seconds, id=f"{ytid}_{s}", labels=[label], **extra)
            )
    report.found = len(rows)
    return rows, report


def audioset(index: str | os.PathLike, root: str | os.PathLike, *, class_labels: str | os.PathLike | None = None):
    """AudioSet segments CSV (``YTID, start_seconds, end_seconds, "mid,mid"``; ``#`` comment lines) -> (rows, report).

    Args:
        class_labels: ``class_labels_indices.csv`` (``index,mid,display_name``) to turn MIDs into names.
    """
    names: dict[str, str] = {}
    if class_labels:
        with open(class_labels, newline="", encoding="utf-8") as f:
            for rec in csv.DictReader(f):
                names[rec["mid"]] = rec["display_name"]
    files, rows, report = _FileIndex(root), [], AdapterReport("audioset")
    with open(index, newline="", encoding="utf-8") as f:
        for rec in csv.reader(f, skipinitialspace=True):
            if not rec or rec[0].startswith("#") or len(rec) < 4:
                continue
            ytid, start, end = rec[0].strip(), float(rec[1]), float(rec[2])
            mids = [m.strip() for m in rec[3].split(",") if m.strip()]
            s, e = _fmt(start), _fmt(end)
            segment = [f"{ytid}_{s}_{e}", f"{ytid}_{start:.3f}_{end:.3f}", f"{ytid}_{int(start)}", f"Y{ytid}_{s}_{e}"]
            path = files.find(segment)
            whole = path is None and (path := files.find([ytid, f"Y{ytid}"])) is not None
            if path is None:
                report.missing.append(f"{ytid}_{s}_{e}")
                continue
            labels = [names.get(m, m) for m in mids]
            rows.append(_segment_row(path, whole, start, end, id=f"{ytid}_{s}", labels=labels, meta={"mids": mids}))
    report.found = len(rows)
    return rows, report


_KINETICS_NAME = re.compile(r"^(?P<ytid>.{11})_(?P<t0>\d+)_(?P<t1>\d+)$")


def kinetics(root: str | os.PathLike, *, split: str | None = None):
    """Kinetics-style folders ``ROOT/[SPLIT/]CLASS/*.mp4`` -> (rows, report); the class is the folder name.

    Clips are trimmed files: ``start = 0`` and ``end`` is the probed duration.
    """
    root = Path(root)
    base = root / split if split else root
    rows, report = [], AdapterReport("kinetics")
    for class_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        for path in sorted(class_dir.iterdir()):
            if path.suffix.lower() not in MEDIA_EXTENSIONS:
                continue
            try:
                duration = _duration(path)
            except Exception as err:  # an unreadable file is a missing clip, not a crash
                report.missing.append(f"{path} ({err})")
                continue
            m = _KINETICS_NAME.match(path.stem)
            meta = {"youtube_id": m["ytid"], "time_start": int(m["t0"]), "time_end": int(m["t1"])} if m else {}
            row = {"path": str(path), "start": 0.0, "end": duration, "id": path.stem, "labels": [class_dir.name]}
            rows.append({**row, **({"split": split} if split else {}), **({"meta": meta} if meta else {})})
    report.found = len(rows)
    return rows, report


def music(index: str | os.PathLike, root: str | os.PathLike):
    """MUSIC / MUSIC21 JSON (``{"videos": {category: [ytid, ...]}}``; duet categories are "a b") -> (rows, report)."""
    with open(index, encoding="utf-8") as f:
        videos = json.load(f)["videos"]
    files, rows, report = _FileIndex(root), [], AdapterReport("music")
    for category, ids in videos.items():
        labels = category.split()
        for ytid in ids:
            path = files.find([ytid])
            if path is None:
                report.missing.append(f"{category}/{ytid}")
                continue
            try:
                duration = _duration(path)
            except Exception as err:
                report.missing.append(f"{category}/{ytid} ({err})")
                continue
            rows.append({"path": str(path), "start": 0.0, "end": duration, "id": ytid, "labels": labels})
    report.found = len(rows)
    return rows, report


def avspeech(index: str | os.PathLike, root: str | os.PathLike):
    """AVSpeech CSV (``ytid,start,end,face_x,face_y``, no header) -> (rows, report).

    The face centre (fractions of width and height at the segment's first frame) goes to
    ``sources[0]["face_center"]``.
    """
    files, rows, report = _FileIndex(root), [], AdapterReport("avspeech")
    with open(index, newline="", encoding="utf-8") as f:
        for rec in csv.reader(f):
            if len(rec) < 5 or rec[0].startswith("#"):
                continue
            ytid, start, end, x, y = rec[0].strip(), float(rec[1]), float(rec[2]), float(rec[3]), float(rec[4])
            s, e = _fmt(start), _fmt(end)
            path = files.find([f"{ytid}_{s}_{e}", f"{ytid}_{start:.6f}_{end:.6f}", f"{ytid}_{int(start)}"])
            whole = path is None and (path := files.find([ytid])) is not None
            if path is None:
                report.missing.append(f"{ytid}_{s}_{e}")
                continue
            src = [{"index": 0, "label": "speaker", "face_center": [x, y]}]
            rows.append(_segment_row(path, whole, start, end, id=f"{ytid}_{s}", labels=[], sources=src))
    report.found = len(rows)
    return rows, report


def voxceleb2(root: str | os.PathLike):
    """VoxCeleb2 folders ``ROOT/.../idNNNNN/VIDEO/UTT.mp4`` -> (rows, report); the label is the speaker id."""
    rows, report = [], AdapterReport("voxceleb2")
    for dirpath, _, names in sorted(os.walk(root)):
        for name in sorted(names):
            path = Path(dirpath, name)
            if path.suffix.lower() not in MEDIA_EXTENSIONS or not re.fullmatch(r"id\d+", path.parent.parent.name):
                continue
            speaker, video = path.parent.parent.name, path.parent.name
            try:
                duration = _duration(path)
            except Exception as err:
                report.missing.append(f"{path} ({err})")
                continue
            split = next((part for part in path.parts if part in ("dev", "test")), None)
            row = {"path": str(path), "start": 0.0, "end": duration, "id": f"{speaker}/{video}/{path.stem}"}
            row["labels"] = [speaker]
            row["sources"] = [{"index": 0, "label": speaker}]
            rows.append({**row, **({"split": split} if split else {})})
    report.found = len(rows)
    return rows, report


ADAPTERS = {
    "vggsound": vggsound,
    "audioset": audioset,
    "kinetics": kinetics,
    "music": music,
    "avspeech": avspeech,
    "voxceleb2": voxceleb2,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write an avlearn manifest for a real data set's local copy.")
    parser.add_argument("dataset", choices=sorted(ADAPTERS))
    parser.add_argument("--root", required=True, help="folder holding the media files")
    parser.add_argument("--index", help="the data set's index file (CSV or JSON); not used by kinetics, voxceleb2")
    parser.add_argument("--class-labels", help="audioset: class_labels_indices.csv")
    parser.add_argument("--split", help="kinetics: the split folder under ROOT")
    parser.add_argument("--out", required=True, help="manifest to write (.jsonl)")
    args = parser.parse_args(argv)
    if args.dataset in ("kinetics", "voxceleb2"):
        rows, report = kinetics(args.root, split=args.split) if args.dataset == "kinetics" else voxceleb2(args.root)
    elif args.index is None:
        parser.error(f"{args.dataset} needs --index (the data set's CSV or JSON)")
    elif args.dataset == "audioset":
        rows, report = audioset(args.index, args.root, class_labels=args.class_labels)
    else:
        rows, report = ADAPTERS[args.dataset](args.index, args.root)
    write_manifest(args.out, rows)
    print(f"{report} -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
