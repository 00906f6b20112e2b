"""avlearn: audio-visual learning in PyTorch.

Layers, each importing only from those before it: ``io`` -> ``audio``/``video`` -> ``data`` -> ``models``
-> ``metrics``/``losses`` -> ``tasks`` -> ``pipelines`` -> ``cli``. See README.md.

The Python API (``avlearn.separate``, ``avlearn.load_model``, ...: :mod:`avlearn.api`) is imported on first
use, so ``import avlearn`` costs no torch and the command line starts quickly.

    >>> import avlearn
    >>> result = avlearn.separate(avlearn.demo_clip("speakers"))
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__version__ = "0.1.0"

# The clips `make demo` and the README's examples run on, one per world (assets/demo/README.md).
DEMO_CLIPS = {
    "speakers": "demo/speakers/test/000001.mp4",  # two speakers talking at once
    "instruments": "demo/instruments/test/000000.mp4",  # a sounding timpani beside a silent glockenspiel
    "actions": "demo/actions/test/000000.mp4",  # 20 s untrimmed, chopping twice
}

_API = (
    "create_model",
    "list_models",
    "load_model",
    "sync_offset",
    "separate",
    "localize",
    "recognize",
    "OffsetResult",
    "SeparationResult",
    "LocalizeResult",
    "RecognizeResult",
)
__all__ = ["__version__", "DEMO_CLIPS", "asset_path", "demo_clip", *_API]


def asset_path(*parts: str) -> Path:
    """A file shipped with avlearn: ``asset_path("checkpoints", "sync_speakers.json")``.

    The repository's ``assets/`` folder is the one source: in a clone ``avlearn/assets`` links to it, and a
    built wheel holds a copy of it inside the package, so the same lookup works editable and installed.
    """
    return Path(str(resources.files(__name__).joinpath("assets", *parts)))


def demo_clip(world: str = "speakers") -> Path:
    """The shipped demo clip of a world: ``"speakers"``, ``"instruments"`` or ``"actions"``."""
    if world not in DEMO_CLIPS:
        raise ValueError(f"no demo clip for {world!r}; there is one for {', '.join(DEMO_CLIPS)}")
    return asset_path(*DEMO_CLIPS[world].split("/"))


def __getattr__(name: str):
    if name in _API:
        from avlearn import api

        return getattr(api, name)
    raise AttributeError(f"module 'avlearn' has no attribute {name!r}")
