"""The talking faces of a clip as aligned mouth crops, for the models that read mouths (``crop="mouth"``).

Two passes over the frames, read in chunks at most ``FACE_SHORT_SIDE`` pixels on the short side as ``avlearn
separate`` reads them, so memory does not grow with the clip: the first detects faces a few times a second and
links the detections into tracks (:func:`avlearn.video.faces.link_tracks`); the second puts FaceMesh points on
every frame of every track and cuts the aligned mouth crops (:func:`avlearn.video.faces.aligned_mouths`), kept
(12 kB a frame at 64 px) while the frames are dropped. The crops are what the sync model trained on
(:mod:`avlearn.data.mouths` cuts the training faces the same way).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from avlearn.io import probe
from avlearn.pipelines.separate import frame_chunks, keep_frames, scan_video
from avlearn.video.detect import FaceDetector
from avlearn.video.faces import FaceTrack, aligned_mouths, face_read_size, link_tracks, track_landmarks
from avlearn.video.landmarks import MIN_PRESENCE, FaceMesh

TOLERANCE_FRAMES = 2  # speaking_scores: a window scores its best over sound offsets within this many frames


@dataclass
class ClipMouths:
    """The faces of a clip: ``tracks`` (boxes and FaceMesh points in original pixels, left to right),
    ``mouths`` one ``(T, size, size, 3)`` uint8 crop sequence per track, ``num_frames`` frames backed by video,
    ``landmarks``: share of each track's frames with FaceMesh points, ``timings`` seconds per stage."""

    tracks: list[FaceTrack]
    mouths: list[torch.Tensor]
    num_frames: int
    landmarks: list[float]
    timings: dict[str, float]


@keep_frames()  # the two passes decode a short clip once
def clip_mouths(path: str | Path, fps: float, size: int, detector: FaceDetector | None = None) -> ClipMouths:
    """Finds, follows and crops every face of a clip (see the module docstring); no face gives no tracks."""
    t0 = time.perf_counter()
    info = probe(path)
    read_size, scale = face_read_size(min(info.video.display_size))
    n_video, detections, t_detect = scan_video(path, info.duration, fps, read_size, detector or FaceDetector())
    tracks = link_tracks(detections, n_video)
    t1 = time.perf_counter()
    mesh = FaceMesh() if tracks else None
    points = [np.full((n_video, 468, 2), np.nan, np.float32) for _ in tracks]
    presence = [np.zeros(n_video, np.float32) for _ in tracks]
    crops: list[list[torch.Tensor]] = [[] for _ in tracks]
    for f0, frames in frame_chunks(path, 0, n_video if tracks else 0, fps, read_size, desc="reading mouths"):
        if frames is None:
            break
        f1 = f0 + len(frames)
        for k, tr in enumerate(tracks):
            part = track_landmarks(frames.numpy(), FaceTrack(tr.boxes[f0:f1], tr.detected[f0:f1]), mesh)
            points[k][f0:f1], presence[k][f0:f1] = part.points, part.presence
            crops[k].append(aligned_mouths(frames, part, (size, size)))
    mouths = [torch.cat(c) if c else torch.zeros(0, size, size, 3, dtype=torch.uint8) for c in crops]
    n = min([n_video] + [len(m) for m in mouths])
    tracks = [
        replace(tr, boxes=tr.boxes[:n] * scale, detected=tr.detected[:n], points=p[:n] * scale, presence=q[:n])
        for tr, p, q in zip(tracks, points, presence)
    ]
    timings = {"faces_s": t1 - t0, "detect_s": t_detect, "mouths_s": time.perf_counter() - t1}
    landmarks = [float(np.mean(q >= MIN_PRESENCE)) if len(q) else 0.0 for q in presence]
    return ClipMouths(tracks, [m[:n] for m in mouths], n, landmarks, timings)


