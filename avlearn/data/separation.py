"""Source tracks for mix-and-separate: the crops of one visible source through a clip, and its clean audio.

A *track* is what the separation model conditions on and what it must give back: for a talking face, its
mouth crops (cut from a face track the detector found, as at inference) and its stem (silence for a
listener); for an instrument, crops of the object's box and its stem; for a real clip without stems (an
AVSpeech or VoxCeleb2 row: one person talking), the face the detector follows longest and the clip's own
soundtrack. :func:`index_tracks` finds where the tracks are (boxes per frame, which audio is whose) without
keeping pixels or samples: :class:`TrackIndex` then reads any window of a track lazily, in the DataLoader
worker that asks. :func:`extract_tracks` is the decoded cache of the same tracks (:class:`SourceTracks`,
kept in memory and beside the manifest) for small CPU recipes. :class:`MixTracks` mixes tracks of different
clips on the fly from either (Zhao et al. 2018: the mixture of N clips' audio is the input, each clip's own
audio the target), with random windows and gains.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from avlearn.data.cache import _key, parallel_map, use_cache
from avlearn.data.clips import Draw, draw_key
from avlearn.data.manifest import load_annotations, read_manifest
from avlearn.io import MediaError, read_clip
from avlearn.io.write import atomic_path
from avlearn.video.detect import iou
from avlearn.video.faces import MOUTH_SIZE, crop_boxes, mouth_boxes, track_faces

OBJECT_SIZE = (32, 32)


@dataclass
class TrackIndex:
    """Where the tracks of many clips are, read window by window on demand.

    Attributes:
        rows: the clips' manifest rows.
        clip: ``(U,)`` int64 index of each track's clip in ``rows``.
        boxes: each track's crop box per frame of its clip, ``(T_c, 4)`` pixels of the stored frames.
        audio: each track's sound, ``(file, start)``: a stem from its start, the clip's own soundtrack
            from the row's start, or None for a silent source.
        crop_size: ``(h, w)`` of the crops.
        fps: frame rate of the crops.
        sample_rate: audio rate.
    """

    rows: list[dict[str, Any]]
    clip: torch.Tensor
    boxes: list[np.ndarray]
    audio: list[tuple[str, float] | None]
    crop_size: tuple[int, int]
    fps: float
    sample_rate: int

    @property
    def sounding(self) -> torch.Tensor:
        return torch.tensor([a is not None for a in self.audio], dtype=torch.bool)

    def __len__(self) -> int:
        return len(self.audio)

    def num_frames(self, u: int) -> int:
        """Frames of track ``u`` (of its clip)."""
        return len(self.boxes[u])

    def crops_window(self, u: int, f0: int, n: int) -> torch.Tensor:
        """Crops of frames ``f0 .. f0 + n - 1`` of track ``u``: ``(n, h, w, 3)`` uint8."""
        row = self.rows[int(self.clip[u])]
        clip = read_clip(row["path"], row["start"] + f0 / self.fps, n / self.fps, fps=self.fps, audio=False)
        video = clip.video.permute(1, 2, 3, 0)[:n]
        boxes = self.boxes[u][f0 : f0 + video.shape[0]]
        crops = crop_boxes(video, boxes, self.crop_size)
        return torch.cat([crops, crops.new_zeros(n - len(crops), *crops.shape[1:])])

    def stem_window(self, u: int, s0: int, n: int) -> torch.Tensor:
        """Samples ``s0 .. s0 + n - 1`` of track ``u``'s sound: ``(n,)`` float32 (zeros for a silent one)."""
        return _audio_window(self.audio[u], s0, n, self.sample_rate)

    def noise_window(self, c: int, s0: int, n: int) -> torch.Tensor:
        """The background stem of clip ``c`` (zeros if it has none), ``(n,)``."""
        stem = self.rows[c].get("background_stem")
        return _audio_window((stem, 0.0) if stem else None, s0, n, self.sample_rate)


def _audio_window(source: tuple[str, float] | None, s0: int, n: int, sample_rate: int) -> torch.Tensor:
    if source is None:
        return torch.zeros(n)
    path, start = source
    wav = read_clip(path, start + s0 / sample_rate, n / sample_rate, sample_rate=sample_rate, video=False).audio[0]
    return torch.cat([wav[:n], wav.new_zeros(max(0, n - len(wav)))])


