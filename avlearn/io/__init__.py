"""Media I/O: probe files, read aligned audio-visual windows, write wav/flac/mp4 atomically.

Probing and the errors need PyAV only; reading and writing return and take torch tensors. Those names are
imported on first use (PEP 562), so ``avlearn probe`` answers without paying for ``import torch`` (seconds).
"""

import importlib

from avlearn.io.errors import (
    ClipRangeError,
    InvalidMediaError,
    MediaError,
    MediaNotFoundError,
    MissingStreamError,
    OverwriteInputError,
    TruncatedMediaError,
    TruncatedMediaWarning,
)
from avlearn.io.outdir import OutputError, staged_output
from avlearn.io.probe import AudioInfo, MediaInfo, VideoInfo, probe

# name -> the torch-based module that defines it, imported when the name is first used
_LAZY = {
    "AVClip": "avlearn.io.read",
    "read_audio": "avlearn.io.read",
    "read_clip": "avlearn.io.read",
    "read_frames": "avlearn.io.read",
    "write_audio": "avlearn.io.write",
    "write_video": "avlearn.io.write",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AVClip",
    "AudioInfo",
    "ClipRangeError",
    "InvalidMediaError",
    "MediaError",
    "MediaInfo",
    "MediaNotFoundError",
    "MissingStreamError",
    "OutputError",
    "OverwriteInputError",
    "TruncatedMediaError",
    "TruncatedMediaWarning",
    "VideoInfo",
    "probe",
    "read_audio",
    "read_clip",
    "read_frames",
    "staged_output",
    "write_audio",
    "write_video",
]
