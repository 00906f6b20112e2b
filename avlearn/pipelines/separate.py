"""``avlearn separate CLIP --out DIR``: one voice per visible speaker.

Steps: decode the clip (frames at most 360 px on the short side, audio at the model's rate, mono), find
face tracks (Haar cascade a few times a second, linked and interpolated; or ``--boxes``), cut mouth crops,
separate the soundtrack in overlapping windows of the model's length (half-window hop, Hann-weighted
overlap-add), and write per speaker ``speaker_<k>.wav`` and ``speaker_<k>.mp4`` (a crop around the face with
that voice), plus ``result.json``. ``--out`` is checked and locked before any work, and the results are
written into a folder beside it and moved in together at the end (:func:`avlearn.io.staged_output`), so a
clip that fails (no audio, no face, too short) leaves ``--out`` as it was, the folder never mixes two
runs, and the input can never be overwritten.

An audio-only checkpoint (``asep_unet_pit``: a fixed number of voices, in no particular order) takes another
route: the soundtrack is separated alone (long windows, each window's voices put in the order of the one
before by their agreement where they overlap), the faces are followed and their aligned mouths cut
(:func:`avlearn.pipelines.mouths.clip_mouths`), and each voice goes to the face whose mouth a sync model
finds it goes with (:func:`assign_voices` over :func:`avlearn.pipelines.mouths.voice_scores`).

Memory does not grow with the clip: the frames are read ``READ_CHUNK_S`` seconds at a time, in three passes
(faces, keeping only their boxes; mouth crops for each batch of windows; the speaker videos, encoded as
they come), and only the soundtrack, the voices and per-frame boxes are held whole (a few MB a minute). The
first ``KEEP_FRAMES_MB`` of decoded frames are kept for the later passes (:func:`keep_frames`), so a short
clip is decoded once.
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import itertools
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from avlearn import progress
from avlearn.io import (
    ClipRangeError,
    MediaError,
    MissingStreamError,
    TruncatedMediaError,
    probe,
    read_clip,
    read_frames,
    write_audio,
)
from avlearn.io.outdir import staged_output
from avlearn.io.write import VideoWriter, atomic_path
from avlearn.models.separation import reads_crops
from avlearn.models.weights import CheckpointError
from avlearn.pipelines.checkpoints import (
    add_device_argument,
    autocast,
    default_checkpoint,
    load_model,
    resolve_checkpoint,
    resolve_device,
)
from avlearn.report import REPORT, write_report
from avlearn.video.detect import FaceDetector
from avlearn.video.faces import FaceTrack, crop_boxes, detection_step, face_read_size, link_tracks, mouth_boxes

DEFAULT_CHECKPOINT = default_checkpoint("separation")
AUDIO_WINDOW_S = 8.0  # an audio-only separator's windows (it is convolutional: any length), half overlapping
MIN_DURATION = 0.3  # seconds; shorter clips are padded to one model window, shorter than this is refused
SPEAKER_VIDEO_SIZE = 192
READ_CHUNK_S = 5.0  # frames are read this many seconds at a time: memory does not grow with the clip
KEEP_FRAMES_MB = 320  # decoded frames kept for a clip's later passes (keep_frames): 18 s of 640x360
OUTPUTS = ("speaker_*.wav", "speaker_*.mp4", "result.json")  # the names written into --out


class NoFaceError(MediaError):
    """No face (or fewer than asked) was found in the clip."""


class BoxesError(ValueError):
    """A ``--boxes`` file that does not hold one box, or one box per frame, per speaker."""


_kept_frames: contextvars.ContextVar[dict | None] = contextvars.ContextVar("kept_frames", default=None)


@contextlib.contextmanager
def keep_frames(budget_mb: float = KEEP_FRAMES_MB):
    """Within this block :func:`frame_chunks` keeps the chunks it decodes, up to ``budget_mb`` in all, and
    gives them to the later passes over the same clip instead of decoding them again (the faces, the mouths
    and the speaker videos each pass over the frames: a short clip is then decoded once). Past the budget the
    chunks are decoded again as before, so memory stays bounded whatever the clip's length. A block inside
    another uses the outer one's frames; they are let go when the outermost block ends."""
    if _kept_frames.get() is not None:
        yield
        return
    token = _kept_frames.set({"budget": budget_mb * 2**20, "used": 0, "chunks": {}})
    try:
        yield
    finally:
        _kept_frames.reset(token)


