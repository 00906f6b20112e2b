"""One exception family for bad media: every message names the file and says what to do."""

from __future__ import annotations

import os


class MediaError(Exception):
    """Base of every error avlearn raises for a media file it cannot use.

    Attributes:
        path: the file concerned.
        reason: what was wrong, in words a user can act on.
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class MediaNotFoundError(MediaError, FileNotFoundError):
    """The path does not exist or is not a regular file."""


class InvalidMediaError(MediaError):
    """The file exists but is empty, not a media file, or cannot be decoded at all."""


class MissingStreamError(MediaError):
    """The file has no stream of the kind asked for (no audio, or no video)."""


class ClipRangeError(MediaError, ValueError):
    """The requested window is impossible: non-positive duration, or a start past the end."""


class TruncatedMediaError(MediaError):
    """The file is cut off and nothing of the requested window could be decoded."""


class OverwriteInputError(MediaError):
    """A write would replace a file that is being read (an input of the same job)."""


class TruncatedMediaWarning(UserWarning):
    """The file is cut off: the readable part was decoded and the rest of the window padded."""
