"""Synthetic audio-visual worlds with known ground truth: ``instruments``, ``speakers``, ``actions``.

Layout written for one split (``avlearn synth WORLD --out DIR --split SPLIT``)::

    DIR/SPLIT.jsonl               manifest (see avlearn.data.manifest), one row per clip
    DIR/SPLIT/000000.mp4          H.264 + AAC, the mixture
    DIR/SPLIT/000000.s0.flac      stem of source 0 (one per sounding source; ".noise.flac" the background)
    DIR/SPLIT/000000.npz          per-frame ground truth (boxes, masks, mouth opening, ...)
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

from avlearn.data.worlds.common import SPLITS, RenderedClip, WorldConfig

WORLDS = ("instruments", "speakers", "actions")

__all__ = ["SPLITS", "WORLDS", "RenderedClip", "WorldConfig", "clip_id", "get_world", "write_clip"]


def get_world(name: str) -> ModuleType:
    """The module of a world (``render``, ``prepare``, ``NAME``, ``DEFAULT_DURATION``).

    Raises:
        ValueError: an unknown world name.
    """
    if name not in WORLDS:
        raise ValueError(f"unknown world {name!r}; choose one of {', '.join(WORLDS)}")
    return importlib.import_module(f"avlearn.data.worlds.{name}")


def clip_id(world: str, split: str, seed: int, index: int) -> str:
    return f"{world}-{split}-s{seed}-{index:06d}"


def write_clip(
    clip: RenderedClip, out_dir: str | Path, *, world: str, split: str, seed: int, index: int, config: WorldConfig
) -> dict[str, Any]:
    """Writes one rendered clip (mp4, stems, annotations) under ``out_dir/split`` and returns its manifest row.

    Paths in the row are absolute; :func:`avlearn.data.manifest.write_manifest` makes them relative.
    """
    from avlearn.data.manifest import save_annotations
    from avlearn.io import write_audio, write_video

    folder = Path(out_dir).resolve() / split
    stem_name = f"{index:06d}"
    video_path = folder / f"{stem_name}.mp4"
    # (T, H, W, 3) -> (3, T, H, W) as write_video expects.
    write_video(video_path, clip.video.transpose(3, 0, 1, 2), config.fps, clip.mix[None], config.sample_rate)
    stem_paths = {}
    for name, wave in clip.stems.items():
        stem_paths[name] = str(folder / f"{stem_name}.{name}.flac")
        write_audio(stem_paths[name], wave[None], config.sample_rate)
    ann_path = folder / f"{stem_name}.npz"
    save_annotations(ann_path, clip.arrays)
    num_frames, height, width = clip.video.shape[:3]
    row: dict[str, Any] = {
        "id": clip_id(world, split, seed, index),
        "path": str(video_path),
        "start": 0.0,
        "end": round(num_frames / config.fps, 6),
        "world": world,
        "split": split,
        "fps": config.fps,
        "sample_rate": config.sample_rate,
        "width": width,
        "height": height,
        "annotations": str(ann_path),
    }
    for key, value in clip.row.items():
        row[key] = value
    row["sources"] = [
        {**src, "stem": stem_paths[src["stem"]] if src.get("stem") else None} for src in clip.row.get("sources", [])
    ]
    row["background_stem"] = stem_paths.get("noise")
    row["meta"] = {**clip.row.get("meta", {}), "seed": seed, "index": index}
    return row
