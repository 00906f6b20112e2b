"""avlearn from Python: models by name, and each of the four jobs as one call that returns a result.

    import avlearn

    avlearn.list_models("avsync*")          # registered architectures (random weights: create_model)
    avlearn.list_models(pretrained=True)    # the checkpoints shipped with avlearn (load_model)
    net = avlearn.load_model("separate_speakers")

    result = avlearn.separate(avlearn.demo_clip("speakers"))   # or a file of your own, or a decoded AVClip
    result.voices                            # (speakers, samples) at result.sample_rate
    result.save("out/separate")              # the files `avlearn separate --out out/separate` writes

Each job takes a file path or an already decoded :class:`avlearn.io.AVClip` (``avlearn.io.read_clip``), a
checkpoint (a shipped name or a path; default: the shipped one, ``avlearn.pipelines.checkpoints.DEFAULTS``)
and ``device`` (``"auto"``: a CUDA GPU when there is one, in mixed precision; ``"cpu"``; ``"cuda"``). The
command line is a thin layer over the same functions (``avlearn.pipelines``).
"""

from __future__ import annotations

import fnmatch
import os
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from avlearn.io import AVClip
from avlearn.models import registry
from avlearn.models.weights import load_weights
from avlearn.pipelines import localize as _localize
from avlearn.pipelines import recognize as _recognize
from avlearn.pipelines import separate as _separate
from avlearn.pipelines import sync_offset as _sync
from avlearn.pipelines.checkpoints import DEFAULTS, resolve_checkpoint, resolve_device, shipped_checkpoints
from avlearn.pipelines.localize import LocalizeResult
from avlearn.pipelines.recognize import RecognizeResult
from avlearn.pipelines.separate import SeparationResult
from avlearn.pipelines.sync_offset import OffsetResult

__all__ = [
    "LocalizeResult",
    "OffsetResult",
    "RecognizeResult",
    "SeparationResult",
    "create_model",
    "list_models",
    "load_model",
    "localize",
    "recognize",
    "separate",
    "sync_offset",
]

Clip = str | os.PathLike | AVClip


def list_models(pattern: str = "*", *, pretrained: bool = False, interface: str | None = None) -> list[str]:
    """Names matching ``pattern`` (shell-style): the registered architectures, or with ``pretrained=True`` the
    checkpoints shipped with avlearn (``interface``, e.g. ``"video"`` or ``"sync"``, filters architectures)."""
    if pretrained:
        return [name for name in shipped_checkpoints() if fnmatch.fnmatch(name, pattern)]
    return registry.list_models(pattern, interface)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """A registered architecture with random weights (``kwargs`` go to its builder, e.g. ``num_classes``)."""
    return registry.create_model(name, **kwargs)


def load_model(name_or_path: str | os.PathLike, *, device: str | torch.device = "cpu") -> nn.Module:
    """A trained model in eval mode: a shipped checkpoint by name (``list_models(pretrained=True)``) or
    exported weights ``NAME``, ``NAME.safetensors`` or ``NAME.json`` (never unpickled).

    Raises:
        CheckpointError: a missing, damaged or foreign checkpoint.
        DeviceError: a device this machine does not have.
    """
    net, _ = load_weights(resolve_checkpoint(name_or_path))
    return net.to(resolve_device(device))


def sync_offset(
    clip: Clip,
    checkpoint: str | os.PathLike = DEFAULTS["sync"],
    *,
    device: str | torch.device = "auto",
    **options: Any,
) -> OffsetResult:
    """How far a clip's audio is out of sync with its picture (ms; positive: the audio is late).

    ``options``: ``hop``, ``max_frames``, ``shift_audio_ms``, ``batch_size`` of
    :func:`avlearn.pipelines.sync_offset.sync_offset`. ``result.save(dir)`` writes ``result.json``.
    """
    path, keep = _as_file(clip)
    result = _sync.sync_offset(path, resolve_checkpoint(checkpoint), device=device, **options)
    return _holding(result, keep)


def separate(
    clip: Clip,
    checkpoint: str | os.PathLike = DEFAULTS["separation"],
    *,
    boxes: list | None = None,
    device: str | torch.device = "auto",
) -> SeparationResult:
    """One voice per visible speaker: ``result.voices[k]`` goes with the face ``result.tracks[k]``.

    ``boxes``: per speaker one face box ``[x0, y0, x1, y1]`` (original pixels) or one per frame, instead of
    the face detector. ``result.save(dir)`` writes ``speaker_<k>.wav``, ``speaker_<k>.mp4``, ``result.json``.
    """
    path, keep = _as_file(clip)
    result = _separate.separate_clip(path, resolve_checkpoint(checkpoint), boxes=boxes, device=device)
    return _holding(result, keep)