@dataclass
class SeparationResult:
    """The voices of a clip's speakers: ``voices[k]`` (``(K, S)`` float at ``sample_rate``) goes with the face
    track ``tracks[k]`` (boxes per frame at ``fps``, in pixels of the frames as read: ``scale`` times smaller
    than the original); ``mixture`` is the soundtrack they were separated from. ``save`` writes them."""

    path: str
    sample_rate: int
    fps: float
    voices: torch.Tensor  # (K, S)
    mixture: torch.Tensor  # (S,)
    tracks: list[FaceTrack]
    num_frames: int  # frames at fps backed by video and audio (the speaker videos' length)
    read_size: int | None  # the short side frames are read at (None: as stored)
    scale: float  # original pixels per decoded pixel
    checkpoint: str
    model: str
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def save(self, out: str | Path, report: bool = False) -> Path:
        """Writes ``speaker_<k>.wav``, ``speaker_<k>.mp4`` and ``result.json`` into ``out`` (:func:`write_result`:
        as a whole, never over the clip), and with ``report`` ``report.html``. Returns the ``result.json`` path."""
        return write_result(self, out, report)


def load_separator(
    checkpoint: str | Path = DEFAULT_CHECKPOINT, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, dict[str, Any], str]:
    """``(separator in eval mode on device, preprocessing, model name)`` from a ``separation`` checkpoint; the
    separator's ``separate`` takes waveforms and crops (its front-end is its own)."""
    net, doc = load_model(checkpoint, "separation", device)
    return net, doc["preprocessing"], doc["model"]


def _tracks_from_boxes(spec: list, num_frames: int, scale: float) -> list[FaceTrack]:
    """``--boxes``: a list with, per speaker, one box ``[x0, y0, x1, y1]`` (original pixels) or one per frame."""
    if not isinstance(spec, list) or not spec:
        raise BoxesError("--boxes: expected a JSON list with one entry per speaker")
    tracks = []
    for k, boxes in enumerate(spec):
        try:
            arr = np.asarray(boxes, np.float32)
        except (ValueError, TypeError):
            raise BoxesError(f"--boxes: speaker {k} holds something other than numbers") from None
        if arr.shape == (4,):
            arr = np.repeat(arr[None], num_frames, axis=0)
        if arr.ndim != 2 or arr.shape[1] != 4:
            raise BoxesError(f"--boxes: speaker {k} needs [x0, y0, x1, y1] or a list of them, got shape {arr.shape}")
        if len(arr) < num_frames:
            arr = np.concatenate([arr, np.repeat(arr[-1:], num_frames - len(arr), axis=0)])
        tracks.append(FaceTrack(arr[:num_frames] / scale, np.ones(num_frames, bool), hits=len(arr)))
    return tracks


def _window_starts(total: int, window: int) -> list[int]:
    hop = window // 2
    starts = list(range(0, max(1, total - window + 1), hop))
    if starts[-1] + window < total:
        starts.append(total - window)
    return starts


