"""Mouth-crop clips for sync training on faces: each talking face of a manifest as aligned mouth crops with the
sound that goes with it, in the clip-source interface the window datasets read (``num_frames``,
``video_window``, ``audio_window``; see :mod:`avlearn.data.clips`).

Two kinds of rows give faces:

- real clips annotated by ``python -m avlearn.data.real --annotate`` (``annotations`` with FaceMesh ``points``):
  the crops are :func:`avlearn.video.faces.aligned_mouths`, exactly what ``avlearn sync-offset`` cuts at
  inference; the sound is the clip's own (one person on screen, so the voice heard is theirs), taken
  ``meta.av_offset_s`` later where the recording itself is out of sync;
- the synthetic speakers world (``annotations`` with the renderer's ``mouth_boxes`` and ``sources`` with
  stems): each sounding face's crop is placed by its drawn mouth box at the same scale (corner distance) and
  its sound is its own stem, so a drawn face and a real one look alike to the model.

Long clips are cut into ``segment``-second pieces, at most ``max_segments`` per face (spread over the clip), so
one long talking head does not outweigh the many people of short clips; ``repeats`` lists every piece that
many times (each listing draws its own windows), so an epoch is long enough for a one-cycle schedule.
Everything is decoded once into memory (the real clips are minutes, the crops small) and never written to
disk: the crops are media made from third-party footage.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avlearn.data.manifest import load_annotations
from avlearn.io import probe, read_audio, read_clip
from avlearn.video.faces import FaceTrack, aligned_mouths, crop_affine, face_read_size
from avlearn.video.landmarks import MOUTH_CORNER_U, MOUTH_CORNER_V


def mouth_box_transforms(mouth_boxes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(T, 2, 3)`` crop-to-frame matrices for upright mouth boxes ``(T, 4)``: the box's width taken as the
    corner distance and its centre as the corners' midpoint (the geometry of the aligned crops)."""
    h, w = size
    width = mouth_boxes[:, 2] - mouth_boxes[:, 0]
    k = width / ((MOUTH_CORNER_U[1] - MOUTH_CORNER_U[0]) * w)
    u0, v0 = (MOUTH_CORNER_U[0] + MOUTH_CORNER_U[1]) / 2 * w, MOUTH_CORNER_V * h
    out = np.zeros((len(mouth_boxes), 2, 3), np.float32)
    out[:, 0, 0] = out[:, 1, 1] = k
    out[:, 0, 2] = (mouth_boxes[:, 0] + mouth_boxes[:, 2]) / 2 - k * u0
    out[:, 1, 2] = (mouth_boxes[:, 1] + mouth_boxes[:, 3]) / 2 - k * v0
    return out


def _real_faces(row: dict[str, Any], ann: dict[str, Any], fps: float, size: int, sr: int):
    """The one talking face of a real clip (the track FaceMesh found most often): ``[(mouths, audio)]``."""
    points, boxes = ann["points"], ann["boxes"]
    if points.shape[1] == 0:
        return []
    k = int(np.argmax(ann["presence"].sum(0)))
    info = probe(row["path"])
    read_size, scale = face_read_size(min(info.video.display_size))  # as face_annotations read it
    clip = read_clip(row["path"], 0.0, info.duration, fps=fps, size=read_size, sample_rate=sr)
    video = clip.video[:, : clip.video_end].permute(1, 2, 3, 0)
    t = min(len(video), len(points))
    track = FaceTrack(
        boxes=boxes[:t, k] / scale, detected=np.ones(t, bool), points=points[:t, k].astype(np.float32) / scale
    )
    mouths = aligned_mouths(video[:t], track, (size, size))
    audio = clip.audio[0, : clip.audio_end]
    late = round(row.get("meta", {}).get("av_offset_s", 0.0) * sr)  # sound late: taken later; early: earlier
    audio = audio[late:] if late >= 0 else torch.nn.functional.pad(audio, (-late, 0))
    return [(mouths, audio)]


def _synthetic_faces(row: dict[str, Any], ann: dict[str, Any], fps: float, size: int, sr: int):
    """Every sounding drawn face of a speakers-world clip with its own stem: ``[(mouths, audio), ...]``."""
    clip = read_clip(row["path"], row.get("start", 0.0), row["end"] - row.get("start", 0.0), fps=fps, audio=False)
    video = clip.video[:, : clip.video_end].permute(1, 2, 3, 0)
    t = min(len(video), len(ann["mouth_boxes"]))
    out = []
    for source in row.get("sources", []):
        if not source.get("sounding", True) or not source.get("stem"):
            continue
        i = source["index"]
        mouths = crop_affine(video[:t], mouth_box_transforms(ann["mouth_boxes"][:t, i], (size, size)), (size, size))
        audio, _ = read_audio(source["stem"], sr)
        out.append((mouths, audio[0]))
    return out