def _clip_boxes(job: tuple[dict[str, Any], float]) -> list[tuple[np.ndarray, tuple[str, float] | None]] | str:
    """One clip's tracks as (crop boxes per frame, sound): speakers by the face tracker (matched to the true
    faces for their stems), annotated worlds by their object boxes, rows without annotations by the face the
    tracker follows longest, with the clip's own soundtrack."""
    row, fps = job
    frames = int(math.floor((row["end"] - row["start"]) * fps + 1e-6))
    annotated = bool(row.get("annotations"))
    if annotated and row.get("world") != "speakers":
        truth = _frames(load_annotations(row["annotations"])["boxes"], frames)  # (T, K, 4)
        sources = sorted(row["sources"], key=lambda s: s["index"])
        return [(_square(truth[:, k], 1.3), _stem(s)) for k, s in enumerate(sources)]
    try:
        clip = read_clip(row["path"], row["start"], frames / fps, fps=fps, audio=False)
    except MediaError as err:
        return str(err)
    tracks = track_faces(clip.video.permute(1, 2, 3, 0).numpy(), fps)
    if not annotated:
        best = max(tracks, key=lambda tr: tr.hits, default=None)
        return [] if best is None else [(mouth_boxes(best.boxes), (row["path"], row["start"]))]
    truth = _frames(load_annotations(row["annotations"])["boxes"], frames)
    sources = sorted(row["sources"], key=lambda s: s["index"])
    pairs: list[tuple[np.ndarray, int]] = []
    for tr in tracks:  # each track to the true face it overlaps most (mean IoU over frames)
        overlaps = [np.mean([iou(tr.boxes[t], truth[t, k]) for t in range(0, frames, 5)]) for k in range(len(sources))]
        k = int(np.argmax(overlaps))
        if overlaps[k] >= 0.3 and k not in [p[1] for p in pairs]:
            pairs.append((mouth_boxes(tr.boxes), k))
    return [(boxes, _stem(sources[k])) for boxes, k in pairs]


def _frames(array: np.ndarray, n: int) -> np.ndarray:
    """The first ``n`` frames of a per-frame array, the last one held if it has fewer."""
    return np.concatenate([array[:n], np.repeat(array[-1:], max(0, n - len(array)), axis=0)])


def _stem(source: dict[str, Any]) -> tuple[str, float] | None:
    return (source["stem"], 0.0) if source.get("sounding") and source.get("stem") else None


def _square(boxes: np.ndarray, margin: float) -> np.ndarray:
    """``(T, 4)`` boxes -> squares around the same centres, ``margin`` times the longer side."""
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    half = margin * np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) / 2
    return np.stack([cx - half, cy - half, cx + half, cy + half], axis=1)


def index_tracks(
    rows: list[dict[str, Any]],
    *,
    fps: float = 25.0,
    sample_rate: int = 16000,
    cache_dir: str | Path | None = None,
    workers: int = 2,
) -> TrackIndex:
    """The tracks of every clip in ``rows`` (manifest rows with absolute paths), kept in ``cache_dir``.

    Only the speakers world and rows without annotations are decoded (once, for the face tracker).

    Raises:
        ValueError: no clip gave a track.
    """
    present = [r for r in rows if Path(r["path"]).is_file()]
    if len(present) < len(rows):
        warnings.warn(f"{len(rows) - len(present)} of {len(rows)} clips are missing on disk and skipped", stacklevel=2)
    if not present:
        raise ValueError("index_tracks: no clips to read")
    speakers = any(r.get("world") == "speakers" or not r.get("annotations") for r in present)
    crop_size = MOUTH_SIZE if speakers else OBJECT_SIZE
    settings = {"fps": fps, "crop": crop_size, "version": 3}  # 3: face tracks from BlazeFace, not the Haar cascade
    cache = Path(cache_dir) / f"track-index-{_key(present, settings)}.json" if cache_dir else None
    if cache is not None and cache.is_file():
        saved = json.loads(cache.read_text())
        results = [[(np.asarray(b, np.float32), a and tuple(a)) for b, a in clip] for clip in saved]
    else:
        results = parallel_map(_clip_boxes, [(r, fps) for r in present], workers, chunksize=4)
    for message in [res for res in results if isinstance(res, str)][:5]:
        warnings.warn(f"skipped: {message}", stacklevel=2)
    kept = [(row, res) for row, res in zip(present, results) if not isinstance(res, str) and res]
    if not kept:
        raise ValueError("index_tracks: no clip gave a source track")
    if cache is not None and not cache.is_file():
        cache.parent.mkdir(parents=True, exist_ok=True)
        saved = [[] if isinstance(res, str) else [(b.tolist(), a) for b, a in res] for res in results]
        with atomic_path(cache) as tmp:
            tmp.write_text(json.dumps(saved))
    tracks = [(c, boxes.astype(np.float32), audio) for c, (_, res) in enumerate(kept) for boxes, audio in res]
    return TrackIndex(
        rows=[row for row, _ in kept],
        clip=torch.tensor([c for c, _, _ in tracks]),
        boxes=[b for _, b, _ in tracks],
        audio=[a for _, _, a in tracks],
        crop_size=crop_size,
        fps=fps,
        sample_rate=sample_rate,
    )