@torch.no_grad()
@keep_frames()
def separate_clip(
    path: str | Path,
    checkpoint: str | Path = DEFAULT_CHECKPOINT,
    *,
    boxes: list | None = None,
    batch_size: int = 8,
    device: str | torch.device = "auto",
    sync_checkpoint: str | Path | None = None,
) -> SeparationResult:
    """Separates the voice of every face in a clip.

    Memory stays bounded whatever the clip's length: the frames are read twice in chunks (once to find the
    faces, keeping only their boxes; once for the mouth crops of each batch of windows) and never held
    whole (the first ``KEEP_FRAMES_MB`` are kept for the second pass and for ``save``'s videos within one
    :func:`keep_frames` block); only the mixture, the voices and per-frame boxes grow with the clip (about
    4 MB per minute each).

    Args:
        path: video file with audio.
        checkpoint: a ``separation`` checkpoint.
        boxes: face boxes per speaker in original pixels (see ``--boxes``) instead of the face tracker.
        batch_size: windows per forward pass.
        device: ``auto`` (a CUDA GPU when there is one), ``cpu``, ``cuda``; a GPU runs in mixed precision.
        sync_checkpoint: with an audio-only ``checkpoint``, the mouth sync model that gives each voice its
            face (None: the shipped ``sync`` checkpoint).

    Raises:
        MissingStreamError: no audio or no video stream.
        ClipRangeError: a clip shorter than ``MIN_DURATION``.
        NoFaceError: no face found.
        CheckpointError: a missing checkpoint or one of another task.
        DeviceError: a device this machine does not have.
    """
    t0 = time.perf_counter()
    device = resolve_device(device)
    net, pre, model_name = load_separator(checkpoint, device)
    fps, sr = pre["fps"], pre["sample_rate"]
    info = probe(path)
    notes = _check_clip(path, info, sr)
    if not reads_crops(net):
        if boxes is not None:
            raise BoxesError(f"--boxes needs a visual separator; {checkpoint} ({model_name}) is audio-only")
        sync = sync_checkpoint if sync_checkpoint is not None else default_checkpoint("sync")
        return _separate_audio_only(path, info, net, pre, str(checkpoint), model_name, sync, notes, device, t0)
    size, scale = face_read_size(min(info.video.display_size))
    sound = read_clip(path, 0.0, info.duration, sample_rate=sr, video=False)  # the whole mixture: small
    detector = FaceDetector() if boxes is None else None
    n_video, detections, t_detect = scan_video(path, info.duration, fps, size, detector)
    valid_s = min(info.duration, n_video / fps, sound.audio_end / sr)  # ends: the sound may start late
    n_valid = max(1, round(valid_s * fps))
    audio = sound.audio[0, : round(n_valid / fps * sr)]
    t_pass1 = time.perf_counter()
    tracks = _find_tracks(path, boxes, detections, n_valid, scale)
    if len(tracks) == 1:
        notes.append("one face found: its voice is separated from the background and any off-screen voices")
    mouths = [mouth_boxes(tr.boxes) for tr in tracks]
    voices = _separate_windows(net, path, audio, mouths, n_valid, size, pre, batch_size)
    t_sep = time.perf_counter()
    timings = {"decode_s": t_pass1 - t0 - t_detect, "detect_s": t_detect, "separate_s": t_sep - t_pass1}
    return SeparationResult(
        str(path), sr, fps, voices, audio, tracks, n_valid, size, scale, str(checkpoint), model_name, notes, timings
    )


