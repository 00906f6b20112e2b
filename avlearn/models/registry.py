"""A small model registry: one builder per named variant, ``create_model(name, **kwargs)`` as the entry point.

Each builder is registered with the input it expects by default (without the batch dimension), so one
parametrized test, the summary tool and the model table can run every model without knowing it::

    @register_model(input_size=(3, 16, 112, 112))
    def c3d(num_classes: int = 487) -> C3D:
        return C3D(num_classes=num_classes)

``input_size`` is a tuple for models taking one tensor, or a dict ``{modality: tuple}`` for models taking a
dict of tensors (the fusion models).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatch

import torch
from torch import nn

InputSize = tuple[int, ...] | dict[str, tuple[int, ...]]


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about one named variant."""

    name: str
    builder: Callable[..., nn.Module]
    input_size: InputSize
    doc: str
    interface: str = "encoder"


_REGISTRY: dict[str, ModelInfo] = {}
# Model files built on torchvision, which takes about a second to import (it pulls in torch._dynamo): they
# register their builders when a name is first looked up that is not registered yet, so an inference command
# whose model needs none of them starts that much sooner.
DEFERRED = ("avlearn.models.inflate", "avlearn.models.nonlocal_block", "avlearn.models.tv_video")


def _import_deferred() -> None:
    for module in DEFERRED:
        importlib.import_module(module)


def register_model(
    *, input_size: InputSize, interface: str = "encoder"
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a model builder under its function name.

    Args:
        input_size: the default input of the model without batch dimension, e.g. ``(3, 16, 112, 112)`` for a
            video model or ``{"video": (3, 8, 32, 32), "spec": (1, 64, 32)}`` for a fusion model.
        interface: ``"encoder"`` for models following :class:`~avlearn.models.layers.Encoder` (classifiers,
            encoders, fusion); another name (``"separator"``, ...) for task networks with their own outputs.

    Returns:
        A decorator that registers the builder and returns it unchanged.

    Raises:
        ValueError: if a model of the same name is already registered.
    """

    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = builder.__name__
        if name in _REGISTRY:
            raise ValueError(
                f"model {name!r} is already registered (by {_REGISTRY[name].builder.__module__}); pick another name"
            )
        doc = (builder.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = ModelInfo(name, builder, input_size, doc[0] if doc else "", interface)
        return builder

    return decorator


def list_models(pattern: str = "*", interface: str | None = None) -> list[str]:
    """Names of the registered models matching a shell-style ``pattern`` (e.g. ``"*_tiny"``) and, if given,
    an ``interface`` (``"encoder"``, ``"separator"``, ...), sorted."""
    _import_deferred()
    return sorted(
        name
        for name, info in _REGISTRY.items()
        if fnmatch(name, pattern) and (interface is None or info.interface == interface)
    )


def get_model_info(name: str) -> ModelInfo:
    """The registry entry of ``name``.

    Raises:
        ValueError: if no model of that name is registered.
    """
    if name not in _REGISTRY:
        _import_deferred()
    if name not in _REGISTRY:
        close = [n for n in _REGISTRY if name.split("_")[0] in n][:8]
        hint = f"; similar: {', '.join(close)}" if close else ""
        raise ValueError(f"unknown model {name!r}{hint}; see avlearn.models.list_models() for all choices")
    return _REGISTRY[name]


def create_model(name: str, **kwargs) -> nn.Module:
    """Build the registered model ``name``, passing ``kwargs`` to its builder.

    Raises:
        ValueError: if no model of that name is registered.
    """
    return get_model_info(name).builder(**kwargs)


def example_input(name: str, batch_size: int = 2, generator: torch.Generator | None = None) -> torch.Tensor | dict:
    """A random input of the model's default size with a leading batch dimension."""
    size = get_model_info(name).input_size
    if isinstance(size, dict):
        return {k: torch.randn(batch_size, *s, generator=generator) for k, s in size.items()}
    return torch.randn(batch_size, *size, generator=generator)
