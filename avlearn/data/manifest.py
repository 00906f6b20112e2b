"""One manifest format for synthetic worlds and real data sets: JSON Lines, one clip (or segment) per row.

Required fields of a row:
    ``path``   media file; relative paths are relative to the manifest's folder.
    ``start``  seconds into the file where the clip begins (>= 0).
    ``end``    seconds where it ends (> start).

Optional fields (checked when present):
    ``id`` str; ``split`` str; ``world`` str (synthetic rows); ``labels`` list of str (``label`` str is
    accepted on input and becomes ``labels``); ``segments`` list of ``{"label", "start", "end"}`` in
    seconds of the file; ``annotations`` path of an ``.npz`` of per-frame arrays (boxes ``(T, K, 4)``
    xyxy pixels, bit-packed masks, ...); ``sources`` list of dicts, one per visible source, each with an
    optional ``stem`` path (audio of that source alone) and ``label``; ``background_stem`` path of the
    audio not belonging to any source (mixture = sum of stems + background); ``transcript`` str; ``fps``,
    ``sample_rate``, ``width``, ``height`` numbers; ``meta`` dict. Other keys are kept as they are.

:func:`read_manifest` resolves every path field (``path``, ``annotations``, ``background_stem``,
``sources[*].stem``) to an absolute path, so rows can be handed to worker processes; :func:`write_manifest`
writes them relative to the manifest's folder when they lie below it, so a data set folder can be moved whole.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from avlearn.io.write import atomic_path

SCHEMA_VERSION = 1
_PATH_FIELDS = ("path", "annotations", "background_stem")
_NUMBER = (int, float)
_FORMAT_HINT = "a manifest is JSON Lines: one object with path, start and end per line"
_OPTIONAL_TYPES: dict[str, tuple[type, ...]] = {
    "id": (str,),
    "split": (str,),
    "world": (str,),
    "labels": (list,),
    "segments": (list,),
    "annotations": (str,),
    "background_stem": (str,),
    "sources": (list,),
    "transcript": (str,),
    "fps": _NUMBER,
    "sample_rate": _NUMBER,
    "width": _NUMBER,
    "height": _NUMBER,
    "meta": (dict,),
}


class ManifestError(ValueError):
    """A manifest is unreadable or a row is malformed; the message names the file (and line) and says what to do."""


class ManifestNotFoundError(ManifestError, FileNotFoundError):
    """No manifest at that path (also a ``FileNotFoundError``, as callers of :func:`read_manifest` expect)."""


def validate_row(row: Any, where: str = "row") -> dict[str, Any]:
    """Checks one row against the schema and returns it (with ``label`` folded into ``labels``).

    Raises:
        ManifestError: a missing required field, a field of the wrong type, or an impossible time range.
    """
    if not isinstance(row, dict):
        raise ManifestError(f"{where}: a manifest row must be a JSON object, got {type(row).__name__}")
    row = dict(row)
    if "label" in row and "labels" not in row:
        label = row.pop("label")
        row["labels"] = [label] if isinstance(label, str) else label
    for key in ("path", "start", "end"):
        if key not in row:
            raise ManifestError(f"{where}: missing required field {key!r} (required: path, start, end)")
    if not isinstance(row["path"], str) or not row["path"]:
        raise ManifestError(f"{where}: 'path' must be a non-empty string, got {row['path']!r}")
    for key in ("start", "end"):
        if isinstance(row[key], bool) or not isinstance(row[key], _NUMBER):
            raise ManifestError(f"{where}: {key!r} must be a number of seconds, got {row[key]!r}")
    if row["start"] < 0 or row["end"] <= row["start"]:
        raise ManifestError(f"{where}: need 0 <= start < end, got start={row['start']} end={row['end']}")
    for key, types in _OPTIONAL_TYPES.items():
        if key in row and row[key] is not None and not isinstance(row[key], types):
            names = " or ".join(t.__name__ for t in types)
            raise ManifestError(f"{where}: {key!r} must be {names}, got {type(row[key]).__name__}")
    if not all(isinstance(x, str) for x in row.get("labels") or []):
        raise ManifestError(f"{where}: 'labels' must be a list of strings, got {row['labels']!r}")
    for i, seg in enumerate(row.get("segments") or []):
        if not isinstance(seg, dict) or not {"label", "start", "end"} <= seg.keys():
            raise ManifestError(f"{where}: segments[{i}] must be an object with label, start, end; got {seg!r}")
        if not seg["start"] < seg["end"]:
            raise ManifestError(f"{where}: segments[{i}] has start >= end ({seg['start']} >= {seg['end']})")
    for i, src in enumerate(row.get("sources") or []):
        if not isinstance(src, dict):
            raise ManifestError(f"{where}: sources[{i}] must be an object, got {src!r}")
        if src.get("stem") is not None and not isinstance(src["stem"], str):
            raise ManifestError(f"{where}: sources[{i}].stem must be a path string or null, got {src['stem']!r}")
    return row


def _resolve(value: str | None, root: Path) -> str | None:
    if value is None:
        return None
    return value if os.path.isabs(value) else str(root / value)


def _relativize(value: str | None, root: Path) -> str | None:
    if value is None or not os.path.isabs(value):
        return value
    try:
        return Path(value).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return value


def _map_paths(row: dict[str, Any], fn) -> dict[str, Any]:
    row = dict(row)
    for key in _PATH_FIELDS:
        if row.get(key) is not None:
            row[key] = fn(row[key])
    if row.get("sources"):
        row["sources"] = [{**s, "stem": fn(s.get("stem"))} if "stem" in s else dict(s) for s in row["sources"]]
    return row


def read_manifest(path: str | os.PathLike, *, validate: bool = True) -> list[dict[str, Any]]:
    """Reads a JSONL manifest; returns rows with absolute paths.

    Raises:
        ManifestNotFoundError: no such manifest (a ``FileNotFoundError`` too).
        ManifestError: the file is not text, a line is not JSON or does not fit the schema (the message gives
            the line and what to do).
    """
    path = Path(path)
    if not path.is_file():
        if path.is_dir():
            raise ManifestError(f"{path}: is a folder, not a manifest; pass the .jsonl file inside it")
        raise ManifestNotFoundError(f"{path}: no such manifest; check the path (avlearn synth writes one)")
    root = path.resolve().parent
    try:
        lines = path.read_text(encoding="utf-8").split("\n")  # not splitlines: U+2028 may sit in a string
    except UnicodeDecodeError:
        raise ManifestError(f"{path}: not a text file; {_FORMAT_HINT}") from None
    except OSError as err:
        raise ManifestError(f"{path}: cannot be read ({err.strerror}); check its permissions") from None
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ManifestError(f"{where}: not valid JSON ({err.msg} at column {err.colno}); {_FORMAT_HINT}") from None
        if validate:
            try:
                row = validate_row(row, where)
            except ManifestError as err:
                raise ManifestError(f"{err}; fix that line of the manifest") from None
        rows.append(_map_paths(row, lambda p: _resolve(p, root)))
    return rows


def write_manifest(path: str | os.PathLike, rows: Iterable[dict[str, Any]]) -> Path:
    """Validates and writes rows as JSON Lines, atomically; paths below the manifest's folder become relative."""
    path = Path(path)
    root = path.resolve().parent
    lines = []
    for i, row in enumerate(rows):
        row = validate_row(row, f"row {i}")
        lines.append(json.dumps(_map_paths(row, lambda p: _relativize(p, root)), sort_keys=False))
    with atomic_path(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def label_vocabulary(rows: Iterable[dict[str, Any]]) -> list[str]:
    """Sorted labels used by ``rows`` (their ``labels`` and their segments' labels)."""
    vocab: set[str] = set()
    for row in rows:
        vocab.update(row.get("labels") or [])
        vocab.update(seg["label"] for seg in row.get("segments") or [])
    return sorted(vocab)


def save_annotations(path: str | os.PathLike, arrays: dict[str, Any]) -> Path:
    """Writes per-frame ground truth to a compressed ``.npz``, atomically.

    A ``masks`` entry ``(T, K, H, W)`` bool is stored bit-packed along W as ``masks_packed`` plus
    ``masks_width``; :func:`load_annotations` unpacks it.
    """
    import numpy as np

    out = {}
    for key, value in arrays.items():
        value = np.asarray(value)
        if key == "masks":
            out["masks_packed"] = np.packbits(value.astype(bool), axis=-1)
            out["masks_width"] = np.array(value.shape[-1])
        else:
            out[key] = value
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **out)
    return Path(path)


def load_annotations(path: str | os.PathLike) -> dict[str, Any]:
    """Reads an annotation ``.npz`` written by :func:`save_annotations` (masks unpacked to bool)."""
    import numpy as np

    with np.load(path) as data:
        out = {key: data[key] for key in data.files}
    if "masks_packed" in out:
        width = int(out.pop("masks_width"))
        out["masks"] = np.unpackbits(out.pop("masks_packed"), axis=-1, count=width).astype(bool)
    return out
