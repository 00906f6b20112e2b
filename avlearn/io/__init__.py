"""Media I/O: probe files, read aligned audio-visual windows, write wav/flac/mp4 atomically."""

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
from avlearn.io.write import write_audio, write_video

__all__ = [
    "ClipRangeError",
    "InvalidMediaError",
    "MediaError",
    "MediaNotFoundError",
    "MissingStreamError",
    "OutputError",
    "OverwriteInputError",
    "TruncatedMediaError",
    "TruncatedMediaWarning",
    "staged_output",
    "write_audio",
    "write_video",
]
from avlearn.io.probe import AudioInfo, MediaInfo, VideoInfo, probe  # noqa: E402
from avlearn.io.read import AVClip, read_audio, read_clip, read_frames  # noqa: E402

__all__ += ["AVClip", "AudioInfo", "MediaInfo", "VideoInfo", "probe", "read_audio", "read_clip", "read_frames"]