@dataclass
class SourceTracks:
    """The decoded cache of a :class:`TrackIndex`: every track's crops and sound in memory, all of one length
    (the shortest clip's), read through the same window methods.

    Attributes:
        crops: ``(U, T, h, w, 3)`` uint8 crops of each track.
        stems: ``(U, S)`` float32 clean audio of each track (zeros for a silent one).
        noise: ``(N, S)`` float32 each clip's background stem (zeros if it has none).
        index: the tracks' index (rows, clip of each track, ...).
    """

    crops: torch.Tensor
    stems: torch.Tensor
    noise: torch.Tensor
    index: TrackIndex

    @property
    def rows(self) -> list[dict[str, Any]]:
        return self.index.rows

    @property
    def clip(self) -> torch.Tensor:
        return self.index.clip

    @property
    def sounding(self) -> torch.Tensor:
        return self.index.sounding

    @property
    def fps(self) -> float:
        return self.index.fps

    @property
    def sample_rate(self) -> int:
        return self.index.sample_rate

    @property
    def crop_size(self) -> tuple[int, int]:
        return self.index.crop_size

    def __len__(self) -> int:
        return len(self.crops)

    def num_frames(self, u: int) -> int:
        return self.crops.shape[1]

    def crops_window(self, u: int, f0: int, n: int) -> torch.Tensor:
        return self.crops[u, f0 : f0 + n]

    def stem_window(self, u: int, s0: int, n: int) -> torch.Tensor:
        return self.stems[u, s0 : s0 + n]

    def noise_window(self, c: int, s0: int, n: int) -> torch.Tensor:
        return self.noise[c, s0 : s0 + n]


def _decode_track(job: tuple[TrackIndex, int, int]) -> tuple[np.ndarray, np.ndarray]:
    index, u, frames = job
    samples = round(frames / index.fps * index.sample_rate)
    return index.crops_window(u, 0, frames).numpy(), index.stem_window(u, 0, samples).numpy()


def extract_tracks(
    rows: list[dict[str, Any]],
    *,
    fps: float = 25.0,
    sample_rate: int = 16000,
    cache_dir: str | Path | None = None,
    workers: int = 2,
) -> SourceTracks:
    """The tracks of :func:`index_tracks`, decoded into memory (and ``cache_dir``), cut to the shortest clip.

    Raises:
        ValueError: no clip gave a track.
    """
    index = index_tracks(rows, fps=fps, sample_rate=sample_rate, cache_dir=cache_dir, workers=workers)
    frames = min(len(b) for b in index.boxes)
    samples = round(frames / fps * sample_rate)
    settings = {"fps": fps, "sample_rate": sample_rate, "frames": frames, "crop": index.crop_size, "version": 2}
    cache = Path(cache_dir) / f"tracks-{_key(index.rows, settings)}.safetensors" if cache_dir else None
    if cache is not None and cache.is_file():
        t = load_file(str(cache))
        return SourceTracks(t["crops"], t["stems"], t["noise"], index)
    decoded = parallel_map(_decode_track, [(index, u, frames) for u in range(len(index))], workers, chunksize=4)
    noise = [index.noise_window(c, 0, samples).numpy() for c in range(len(index.rows))]
    out = SourceTracks(
        torch.from_numpy(np.stack([c for c, _ in decoded])),
        torch.from_numpy(np.stack([s for _, s in decoded])),
        torch.from_numpy(np.stack(noise)),
        index,
    )
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tensors = {"crops": out.crops, "stems": out.stems, "noise": out.noise}
        with atomic_path(cache) as tmp:
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    return out