@torch.no_grad()
def speaking_scores(
    net: torch.nn.Module,
    mouths: list[torch.Tensor],
    audio: torch.Tensor,
    window: float,
    hop_frames: int = 5,
    offset_frames: int = 0,
    batch_size: int = 16,
    tolerance_frames: int | None = None,
    flip_average: bool = False,
) -> torch.Tensor:
    """How much each face's mouth goes with the sound, frame by frame: ``(K, T)`` sync logits of a mouth sync
    model (``crop="mouth"``), each frame the mean over the windows covering it (windows of ``window`` seconds
    every ``hop_frames`` frames; the last one ends at the last frame). High: this face is the one heard now.

    Args:
        net: a sync model reading mouths (its front-ends give fps and sample rate).
        mouths: ``K`` crop sequences ``(T, size, size, 3)`` uint8 (:func:`clip_mouths`).
        audio: ``(S,)`` the clip's sound at the model's rate, aligned with frame 0; or ``(M, S)``, several
            sounds (separated voices) scored against the same faces (each window's mouths, and each sound at
            each offset, encoded once): the result is then ``(M, K, T)``.
        window: seconds per window (the checkpoint's ``preprocessing["window"]``).
        offset_frames: score the sound this many frames later (a clip's own offset, from sync-offset).
        tolerance_frames: each window's score is its best over sound offsets within this many frames of
            ``offset_frames`` (a recording's own offset of a frame or two must not silence its speaker);
            default :data:`TOLERANCE_FRAMES`.
        flip_average: each window scored as the mean of the mouths as they are and mirrored left to right (the
            model trained on both; two views of a mouth halve some of its noise).
    """
    pre = net.preprocessing
    fps, sr = float(pre["fps"]), int(pre["sample_rate"])
    n = round(window * fps)
    sounds = audio if audio.dim() == 2 else audio[None]
    t = min(len(m) for m in mouths) if mouths else 0
    if t == 0:
        empty = torch.zeros(len(sounds), len(mouths), 0)
        return empty if audio.dim() == 2 else empty[0]
    starts = list(range(0, max(1, t - n + 1), hop_frames))
    if starts[-1] != max(0, t - n):
        starts.append(max(0, t - n))
    num_samples = round(window * sr)
    tol = TOLERANCE_FRAMES if tolerance_frames is None else tolerance_frames
    step = round(sr / fps)
    shift = round(offset_frames / fps * sr) + tol * step  # the audio is padded by tol frames at its start
    end = round((t + n) / fps * sr) + abs(shift) + tol * step
    padded = torch.nn.functional.pad(sounds, (tol * step, 0))
    padded = torch.nn.functional.pad(padded, (0, max(0, end - padded.shape[-1])))
    device = next(net.parameters()).device
    total, count = torch.zeros(len(sounds), len(mouths), t), torch.zeros(t)
    for f in starts:
        count[f : f + n] += 1
    # a clip shorter than a window: the last crop held
    mouths = [torch.cat([m, m[-1:].expand(n - len(m), -1, -1, -1)]) if len(m) < n else m for m in mouths]
    for i in range(0, len(starts), batch_size):
        b = starts[i : i + batch_size]
        a0 = [max(0, round(f / fps * sr) + shift) for f in b]
        views = [torch.stack([m[f : f + n] for f in b]).to(device) for m in mouths]
        if flip_average:  # each face's windows, then the same mirrored (width is the crops' third axis)
            views = [torch.cat([v, v.flip(-2)]) for v in views]
        vts = [net.video_tokens(v) for v in views]
        for j, sound in enumerate(padded):
            scores: list[list[torch.Tensor]] = [[] for _ in mouths]
            for d in range(-tol, tol + 1):  # the sound d frames later than the windows' own, encoded once
                auds = torch.stack([sound[s + d * step : s + d * step + num_samples] for s in a0]).to(device)
                at = net.audio_tokens(auds, vts[0].shape[1])
                at = torch.cat([at, at]) if flip_average else at
                for k, vt in enumerate(vts):
                    logit = net.score(vt, at)
                    scores[k].append(logit.unflatten(0, (2, -1)).mean(0) if flip_average else logit)
            for k in range(len(mouths)):
                for f, logit in zip(b, torch.stack(scores[k]).amax(0).float().cpu()):
                    total[j, k, f : f + n] += logit
    total = total / count.clamp(min=1)
    return total if audio.dim() == 2 else total[0]


def smooth_scores(scores: torch.Tensor, frames: int) -> torch.Tensor:
    """Each face's per-frame scores ``(..., T)`` averaged over ``frames`` frames centred on each (fewer at the
    clip's ends); ``frames`` <= 1 leaves them as they are. Who speaks changes over seconds, not frames, so a
    face's score pooled over a few windows decides better than one window's."""
    if frames <= 1 or scores.shape[-1] == 0:
        return scores
    flat = scores.reshape(-1, 1, scores.shape[-1]).float()
    kernel = torch.ones(1, 1, frames)
    pad = (frames // 2, frames - 1 - frames // 2)
    total = torch.nn.functional.conv1d(torch.nn.functional.pad(flat, pad), kernel)
    count = torch.nn.functional.conv1d(torch.nn.functional.pad(torch.ones_like(flat[:1]), pad), kernel)
    return (total / count).reshape(scores.shape).to(scores.dtype)


def voice_scores(net: torch.nn.Module, mouths: list[torch.Tensor], voices: torch.Tensor, window: float) -> torch.Tensor:
    """``(K faces, M voices)``: how well each of ``voices`` ``(M, S)`` goes with each face's mouth over the whole
    clip, :func:`speaking_scores` averaged, in windows overlapping by half (a clip mean needs no finer hop)."""
    hop = max(1, round(float(window) * float(net.preprocessing["fps"]) / 2))
    return speaking_scores(net, mouths, voices, window, hop_frames=hop).mean(-1).T
