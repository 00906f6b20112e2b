"""Where every task's windows come from: the clips of a manifest, read lazily or from the decoded cache, and the
sampler that carries the per-epoch state of the draws to the DataLoader workers.

*Layout* (one for all tasks): a window of video is ``(T, H, W, 3)`` uint8 RGB, frames at ``fps`` resized to
``size`` x ``size`` (the layout the models' front-ends take, :class:`avlearn.models.frontend.VideoFrontEnd`:
batches are ``(B, T, H, W, 3)``); a window of audio is ``(S,)`` float32 mono at ``sample_rate``. Frame ``f``
of clip ``i`` is the instant ``row.start + f / fps`` of the file, sample ``s`` the instant
``row.start + s / sample_rate``, in both sources.

*Two sources, one interface*: a dataset asks ``clips.video_window(i, f0, n)`` and ``clips.audio_window(i, s0, n)``
(and ``clips.num_frames(i)``, ``fps``, ``size``, ``sample_rate``, ``rows``).

* :class:`LazyClips` decodes just that window with :func:`avlearn.io.read_clip` (PyAV), inside the DataLoader
  worker that asked: nothing is held in memory, so a data set of any size trains (VoxCeleb2, VGGSound).
* :class:`avlearn.data.cache.ClipArrays` (``cache=True`` in the recipes) holds whole clips decoded once (by
  the same reader) and slices them: a speed-up for small CPU recipes with many epochs, not another path.

*Per-epoch state*: datasets hold no epoch. :class:`EpochShuffle` (the training sampler) yields
:class:`Draw` keys ``(index, epoch, params)``: the epoch Lightning set on it and the task's per-epoch
parameters (a curriculum, e.g. SyncContrastive's ``min_shift``), so workers, persistent or not, draw each
window from ``(seed, epoch, index, params)`` alone. Under DDP Lightning wraps the sampler
(``DistributedSamplerWrapper``), which forwards ``set_epoch`` and hands the same keys to each rank's share.
A resumed run (:class:`avlearn.data.loader.ResumableLoader`) therefore replays the same windows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from avlearn.io import read_clip

__all__ = ["Draw", "EpochShuffle", "LazyClips", "draw_key"]


class Draw(NamedTuple):
    """The key of a training item: which item, in which epoch, with which per-epoch parameters."""

    index: int
    epoch: int = 0
    params: dict[str, Any] = {}


def draw_key(key: int | Draw) -> Draw:
    """A dataset's ``__getitem__`` argument as a :class:`Draw` (a plain index, as evaluation loaders give:
    epoch 0, no parameters)."""
    return key if isinstance(key, Draw) else Draw(int(key))


class EpochShuffle(torch.utils.data.Sampler[Draw]):
    """A random order that depends only on (seed, epoch), yielding :class:`Draw` keys.

    Lightning calls ``set_epoch`` at each epoch start (through its DDP wrapper too). ``params(epoch)``, when
    given, is evaluated when an epoch's iteration starts and travels in every key of that epoch.
    """

    def __init__(self, num_items: int, seed: int = 0, params: Callable[[int], dict[str, Any]] | None = None):
        self.num_items, self.seed, self.epoch, self.params = num_items, seed, 0, params

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_items

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        params = dict(self.params(self.epoch)) if self.params is not None else {}
        return iter(Draw(i, self.epoch, params) for i in torch.randperm(self.num_items, generator=g).tolist())


class LazyClips:
    """The clips of manifest rows, decoded window by window on demand (see the module docstring).

    Args:
        rows: manifest rows with absolute ``path``, ``start``, ``end``.
        fps: frame rate of the windows.
        size: frame side (frames are resized to square).
        sample_rate: audio rate (mono).
    """

    def __init__(self, rows: list[dict[str, Any]], *, fps: float, size: int | None, sample_rate: int):
        if not rows:
            raise ValueError("LazyClips: no rows")
        self.rows, self.fps, self.size, self.sample_rate = rows, fps, size, sample_rate

    def __len__(self) -> int:
        return len(self.rows)

    def num_frames(self, i: int) -> int:
        row = self.rows[i]
        return int(math.floor((row["end"] - row["start"]) * self.fps + 1e-6))

    @property
    def duration(self) -> float:
        """Seconds of the shortest clip."""
        return min(self.num_frames(i) for i in range(len(self.rows))) / self.fps

    def video_window(self, i: int, f0: int, n: int) -> torch.Tensor:
        """Frames ``f0 .. f0 + n - 1`` of clip ``i``: ``(n, H, W, 3)`` uint8."""
        row = self.rows[i]
        size = None if self.size is None else (self.size, self.size)
        clip = read_clip(row["path"], row["start"] + f0 / self.fps, n / self.fps, fps=self.fps, size=size, audio=False)
        return _fit(clip.video.permute(1, 2, 3, 0), n)

    def audio_window(self, i: int, s0: int, n: int) -> torch.Tensor:
        """Samples ``s0 .. s0 + n - 1`` of clip ``i``: ``(n,)`` float32 (zeros past the file's sound)."""
        row = self.rows[i]
        sr = self.sample_rate
        clip = read_clip(row["path"], row["start"] + s0 / sr, n / sr, sample_rate=sr, video=False)
        return _fit(clip.audio[0], n)


def _fit(x: torch.Tensor, n: int) -> torch.Tensor:
    """``x`` cut or zero-padded to ``n`` along its first axis (a reader's rounding may differ by one)."""
    if x.shape[0] >= n:
        return x[:n].contiguous()
    return torch.cat([x, x.new_zeros(n - x.shape[0], *x.shape[1:])])
