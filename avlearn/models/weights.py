"""Weights as data: a safetensors file of tensors plus a JSON file saying what they are.

``NAME.safetensors`` holds the state dict; ``NAME.json`` holds the registered model name and the keyword
arguments that build it, the task it was trained for, the preprocessing its inputs need (fps, frame size,
sample rate, window length, ...) and free-form metadata (metrics, training command). Loading builds the
model from the registry and fills it from safetensors: no pickle, so a checkpoint cannot run code.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from avlearn.io.write import atomic_path
from avlearn.models.registry import create_model

FORMAT_VERSION = 1

# What the inference pipelines read from ``preprocessing``, per task (localize reads a sync checkpoint's
# too). Checked when a checkpoint is loaded for a task, so a description lacking one is refused in one
# line naming the keys, not with a KeyError deep inside a pipeline.
REQUIRED_PREPROCESSING: dict[str, tuple[str, ...]] = {
    "sync": ("fps", "n_mels", "sample_rate", "size", "spec_hop_s", "window"),
    "localize": ("fps", "n_mels", "sample_rate", "size", "spec_hop_s", "window"),
    "separation": ("crop_size", "fps", "hop_length", "n_fft", "sample_rate", "window"),
    "preview": ("classes", "fps", "n_mels", "sample_rate", "size", "window"),
}

# Suffixes of files that are not exported weights: training checkpoints and other pickles.
_PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".pkl", ".bin")
_WHAT_IS_TAKEN = (
    "inference takes exported weights, NAME.safetensors + NAME.json, which `avlearn fit` writes into "
    "its run folder as weights/last and weights/best (pass e.g. --checkpoint runs/.../version_0/weights/best)"
)


class CheckpointError(ValueError):
    """A checkpoint is missing, damaged, or holds a different model than the one asked for."""


def _paths(path: str | os.PathLike) -> tuple[Path, Path]:
    p = Path(path)
    stem = p.with_suffix("") if p.suffix in (".safetensors", ".json") else p
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


def save_weights(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    model_name: str,
    model_args: dict[str, Any] | None = None,
    task: str,
    preprocessing: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
    dtype: torch.dtype | None = None,
    components: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """Writes ``path.safetensors`` and ``path.json`` atomically.

    Args:
        path: destination stem (``.safetensors``/``.json`` suffixes are added or replaced).
        model: the module whose ``state_dict`` is saved.
        model_name: its registered name (``create_model(model_name, **model_args)`` rebuilds it).
        model_args: keyword arguments of the builder (JSON-serializable).
        task: what it was trained for (``sync``, ``separation``, ...); loaders check it.
        preprocessing: what inputs must look like (JSON-serializable).
        meta: anything else worth keeping (metrics, recipe, steps).
        dtype: store floating-point tensors in this type (``torch.float16`` halves a shipped checkpoint;
            loading casts them back to the model's type); a tensor it cannot hold (a batch norm's running
            variance past float16's 65504) is stored as it is.
        components: parts that load on their own (see :func:`load_component`).

    Returns:
        The ``.safetensors`` path.
    """
    weights, info = _paths(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if dtype is not None:
        state = {k: _narrowed(v, dtype) for k, v in state.items()}
    doc = {
        "format": "avlearn-weights",
        "format_version": FORMAT_VERSION,
        "model": model_name,
        "model_args": model_args or {},
        "task": task,
        "preprocessing": preprocessing or {},
        "meta": meta or {},
    }
    if components:
        doc["components"] = components
    with atomic_path(weights) as tmp:
        save_file(state, str(tmp), metadata={"model": model_name, "task": task})
    with atomic_path(info) as tmp:
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return weights


def _check_named(path: str | os.PathLike) -> None:
    """Refuses, naming the file the user gave, what is not an exported checkpoint: a pickled training
    checkpoint (never unpickled: a pickle can run code) or a folder."""
    p = Path(path)
    if p.suffix.lower() in _PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{p}: a {p.suffix} file is a training checkpoint or another pickle, which avlearn never loads for "
            f"inference (unpickling runs code); {_WHAT_IS_TAKEN}"
        )
    if p.is_dir():
        runs = sorted(p.glob("**/weights/*.safetensors"))
        hint = f" (it holds the exported {runs[-1].with_suffix('')})" if runs else ""
        raise CheckpointError(f"{p}: is a folder, not a checkpoint{hint}; {_WHAT_IS_TAKEN}")


def read_weights_info(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON description of a checkpoint.

    Raises:
        CheckpointError: missing or unreadable files, a pickle or a folder instead of exported weights, or a
            JSON that is not an avlearn checkpoint.
    """
    _check_named(path)
    weights, info = _paths(path)
    for p in (weights, info):
        if not p.is_file():
            given = Path(path)
            named = "" if given in (weights, info) else f" (looked for it because {given} was given)"
            raise CheckpointError(f"{p}: checkpoint file not found{named}; {_WHAT_IS_TAKEN}")
    try:
        doc = json.loads(info.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{info}: not a readable checkpoint description ({err})") from None
    if not isinstance(doc, dict) or doc.get("format") != "avlearn-weights":
        raise CheckpointError(f'{info}: not an avlearn checkpoint description (no "format": "avlearn-weights")')
    missing = [key for key in ("model",) if key not in doc]
    if missing:
        raise CheckpointError(f"{info}: the checkpoint description lacks {', '.join(missing)}; export it again")
    version = doc.get("format_version", 1)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{info}: written in checkpoint format {version!r}, this avlearn reads format {FORMAT_VERSION} "
            "and older; upgrade avlearn"
        )
    return doc


def _narrowed(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``tensor`` in ``dtype`` when it is floating point and every value stays finite there, else unchanged."""
    if not tensor.is_floating_point():
        return tensor
    narrow = tensor.to(dtype)
    return narrow if torch.isfinite(narrow).all() or not torch.isfinite(tensor).all() else tensor


def load_weights(
    path: str | os.PathLike,
    *,
    task: str | None = None,
    require: tuple[str, ...] | list[str] = (),
    map_location: str | torch.device = "cpu",
) -> tuple[nn.Module, dict[str, Any]]:
    """Builds the registered model a checkpoint describes and loads its tensors (strictly).

    Args:
        path: ``NAME``, ``NAME.safetensors`` or ``NAME.json``.
        task: the task the caller needs (``sync``, ...); a checkpoint trained for another task is refused, and
            one whose ``preprocessing`` lacks a key of ``REQUIRED_PREPROCESSING[task]``.
        require: further ``preprocessing`` keys the caller reads.
        map_location: device for the tensors.

    Returns:
        ``(model in eval mode, description dict)``.

    Raises:
        CheckpointError: missing/damaged files, another task's checkpoint, a description lacking preprocessing
            keys, or tensors that do not fit the model.
    """
    weights, info = _paths(path)
    doc = read_weights_info(path)
    if task is not None and doc.get("task") != task:
        raise CheckpointError(
            f"{weights}: this checkpoint holds a {doc.get('task')!r} model ({doc['model']}), "
            f"but a {task!r} checkpoint is needed here"
        )
    pre = doc.get("preprocessing")
    needed = [*REQUIRED_PREPROCESSING.get(task or "", ()), *require]
    missing = sorted({k for k in needed if not isinstance(pre, dict) or k not in pre})
    if missing:
        raise CheckpointError(
            f"{info}: the checkpoint description lacks the preprocessing entries {', '.join(missing)}, which "
            f"the {task or 'caller'} pipeline needs; re-export it with a current `avlearn fit`, or add them to the "
            '"preprocessing" object of the JSON'
        )
    try:
        model = create_model(doc["model"], **doc.get("model_args", {}))
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{weights}: cannot build model {doc['model']!r}: {err}") from None
    _fill(model, _read_tensors(weights, map_location), f"{weights}: the tensors do not fit model {doc['model']!r}")
    return model.eval(), doc


def _read_tensors(weights: Path, map_location: str | torch.device) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(weights), device=str(map_location))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{weights}: damaged safetensors file ({err})") from None


def _fill(model: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Loads ``state`` strictly; missing, unexpected or differently shaped tensors are one line after ``what``."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        detail = " ".join(str(err).split())[:400]
        raise CheckpointError(f"{what}: {detail}") from None


def weights_sha256(path: str | os.PathLike) -> str:
    """sha256 of a checkpoint's tensors file (what a run records about the weights it started from)."""
    weights, _ = _paths(path)
    digest = hashlib.sha256()
    with open(weights, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_component(
    path: str | os.PathLike, name: str, map_location: str | torch.device = "cpu", **expect: Any
) -> tuple[nn.Module, dict[str, Any]]:
    """One part of a checkpoint (the ``video`` or ``audio`` encoder of a sync model), ready to use on its own.

    A checkpoint lists its parts under ``components``: ``{name: {"model", "args", "prefix"}}``, the registered
    encoder, the arguments that build it (front-end included) and where its tensors sit in the state dict.

    Args:
        path: ``NAME``, ``NAME.safetensors`` or ``NAME.json``.
        name: the component (``"video"``, ``"audio"``).
        map_location: device for the tensors.
        **expect: front-end settings the caller will feed (``fps=25``, ``sample_rate=16000``, ``size=64``...);
            a component whose front-end differs is refused, since it would see inputs unlike its training.

    Returns:
        ``(encoder in eval mode, its entry of components)``.

    Raises:
        CheckpointError: no such component, a front-end that does not fit ``expect``, or damaged tensors.
    """
    weights, info = _paths(path)
    doc = read_weights_info(path)
    parts = doc.get("components") or {}
    if name not in parts:
        have = ", ".join(sorted(parts)) or "none (it predates components; re-export it with a current avlearn fit)"
        raise CheckpointError(f"{info}: the checkpoint has no {name!r} component; it has {have}")
    part = parts[name]
    try:
        model = create_model(part["model"], **part.get("args", {}))
    except (ValueError, TypeError, KeyError) as err:
        raise CheckpointError(f"{info}: cannot build component {name!r}: {err}") from None
    have = getattr(model, "preprocessing", {})
    wrong = [f"{k}={have[k]} (asked {v})" for k, v in expect.items() if k in have and have[k] != v]
    unknown = sorted(k for k in expect if k not in have)
    if wrong or unknown:
        why = f"its front-end takes {', '.join(wrong)}" if wrong else f"its front-end has no {', '.join(unknown)}"
        raise CheckpointError(f"{weights}: component {name!r} does not fit: {why}")
    prefix = part["prefix"]
    state = _read_tensors(weights, map_location)
    own = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    _fill(model, own, f"{weights}: the {name!r} tensors do not fit {part['model']!r}")
    return model.eval(), part
