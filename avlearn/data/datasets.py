"""The general dataset over manifests: each item is a time window of a row, read lazily through avlearn.io.

The tasks' datasets (:mod:`avlearn.data.sync`, :mod:`avlearn.data.separation`, ...) cut their windows from
the same reader (:mod:`avlearn.data.clips`); this one serves everything else a manifest holds (labels,
segments, stems, annotations), in the same layout. A sample is a dict keyed by modality::

    video        (T, H, W, 3) uint8            audio        (S,) float32 mono in [-1, 1]
    video_valid  (T,) bool                     audio_valid  (S,) bool
    label        int64 index into ``dataset.labels`` (-1 if the row has none), or a multi-hot (L,) float
    start, duration  float seconds of the window in the file;  index  int row;  id, path  str
  with_sources:
    sources      (K, S) float32 stems of the row's sources in the window (zeros for silent ones)
    sounding     (K,) bool
  with_annotations (rows with an ``annotations`` npz; arrays indexed by the window's frames):
    boxes        (T, K, 4) float32 xyxy pixels (scaled to ``size`` if resized), masks (T, K, H, W) bool, and
                 any other per-frame array of the npz (mouth_open, speaking, ...)
  rows with ``segments``:
    segments     (N, 3) float32 rows (label index, start, end) relative to the window start
    frame_label  (T,) int64 label index of the segment covering each frame, -1 where none does

Which windows exist is decided by a clip sampler: :class:`RandomClipSampler` (one random window per row per
epoch, drawn from ``(seed, epoch, index)`` of the :class:`~avlearn.data.clips.Draw` key that
:class:`~avlearn.data.clips.EpochShuffle` yields, so DataLoader workers see every epoch's draw),
:class:`UniformClipSampler` (n evenly spaced windows per row), :class:`SlidingWindowSampler` (every
``stride`` seconds). Without one, an item is the whole row.

Missing or unreadable files never stop an epoch: rows whose file is missing are dropped when the dataset
is built (``dataset.num_missing`` counts them, a warning names the first few), and a file that fails to
decode at run time is reported once and replaced by the next readable item (``dataset.num_failed`` counts
failures in this process). Items hold only plain data, so the dataset works with DataLoader workers.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avlearn.data.clips import Draw, draw_key
from avlearn.data.manifest import label_vocabulary, load_annotations, read_manifest

Sample = dict[str, Any]


@dataclass(frozen=True)
class RandomClipSampler:
    """One window of ``duration`` s per row, at a random start drawn each time the item is read."""

    duration: float

    def starts(self, start: float, end: float) -> list[float | None]:
        return [None]  # drawn at read time

    def draw(self, start: float, end: float, generator: torch.Generator) -> float:
        room = max(0.0, end - start - self.duration)
        return start + room * float(torch.rand(1, generator=generator))


@dataclass(frozen=True)
class UniformClipSampler:
    """``num_clips`` windows of ``duration`` s per row, evenly spaced from its start to its end."""

    duration: float
    num_clips: int = 1

    def starts(self, start: float, end: float) -> list[float | None]:
        room = max(0.0, end - start - self.duration)
        if self.num_clips == 1:
            return [start + room / 2]
        return [start + room * k / (self.num_clips - 1) for k in range(self.num_clips)]


@dataclass(frozen=True)
class SlidingWindowSampler:
    """Windows of ``duration`` s every ``stride`` s; a last window ending at the row's end covers the rest."""

    duration: float
    stride: float

    def starts(self, start: float, end: float) -> list[float | None]:
        if end - start <= self.duration:
            return [start]
        n = int(math.floor((end - start - self.duration) / self.stride + 1e-9)) + 1
        out = [start + k * self.stride for k in range(n)]
        if out[-1] + self.duration < end - 1e-6:
            out.append(end - self.duration)
        return out


ClipSampler = RandomClipSampler | UniformClipSampler | SlidingWindowSampler


