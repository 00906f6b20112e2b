"""Source tracks for mix-and-separate: the crops of one visible source through a clip, and its clean audio.

A *track* is what the separation model conditions on and what it must give back: for a talking face, its
mouth crops (cut from a face track the detector found, as at inference) and its stem (silence for a
listener); for an instrument, crops of the object's box and its stem. :func:`extract_tracks` builds them
for every row of a manifest once and caches them beside it; :class:`MixTracks` mixes tracks of different
clips on the fly (Zhao et al. 2018: the mixture of N clips' audio is the input, each clip's own audio the
target), with random windows and gains.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from avlearn.data.cache import _key, parallel_map
from avlearn.data.manifest import load_annotations
from avlearn.io import MediaError, read_audio, read_clip
from avlearn.io.write import atomic_path
from avlearn.video.detect import iou
from avlearn.video.faces import MOUTH_SIZE, crop_boxes, mouth_boxes, track_faces

OBJECT_SIZE = (32, 32)


@dataclass
class SourceTracks:
    """Tracks of many clips, all of one length.

    Attributes:
        crops: ``(U, T, h, w, 3)`` uint8 crops of each track.
        stems: ``(U, S)`` float32 clean audio of each track (zeros for a silent one).
        clip: ``(U,)`` int64 index of the track's clip in ``rows``.
        mixture: ``(N, S)`` float32 each clip's own soundtrack, decoded from its media file.
        noise: ``(N, S)`` float32 each clip's background stem (zeros if it has none).
        fps: frame rate of ``crops``.
        sample_rate: audio rate.
        rows: the clips' manifest rows.
    """

    crops: torch.Tensor
    stems: torch.Tensor
    clip: torch.Tensor
    mixture: torch.Tensor
    noise: torch.Tensor
    fps: float
    sample_rate: int
    rows: list[dict[str, Any]]

    @property
    def sounding(self) -> torch.Tensor:
        return self.stems.abs().amax(dim=1) > 1e-4


def _audio(path: str | None, sample_rate: int, n: int) -> np.ndarray:
    if not path:
        return np.zeros(n, np.float32)
    wav, _ = read_audio(path, sample_rate)
    wav = wav[0].numpy()[:n]
    return np.pad(wav, (0, n - wav.shape[0])).astype(np.float32)


def _clip_tracks(job: tuple[dict[str, Any], float, int, float]) -> tuple | str:
    """One clip's tracks: speakers by the face tracker (matched to the true faces for their stems), other
    worlds by the annotated object boxes."""
    row, fps, sample_rate, duration = job
    try:
        clip = read_clip(row["path"], row["start"], duration, fps=fps, sample_rate=sample_rate)
    except MediaError as err:
        return str(err)
    video = clip.video.permute(1, 2, 3, 0).contiguous()  # (C, T, H, W) -> (T, H, W, C)
    n = clip.audio.shape[1]
    ann = load_annotations(row["annotations"])
    truth = ann["boxes"][: video.shape[0]]  # (T, K, 4)
    sources = sorted(row["sources"], key=lambda s: s["index"])
    stems = [_audio(s["stem"] if s["sounding"] else None, sample_rate, n) for s in sources]
    if row.get("world") == "speakers":
        tracks = track_faces(video.numpy(), fps)
        pairs = []
        for tr in tracks:  # each track to the true face it overlaps most (mean IoU over frames)
            overlaps = [
                np.mean([iou(tr.boxes[t], truth[t, k]) for t in range(0, len(truth), 5)]) for k in range(len(sources))
            ]
            k = int(np.argmax(overlaps))
            if overlaps[k] >= 0.3 and k not in [p[1] for p in pairs]:
                pairs.append((mouth_boxes(tr.boxes), k))
        size = MOUTH_SIZE
    else:
        pairs = [(_square(truth[:, k], 1.3), k) for k in range(len(sources))]
        size = OBJECT_SIZE
    crops = [crop_boxes(video, boxes, size).numpy() for boxes, _ in pairs]
    targets = [stems[k] for _, k in pairs]
    noise = _audio(row.get("background_stem"), sample_rate, n)
    return crops, targets, clip.audio[0].numpy(), noise


def _square(boxes: np.ndarray, margin: float) -> np.ndarray:
    """``(T, 4)`` boxes -> squares around the same centres, ``margin`` times the longer side."""
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    half = margin * np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) / 2
    return np.stack([cx - half, cy - half, cx + half, cy + half], axis=1)


def extract_tracks(
    rows: list[dict[str, Any]],
    *,
    fps: float = 25.0,
    sample_rate: int = 16000,
    cache_dir: str | Path | None = None,
    workers: int = 2,
) -> SourceTracks:
    """Source tracks of every clip in ``rows`` (manifest rows with absolute paths), cached in ``cache_dir``.

    Raises:
        ValueError: no clip gave a track.
    """
    present = [r for r in rows if Path(r["path"]).is_file()]
    if len(present) < len(rows):
        warnings.warn(f"{len(rows) - len(present)} of {len(rows)} clips are missing on disk and skipped", stacklevel=2)
    if not present:
        raise ValueError("extract_tracks: no clips to read")
    duration = min(r["end"] - r["start"] for r in present)
    settings = {"fps": fps, "sample_rate": sample_rate, "duration": duration, "mouth": MOUTH_SIZE, "version": 1}
    cache = Path(cache_dir) / f"tracks-{_key(present, settings)}.safetensors" if cache_dir else None
    if cache is not None and cache.is_file():
        t = load_file(str(cache))
        kept_paths = json.loads(cache.with_suffix(".json").read_text())
        by_path = {r["path"]: r for r in present}
        rows_kept = [by_path[p] for p in kept_paths]
        return SourceTracks(t["crops"], t["stems"], t["clip"], t["mixture"], t["noise"], fps, sample_rate, rows_kept)
    jobs = [(r, fps, sample_rate, duration) for r in present]
    results = parallel_map(_clip_tracks, jobs, workers, chunksize=4)
    failed = [res for res in results if isinstance(res, str)]
    for message in failed[:5]:
        warnings.warn(f"skipped: {message}", stacklevel=2)
    crops, stems, clip_index, mixtures, noises, kept = [], [], [], [], [], []
    for row, res in zip(present, results):
        if isinstance(res, str) or not res[0]:
            continue
        c, s, mix, noise = res
        crops += c
        stems += s
        clip_index += [len(kept)] * len(c)
        mixtures.append(mix)
        noises.append(noise)
        kept.append(row)
    if not kept:
        raise ValueError("extract_tracks: no clip gave a source track")
    out = SourceTracks(
        torch.from_numpy(np.stack(crops)),
        torch.from_numpy(np.stack(stems)),
        torch.tensor(clip_index),
        torch.from_numpy(np.stack(mixtures)),
        torch.from_numpy(np.stack(noises)),
        fps,
        sample_rate,
        kept,
    )
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tensors = {"crops": out.crops, "stems": out.stems, "clip": out.clip, "mixture": out.mixture, "noise": out.noise}
        with atomic_path(cache) as tmp:
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
        with atomic_path(cache.with_suffix(".json")) as tmp:
            tmp.write_text(json.dumps([r["path"] for r in kept]))
    return out


class MixTracks(torch.utils.data.Dataset):
    """Mixtures of ``num_mix`` tracks from different clips, with random windows and gains.

    Items: ``mixture (S,)``, ``sources (K, S)`` the scaled stems, ``crops (K, T, h, w, 3)``, ``valid (K,)``
    (K = ``max(num_mix)``; fewer tracks are padded with zero crops and zero stems, marked invalid).
    The mixture also holds the background of the first track's clip.

    Args:
        tracks: extracted source tracks.
        window: seconds per item.
        num_mix: how many tracks to mix; a tuple draws one per item.
        gain_db: each track's gain is uniform in ``±gain_db``.
        sounding_only: draw only tracks that carry sound (a silent listener adds nothing to learn from,
            except that its output should be silent: keep some with ``sounding_only=False``).
        deterministic: draws from the item index alone (evaluation).
        seed: base seed.
        length: items per epoch (default: one per track).
    """

    def __init__(
        self,
        tracks: SourceTracks,
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
        self.deterministic, self.seed, self.epoch = deterministic, seed, 0
        self.pool = torch.nonzero(tracks.sounding).squeeze(1) if sounding_only else torch.arange(len(tracks.stems))
        self.length = length or len(self.pool)
        self.num_frames = round(window * tracks.fps)
        self.num_samples = round(window * tracks.sample_rate)
        if self.num_frames > tracks.crops.shape[1]:
            raise ValueError(f"window {window} s is longer than the tracks ({tracks.crops.shape[1] / tracks.fps} s)")

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(
            self.seed * 1_000_003 + (0 if self.deterministic else self.epoch) * 7919 + index
        )
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
        total_frames = tr.crops.shape[1]
        crops = torch.zeros(k_max, self.num_frames, *tr.crops.shape[2:], dtype=torch.uint8)
        sources = torch.zeros(k_max, self.num_samples)
        for i, u in enumerate(chosen):
            f0 = int(torch.randint(total_frames - self.num_frames + 1, (1,), generator=g))
            s0 = round(f0 / tr.fps * tr.sample_rate)
            gain = 10 ** ((torch.rand((), generator=g) * 2 - 1) * self.gain_db / 20)
            crops[i] = tr.crops[u, f0 : f0 + self.num_frames]
            stem = tr.stems[u, s0 : s0 + self.num_samples]
            sources[i, : stem.shape[0]] = gain * stem
            if i == 0:
                noise = tr.noise[int(tr.clip[u]), s0 : s0 + self.num_samples]
        mixture = sources.sum(0)
        mixture[: noise.shape[0]] += noise
        valid = torch.arange(k_max) < k
        return {"mixture": mixture, "sources": sources, "crops": crops, "valid": valid}