def _separate_audio_only(
    path: str | Path,
    info,
    net: torch.nn.Module,
    pre: dict[str, Any],
    checkpoint: str,
    model_name: str,
    sync_checkpoint: str | Path,
    notes: list[str],
    device: torch.device,
    t0: float,
) -> SeparationResult:
    """:func:`separate_clip` with an audio-only separator: voices from the sound alone, faces by their aligned
    mouths, each voice given to a face by sync score (see the module docstring)."""
    from avlearn.pipelines.mouths import clip_mouths, voice_scores  # mouths reads frames with this module

    sync_checkpoint = resolve_checkpoint(sync_checkpoint)  # a shipped checkpoint's name, or a path
    sync, doc = load_model(sync_checkpoint, "sync", device)
    sp = doc["preprocessing"]
    if sp.get("crop") != "mouth":
        raise CheckpointError(
            f"{sync_checkpoint}: giving voices to faces needs a sync model of mouths (crop: mouth); "
            "pass one with --sync-checkpoint"
        )
    if int(sp["sample_rate"]) != int(pre["sample_rate"]):
        raise CheckpointError(
            f"{sync_checkpoint}: its sound is {sp['sample_rate']} Hz, the separator's {pre['sample_rate']} Hz"
        )
    fps, sr = float(sp["fps"]), int(pre["sample_rate"])
    sound = read_clip(path, 0.0, info.duration, sample_rate=sr, video=False)
    faces = clip_mouths(path, fps, int(sp["size"]))
    t_faces = time.perf_counter()
    if not faces.tracks:
        raise NoFaceError(path, "no face found (BlazeFace detector); nothing was written")
    n_valid = max(1, min(faces.num_frames, round(sound.audio_end / sr * fps)))
    audio = sound.audio[0, : round(n_valid / fps * sr)]
    voices = separate_audio(net, audio)
    t_sep = time.perf_counter()
    order = assign_voices(voice_scores(sync, faces.mouths, voices, sp["window"]))
    out = torch.stack([voices[v] if v is not None else torch.zeros_like(audio) for v in order])
    if len(faces.tracks) == 1:
        notes.append("one face found: it gets the separated voice its mouth goes with; the other is not written")
    notes += [
        f"face {k}: no voice left for it ({len(voices)} voices separated)" for k, v in enumerate(order) if v is None
    ]
    if len(faces.tracks) > 1 and len(voices) > len(faces.tracks):
        notes.append(f"{len(voices) - len(faces.tracks)} separated voice(s) went with no visible face: not written")
    size, scale = face_read_size(min(info.video.display_size))
    tracks = [replace(tr, boxes=tr.boxes / scale) for tr in faces.tracks]  # in pixels of the frames as read
    timings = {
        "decode_s": t_faces - t0 - faces.timings["detect_s"] - faces.timings["mouths_s"],
        "detect_s": faces.timings["detect_s"],
        "mouths_s": faces.timings["mouths_s"],
        "separate_s": t_sep - t_faces,
        "assign_s": time.perf_counter() - t_sep,
    }
    name = f"{model_name} + sync assignment ({Path(sync_checkpoint).name})"
    return SeparationResult(
        str(path), sr, fps, out, audio, tracks, n_valid, size, scale, checkpoint, name, notes, timings
    )