def open_tracks(
    manifest: str | Path, *, fps: float, sample_rate: int, cache: bool | None, workers: int = 2
) -> TrackIndex | SourceTracks:
    """A manifest's tracks as :class:`MixTracks` reads them: windows decoded lazily by the DataLoader workers
    (nothing is written), or, with ``cache`` (None: when the crops and stems fit in
    :data:`avlearn.data.cache.CACHE_BUDGET`), decoded once into memory and ``.avlearn-cache/`` beside the
    manifest."""
    rows = read_manifest(manifest)
    per_clip = sum(len(r.get("sources") or [None]) for r in rows) / len(rows)
    pixels = round(per_clip * MOUTH_SIZE[0] * MOUTH_SIZE[1])
    if not use_cache(cache, rows, fps=fps, pixels=pixels, sample_rate=sample_rate):
        return index_tracks(rows, fps=fps, sample_rate=sample_rate, workers=workers)
    folder = Path(manifest).parent / ".avlearn-cache"
    return extract_tracks(rows, fps=fps, sample_rate=sample_rate, cache_dir=folder, workers=workers)


class MixTracks(torch.utils.data.Dataset):
    """Mixtures of ``num_mix`` tracks from different clips, with random windows and gains.

    Items: ``mixture (S,)``, ``sources (K, S)`` the scaled stems, ``crops (K, T, h, w, 3)``, ``valid (K,)``
    (K = ``max(num_mix)``; fewer tracks are padded with zero crops and zero stems, marked invalid).
    The mixture also holds the background of the first track's clip.

    Args:
        tracks: a :class:`TrackIndex` (windows read lazily) or its decoded cache, :class:`SourceTracks`.
        window: seconds per item.
        num_mix: how many tracks to mix; a tuple draws one per item.
        gain_db: each track's gain is uniform in ``±gain_db``.
        sounding_only: draw only tracks that carry sound (a silent listener adds nothing to learn from,
            except that its output should be silent: keep some with ``sounding_only=False``).
        deterministic: draws from the item index alone (evaluation); otherwise from ``(seed, epoch, index)``
            of the :class:`~avlearn.data.clips.Draw` key.
        seed: base seed.
        length: items per epoch (default: one per track).
    """

    def __init__(
        self,
        tracks: TrackIndex | SourceTracks,
        window: float = 2.0,
        num_mix: int | tuple[int, ...] = 2,
        gain_db: float = 5.0,
        sounding_only: bool = False,
        deterministic: bool = False,
        seed: int = 0,
        length: int | None = None,
    ):
        self.tracks, self.window, self.gain_db = tracks, window, gain_db
        self.num_mix = (num_mix,) if isinstance(num_mix, int) else tuple(num_mix)
        self.deterministic, self.seed = deterministic, seed
        self.num_frames = round(window * tracks.fps)
        self.num_samples = round(window * tracks.sample_rate)
        pool = torch.nonzero(tracks.sounding).squeeze(1) if sounding_only else torch.arange(len(tracks))
        self.pool = pool[[tracks.num_frames(int(u)) >= self.num_frames for u in pool]]
        if len(self.pool) == 0:
            longest = max(tracks.num_frames(u) for u in range(len(tracks))) / tracks.fps
            raise ValueError(f"window {window} s is longer than the tracks (at most {longest} s)")
        self.length = length or len(self.pool)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key: int | Draw) -> dict[str, torch.Tensor]:
        index, epoch, _ = draw_key(key)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + (0 if self.deterministic else epoch) * 7919 + index)
        tr = self.tracks
        k = self.num_mix[int(torch.randint(len(self.num_mix), (1,), generator=g))]
        chosen, clips = [], set()
        first = int(self.pool[index % len(self.pool)])
        while len(chosen) < k:
            u = first if not chosen else int(self.pool[torch.randint(len(self.pool), (1,), generator=g)])
            if int(tr.clip[u]) not in clips:
                chosen.append(u)
                clips.add(int(tr.clip[u]))
        k_max = max(self.num_mix)
        crops = torch.zeros(k_max, self.num_frames, *tr.crop_size, 3, dtype=torch.uint8)
        sources = torch.zeros(k_max, self.num_samples)
        for i, u in enumerate(chosen):
            f0 = int(torch.randint(tr.num_frames(u) - self.num_frames + 1, (1,), generator=g))
            s0 = round(f0 / tr.fps * tr.sample_rate)
            gain = 10 ** ((torch.rand((), generator=g) * 2 - 1) * self.gain_db / 20)
            crops[i] = tr.crops_window(u, f0, self.num_frames)
            stem = tr.stem_window(u, s0, self.num_samples)
            sources[i, : stem.shape[0]] = gain * stem
            if i == 0:
                noise = tr.noise_window(int(tr.clip[u]), s0, self.num_samples)
        mixture = sources.sum(0)
        mixture[: noise.shape[0]] += noise
        valid = torch.arange(k_max) < k
        return {"mixture": mixture, "sources": sources, "crops": crops, "valid": valid}
