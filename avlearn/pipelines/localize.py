"""``avlearn localize CLIP --out DIR``: where in the picture does the sound come from, frame by frame?

Two ways to answer, one command (``--mode auto``, the default, chooses; ``peaks.json`` says which ran and why):

- **faces**: when faces are in the picture, which face is making the sound (active speaker). Every face is
  found, followed and cut into aligned mouth crops (:func:`avlearn.pipelines.mouths.clip_mouths`), and a sync
  model that reads mouths scores, frame by frame, how well each face's mouth goes with the sound
  (:func:`avlearn.pipelines.mouths.speaking_scores`). The face with the highest score is the speaker, unless
  every score is under ``SPEAKING_THRESHOLD`` (chosen on the validation people of the real clips,
  ``benchmarks/active_speaker.py threshold``) or the sound is silent: then no one is. The heat is a blob on
  the speaking face. A dense map would follow motion and picture borders on real faces; the mouths do not.
- **dense**: a map over every place of the picture, for scenes without faces (instruments, engines), from a
  ``localize`` checkpoint or a sync one. ``auto`` takes it when no face is found, or when the speaker
  checkpoint reads whole frames instead of mouths.

Writes ``heatmap.mp4`` (each frame with its map over it, and the clip's original audio), ``grid.png``
(frames evenly spread over the clip, above the same frames with their maps) and ``peaks.json`` (per frame:
the map's peak in pixels and in [0, 1] coordinates, its maximum and mean similarity, and whether the
window was silent; on the faces path also the speaking face, each face's score and box).

Each frame's map comes from the model's window (1 s) centred on it. The clip is read in chunks of
``CHUNK_S`` seconds with half a window of margin on each side, and each chunk's overlay frames and original
audio are encoded into ``heatmap.mp4`` as they come, so clips of any length are localized in bounded memory
(only the per-frame peaks and the frames of ``grid.png`` are kept). Windows whose audio
is silent get no map (nothing sounds, so nothing can be localized): they are marked in ``peaks.json`` and
shown without an overlay.

The faces path keeps only the mouth crops (12 kB a frame and face at 64 px) and the 16 kHz sound (2 MB a minute)
of the whole clip, and renders ``heatmap.mp4`` chunk by chunk in the same way.

The dense path takes two kinds of checkpoints: a ``localize`` checkpoint (``avlearn fit -c recipes/localization/...``;
the shipped ``assets/checkpoints/localize_instruments`` is the default), or a ``sync`` checkpoint, whose model
localizes by class activation over its video encoder's spatial features (Owens & Efros 2018).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shutil
import tempfile
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from avlearn import progress
from avlearn.io import (
    ClipRangeError,
    MissingStreamError,
    TruncatedMediaError,
    TruncatedMediaWarning,
    probe,
    read_clip,
    read_frames,
)
from avlearn.io.outdir import staged_output
from avlearn.io.write import VideoWriter, atomic_path
from avlearn.models.weights import CheckpointError, read_weights_info
from avlearn.pipelines.checkpoints import add_device_argument, autocast, default_checkpoint, load_model, resolve_device
from avlearn.pipelines.mouths import ClipMouths, clip_mouths, smooth_scores, speaking_scores
from avlearn.pipelines.separate import NoFaceError
from avlearn.report import REPORT, write_report

DEFAULT_CHECKPOINT = default_checkpoint("localize")
DEFAULT_SPEAKER_CHECKPOINT = default_checkpoint("sync")
MODES = ("auto", "faces", "dense")
# A face speaks when its sync logit (the mean over the windows covering the frame, mirrored crops averaged,
# smoothed over SMOOTH_FRAMES) reaches this. Chosen on the validation people of data/real
# (`benchmarks/active_speaker.py threshold`: the best balanced accuracy between a face with its own sound and with
# another person's sound; docs/localization.md) for the shipped sync_real with speaking_scores' tolerance of +-2
# frames (+0.20); choose it again when any of these changes.
SPEAKING_THRESHOLD = 0.20
# Each face's per-frame score is averaged over this many frames (1 s) before the faces are compared
# (smooth_scores). Chosen on the validation people's composites (benchmarks/active_speaker.py pairs --split val),
# by the mean of the heard-face share with one voice all along and with turns (a change of speaker halfway): wider
# wins with one voice and loses at turns (docs/localization.md).
SMOOTH_FRAMES = 25
# --mode auto takes the faces path when a face track has FaceMesh lip points on at least this share of its frames:
# BlazeFace takes drawn instruments for faces in 29 of the 200 instruments test clips, FaceMesh finds lips on at
# most 38% of their frames; on real and drawn talking faces on 100%, a profile face 21%.
FACE_LANDMARKS = 0.5
CHUNK_S = 20.0
_BLOCK = 50  # frames upsampled, overlaid and encoded together
MIN_DURATION_S = 0.2  # five frames at 25 fps: less than that is not a clip to localize a sound in
SILENCE_DBFS = -60.0  # a window quieter than this (RMS) has no sound to localize
OUTPUTS = ("heatmap.mp4", "grid.png", "peaks.json")  # the names written into --out


class Localizer:
    """A trained localizer: frames and audio of a clip -> one map per frame.

    Args:
        checkpoint: a ``localize`` checkpoint, or a ``sync`` checkpoint (class activation).
        device: ``auto`` (a CUDA GPU when there is one), ``cpu``, ``cuda``; a GPU runs in mixed precision.
    """

    def __init__(self, checkpoint: str | Path = DEFAULT_CHECKPOINT, device: str | torch.device = "auto"):
        self.device = resolve_device(device)
        task = dense_task(checkpoint)
        net, doc = load_model(checkpoint, task, self.device)
        pre = doc["preprocessing"]
        if task == "sync":
            # evaluate the stem's last conv at every position instead of every other: the same features on a
            # grid twice as dense (H/8 instead of H/16), since nothing after it looks at neighbours
            net.encoders["video"].features[-1][0].stride = (1, 1, 1)
            self.front_ends = (net.encoders["video"].front_end, net.encoders["audio"].front_end)
        self.net, self.task, self.checkpoint = net.eval(), task, str(checkpoint)
        self.method = pre.get("method", "ezvsl") if task == "localize" else "sync_cam"
        self.fps, self.sample_rate, self.size = float(pre["fps"]), int(pre["sample_rate"]), int(pre["size"])
        self.num_frames = round(pre["window"] * self.fps)
        self.window_s = self.num_frames / self.fps
        self.temperature = float(pre.get("temperature", 0.07))

    @torch.no_grad()
    def frame_maps(
        self, frames: torch.Tensor, audio: torch.Tensor, at: list[int] | None = None, batch_size: int = 16
    ) -> torch.Tensor:
        """Maps ``(T, h, w)`` of one stretch of a clip; frame ``t``'s map from the window centred on it.

        Args:
            frames: ``(T, H, W, 3)`` uint8 at the model's frame rate.
            audio: ``(S,)`` at the model's sample rate, aligned with the frames (``T / fps`` seconds).
            at: only these frames (default: all); the class activation maps then score only their windows.
            batch_size: windows scored together (class activation maps only).

        Returns:
            float32 maps on the CPU, whatever the model's device.
        """
        with autocast(self.device):
            maps = self._maps(frames.to(self.device), audio.to(self.device), at, batch_size)
        return maps.float().cpu()

    def _maps(self, frames: torch.Tensor, audio: torch.Tensor, at: list[int] | None, batch_size: int) -> torch.Tensor:
        from avlearn.models.localize import front_end_inputs, sliding_similarity, sync_cam, sync_features

        t = frames.shape[0]
        if self.task == "localize":
            v, a = self.net.embed(frames[None], audio[None])
            maps = sliding_similarity(v[0], a[0], self.num_frames)
            if self.method == "attention":  # the map is the attention over locations, as the model was trained
                maps = (maps.flatten(1) / self.temperature).softmax(1).view_as(maps)
            maps = F.pad(maps, (0, 0, 0, 0, 0, t - maps.shape[0]))  # the audio may end a frame early
            return maps if at is None else maps[at]
        # sync CAM: the stems once over the stretch, then the fusion on the window around each frame
        f, a = sync_features(self.net, *front_end_inputs(*self.front_ends, frames[None], audio[None]))
        n = min(self.num_frames, t, a.shape[-1])
        starts = [min(max(0, k - n // 2), min(t, a.shape[-1]) - n) for k in (range(t) if at is None else at)]
        maps = []
        for i in range(0, len(starts), batch_size):
            s0 = starts[i : i + batch_size]
            fw = torch.cat([f[:, :, s : s + n] for s in s0])
            aw = torch.cat([a[..., s : s + n] for s in s0])
            maps.append(sync_cam(self.net, fw, aw))
        return torch.cat(maps)


def dense_task(checkpoint: str | Path) -> str:
    """The task of a dense path's checkpoint (``localize`` or ``sync``), read from its description; another
    task's checkpoint is refused."""
    task = read_weights_info(checkpoint).get("task")
    if task not in ("localize", "sync"):
        raise CheckpointError(f"{checkpoint}: a '{task}' checkpoint; localize needs a 'localize' or 'sync' one")
    return task


