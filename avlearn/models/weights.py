"""Weights as data: a safetensors file of tensors plus a JSON file saying what they are.

``NAME.safetensors`` holds the state dict; ``NAME.json`` holds the registered model name and the keyword
arguments that build it, the task it was trained for, the preprocessing its inputs need (fps, frame size,
sample rate, window length, ...) and free-form metadata (metrics, training command). Loading builds the
model from the registry and fills it from safetensors: no pickle, so a checkpoint cannot run code.
"""

from __future__ import annotations

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
            loading casts them back to the model's type).

    Returns:
        The ``.safetensors`` path.
    """
    weights, info = _paths(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    doc = {
        "format": "avlearn-weights",
        "format_version": FORMAT_VERSION,
        "model": model_name,
        "model_args": model_args or {},
        "task": task,
        "preprocessing": preprocessing or {},
        "meta": meta or {},
    }
    with atomic_path(weights) as tmp:
        save_file(state, str(tmp), metadata={"model": model_name, "task": task})
    with atomic_path(info) as tmp:
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return weights


def read_weights_info(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON description of a checkpoint.

    Raises:
        CheckpointError: missing or unreadable files, or a JSON that is not an avlearn checkpoint.
    """
    weights, info = _paths(path)
    for p in (weights, info):
        if not p.is_file():
            raise CheckpointError(f"{p}: checkpoint file not found (a checkpoint is NAME.safetensors + NAME.json)")
    try:
        doc = json.loads(info.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{info}: not a readable checkpoint description ({err})") from None
    if not isinstance(doc, dict) or doc.get("format") != "avlearn-weights" or "model" not in doc:
        raise CheckpointError(f"{info}: not an avlearn checkpoint description")
    return doc


def load_weights(
    path: str | os.PathLike, *, task: str | None = None, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Builds the registered model a checkpoint describes and loads its tensors (strictly).

    Args:
        path: ``NAME``, ``NAME.safetensors`` or ``NAME.json``.
        task: the task the caller needs (``sync``, ...); a checkpoint trained for another task is refused.
        map_location: device for the tensors.

    Returns:
        ``(model in eval mode, description dict)``.

    Raises:
        CheckpointError: missing/damaged files, another task's checkpoint, or tensors that do not fit the model.
    """
    weights, _ = _paths(path)
    doc = read_weights_info(path)
    if task is not None and doc.get("task") != task:
        raise CheckpointError(
            f"{weights}: this checkpoint holds a {doc.get('task')!r} model ({doc['model']}), "
            f"but a {task!r} checkpoint is needed here"
        )
    try:
        model = create_model(doc["model"], **doc.get("model_args", {}))
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{weights}: cannot build model {doc['model']!r}: {err}") from None
    try:
        state = load_file(str(weights), device=str(map_location))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{weights}: damaged safetensors file ({err})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:  # missing, unexpected or differently shaped tensors
        detail = " ".join(str(err).split())[:400]
        raise CheckpointError(f"{weights}: the tensors do not fit model {doc['model']!r}: {detail}") from None
    return model.eval(), doc