@torch.no_grad()
def separate_audio(net: torch.nn.Module, audio: torch.Tensor, window_s: float = AUDIO_WINDOW_S) -> torch.Tensor:
    """The voices ``(M, S)`` of an audio-only separator over ``audio`` ``(S,)``, in windows of ``window_s``
    seconds with a half-window hop, Hann-weighted overlap-add. The separator's outputs come in no particular
    order, so each window's are put in the order that agrees best (correlation) with the voices so far where
    the two overlap."""
    device = next(net.parameters()).device
    column = net.time_stride * net.front_end.stft.hop_length  # samples per bottleneck column
    win = max(column, round(window_s * net.front_end.sample_rate) // column * column)
    win = min(win, -(-audio.shape[0] // column) * column)  # a short clip: one window, padded to a column
    total = max(win, audio.shape[0])
    padded = torch.nn.functional.pad(audio, (0, total - audio.shape[0]))
    weight = torch.hann_window(win, periodic=False) + 1e-3
    out, norm = None, torch.zeros(total)
    for s in _window_starts(total, win):
        with autocast(device):
            est = net.separate(padded[None, s : s + win].to(device))[0].float().cpu()  # (M, win)
        if out is None:
            out = torch.zeros(len(est), total)
        else:
            so_far = out[:, s : s + win] / norm[s : s + win].clamp(min=1e-8)
            overlap = norm[s : s + win] > 0
            best = max(
                itertools.permutations(range(len(est))),
                key=lambda p: sum(_correlation(so_far[i, overlap], est[j, overlap]) for i, j in enumerate(p)),
            )
            est = est[list(best)]
        out[:, s : s + win] += est * weight
        norm[s : s + win] += weight
    return (out / norm)[:, : audio.shape[0]]


def _correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a * b).sum() / (a.norm() * b.norm() + 1e-8))


def assign_voices(scores: torch.Tensor) -> list[int | None]:
    """For each face, the voice it gets: ``scores`` ``(K faces, M voices)`` (higher: this voice goes with this
    face's mouth) -> a voice index per face, the assignment of largest total score (Hungarian method), None
    for the faces left over when there are fewer voices than faces."""
    faces, voices = linear_sum_assignment(scores.numpy(), maximize=True)
    order: list[int | None] = [None] * scores.shape[0]
    for f, v in zip(faces, voices):
        order[int(f)] = int(v)
    return order


def _check_clip(path: str | Path, info, sample_rate: int) -> list[str]:
    """Refuses a clip without sound or picture or too short; returns notes on how its audio is converted."""
    if info.audio is None:
        raise MissingStreamError(path, "has no audio stream: there is nothing to separate")
    if info.video is None:
        raise MissingStreamError(path, "has no video stream: separation is guided by the speakers' faces")
    if info.duration < MIN_DURATION:
        raise ClipRangeError(path, f"is {info.duration:.2f} s long; separation needs at least {MIN_DURATION} s")
    if info.audio.sample_rate != sample_rate or info.audio.channels != 1:
        return [
            f"audio is {info.audio.sample_rate} Hz with {info.audio.channels} channel(s); "
            f"separated as {sample_rate} Hz mono (channels averaged)"
        ]
    return []


def scan_video(
    path: str | Path, duration: float, fps: float, size: int | None, detector: FaceDetector | None
) -> tuple[int, list[tuple[int, np.ndarray]], float]:
    """Pass 1 over the frames: ``(frames backed by video, face detections, seconds spent detecting)``.

    Only the detections' boxes are kept (on frames 0, step, 2 step, ... of the clip, as
    :func:`avlearn.video.faces.track_faces` detects); no detection without a ``detector``.
    """
    step = detection_step(fps)
    detections: list[tuple[int, np.ndarray]] = []
    n_video, t_detect = 0, 0.0
    for f0, frames in frame_chunks(path, 0, max(1, round(duration * fps)), fps, size, desc="finding faces"):
        if frames is None:
            break  # the video ended early: no later frame is valid
        n_video += len(frames)
        if detector is not None:
            t1 = time.perf_counter()
            first = f0 + -f0 % step
            detections += [(t, detector(frames[t - f0].numpy())) for t in range(first, f0 + len(frames), step)]
            t_detect += time.perf_counter() - t1
    return n_video, detections, t_detect


def _find_tracks(
    path: str | Path, boxes: list | None, detections: list[tuple[int, np.ndarray]], n_valid: int, scale: float
) -> list[FaceTrack]:
    """The speakers' face tracks over ``n_valid`` frames: from ``--boxes`` (original pixels) when given, else
    linked from the detections. Raises NoFaceError when there is none."""
    tracks = _tracks_from_boxes(boxes, n_valid, scale) if boxes is not None else link_tracks(detections, n_valid)
    if not tracks:
        raise NoFaceError(
            path,
            "no face found (BlazeFace detector); nothing was written. "
            "Pass --boxes with each speaker's face box if the faces are there but not frontal",
        )
    return tracks


def _separate_windows(
    net: torch.nn.Module,
    path: str | Path,
    audio: torch.Tensor,
    mouths: list[np.ndarray],
    n_valid: int,
    size: int | None,
    pre: dict[str, Any],
    batch_size: int,
) -> torch.Tensor:
    """Pass 2: the voices ``(K, S)`` of the mouth tracks ``mouths`` (``(T, 4)`` boxes each) in ``audio``.

    The model runs on windows of its length with a half-window hop; their estimates are overlap-added with a
    Hann weight. A clip shorter than a window is padded (the last crop held, the audio padded with silence).
    """
    fps, sr = pre["fps"], pre["sample_rate"]
    win_f, win_s = round(pre["window"] * fps), round(pre["window"] * sr)
    total_f = max(n_valid, win_f)
    total_s = round(total_f / fps * sr)
    padded = torch.nn.functional.pad(audio, (0, total_s - audio.shape[0]))
    weight = torch.hann_window(win_s, periodic=False) + 1e-3
    out = torch.zeros(len(mouths), total_s)
    norm = torch.zeros(total_s)
    all_starts = _window_starts(total_f, win_f)
    windows = _crop_windows(path, mouths, all_starts, win_f, n_valid, size, pre, batch_size)
    windows = progress.bar(windows, total=-(-len(all_starts) // batch_size), desc="separating", unit="batch")
    for starts, crops in windows:
        s0 = [round(f / fps * sr) for f in starts]
        device = next(net.parameters()).device
        with autocast(device):
            est = net.separate(torch.stack([padded[s : s + win_s] for s in s0]).to(device), crops.to(device))
        est = est.float().cpu()  # (B, K, S)
        for s, e in zip(s0, est):
            out[:, s : s + win_s] += e * weight
            norm[s : s + win_s] += weight
    return (out / norm)[:, : audio.shape[0]]


def _crop_windows(
    path: str | Path,
    mouths: list[np.ndarray],
    starts: list[int],
    win_f: int,
    n_valid: int,
    size: int | None,
    pre: dict[str, Any],
    batch_size: int,
):
    """Yields ``(window starts, crops (B, K, win_f, h, w, 3))`` per batch of windows. Each frame is read once
    (a batch's last frames are the next one's first); past the last valid frame the last crop is held."""
    fps, crop_size = pre["fps"], tuple(pre["crop_size"])
    crops = torch.zeros(len(mouths), 0, *crop_size, 3, dtype=torch.uint8)  # (K, T, h, w, 3) of frames lo..
    lo = 0
    for i in range(0, len(starts), batch_size):
        chunk = starts[i : i + batch_size]
        crops, lo = crops[:, chunk[0] - lo :], chunk[0]
        need = min(chunk[-1] + win_f, n_valid)
        for f0, frames in frame_chunks(path, lo + crops.shape[1], need, fps, size):
            if frames is None:
                raise TruncatedMediaError(path, f"frames near {f0 / fps:.3f}s could no longer be decoded")
            new = torch.stack([crop_boxes(frames, m[f0 : f0 + len(frames)], crop_size) for m in mouths])
            crops = torch.cat([crops, new], dim=1)
        if lo + crops.shape[1] < chunk[-1] + win_f:  # past the last frame: hold the last crop
            crops = torch.cat([crops, crops[:, -1:].expand(-1, chunk[-1] + win_f - lo - crops.shape[1], -1, -1, -1)], 1)
        yield chunk, torch.stack([crops[:, f - lo : f - lo + win_f] for f in chunk])


def _read_chunk(path: str | Path, f0: int, f1: int, fps: float, size: int | None) -> torch.Tensor:
    """Frames ``f0..f1`` as :func:`frame_chunks` reads them, from :func:`keep_frames`' store when it holds them."""
    kept = _kept_frames.get()
    key = (os.fspath(path), fps, size, f0)
    if kept is not None and key in kept["chunks"]:
        wanted, frames = kept["chunks"][key]
        if wanted >= f1 - f0:  # read for at least this window: what it holds of it is what the video holds
            return frames[: f1 - f0]
    frames = read_frames(path, f0 / fps, (f1 - f0) / fps, fps=fps, size=size).contiguous()
    if kept is not None and kept["used"] + frames.nbytes <= kept["budget"]:
        kept["chunks"][key] = (f1 - f0, frames)
        kept["used"] += frames.nbytes
    return frames


def frame_chunks(path: str | Path, start: int, stop: int, fps: float, size: int | None, desc: str | None = None):
    """Yields ``(first frame index, (T, H, W, 3) uint8 frames)`` of frames ``start..stop`` at ``fps``, read
    ``READ_CHUNK_S`` seconds at a time (:func:`avlearn.io.read_frames`: a late-starting picture is preceded by
    black frames; within :func:`keep_frames` a chunk read before is not decoded again); the frames end with
    the video (``(index, None)`` if it ends before ``stop``). A pass over the clip named ``desc`` shows a
    progress bar. The frames are shared with later passes: do not write into them."""
    step = max(1, round(READ_CHUNK_S * fps))
    chunks = range(start, stop, step)
    for f0 in chunks if desc is None else progress.bar(chunks, desc=desc, unit="chunk"):
        f1 = min(stop, f0 + step)
        frames = _read_chunk(path, f0, f1, fps, size)
        if len(frames):
            yield f0, frames
        if len(frames) < f1 - f0:
            yield f0 + len(frames), None
            return


def _speaker_boxes(track: FaceTrack) -> np.ndarray:
    """``(T, 4)`` boxes of a speaker's video: a square around the face, 1.8x its box, centre smoothed over 0.5 s."""
    b = track.boxes
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    side = 1.8 * np.median(np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]))
    k = np.ones(13) / 13
    cx = np.convolve(np.pad(cx, 6, mode="edge"), k, mode="valid")
    cy = np.convolve(np.pad(cy, 6, mode="edge"), k, mode="valid")
    return np.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], axis=1)


