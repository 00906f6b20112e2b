"""The decoded-clip cache: a manifest's clips decoded once into memory (and a safetensors file) for CPU training.

Decoding an mp4 window costs more than a small model's training step on a CPU, so recipes that run many
epochs over a few thousand short clips can decode each clip once at the training frame rate, size and sample
rate, keep the arrays in memory, and store them beside the manifest for the next run. :class:`ClipArrays`
answers the same ``video_window(i, f0, n)`` / ``audio_window(i, s0, n)`` as
:class:`avlearn.data.clips.LazyClips`, so the datasets are the same with or without it (:func:`open_clips`
picks one). The cache key covers the manifest
rows, the files' sizes and modification times, and the preprocessing, so a changed clip or setting is never
served stale.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from avlearn.data.clips import LazyClips
from avlearn.data.manifest import read_manifest
from avlearn.io import MediaError, read_clip
from avlearn.io.write import atomic_path


@dataclass
class ClipArrays:
    """Decoded clips of equal length.

    Attributes:
        video: ``(N, T, H, W, 3)`` uint8 (frame-major, so one clip's window is a contiguous slice).
        audio: ``(N, S)`` float32 mono.
        fps: frame rate of ``video``.
        sample_rate: sample rate of ``audio``.
        rows: the manifest rows, in order (rows whose file could not be read are dropped).
    """

    video: torch.Tensor
    audio: torch.Tensor
    fps: float
    sample_rate: int
    rows: list[dict[str, Any]]

    @property
    def size(self) -> int:
        return self.video.shape[2]

    @property
    def duration(self) -> float:
        return self.video.shape[1] / self.fps

    def __len__(self) -> int:
        return len(self.rows)

    def num_frames(self, i: int) -> int:
        return self.video.shape[1]

    def video_window(self, i: int, f0: int, n: int) -> torch.Tensor:
        return self.video[i, f0 : f0 + n]

    def audio_window(self, i: int, s0: int, n: int) -> torch.Tensor:
        return self.audio[i, s0 : s0 + n]


def _key(rows: list[dict[str, Any]], settings: dict[str, Any]) -> str:
    h = hashlib.sha1(json.dumps(settings, sort_keys=True).encode())
    for row in rows:
        st = os.stat(row["path"])
        h.update(f"{row['path']}|{row['start']}|{row['end']}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def parallel_map(fn: Callable[[Any], Any], jobs: list, workers: int, chunksize: int) -> list:
    """``[fn(j) for j in jobs]`` in ``workers`` processes (in this process for 0 workers or few jobs).

    The pool starts from a forkserver, not by forking this process: a child forked after the parent ran
    OpenMP work (any torch op) can hang in its own first parallel region, as extracting a second manifest's
    face tracks in one process did.
    """
    if workers <= 0 or len(jobs) <= chunksize:
        return [fn(j) for j in jobs]
    ctx = multiprocessing.get_context("forkserver" if sys.platform == "linux" else "spawn")
    with ctx.Pool(workers) as pool:
        return pool.map(fn, jobs, chunksize=chunksize)


def _decode(job: tuple[dict[str, Any], float, int, int, float]) -> tuple[np.ndarray, np.ndarray] | str:
    row, fps, size, sample_rate, duration = job
    try:
        clip = read_clip(row["path"], row["start"], duration, fps=fps, size=(size, size), sample_rate=sample_rate)
    except MediaError as err:
        return str(err)
    return clip.video.permute(1, 2, 3, 0).numpy(), clip.audio[0].numpy()  # (C, T, H, W) -> (T, H, W, C)


def decode_clips(
    rows: list[dict[str, Any]],
    *,
    fps: float,
    size: int,
    sample_rate: int,
    cache_dir: str | os.PathLike | None = None,
    workers: int = 2,
) -> ClipArrays:
    """Decodes every row's clip at ``fps``, ``size`` x ``size`` and ``sample_rate`` mono.

    Clips are cut to the shortest row's length. Unreadable files are reported and skipped (with a count),
    never a crash mid-run.

    Args:
        rows: manifest rows with absolute ``path``, ``start``, ``end``.
        fps: frames per second to sample.
        size: frame side in pixels (frames are resized to square).
        sample_rate: audio rate.
        cache_dir: where to keep ``clips-KEY.safetensors``; None disables the cache.
        workers: decoding processes.

    Raises:
        ValueError: no row could be decoded.
    """
    if not rows:
        raise ValueError("decode_clips: no rows to decode")
    present = [r for r in rows if Path(r["path"]).is_file()]
    if len(present) < len(rows):
        warnings.warn(f"{len(rows) - len(present)} of {len(rows)} clips are missing on disk and skipped", stacklevel=2)
    duration = min(r["end"] - r["start"] for r in present)
    settings = {"fps": fps, "size": size, "sample_rate": sample_rate, "duration": duration, "version": 1}
    cache = Path(cache_dir) / f"clips-{_key(present, settings)}.safetensors" if cache_dir else None
    if cache is not None and cache.is_file():
        tensors = load_file(str(cache))
        kept = json.loads(cache.with_suffix(".json").read_text())
        by_id = {r["path"]: r for r in present}
        return ClipArrays(tensors["video"], tensors["audio"], fps, sample_rate, [by_id[p] for p in kept])
    jobs = [(r, fps, size, sample_rate, duration) for r in present]
    results = parallel_map(_decode, jobs, workers, chunksize=8)
    failed = [(r, res) for r, res in zip(present, results) if isinstance(res, str)]
    for _, message in failed[:5]:
        warnings.warn(f"skipped: {message}", stacklevel=2)
    if failed:
        warnings.warn(f"{len(failed)} of {len(present)} clips could not be decoded and were skipped", stacklevel=2)
    kept = [(r, res) for r, res in zip(present, results) if not isinstance(res, str)]
    if not kept:
        raise ValueError("decode_clips: none of the clips could be decoded")
    video = torch.from_numpy(np.stack([v for _, (v, _) in kept]))
    audio = torch.from_numpy(np.stack([a for _, (_, a) in kept]))
    out = ClipArrays(video, audio, fps, sample_rate, [r for r, _ in kept])
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache) as tmp:
            save_file({"video": video.contiguous(), "audio": audio.contiguous()}, str(tmp))
        with atomic_path(cache.with_suffix(".json")) as tmp:
            tmp.write_text(json.dumps([r["path"] for r, _ in kept]))
    return out


CACHE_BUDGET = 4 << 30  # bytes of decoded clips that ``cache: null`` keeps in memory


def decoded_bytes(rows: list[dict[str, Any]], *, fps: float, pixels: int, sample_rate: int) -> int:
    """What decoding ``rows`` into memory takes, cut to the shortest row as :func:`decode_clips` does:
    ``pixels`` uint8 RGB pixels per frame and float32 mono audio."""
    seconds = len(rows) * min(r["end"] - r["start"] for r in rows)
    return int(seconds * (fps * pixels * 3 + sample_rate * 4))


def use_cache(cache: bool | None, rows: list[dict[str, Any]], *, fps: float, pixels: int, sample_rate: int) -> bool:
    """``cache`` as given, or for None whether the decoded rows fit in :data:`CACHE_BUDGET` (a recipe's
    small world is decoded once; a real data set is read lazily, with no other setting changed)."""
    if cache is not None:
        return cache
    return decoded_bytes(rows, fps=fps, pixels=pixels, sample_rate=sample_rate) <= CACHE_BUDGET


def open_clips(
    manifest: str | os.PathLike, *, fps: float, size: int, sample_rate: int, cache: bool | None, workers: int = 2
) -> ClipArrays | LazyClips:
    """The clips of a manifest as the datasets read them: decoded lazily by the DataLoader workers, or, with
    ``cache`` (None: when they fit in :data:`CACHE_BUDGET`), decoded once into memory and into
    ``.avlearn-cache/`` beside the manifest."""
    rows = read_manifest(manifest)
    if not use_cache(cache, rows, fps=fps, pixels=size * size, sample_rate=sample_rate):
        return LazyClips(rows, fps=fps, size=size, sample_rate=sample_rate)
    folder = Path(manifest).parent / ".avlearn-cache"
    return decode_clips(rows, fps=fps, size=size, sample_rate=sample_rate, cache_dir=folder, workers=workers)