class ManifestDataset(torch.utils.data.Dataset):
    """Windows of the clips listed in a manifest, decoded on access.

    Args:
        manifest: a JSONL manifest path or already-read rows (absolute paths).
        clip_sampler: which windows to read; None reads each row whole.
        fps: resample video to this rate (None keeps the file's frames).
        size: output ``(H, W)`` or shorter side (None keeps the stored size).
        sample_rate: audio rate (mono).
        video: read video.
        audio: read audio.
        labels: label vocabulary (index order); default: every label in the manifest, sorted.
        multi_label: ``label`` as a multi-hot vector instead of the first label's index.
        with_sources: add per-source stems (rows with ``sources[*].stem``).
        with_annotations: add the per-frame arrays of the row's annotation npz.
        transform: called on each sample dict (e.g. normalization); must return a dict.
        check_files: drop rows whose media file is missing (counted in ``num_missing``).
        max_retries: how many following items to try when one cannot be read.
        seed: base seed of the random windows.
    """

    def __init__(
        self,
        manifest: str | os.PathLike | Sequence[dict[str, Any]],
        *,
        clip_sampler: ClipSampler | None = None,
        fps: float | None = None,
        size: int | tuple[int, int] | None = None,
        sample_rate: int = 16000,
        video: bool = True,
        audio: bool = True,
        labels: Sequence[str] | None = None,
        multi_label: bool = False,
        with_sources: bool = False,
        with_annotations: bool = False,
        transform: Callable[[Sample], Sample] | None = None,
        check_files: bool = True,
        max_retries: int = 10,
        seed: int = 0,
    ) -> None:
        rows = read_manifest(manifest) if isinstance(manifest, (str, os.PathLike)) else list(manifest)
        self.missing: list[str] = []
        if check_files:
            self.missing = [r["path"] for r in rows if not os.path.isfile(r["path"])]
            rows = [r for r in rows if os.path.isfile(r["path"])]
            if self.missing:
                shown = ", ".join(self.missing[:3]) + (" ..." if len(self.missing) > 3 else "")
                warnings.warn(
                    f"ManifestDataset: skipped {len(self.missing)} of {len(rows) + len(self.missing)} rows whose "
                    f"file is missing ({shown})",
                    stacklevel=2,
                )
        self.rows = rows
        self.labels = list(labels) if labels is not None else label_vocabulary(rows)
        self._label_index = {name: i for i, name in enumerate(self.labels)}
        self.clip_sampler = clip_sampler
        self.fps, self.size, self.sample_rate = fps, size, sample_rate
        self.read_video, self.read_audio = video, audio
        self.multi_label = multi_label
        self.with_sources, self.with_annotations = with_sources, with_annotations
        self.transform = transform
        self.max_retries, self.seed = max_retries, seed
        self.num_failed = 0
        self._reported: set[str] = set()
        self.items: list[tuple[int, float | None]] = []
        for r, row in enumerate(rows):
            starts = clip_sampler.starts(row["start"], row["end"]) if clip_sampler else [row["start"]]
            self.items += [(r, s) for s in starts]

    @property
    def num_missing(self) -> int:
        return len(self.missing)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: int | Draw) -> Sample:
        from avlearn.io import MediaError

        index, epoch, _ = draw_key(key)
        for attempt in range(self.max_retries + 1):
            i = (index + attempt) % len(self.items)
            try:
                sample = self._load(i, epoch)
            except (MediaError, OSError, ValueError, KeyError) as err:
                self.num_failed += 1
                path = self.rows[self.items[i][0]]["path"]
                if path not in self._reported:
                    self._reported.add(path)
                    warnings.warn(f"ManifestDataset: skipping unreadable item {i} ({err})", stacklevel=2)
                continue
            return self.transform(sample) if self.transform else sample
        raise RuntimeError(
            f"ManifestDataset: items {index}..{index + self.max_retries} all failed to load; "
            "check the manifest's paths (see the warnings above)"
        )

    # ------------------------------------------------------------------------------------------------ loading

    def _window(self, item: int, epoch: int) -> tuple[dict[str, Any], float, float]:
        r, start = self.items[item]
        row = self.rows[r]
        if self.clip_sampler is None:
            return row, row["start"], row["end"] - row["start"]
        if start is None:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch * 7919 + item)
            start = self.clip_sampler.draw(row["start"], row["end"], g)
        return row, float(start), float(self.clip_sampler.duration)

    def _load(self, item: int, epoch: int) -> Sample:
        from avlearn.io import read_clip

        row, start, duration = self._window(item, epoch)
        clip = read_clip(
            row["path"],
            start,
            duration,
            fps=self.fps,
            size=self.size,
            sample_rate=self.sample_rate,
            mono=True,
            video=self.read_video,
            audio=self.read_audio,
        )
        sample: Sample = {
            "index": self.items[item][0],
            "id": row.get("id", Path(row["path"]).stem),
            "path": row["path"],
            "start": start,
            "duration": duration,
        }
        if clip.video is not None:
            sample["video"], sample["video_valid"] = clip.video.permute(1, 2, 3, 0).contiguous(), clip.video_valid
        if clip.audio is not None:
            sample["audio"], sample["audio_valid"] = clip.audio[0], clip.audio_valid
        sample["label"] = self._encode_labels(row.get("labels") or [])
        times = clip.video_times.numpy() if clip.video_times is not None else None
        if row.get("segments") is not None:
            sample.update(self._segments(row, start, duration, times))
        if self.with_sources:
            sample.update(self._sources(row, start, duration))
        if self.with_annotations and row.get("annotations") and times is not None:
            sample.update(self._annotations(row, times, clip.video.shape[-2:]))  # (C, T, H, W): H, W
        return sample

    def _encode_labels(self, names: list[str]) -> torch.Tensor:
        if self.multi_label:
            hot = torch.zeros(len(self.labels))
            for name in names:
                if name in self._label_index:
                    hot[self._label_index[name]] = 1.0
            return hot
        return torch.tensor(self._label_index.get(names[0], -1) if names else -1, dtype=torch.long)

    def _segments(self, row: dict, start: float, duration: float, times: np.ndarray | None) -> Sample:
        segs = [s for s in row["segments"] if s["end"] > start and s["start"] < start + duration]
        table = torch.tensor(
            [[self._label_index.get(s["label"], -1), s["start"] - start, s["end"] - start] for s in segs],
            dtype=torch.float32,
        ).reshape(-1, 3)
        out: Sample = {"segments": table}
        if times is not None:
            frame_label = torch.full((len(times),), -1, dtype=torch.long)
            for s in segs:
                inside = torch.from_numpy((times >= s["start"]) & (times < s["end"]))
                frame_label[inside] = self._label_index.get(s["label"], -1)
            out["frame_label"] = frame_label
        return out

    def _sources(self, row: dict, start: float, duration: float) -> Sample:
        import soundfile

        num = int(round(duration * self.sample_rate))
        sources = row.get("sources") or []
        stems = torch.zeros(len(sources), num)
        for k, src in enumerate(sources):
            if not src.get("stem"):
                continue
            info = soundfile.info(src["stem"])
            wav, sr = soundfile.read(
                src["stem"],
                start=int(round(start * info.samplerate)),
                frames=int(round(duration * info.samplerate)),
                dtype="float32",
                always_2d=True,
            )
            wav = torch.from_numpy(wav.mean(axis=1))
            if sr != self.sample_rate:
                import torchaudio

                wav = torchaudio.functional.resample(wav, sr, self.sample_rate)
            stems[k, : min(num, len(wav))] = wav[:num]
        return {
            "sources": stems,
            "sounding": torch.tensor([bool(s.get("sounding", bool(s.get("stem")))) for s in sources], dtype=torch.bool),
        }

    def _annotations(self, row: dict, times: np.ndarray, out_hw: Sequence[int]) -> Sample:
        ann = load_annotations(row["annotations"])
        fps = float(row.get("fps") or 25)
        any_array = ann["boxes"] if "boxes" in ann else next(v for v in ann.values() if v.ndim >= 1)  # (T, ...)
        frames = np.clip(np.round(times * fps).astype(int), 0, len(any_array) - 1)
        height, width = int(row.get("height") or out_hw[0]), int(row.get("width") or out_hw[1])
        sy, sx = out_hw[0] / height, out_hw[1] / width
        out: Sample = {}
        for key, value in ann.items():
            if value.ndim == 0 or len(value) != len(any_array) or value.dtype.kind not in "biuf":
                continue  # per-clip entries (names, per-object flags) are not indexed by frame
            value = value[frames]
            if key.endswith("boxes"):
                value = value * np.array([sx, sy, sx, sy], np.float32)
            tensor = torch.from_numpy(np.ascontiguousarray(value))
            if key == "masks" and (sy != 1 or sx != 1):  # (T, K, H, W) nearest-neighbour resize
                tensor = torch.nn.functional.interpolate(tensor.float(), size=tuple(out_hw), mode="nearest") > 0.5
            out[key] = tensor
        return out


def collate(batch: list[Sample]) -> Sample:
    """Stacks tensors of equal shape, makes tensors of numbers, and keeps everything else as lists.

    Use as ``DataLoader(..., collate_fn=collate)``: unlike the default it accepts items whose number of
    sources, boxes or segments differ (those stay lists).
    """
    out: Sample = {}
    for key in batch[0]:
        values = [item.get(key) for item in batch]
        if all(isinstance(v, torch.Tensor) for v in values) and len({tuple(v.shape) for v in values}) == 1:
            out[key] = torch.stack(values)
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            out[key] = torch.tensor(values)
        else:
            out[key] = values
    return out