def write_result(result: SeparationResult, out_dir: str | Path, report: bool = False) -> Path:
    """Writes ``speaker_<k>.wav``, ``speaker_<k>.mp4`` and ``result.json`` into ``out_dir`` as a whole, and
    with ``report`` ``report.html`` (:mod:`avlearn.report`).

    The folder then holds this result only (an earlier run's results there are replaced; other files are
    kept), and a failed write leaves it as it was (:func:`avlearn.io.staged_output`). Returns the
    ``result.json`` path.
    """
    with staged_output(out_dir, [result.path], OUTPUTS, "separate") as tmp:
        _write_files(result, tmp)
        if report:
            write_report("separate", tmp)
    return Path(out_dir) / "result.json"


def _write_files(result: SeparationResult, out_dir: str | Path) -> Path:
    """Writes the files of ``write_result`` into ``out_dir`` (a staging folder)."""
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    protect = [result.path]
    peak = float(result.voices.abs().max())
    gain = 0.99 / peak if peak > 0.99 else 1.0  # keep every voice's level relative to the others
    speakers = []
    for k, voice in enumerate(result.voices):
        write_audio(out / f"speaker_{k}.wav", voice * gain, result.sample_rate, protect=protect)
    # the speaker videos: the clip read once more in chunks, each chunk's crops encoded as they come
    crop = (SPEAKER_VIDEO_SIZE, SPEAKER_VIDEO_SIZE)
    boxes = [_speaker_boxes(track) for track in result.tracks]
    with contextlib.ExitStack() as stack:
        writers = [
            stack.enter_context(
                VideoWriter(out / f"speaker_{k}.mp4", result.fps, crop, audio_rate=result.sample_rate, protect=protect)
            )
            for k in range(len(result.tracks))
        ]
        chunks = frame_chunks(result.path, 0, result.num_frames, result.fps, result.read_size, "writing videos")
        for f0, frames in chunks:
            if frames is None:
                raise TruncatedMediaError(result.path, f"frames near {f0 / result.fps:.3f}s could no longer be decoded")
            for writer, b in zip(writers, boxes):
                writer.write(crop_boxes(frames, b[f0 : f0 + len(frames)], crop))
        for writer, voice in zip(writers, result.voices):
            writer.write_audio((voice * gain)[None])
    for k, (voice, track) in enumerate(zip(result.voices, result.tracks)):
        wav = out / f"speaker_{k}.wav"
        mp4 = out / f"speaker_{k}.mp4"
        rms = float(voice.pow(2).mean().sqrt())
        speakers.append(
            {
                "index": k,
                "wav": wav.name,
                "mp4": mp4.name,
                "level_dbfs": round(20 * math.log10(rms + 1e-12), 1),
                "detected_fraction": round(float(track.detected.mean()), 3),
                "boxes": np.round(track.boxes.astype(np.float64) * result.scale).astype(int).tolist(),
            }
        )
    result.timings["write_s"] = time.perf_counter() - t0
    doc = {
        "clip": result.path,
        "checkpoint": result.checkpoint,
        "model": result.model,
        "sample_rate": result.sample_rate,
        "fps": result.fps,
        "duration_s": round(result.mixture.shape[0] / result.sample_rate, 3),
        "box_format": "x0, y0, x1, y1 in pixels of the original frame, one box per frame at fps",
        "notes": result.notes,
        "speakers": speakers,
        "timings": {k: round(v, 3) for k, v in result.timings.items()},
    }
    text = json.dumps(doc, indent=1)
    for sp in speakers:  # one line per frame's box rather than one per number
        text = text.replace(json.dumps(sp["boxes"], indent=1).replace("\n", "\n   "), json.dumps(sp["boxes"]), 1)
    with atomic_path(out / "result.json", protect) as tmp:
        tmp.write_text(text + "\n")
    return out / "result.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("clip", help="video file with audio, one or more visible speakers")
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--boxes", help="JSON file: per speaker a face box [x0, y0, x1, y1] or one per frame")
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="separation checkpoint")
    parser.add_argument(
        "--sync-checkpoint",
        default=None,
        help="with an audio-only separation checkpoint: the mouth sync model that gives each voice its face "
        "(default: the shipped sync checkpoint)",
    )
    parser.add_argument("--report", action="store_true", help=f"also write {REPORT}: each voice to play")
    add_device_argument(parser)