@dataclass
class FramePeak:
    time: float
    silent: bool
    peak_x: int | None = None  # pixels of the written video
    peak_y: int | None = None
    peak_u: float | None = None  # the same in [0, 1] of the width / height
    peak_v: float | None = None
    max: float | None = None  # of the raw map (cosine similarity, attention weight or sync logit)
    mean: float | None = None


@dataclass
class FaceFrame(FramePeak):
    """A frame of the faces path: the peak is the speaking face's centre, ``max`` / ``mean`` over the faces'
    scores."""

    face: int | None = None  # the speaking face (index into peaks.json's "faces", left to right), or None
    scores: list[float] | None = None  # each face's sync logit: high = this face's mouth goes with the sound
    boxes: list[list[float]] | None = None  # each face's box x0, y0, x1, y1 in pixels of the written video


class ActiveSpeaker:
    """Which face is heard: a sync model that reads mouths (``crop: mouth``) scoring every face's mouth
    against the sound.

    Args:
        checkpoint: a ``sync`` checkpoint that reads mouths.
        device: ``auto`` (a CUDA GPU when there is one), ``cpu``, ``cuda``; a GPU runs in mixed precision.
        threshold: the score a face must reach to be judged speaking.
        smooth_frames: each face's per-frame scores averaged over this many frames (:func:`smooth_scores`).
        flip_average: score each window's mouths as they are and mirrored, and average (:func:`speaking_scores`).
    """

    def __init__(
        self,
        checkpoint: str | Path = DEFAULT_SPEAKER_CHECKPOINT,
        device: str | torch.device = "auto",
        threshold: float = SPEAKING_THRESHOLD,
        smooth_frames: int = SMOOTH_FRAMES,
        flip_average: bool = True,
    ):
        self.device = resolve_device(device)
        if not reads_mouths(checkpoint):
            raise CheckpointError(
                f"{checkpoint}: this sync checkpoint reads whole frames; the faces path needs one that reads "
                "mouths (preprocessing crop: mouth)"
            )
        net, doc = load_model(checkpoint, "sync", self.device)
        pre = doc["preprocessing"]
        self.net, self.checkpoint, self.threshold = net.eval(), str(checkpoint), float(threshold)
        self.smooth_frames, self.flip_average = int(smooth_frames), bool(flip_average)
        self.fps, self.sample_rate, self.size = float(pre["fps"]), int(pre["sample_rate"]), int(pre["size"])
        self.window_s = float(pre["window"])
        self.num_frames = round(self.window_s * self.fps)

    def scores(self, mouths: list[torch.Tensor], audio: torch.Tensor, smooth_frames: int | None = None) -> torch.Tensor:
        """``(K, T)`` float32 logits of the faces' mouth crops against ``audio`` (the model's rate, from frame 0),
        smoothed over ``smooth_frames`` (default: the speaker's)."""
        with autocast(self.device):
            scores = speaking_scores(self.net, mouths, audio, self.window_s, flip_average=self.flip_average)
        return smooth_scores(scores, self.smooth_frames if smooth_frames is None else smooth_frames)


