"""What a media file holds: streams, durations, frame rate (and whether it varies), rotation, codecs."""

from __future__ import annotations

import functools
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np

from avlearn.io.errors import InvalidMediaError, MediaNotFoundError

# A frame interval this much longer or shorter than the median one makes the rate "variable".
_VFR_TOLERANCE = 0.25
_VFR_PACKETS = 600


@dataclass(frozen=True)
class VideoInfo:
    """The first video stream.

    ``width``/``height`` are as stored; ``rotation`` (0, 90, 180, 270) is how far the stored picture turns
    clockwise to display upright, which avlearn's readers apply, so ``display_size`` is what they return.
    """

    codec: str
    width: int
    height: int
    fps: float
    variable_fps: bool
    rotation: int
    num_frames: int | None
    start: float
    duration: float | None

    @property
    def display_size(self) -> tuple[int, int]:
        """``(height, width)`` after rotation."""
        return (self.width, self.height) if self.rotation in (90, 270) else (self.height, self.width)


@dataclass(frozen=True)
class AudioInfo:
    """The first audio stream."""

    codec: str
    sample_rate: int
    channels: int
    start: float
    duration: float | None


@dataclass(frozen=True)
class MediaInfo:
    """A probed file; a stream the file lacks is ``None``."""

    path: str
    format: str
    duration: float
    video: VideoInfo | None
    audio: AudioInfo | None

    def to_dict(self) -> dict:
        return asdict(self)


def open_media(path: str | os.PathLike) -> av.container.InputContainer:
    """Opens a media file for reading, turning every way it can fail into a MediaError.

    Raises:
        MediaNotFoundError: missing path or a directory.
        InvalidMediaError: empty file, not a media file, or an mp4 cut off before its index was written.
    """
    p = Path(path)
    if not p.exists():
        raise MediaNotFoundError(p, "no such file; check the path")
    if p.is_dir():
        raise MediaNotFoundError(p, "is a directory, not a media file; pass a file such as clip.mp4")
    if p.stat().st_size == 0:
        raise InvalidMediaError(p, "the file is empty (0 bytes); it was probably not written completely")
    try:
        container = av.open(str(p), metadata_errors="ignore")
    except av.FFmpegError as err:
        raise InvalidMediaError(
            p,
            f"not a readable media file ({err.strerror}); if it is an mp4 that was cut off while being written, "
            "its index is missing and it cannot be recovered",
        ) from None
    if not container.streams.video and not container.streams.audio:
        container.close()
        raise InvalidMediaError(p, "the file holds no audio or video stream")
    return container


def _seconds(value: int | None, time_base) -> float | None:
    return None if value is None or time_base is None else float(value * time_base)


def _rotation(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> int:
    # The display matrix reaches PyAV on decoded frames; one decoded frame costs milliseconds.
    try:
        frame = next(container.decode(stream))
    except (StopIteration, av.FFmpegError):
        return 0
    finally:
        container.seek(0)
    # PyAV reports the display matrix angle counter-clockwise; avlearn states the clockwise turn to apply.
    return int(round(-(frame.rotation or 0) / 90.0)) % 4 * 90


def _frame_intervals(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> np.ndarray:
    times = []
    for packet in container.demux(stream):
        ts = packet.pts if packet.pts is not None else packet.dts
        if ts is not None:
            times.append(ts)
        if len(times) >= _VFR_PACKETS:
            break
    container.seek(0)
    return np.diff(np.unique(times)).astype(np.float64) * float(stream.time_base)


def probe(path: str | os.PathLike) -> MediaInfo:
    """Describes a media file without decoding more than one frame.

    Results are cached per (path, size, modification time), so readers that probe before every window
    (datasets reading many windows of one file) pay for it once.

    Args:
        path: any file FFmpeg reads (mp4, webm, avi, mkv, wav, ogg, ...).

    Returns:
        A MediaInfo; ``video``/``audio`` is ``None`` where the file has no such stream.

    Raises:
        MediaNotFoundError, InvalidMediaError: see ``open_media``.
    """
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        st = None
    if st is None or p.is_dir():
        open_media(p)  # raises the right MediaError
    return _probe(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _probe(path: str, size: int, mtime_ns: int) -> MediaInfo:
    with open_media(path) as container:
        video = audio = None
        ends = []
        if container.streams.video:
            vs = container.streams.video[0]
            start = _seconds(vs.start_time, vs.time_base) or 0.0
            duration = _seconds(vs.duration, vs.time_base)
            intervals = _frame_intervals(container, vs)
            variable = bool(
                len(intervals) > 1
                and np.abs(intervals - np.median(intervals)).max() > _VFR_TOLERANCE * np.median(intervals)
            )
            # A constant rate is best read off the frame interval; the container's average rate divides by
            # a duration that may leave out the last frame's.
            fps = float(vs.average_rate or vs.guessed_rate or 0.0)
            if len(intervals) and (not variable or not fps):
                fps = 1.0 / float(np.median(intervals) if not variable else np.mean(intervals))
            video = VideoInfo(
                codec=vs.codec_context.name,
                width=vs.codec_context.width,
                height=vs.codec_context.height,
                fps=fps,
                variable_fps=variable,
                rotation=_rotation(container, vs),
                num_frames=vs.frames or None,
                start=start,
                duration=duration,
            )
            if duration:
                ends.append(start + duration)
        if container.streams.audio:
            as_ = container.streams.audio[0]
            start = _seconds(as_.start_time, as_.time_base) or 0.0
            duration = _seconds(as_.duration, as_.time_base)
            audio = AudioInfo(
                codec=as_.codec_context.name,
                sample_rate=as_.codec_context.sample_rate,
                channels=as_.codec_context.channels,
                start=start,
                duration=duration,
            )
            if duration:
                ends.append(start + duration)
        total = max(ends) if ends else (container.duration or 0) / av.time_base
        return MediaInfo(path=str(path), format=container.format.name, duration=float(total), video=video, audio=audio)