def localize(
    clip: Clip,
    checkpoint: str | os.PathLike = DEFAULTS["localize"],
    *,
    size: int = 224,
    device: str | torch.device = "auto",
    mode: str = "auto",
    speaker_checkpoint: str | os.PathLike = DEFAULTS["sync"],
) -> LocalizeResult:
    """Where the sound comes from in each frame: ``result.peaks[t]`` (a ``localize`` checkpoint, or a ``sync``
    one for class activation maps). ``size``: shorter side of the heat-map video. ``result.save(dir)`` writes
    ``heatmap.mp4``, ``grid.png``, ``peaks.json``. ``mode``: ``faces`` (which face speaks: ``peaks[t].face``,
    judged by ``speaker_checkpoint``, a sync model that reads mouths), ``dense`` (a map over every place) or
    ``auto`` (faces when a face is found); ``result.mode`` says which ran."""
    path, keep = _as_file(clip)
    speaker = resolve_checkpoint(speaker_checkpoint)
    result = _localize.localize_clip(
        path, resolve_checkpoint(checkpoint), size=size, device=device, mode=mode, speaker_checkpoint=speaker
    )
    return _holding(result, keep)


def recognize(
    clip: Clip,
    checkpoint: str | os.PathLike = DEFAULTS["preview"],
    *,
    method: str = _recognize.DEFAULT_METHOD,
    steps: int = _recognize.DEFAULT_STEPS,
    top: int = 3,
    device: str | torch.device = "auto",
) -> RecognizeResult:
    """Which action an untrimmed clip shows, and when, looking at ``steps`` moments its audio preview chose
    (``method``: ``"skim-teacher"``, ``"skim"`` or ``"dense"``; see ``avlearn recognize --help``).
    ``result.label`` is the most likely action; ``result.save(dir)`` writes ``result.json``."""
    path, keep = _as_file(clip)
    doc = _recognize.recognize(path, resolve_checkpoint(checkpoint), method=method, steps=steps, top=top, device=device)
    return _holding(RecognizeResult.from_dict(doc), keep)


def _as_file(clip: Clip) -> tuple[str, tempfile.TemporaryDirectory | None]:
    """The pipelines stream from files (long clips in bounded memory): a decoded clip is written losslessly
    (RGB H.264 at qp 0 and float PCM in Matroska) into a temporary folder that lives as long as the result,
    since saving a result reads the clip again. Returns ``(path, folder or None)``."""
    if not isinstance(clip, AVClip):
        return str(clip), None
    if clip.video is None:
        raise ValueError("a decoded clip without video: read it with read_clip(..., video=True)")
    folder = tempfile.TemporaryDirectory(prefix="avlearn-clip-")
    path = Path(folder.name) / (Path(clip.path).stem + ".mkv")
    _write_lossless(path, clip)
    return str(path), folder


def _write_lossless(path: Path, clip: AVClip) -> None:
    import av

    rate = Fraction(clip.fps).limit_denominator(1001)
    frames = clip.video.permute(1, 2, 3, 0).numpy()  # (C, T, H, W) -> (T, H, W, C)
    with av.open(str(path), "w", format="matroska") as out:
        video = out.add_stream("libx264rgb", rate=rate)
        video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], "rgb24"
        video.options = {"qp": "0", "preset": "ultrafast"}
        audio = None
        if clip.audio is not None:
            audio = out.add_stream("pcm_f32le", rate=clip.sample_rate)
            audio.layout = {1: "mono", 2: "stereo"}.get(clip.audio.shape[0], f"{clip.audio.shape[0]}c")
        for i, frame in enumerate(frames):
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            picture.pts = i
            out.mux(video.encode(picture))
        out.mux(video.encode())
        if audio is not None:
            samples = clip.audio.numpy().astype(np.float32)
            for s in range(0, samples.shape[1], 4096):  # interleaved float frames of 4096 samples
                block = np.ascontiguousarray(samples[:, s : s + 4096].T).reshape(1, -1)
                sound = av.AudioFrame.from_ndarray(block, format="flt", layout=audio.layout.name)
                sound.sample_rate, sound.pts = clip.sample_rate, s
                out.mux(audio.encode(sound))
            out.mux(audio.encode())


def _holding(result, folder: tempfile.TemporaryDirectory | None):
    """``result``, keeping ``folder`` (a decoded clip written to a file) alive as long as it is."""
    if folder is not None:
        result._clip_folder = folder
    return result