def reads_mouths(checkpoint: str | Path) -> bool:
    """Whether a ``sync`` checkpoint's model reads aligned mouth crops (else whole frames); read from its
    description, without loading it."""
    info = read_weights_info(checkpoint)
    if info.get("task") != "sync":
        raise CheckpointError(f"{checkpoint}: a '{info.get('task')}' checkpoint; the speaker checkpoint must be 'sync'")
    return (info.get("preprocessing") or {}).get("crop", "frame") == "mouth"


def speaking_faces(scores: torch.Tensor, silent: torch.Tensor, threshold: float) -> list[int | None]:
    """Per frame the speaking face: the highest of the ``(K, T)`` scores when it reaches ``threshold`` and the
    frame's window is not ``silent`` ``(T,)``; else None (no one is heard, or no face goes with the sound)."""
    if scores.shape[0] == 0:
        return [None] * scores.shape[1]
    best, face = scores.max(0)
    keep = (best >= threshold) & ~silent[: scores.shape[1]]
    return [int(k) if ok else None for k, ok in zip(face.tolist(), keep.tolist())]


def face_blobs(boxes: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``(T, h, w)`` maps in [0, 1]: a Gaussian over each frame's box ``(T, 4)`` (``x0, y0, x1, y1`` in pixels;
    a NaN box gives an empty map), its spread half the box's width and height."""
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    sx, sy = ((boxes[:, 2] - boxes[:, 0]) / 2).clamp_min(1), ((boxes[:, 3] - boxes[:, 1]) / 2).clamp_min(1)
    x = (torch.arange(w) + 0.5)[None, None, :]
    y = (torch.arange(h) + 0.5)[None, :, None]
    blob = torch.exp(
        -0.5 * (((x - cx[:, None, None]) / sx[:, None, None]) ** 2 + ((y - cy[:, None, None]) / sy[:, None, None]) ** 2)
    )
    return torch.nan_to_num(blob, nan=0.0)


def blob_overlay(frames: torch.Tensor, blobs: torch.Tensor, alpha: float = 0.6) -> torch.Tensor:
    """``(T, H, W, 3)`` uint8 frames with ``(T, H, W)`` blobs in [0, 1] blended in where they are (jet colours,
    opacity ``alpha`` times the blob): the rest of the picture stays as it is."""
    from matplotlib import colormaps

    lut = torch.from_numpy(colormaps["jet"](np.linspace(0, 1, 256))[:, :3]).float() * 255
    heat = lut[(blobs.clamp(0, 1) * 255).round().long()]
    weight = (alpha * blobs.clamp(0, 1))[..., None]
    return (frames.float() * (1 - weight) + heat * weight).round().clamp(0, 255).to(torch.uint8)


