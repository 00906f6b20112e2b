"""A model for inference: built from its checkpoint, with the preprocessing its front-end takes, on a device.

A model that owns its front-end (fps, sample rate, STFT or log-mel settings) is the authority on them; the
checkpoint's ``preprocessing`` adds what belongs to the data (window, crop size, classes). The two must
agree: a checkpoint whose description says one rate while its model is built for another would be run on
misaligned inputs, so it is refused instead.

The shipped checkpoints are whatever ``assets/checkpoints`` holds (:func:`avlearn.asset_path`); the only list
of names is :data:`DEFAULTS`, the one each command uses without ``--checkpoint``.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from avlearn import asset_path
from avlearn.models.weights import CheckpointError, load_weights

# task -> the shipped checkpoint a command uses by default
DEFAULTS = {
    "sync": "sync_real",  # avlearn sync-offset (reads mouths), localize's and separate's speaker model
    "sync_frames": "sync_speakers",  # avlearn sync-offset on a scene without faces (reads the whole picture)
    "separation": "separate_real",  # avlearn separate: audio-only voices, each given to a face by `sync`
    "localize": "localize_instruments",  # avlearn localize
    "preview": "preview_actions",  # avlearn recognize
}
DEVICES = ("auto", "cpu", "cuda")  # --device choices; "cuda:N" is taken too


class DeviceError(ValueError):
    """A device that this machine does not have (``cuda`` without a CUDA GPU)."""


def shipped_checkpoints() -> list[str]:
    """Names of the checkpoints shipped with avlearn (``NAME.json`` + ``NAME.safetensors`` in assets)."""
    folder = asset_path("checkpoints")
    return sorted(p.stem for p in folder.glob("*.json") if p.with_suffix(".safetensors").is_file())


def shipped_checkpoint(name: str) -> Path:
    """The path (stem) of a shipped checkpoint, e.g. ``shipped_checkpoint("sync_speakers")``."""
    return asset_path("checkpoints", name)


def default_checkpoint(task: str) -> Path:
    """The shipped checkpoint a command uses for ``task`` when given none."""
    return shipped_checkpoint(DEFAULTS[task])


def resolve_checkpoint(name_or_path: str | os.PathLike) -> Path:
    """A shipped checkpoint's name (``"separate_speakers"``: a bare name, no folder or suffix) or a path to
    ``NAME``, ``NAME.safetensors`` or ``NAME.json`` (``./separate_speakers`` for a local one of that name).
    Anything else is left as a path, so the loader's message names the file."""
    if isinstance(name_or_path, str) and name_or_path in shipped_checkpoints():
        return shipped_checkpoint(name_or_path)
    return Path(name_or_path)


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None): the first CUDA GPU when there is one, else the CPU; ``"cpu"``, ``"cuda"``,
    ``"cuda:1"`` as given.

    Raises:
        DeviceError: a CUDA device asked for on a machine without one (or without that many).
    """
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise DeviceError(f"--device {device}: not a device; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {device}: this machine has no CUDA GPU (or torch was built without CUDA)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    elif dev.type != "cpu":
        raise DeviceError(f"--device {device}: only cpu and cuda are supported")
    return dev


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Mixed precision for inference on a GPU (bfloat16 where supported, else float16); none on the CPU,
    whose float32 results are the reference the GPU's are compared with."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def add_device_argument(parser) -> None:
    """``--device`` for an inference command."""
    parser.add_argument(
        "--device",
        default="auto",
        help="auto (default: a CUDA GPU when there is one, else the CPU), cpu, cuda or cuda:N; "
        "on a GPU the model runs in mixed precision",
    )


def load_model(
    checkpoint: str | os.PathLike, task: str, device: torch.device | str = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """``(model in eval mode on device, description)`` of a ``task`` checkpoint (a path, or a shipped
    checkpoint's name: :func:`resolve_checkpoint`); the description's ``preprocessing`` includes the model's
    front-end settings.

    Raises:
        CheckpointError: as :func:`avlearn.models.weights.load_weights`, or a description that disagrees
            with the model's front-end.
    """
    net, doc = load_weights(resolve_checkpoint(checkpoint), task=task)
    own = getattr(net, "preprocessing", {})
    pre = doc["preprocessing"]
    clash = [f"{k} {pre[k]} (its model takes {v})" for k, v in own.items() if pre.get(k, v) != v]
    if clash:
        raise CheckpointError(
            f"{checkpoint}: the checkpoint's description says {', '.join(clash)}; export it again, or give the "
            "model these settings in its model_args"
        )
    return net.to(device), {**doc, "preprocessing": {**pre, **own}}