def run(args: argparse.Namespace) -> int:
    boxes = None
    if args.boxes:
        try:
            boxes = json.loads(Path(args.boxes).read_text())
        except (OSError, json.JSONDecodeError) as err:
            reason = err.strerror if isinstance(err, OSError) else f"not JSON ({err})"
            print(
                f"avlearn separate: error: {args.boxes}: cannot read the --boxes file: {reason}; pass a JSON "
                "list with one face box [x0, y0, x1, y1] (or one per frame) per speaker",
                file=sys.stderr,
            )
            return 1
    device = resolve_device(args.device)  # before --out is touched
    try:  # --out is checked and locked before any work; results move into it as a whole at the end
        with staged_output(args.out, [args.clip, args.boxes], OUTPUTS, "separate") as tmp, keep_frames():
            result = separate_clip(
                args.clip, args.checkpoint, boxes=boxes, device=device, sync_checkpoint=args.sync_checkpoint
            )
            write_result(result, tmp)
            if args.report:
                write_report("separate", tmp)
    except BoxesError as err:
        print(f"avlearn separate: error: {err}", file=sys.stderr)
        return 1
    for note in result.notes:
        print(f"note: {note}")
    path = Path(args.out) / "result.json"
    duration = result.mixture.shape[0] / result.sample_rate
    total = sum(result.timings.values())
    print(f"{len(result.tracks)} speaker(s) in {args.clip} ({duration:.1f} s), separated in {total:.1f} s:")
    for k in range(len(result.tracks)):
        print(f"  {Path(args.out) / f'speaker_{k}.wav'}  {Path(args.out) / f'speaker_{k}.mp4'}")
    print(f"  {path}")
    if args.report:
        print(f"  {Path(args.out) / REPORT}")
    return 0