def window_rms_dbfs(audio: torch.Tensor, num_frames: int, fps: float, sample_rate: int, width: int) -> torch.Tensor:
    """RMS level (dBFS) of the ``width``-frame window centred on each of ``num_frames`` frames."""
    per_frame = round(sample_rate / fps)
    energy = F.pad(audio, (0, max(0, num_frames * per_frame - audio.shape[0])))[: num_frames * per_frame]
    energy = energy.view(num_frames, per_frame).square().mean(1)
    kernel = torch.ones(1, 1, width) / width
    smooth = F.conv1d(F.pad(energy[None, None], (width // 2, (width - 1) // 2), mode="replicate"), kernel)[0, 0]
    return 10 * torch.log10(smooth.clamp_min(1e-12))


def overlay(frames: torch.Tensor, maps: torch.Tensor, silent: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """``(T, H, W, 3)`` uint8 frames with min-max normalized ``(T, H, W)`` maps in the jet colormap blended in
    (none on silent frames)."""
    from matplotlib import colormaps

    lut = torch.from_numpy(colormaps["jet"](np.linspace(0, 1, 256))[:, :3]).float() * 255
    heat = lut[(maps.clamp(0, 1) * 255).round().long()]  # (T, H, W, 3)
    weight = torch.where(silent, 0.0, alpha)[:, None, None, None]
    return (frames.float() * (1 - weight) + heat * weight).round().clamp(0, 255).to(torch.uint8)


def normalize_each(maps: torch.Tensor) -> torch.Tensor:
    """Min-max per map ``(T, H, W)`` (constant maps -> zeros)."""
    lo = maps.flatten(1).amin(1)[:, None, None]
    hi = maps.flatten(1).amax(1)[:, None, None]
    return (maps - lo) / (hi - lo).clamp_min(1e-12)


def grid_indices(num_frames: int, num: int = 6) -> np.ndarray:
    """The frames ``grid.png`` shows: ``num`` spread evenly over the clip."""
    return np.linspace(0, num_frames - 1, min(num, num_frames)).round().astype(int)


def write_grid(path: Path, frames: torch.Tensor, over: torch.Tensor, peaks: list[FramePeak]) -> None:
    """``grid.png``: the frames ``(N, H, W, 3)`` of ``grid_indices`` above the same frames with their maps
    ``over`` and ``peaks``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h, w = frames.shape[1:3]
    n = frames.shape[0]
    fig, axes = plt.subplots(2, n, figsize=(2.2 * n * w / max(h, w) + 0.2, 4.6), squeeze=False)
    for col in range(n):
        axes[0, col].imshow(frames[col].numpy())
        axes[0, col].set_title(f"{peaks[col].time:.2f} s", fontsize=9)
        axes[1, col].imshow(over[col].numpy())
        if peaks[col].silent:
            axes[1, col].set_title("silent", fontsize=9)
        elif peaks[col].peak_x is None:  # faces path: no face goes with the sound
            axes[1, col].set_title("no one speaking", fontsize=9)
        else:
            axes[1, col].plot(peaks[col].peak_x, peaks[col].peak_y, "w+", markersize=12, markeredgewidth=2)

    for ax in axes.flat:
        ax.set_axis_off()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _original_audio(path: str | Path, info, start: float, end: float | None) -> torch.Tensor:
    """The file's own audio (its rate and channels) from ``start`` to ``end`` seconds, or to the end of the audio
    stream when ``end`` is None: ``(channels, S)``, read one chunk at a time for ``heatmap.mp4``."""
    rate, channels = info.audio.sample_rate, info.audio.channels
    last = end is None
    if last:
        end = info.audio.start + info.audio.duration if info.audio.duration else info.duration
    s0, s1 = round(start * rate), round(end * rate)
    if s1 <= s0:
        return torch.zeros(channels, 0)
    try:
        with warnings.catch_warnings():  # the model's read of the same stretch reports a damaged stream
            warnings.simplefilter("ignore", TruncatedMediaWarning)
            clip = read_clip(path, s0 / rate, (s1 - s0) / rate, sample_rate=rate, mono=False, video=False)
    except (TruncatedMediaError, ClipRangeError):  # no audio here: silence, or nothing after the end
        return torch.zeros(channels, 0 if last else s1 - s0)
    if last:  # up to the last real sample, as the stream ends
        return clip.audio[:, : clip.audio_end]
    return clip.audio


@dataclass
class LocalizeResult:
    """Where a clip's sound comes from: ``peaks[t]`` is frame ``t``'s :class:`FramePeak` (the map's peak in
    pixels of the written video and in [0, 1], or ``silent``); ``out`` is the folder holding ``heatmap.mp4``,
    ``grid.png`` and ``peaks.json`` (a private temporary one for :func:`localize_clip`, removed with the
    result: ``save`` copies them where they should stay)."""

    path: str
    out: str
    frames: int
    fps: float
    silent_frames: int
    method: str
    checkpoint: str
    peaks: list[FramePeak] = field(default_factory=list, repr=False)
    mode: str = "dense"  # which path ran: "faces" (peaks are FaceFrames) or "dense"

    def save(self, out: str | Path, report: bool = False) -> Path:
        """Copies ``heatmap.mp4``, ``grid.png`` and ``peaks.json`` into ``out`` as a whole (never over the clip;
        an earlier run's results there are replaced, other files kept), and with ``report`` writes
        ``report.html`` (:mod:`avlearn.report`). Returns ``out``."""
        with staged_output(out, [self.path], OUTPUTS, "localize") as folder:
            for name in OUTPUTS:
                shutil.copyfile(Path(self.out) / name, Path(folder) / name)
            if report:
                write_report("localize", folder)
        return Path(out)


def _localize_into(
    path: str | Path,
    out: str | Path,
    checkpoint: str | Path = DEFAULT_CHECKPOINT,
    *,
    size: int = 224,
    device: str | torch.device = "auto",
    mode: str = "auto",
    speaker_checkpoint: str | Path = DEFAULT_SPEAKER_CHECKPOINT,
    speaking_threshold: float = SPEAKING_THRESHOLD,
) -> LocalizeResult:
    """Localizes the sound of a clip frame by frame and writes ``heatmap.mp4``, ``grid.png``, ``peaks.json``.

    Args:
        path: media file with video and audio.
        out: output folder (created).
        checkpoint: the dense path's ``localize`` or ``sync`` checkpoint.
        size: shorter side of the written video in pixels (the aspect ratio and rotation of the file are kept).
        device: ``auto`` (a CUDA GPU when there is one), ``cpu``, ``cuda``; a GPU runs in mixed precision.
        mode: ``auto`` (the faces path when a face is found and ``speaker_checkpoint`` reads mouths, else the
            dense one), ``faces`` or ``dense``.
        speaker_checkpoint: the faces path's ``sync`` checkpoint (one that reads mouths).
        speaking_threshold: the score a face must reach to be judged speaking (faces path).

    Raises:
        MediaError: unreadable file, no video, or no audio stream; with ``mode="faces"``, no face found.
        ClipRangeError: a clip shorter than ``MIN_DURATION_S``.
        CheckpointError: missing checkpoint, or one of another task; with ``mode="faces"``, a speaker
            checkpoint that reads whole frames.
        DeviceError: a device this machine does not have.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    dense_task(checkpoint)  # a wrong --checkpoint is refused whichever path runs
    info = probe(path)
    duration = _check_clip(path, info)
    out = Path(out)
    if mode == "dense":
        reason = "asked for (mode dense)"
    elif not reads_mouths(speaker_checkpoint) and mode == "auto":
        reason = f"the speaker checkpoint {speaker_checkpoint} reads whole frames, not mouths"
    else:
        speaker = ActiveSpeaker(speaker_checkpoint, device, speaking_threshold)
        _warn_short(path, duration, speaker.window_s)
        found = clip_mouths(path, speaker.fps, speaker.size)
        if found.tracks and (mode == "faces" or max(found.landmarks) >= FACE_LANDMARKS):
            return _faces_into(path, out, info, duration, speaker, found, size)
        if mode == "faces":
            raise NoFaceError(path, "no face found (BlazeFace detector); --mode auto or dense maps every place")
        reason = (
            "no face found"
            if not found.tracks
            else (
                f"{len(found.tracks)} face detection(s) whose lips FaceMesh finds on under {FACE_LANDMARKS:.0%} of "
                "the frames: not taken for faces"
            )
        )
    loc = Localizer(checkpoint, device)
    _warn_short(path, duration, loc.window_s)
    total = max(1, math.floor(duration * loc.fps + 1e-6))
    out.mkdir(parents=True, exist_ok=True)
    peaks, shown = _write_heatmap(path, info, loc, out / "heatmap.mp4", total, size)
    silent = torch.tensor([p.silent for p in peaks])
    _warn_silent(path, silent)
    h, w = _write_grid(out / "grid.png", shown, peaks)
    doc = {
        "clip": str(path),
        "mode": "dense",
        "mode_reason": reason,
        "checkpoint": loc.checkpoint,
        "method": loc.method,
        "fps": loc.fps,
        "width": w,
        "height": h,
        "window_s": loc.window_s,
        "frames": [asdict(p) for p in peaks],
    }
    _write_json(out / "peaks.json", doc)
    return LocalizeResult(
        str(path), str(out), len(peaks), loc.fps, int(silent.sum()), loc.method, loc.checkpoint, peaks, "dense"
    )


def _faces_into(
    path: str | Path, out: Path, info, duration: float, speaker: ActiveSpeaker, found: ClipMouths, size: int
) -> LocalizeResult:
    """The faces path of :func:`_localize_into`: every face scored against the sound, the speaking one marked."""
    fps, sr = speaker.fps, speaker.sample_rate
    total = max(1, math.floor(duration * fps + 1e-6))
    # the soundtrack whole (16 kHz mono: 2 MB a minute), from frame 0, padded or cut to the frames
    sound = read_clip(path, 0.0, info.duration, sample_rate=sr, video=False).audio[0]
    audio = F.pad(sound, (0, max(0, round(total / fps * sr) - sound.shape[0])))[: round(total / fps * sr)]
    scores = speaker.scores(found.mouths, audio)[:, :total]  # (K, n): the frames backed by video and faces
    n = scores.shape[1]
    silent = window_rms_dbfs(audio, total, fps, sr, speaker.num_frames) < SILENCE_DBFS
    speaking = speaking_faces(scores, silent, speaker.threshold) + [None] * (total - n)
    boxes = torch.full((len(found.tracks), total, 4), float("nan"))
    for k, track in enumerate(found.tracks):
        boxes[k, :n] = torch.from_numpy(np.asarray(track.boxes[:n], np.float32))
    out.mkdir(parents=True, exist_ok=True)
    shown, (h, w) = _write_faces_heatmap(path, info, out / "heatmap.mp4", fps, boxes, speaking, size)
    scale = torch.tensor([w, h, w, h], dtype=torch.float32) / torch.tensor(info.video.display_size[::-1] * 2)
    boxes = boxes * scale  # pixels of the written video
    peaks = _face_frames(fps, scores, boxes, speaking, silent, (h, w))
    _warn_silent(path, silent)
    _write_grid(out / "grid.png", shown, peaks)
    doc = {
        "clip": str(path),
        "mode": "faces",
        "mode_reason": f"{len(found.tracks)} face(s) found",
        "checkpoint": speaker.checkpoint,
        "method": "active_speaker",
        "fps": fps,
        "width": w,
        "height": h,
        "window_s": speaker.window_s,
        "threshold": speaker.threshold,
        "smooth_frames": speaker.smooth_frames,
        "flip_average": speaker.flip_average,
        "faces": [
            {"face": k, "box": _rounded(torch.nanmedian(boxes[k, :n], 0).values), "landmarks": round(share, 3)}
            for k, share in enumerate(found.landmarks)
        ],
        "frames": [asdict(p) for p in peaks],
    }
    _write_json(out / "peaks.json", doc)
    return LocalizeResult(
        str(path), str(out), total, fps, int(silent.sum()), "active_speaker", speaker.checkpoint, peaks, "faces"
    )


def _face_frames(
    fps: float,
    scores: torch.Tensor,
    boxes: torch.Tensor,
    speaking: list[int | None],
    silent: torch.Tensor,
    hw: tuple[int, int],
) -> list[FaceFrame]:
    """The :class:`FaceFrame` of every frame: boxes ``(K, T, 4)`` in pixels of the written video ``hw``."""
    h, w = hw
    frames = []
    for t, face in enumerate(speaking):
        s = scores[:, t] if t < scores.shape[1] else None
        entry = FaceFrame(
            round(t / fps, 4),
            bool(silent[t]),
            scores=None if s is None else [round(float(v), 3) for v in s],
            boxes=[_rounded(b) for b in boxes[:, t]],
        )
        if s is not None and len(s):
            entry.max, entry.mean = round(float(s.max()), 3), round(float(s.mean()), 3)
        if face is not None:
            x0, y0, x1, y1 = boxes[face, t].tolist()
            x, y = min(w - 1, max(0, round((x0 + x1) / 2))), min(h - 1, max(0, round((y0 + y1) / 2)))
            entry.face, entry.peak_x, entry.peak_y = face, x, y
            entry.peak_u, entry.peak_v = (x + 0.5) / w, (y + 0.5) / h
        frames.append(entry)
    return frames


def _rounded(box: torch.Tensor) -> list[float] | None:
    """A box as a JSON list (one decimal), None where it is NaN (no face there)."""
    return None if bool(box.isnan().any()) else [round(float(v), 1) for v in box]


def _write_faces_heatmap(
    path: str | Path, info, target: Path, fps: float, boxes: torch.Tensor, speaking: list[int | None], size: int
) -> tuple[dict[int, tuple[torch.Tensor, torch.Tensor]], tuple[int, int]]:
    """Streams ``heatmap.mp4`` chunk by chunk: each frame with a blob over its speaking face (original boxes
    ``(K, T, 4)``). Returns the frames of :func:`grid_indices` with their overlays, and the written size."""
    total = len(speaking)
    grid = {int(k) for k in grid_indices(total)}
    shown: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    disp_h, disp_w = info.video.display_size
    chunk = round(CHUNK_S * fps)
    hw = None
    with contextlib.ExitStack() as stack:
        writer = None
        for c0 in progress.bar(range(0, total, chunk), desc="drawing", unit="chunk"):
            c1 = min(total, c0 + chunk)
            frames = read_frames(path, c0 / fps, (c1 - c0) / fps, fps=fps, size=size)
            if len(frames) < c1 - c0:  # the picture ends early: its last frame held, as the maps were
                last = frames[-1:] if len(frames) else torch.zeros(1, *(hw or (size, size)), 3, dtype=torch.uint8)
                frames = torch.cat([frames, last.expand(c1 - c0 - len(frames), -1, -1, -1)])
            h, w = hw = frames.shape[1:3]
            if writer is None:
                writer = stack.enter_context(
                    VideoWriter(
                        target,
                        fps,
                        (h, w),
                        audio_rate=info.audio.sample_rate,
                        audio_channels=info.audio.channels,
                        protect=[path],
                    )
                )
            scale = torch.tensor([w / disp_w, h / disp_h, w / disp_w, h / disp_h])
            for b0 in range(c0, c1, _BLOCK):
                b1 = min(c1, b0 + _BLOCK)
                nan = torch.full((4,), float("nan"))
                chosen = torch.stack(
                    [nan if f is None else boxes[f, t] * scale for t, f in enumerate(speaking[b0:b1], b0)]
                )
                block = frames[b0 - c0 : b1 - c0]
                over = blob_overlay(block, face_blobs(chosen, h, w))
                for t in range(b0, b1):
                    if t in grid:
                        shown[t] = (block[t - b0].clone(), over[t - b0].clone())
                writer.write(over)
            writer.write_audio(_original_audio(path, info, c0 / fps, None if c1 == total else c1 / fps))
    return shown, hw


def _warn_silent(path: str | Path, silent: torch.Tensor) -> None:
    if silent.all():
        warnings.warn(
            f"{path}: the audio is silent (below {SILENCE_DBFS:.0f} dBFS): no sound to localize", stacklevel=3
        )


def _write_grid(target: Path, shown: dict[int, tuple[torch.Tensor, torch.Tensor]], peaks: list[FramePeak]):
    """``grid.png`` from the kept frames; returns the written video's ``(height, width)``."""
    frames, over = (torch.stack(x) for x in zip(*(shown[k] for k in sorted(shown))))
    write_grid(target, frames, over, [peaks[k] for k in sorted(shown)])
    return tuple(frames.shape[1:3])


def _write_json(target: Path, doc: dict) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(doc, indent=1) + "\n")


def _check_clip(path: str | Path, info) -> float:
    """The clip's duration (to the end of its picture); refuses a clip without picture or sound or too short."""
    for stream, name in ((info.video, "video"), (info.audio, "audio")):
        if stream is None:
            raise MissingStreamError(path, f"the file has no {name} stream; localize needs both picture and sound")
    duration = info.duration if info.video.duration is None else info.video.start + info.video.duration
    if duration < MIN_DURATION_S:
        raise ClipRangeError(path, f"the clip is {duration:.2f} s long; localize needs at least {MIN_DURATION_S} s")
    return duration


def _warn_short(path: str | Path, duration: float, window_s: float) -> None:
    if duration < window_s:
        warnings.warn(
            f"{path}: the clip ({duration:.2f} s) is shorter than the model's {window_s:.2f} s "
            "window; its maps come from fewer audio events and are less reliable",
            stacklevel=3,
        )


def _write_heatmap(
    path: str | Path, info, loc: Localizer, target: Path, total: int, size: int
) -> tuple[list[FramePeak], dict[int, tuple[torch.Tensor, torch.Tensor]]]:
    """Streams ``heatmap.mp4`` chunk by chunk: each chunk's overlay frames and original audio are encoded as
    they come. Returns the peak of every frame and, for the frames of :func:`grid_indices`, ``(frame,
    overlay)``: all that is kept of the pictures."""
    shown: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    grid = {int(k) for k in grid_indices(total)}
    peaks: list[FramePeak] = []
    chunk = round(CHUNK_S * loc.fps)
    with contextlib.ExitStack() as stack:
        writer = None
        for c0 in progress.bar(range(0, total, chunk), desc="localizing", unit="chunk"):
            c1 = min(total, c0 + chunk)
            frames, maps, level = _chunk_maps(path, loc, c0, c1, total, size)
            h, w = frames.shape[1:3]
            if writer is None:
                writer = stack.enter_context(
                    VideoWriter(
                        target,
                        loc.fps,
                        (h, w),
                        audio_rate=info.audio.sample_rate,
                        audio_channels=info.audio.channels,
                        protect=[path],
                    )
                )
            for b0 in range(0, len(frames), _BLOCK):  # a few frames at a time: the upsampled maps are large
                block, silent = frames[b0 : b0 + _BLOCK], level[b0 : b0 + _BLOCK] < SILENCE_DBFS
                small = maps[b0 : b0 + _BLOCK]
                big = F.interpolate(small[:, None].float(), size=(h, w), mode="bilinear", align_corners=False)[:, 0]
                over = overlay(block, normalize_each(big), silent)
                peaks += _frame_peaks(c0 + b0, loc.fps, small, big, silent)
                for j in range(len(block)):
                    if c0 + b0 + j in grid:
                        shown[c0 + b0 + j] = (block[j].clone(), over[j].clone())
                writer.write(over)
            writer.write_audio(_original_audio(path, info, c0 / loc.fps, None if c1 == total else c1 / loc.fps))
    return peaks, shown


def _chunk_maps(
    path: str | Path, loc: Localizer, c0: int, c1: int, total: int, size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Frames ``c0..c1`` of the clip ``(T, H, W, 3)``, their maps ``(T, h, w)`` and window levels (dBFS). The
    read reaches a margin past each end, so the maps near the chunk's edges see the same windows as anywhere
    else."""
    margin = loc.num_frames // 2 + 4  # frames: half a window plus the CNN's temporal reach
    r0, r1 = max(0, c0 - margin), min(total, c1 + margin)
    clip = read_clip(path, r0 / loc.fps, (r1 - r0) / loc.fps, fps=loc.fps, size=size, sample_rate=loc.sample_rate)
    frames = clip.video.permute(1, 2, 3, 0)  # (C, T, H, W) -> (T, H, W, C)
    audio = clip.audio[0]
    maps = loc.frame_maps(frames, audio)
    keep = slice(c0 - r0, c1 - r0)
    level = window_rms_dbfs(audio, frames.shape[0], loc.fps, loc.sample_rate, loc.num_frames)[keep]
    return frames[keep], maps[keep].clone(), level  # the maps: a copy of their own, as one cat of chunks was


def _frame_peaks(
    first: int, fps: float, small: torch.Tensor, big: torch.Tensor, silent: torch.Tensor
) -> list[FramePeak]:
    """The :class:`FramePeak` of frames ``first, first + 1, ...``: where the upsampled map ``big`` peaks (in
    pixels of the written video and in [0, 1]) and the raw map ``small``'s maximum and mean."""
    h, w = big.shape[1:]
    peaks = []
    for j in range(len(big)):
        time = round((first + j) / fps, 4)
        if silent[j]:
            peaks.append(FramePeak(time, True))
            continue
        y, x = divmod(int(big[j].argmax()), w)
        m = small[j]
        peaks.append(FramePeak(time, False, x, y, (x + 0.5) / w, (y + 0.5) / h, float(m.max()), float(m.mean())))
    return peaks


def localize_clip(path: str | Path, checkpoint: str | Path = DEFAULT_CHECKPOINT, **options) -> LocalizeResult:
    """Localizes the sound of a clip frame by frame; the files are rendered as the maps come (bounded memory
    for any length) into a temporary folder that lives as long as the result (``result.save(dir)`` keeps
    them). Arguments and errors as :func:`_localize_into`."""
    options["device"] = resolve_device(options.get("device"))
    folder = tempfile.TemporaryDirectory(prefix="avlearn-localize-")
    result = _localize_into(path, folder.name, checkpoint, **options)
    result._folder = folder  # removed when the result is
    return result


def localize(
    path: str | Path, out: str | Path, checkpoint: str | Path = DEFAULT_CHECKPOINT, *, report: bool = False, **options
) -> LocalizeResult:
    """Localizes the sound of a clip frame by frame into ``out``: ``heatmap.mp4``, ``grid.png``, ``peaks.json``.

    ``out`` is checked and locked before any work and the results move into it together at the end: an
    earlier run's results there are replaced, other files kept, and a failed run leaves it as it was
    (:func:`avlearn.io.staged_output`). Arguments (``size``: shorter side of the written video) and errors as
    :func:`_localize_into`, which writes into a folder directly. ``report``: also ``report.html``
    (:mod:`avlearn.report`).
    """
    options["device"] = resolve_device(options.get("device"))  # before --out is touched
    with staged_output(out, [path], OUTPUTS, "localize") as folder:
        result = _localize_into(path, folder, checkpoint, **options)
        if report:
            write_report("localize", folder)
    result.out = str(out)
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("clip", help="video file with audio")
    parser.add_argument("--out", required=True, help="folder for heatmap.mp4, grid.png and peaks.json")
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="auto",
        help="faces: which face is speaking, frame by frame; dense: a map over every place; auto (default): "
        "faces when a face is found, else dense",
    )
    parser.add_argument(
        "--checkpoint", default=str(DEFAULT_CHECKPOINT), help="the dense path's localize or sync checkpoint"
    )
    parser.add_argument(
        "--speaker-checkpoint",
        default=str(DEFAULT_SPEAKER_CHECKPOINT),
        help="the faces path's sync checkpoint (one that reads mouths)",
    )
    parser.add_argument(
        "--speaking-threshold",
        type=float,
        default=SPEAKING_THRESHOLD,
        help=f"sync score a face must reach to be judged speaking (default {SPEAKING_THRESHOLD:g})",
    )
    parser.add_argument("--size", type=int, default=224, help="shorter side of the written video (default 224)")
    parser.add_argument("--report", action="store_true", help=f"also write {REPORT}: the heat map video to watch")
    add_device_argument(parser)


def run(args: argparse.Namespace) -> int:
    # warnings: one line each (avlearn.cli)
    result = localize(
        args.clip,
        args.out,
        args.checkpoint,
        report=args.report,
        size=args.size,
        device=args.device,
        mode=args.mode,
        speaker_checkpoint=args.speaker_checkpoint,
        speaking_threshold=args.speaking_threshold,
    )
    if result.mode == "faces":
        faces = len(result.peaks[0].scores or []) if result.peaks else 0
        heard = Counter(p.face for p in result.peaks if p.face is not None)
        said = ", ".join(f"face {k} in {heard[k]}" for k in sorted(heard)) or "no one"
        how = f"active speaker among {faces} face(s): {said} of them"
    else:
        how = f"localized with {result.method}"
    print(
        f"{result.path}: {result.frames} frames at {result.fps:g} fps, {how} ({result.silent_frames} silent) "
        f"-> {result.out}/heatmap.mp4, grid.png, peaks.json" + (f", {REPORT}" if args.report else "")
    )
    return 0