class MouthClips:
    """Talking faces of manifest rows as mouth crops + sound, cut into pieces (see the module docstring).

    Args:
        rows: manifest rows with ``annotations`` (real: FaceMesh points; synthetic: ``mouth_boxes``).
        fps: frame rate.
        size: crop side in pixels (square).
        sample_rate: audio rate.
        segment: piece length in seconds (clips shorter than that are one piece).
        max_segments: at most this many pieces per face, evenly spread over it (None: all).
        repeats: every piece listed this many times.
    """

    def __init__(
        self,
        rows: list[dict[str, Any]],
        *,
        fps: float,
        size: int,
        sample_rate: int,
        segment: float = 4.0,
        max_segments: int | None = 8,
        repeats: int = 1,
    ):
        self.fps, self.sample_rate, self.size = fps, sample_rate, size
        self.faces: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.names: list[str] = []
        for row in rows:
            if not row.get("annotations"):
                raise ValueError(f"{row['path']}: no annotations; run python -m avlearn.data.real --annotate")
            ann = load_annotations(row["annotations"])
            read = _real_faces if "points" in ann else _synthetic_faces
            for face in read(row, ann, fps, size, sample_rate):
                self.faces.append(face)
                self.names.append(row.get("id", row["path"]))
        if not self.faces:
            raise ValueError("MouthClips: no face in these rows")
        n_seg = round(segment * fps)
        pieces = []
        for j, (mouths, _) in enumerate(self.faces):
            t = len(mouths)
            starts = list(range(0, max(1, t - n_seg + 1), n_seg))
            if max_segments and len(starts) > max_segments:
                starts = [starts[round(s)] for s in np.linspace(0, len(starts) - 1, max_segments)]
            pieces += [(j, f0, min(n_seg, t - f0)) for f0 in starts]
        self.pieces = pieces * repeats

    def __len__(self) -> int:
        return len(self.pieces)

    def num_frames(self, i: int) -> int:
        return self.pieces[i][2]

    @property
    def duration(self) -> float:
        """Seconds of the shortest piece."""
        return min(p[2] for p in self.pieces) / self.fps

    @property
    def seconds(self) -> float:
        """Seconds of face video held (each face once)."""
        return sum(len(m) for m, _ in self.faces) / self.fps

    def video_window(self, i: int, f0: int, n: int) -> torch.Tensor:
        j, start, _ = self.pieces[i]
        return self.faces[j][0][start + f0 : start + f0 + n]

    def audio_window(self, i: int, s0: int, n: int) -> torch.Tensor:
        """Samples of the piece's sound, zero outside the face's sound (a window may reach past a piece into
        the rest of the clip's sound, never past the clip)."""
        j, start, _ = self.pieces[i]
        audio = self.faces[j][1]
        a = math.floor(start / self.fps * self.sample_rate) + s0
        lo, hi = max(a, 0), min(a + n, audio.shape[0])
        out = audio.new_zeros(n)
        if hi > lo:
            out[lo - a : hi - a] = audio[lo:hi]
        return out


def open_mouths(manifests: str | list[str], *, repeats: int | list[int] = 1, **kwargs: Any) -> MouthClips:
    """:class:`MouthClips` of one or several manifests (their faces joined); ``repeats`` may be given per
    manifest, to weigh a few minutes of real faces against an hour of drawn ones."""
    from avlearn.data.manifest import read_manifest

    manifests = [manifests] if isinstance(manifests, str | Path) else list(manifests)
    repeats = repeats if isinstance(repeats, list) else [repeats] * len(manifests)
    if len(repeats) != len(manifests):
        raise ValueError(f"{len(repeats)} repeats for {len(manifests)} manifests")
    parts = [MouthClips(read_manifest(m), repeats=r, **kwargs) for m, r in zip(manifests, repeats)]
    joined = parts[0]
    for part in parts[1:]:
        offset = len(joined.faces)
        joined.faces += part.faces
        joined.names += part.names
        joined.pieces += [(j + offset, f0, n) for j, f0, n in part.pieces]
    return joined
