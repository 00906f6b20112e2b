"""What a media file holds: streams, durations, frame rate (and whether it varies), rotation, codecs.

Durations are those a reader can actually decode: a container that states none per stream (Matroska,
WebM, raw H.264/AAC) is measured from its last packets, and one whose packets stop well before the
duration it announces (a file cut off with its index intact) is reported as truncated, with the
readable duration.

Times are file time: seconds from the container's origin, which is 0 in every container except MPEG-TS.
A transport stream carries a running 90 kHz clock with no meaningful zero (FFmpeg's muxer starts it at
1.4 s, a broadcast anywhere in its 26.5-hour cycle), so its origin is its first picture (see
``time_origin``); ``MediaInfo.origin`` says where that lies on the stream clock.
"""

from __future__ import annotations

import errno
import functools
import os
import stat
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np

from avlearn.io.errors import InvalidMediaError, MediaNotFoundError

# A frame interval this much longer or shorter than the median one makes the rate "variable".
_VFR_TOLERANCE = 0.25
_VFR_PACKETS = 600
# Packets are read from this far before the announced end to find where each stream really ends.
_TAIL_SECONDS = 3.0
# A stream whose packets stop more than this before the announced end is cut off.
_TRUNCATION_TOLERANCE = 0.25
# Containers whose timestamps count from an arbitrary clock value: their origin is their first picture.
_CLOCK_FORMATS = {"mpegts"}
# Sound this much ahead of the first picture is more than an encoder's priming: it is kept (counted from).
_PRIMING_MAX = 0.25


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
    duration: float | None  # from ``start``; measured from the packets where the container gives none

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
    duration: float | None  # from ``start``; measured from the packets where the container gives none


@dataclass(frozen=True)
class MediaInfo:
    """A probed file; a stream the file lacks is ``None``.

    ``duration`` is the file time where the last readable stream ends. ``truncated`` says the packets stop
    well before the duration the file announces (``announced_duration``): the file was cut off, and only
    ``duration`` seconds of it can be read. ``origin`` is the stream-clock time (seconds) of file time 0:
    readers add it to seek and subtract it from every timestamp (nonzero only for MPEG-TS).
    """

    path: str
    format: str
    duration: float
    video: VideoInfo | None
    audio: AudioInfo | None
    truncated: bool = False
    announced_duration: float | None = None
    origin: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def open_media(path: str | os.PathLike) -> av.container.InputContainer:
    """Opens a media file for reading, turning every way it can fail into a MediaError.

    Raises:
        MediaNotFoundError: missing path or a directory.
        InvalidMediaError: empty file, not a media file, or an mp4 cut off before its index was written.
    """
    p = Path(path)
    try:
        st = os.stat(p)
    except OSError as err:
        if err.errno == errno.ENAMETOOLONG:
            raise MediaNotFoundError(
                p, "the name is too long for the file system; rename the file (or a folder on its path) shorter"
            ) from None
        if err.errno in (errno.ENOENT, errno.ENOTDIR):
            raise MediaNotFoundError(p, "no such file; check the path") from None
        raise MediaNotFoundError(
            p, f"cannot be looked up ({err.strerror}); check the path and its permissions"
        ) from None
    if stat.S_ISDIR(st.st_mode):
        raise MediaNotFoundError(p, "is a directory, not a media file; pass a file such as clip.mp4")
    if not stat.S_ISREG(st.st_mode):
        raise MediaNotFoundError(
            p, "is not a regular file (a pipe, socket or device); save the stream to a file and pass that"
        )
    if st.st_size == 0:
        raise InvalidMediaError(p, "the file is empty (0 bytes); it was probably not written completely")
    if not os.access(p, os.R_OK):
        raise InvalidMediaError(p, "cannot be read (permission denied); check the file's permissions")
    try:
        container = av.open(str(p), metadata_errors="ignore")
    except av.FFmpegError as err:
        raise InvalidMediaError(
            p,
            f"not a readable media file ({err.strerror}); if it is an mp4 that was cut off while being written, "
            "its index is missing and it cannot be recovered",
        ) from None
    if first_stream(container, "video") is None and first_stream(container, "audio") is None:
        container.close()
        raise InvalidMediaError(p, "the file holds no audio or video stream")
    return container


def first_stream(container: av.container.InputContainer, kind: str) -> av.stream.Stream | None:
    """The stream of ``kind`` (``video``/``audio``) avlearn reads: the first one, leaving out cover art (an
    mp3's or m4a's attached picture is a one-frame "video" stream, not a picture track), or None."""
    for stream in getattr(container.streams, kind):
        if not (kind == "video" and stream.disposition & av.stream.Disposition.attached_pic):
            return stream
    return None


def time_origin(container: av.container.InputContainer) -> float:
    """Seconds on the stream clock that are file time 0: in an MPEG-TS its first picture, else 0.

    Sound that a transport stream holds before its first picture is the audio encoder's priming (1024
    AAC samples: 64 ms at 16 kHz), which an mp4 hides with an edit list and a TS cannot mark: counting
    from the first picture drops it, so a TS reads exactly as the mp4 it was made from (frame ``k`` at
    ``k / fps``, the sound in step). Sound starting more than ``_PRIMING_MAX`` ahead is real and counts
    from its start instead (the picture then starts late, padded like MPEG-PS's); a TS without pictures
    counts from its first sound. The streams' own (90 kHz) start times are used, not the container's
    rounded microseconds."""
    if container.format.name not in _CLOCK_FORMATS:
        return 0.0
    starts = [
        float(s.start_time * s.time_base)
        for s in (first_stream(container, "video"), first_stream(container, "audio"))
        if s is not None and s.start_time is not None
    ]
    if not starts:
        return container.start_time / av.time_base if container.start_time is not None else 0.0
    return starts[0] if min(starts) >= starts[0] - _PRIMING_MAX else min(starts)


def _seconds(value: int | None, time_base) -> float | None:
    return None if value is None or time_base is None else float(value * time_base)


def _rotation(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> int:
    # The display matrix reaches PyAV on decoded frames; one decoded frame costs milliseconds. The
    # container is not rewound (raw streams cannot seek): it is not read again.
    try:
        frame = next(container.decode(stream))
    except (StopIteration, av.FFmpegError):
        return 0
    # PyAV reports the display matrix angle counter-clockwise; avlearn states the clockwise turn to apply.
    return int(round(-(frame.rotation or 0) / 90.0)) % 4 * 90


@dataclass
class _Track:
    """What the packets of one stream say: first video timestamps (for the frame rate) and where it ends."""

    times: list[int]
    end: float | None = None  # seconds, end of the last packet seen
    summed: float = 0.0  # seconds, sum of packet durations (raw streams carry no timestamps)

    def add(self, packet: av.Packet, time_base: float, keep_times: bool) -> None:
        if not packet.size:  # a flush packet at the end of the file
            return
        ts = packet.pts if packet.pts is not None else packet.dts
        length = (packet.duration or 0) * time_base
        self.summed += length
        if ts is not None:
            if keep_times and len(self.times) < _VFR_PACKETS:
                self.times.append(ts)
            t = ts * time_base + length
            self.end = t if self.end is None else max(self.end, t)


def _scan(path: str, streams: list[av.stream.Stream], tail_from: float | None) -> dict[int, _Track]:
    """Reads packets (never decodes): the first video timestamps, then the tail from ``tail_from`` seconds.

    Without ``tail_from`` (no announced duration) or where the file cannot seek (raw streams), every packet
    is read: the only way to know where such a stream ends.
    """
    tracks = {s.index: _Track([]) for s in streams}
    video = next((s.index for s in streams if s.type == "video"), None)
    with open_media(path) as container:
        wanted = [container.streams[i] for i in tracks]
        bases = {s.index: float(s.time_base) for s in wanted}
        packets = container.demux(wanted)
        for packet in packets:
            if packet.stream.index in tracks:
                tracks[packet.stream.index].add(packet, bases[packet.stream.index], packet.stream.index == video)
            if tail_from is not None and (video is None or len(tracks[video].times) >= _VFR_PACKETS):
                break
        else:
            return tracks  # read to the end
        try:
            container.seek(max(0, int(tail_from * av.time_base)), backward=True)
        except av.FFmpegError:
            return _scan(path, streams, None)
        for packet in container.demux(wanted):
            if packet.stream.index in tracks:
                tracks[packet.stream.index].add(packet, bases[packet.stream.index], False)
    return tracks


def _variable_rate(times: list[int], time_base: float, until: float | None) -> tuple[np.ndarray, bool]:
    """Frame intervals (seconds) and whether they vary, from timestamps before ``until`` (the readable end)."""
    stamps = np.unique(np.asarray(times, np.int64))
    if until is not None:  # a cut-off file loses frames its last packets refer to: not a rate change
        stamps = stamps[stamps * time_base < until - _TRUNCATION_TOLERANCE]
    intervals = np.diff(stamps).astype(np.float64) * time_base
    variable = bool(
        len(intervals) > 1 and np.abs(intervals - np.median(intervals)).max() > _VFR_TOLERANCE * np.median(intervals)
    )
    return intervals, variable


def probe(path: str | os.PathLike) -> MediaInfo:
    """Describes a media file by reading its packets, decoding no more than one frame.

    Results are cached per (path, size, modification time), so readers that probe before every window
    (datasets reading many windows of one file) pay for it once.

    Args:
        path: any file FFmpeg reads (mp4, mov, webm, mkv, avi, mpeg-ps, raw .h264/.aac/.mp3, wav, ogg, ...).

    Returns:
        A MediaInfo; ``video``/``audio`` is ``None`` where the file has no such stream.

    Raises:
        MediaNotFoundError, InvalidMediaError: see ``open_media``.
    """
    try:
        st = os.stat(path)
    except OSError:
        st = None
    if st is None or not stat.S_ISREG(st.st_mode) or st.st_size == 0:
        open_media(path)  # raises the right MediaError
    return _probe(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _probe(path: str, size: int, mtime_ns: int) -> MediaInfo:
    with open_media(path) as container:
        vs, as_ = first_stream(container, "video"), first_stream(container, "audio")
        streams = [s for s in (vs, as_) if s is not None]
        fmt = container.format.name
        origin = time_origin(container)
        announced = {s.index: _seconds(s.duration, s.time_base) for s in streams}
        starts = {s.index: _seconds(s.start_time, s.time_base) or 0.0 for s in streams}
        file_end = (
            (container.start_time or 0) / av.time_base + container.duration / av.time_base
            if container.duration
            else None
        )
        ends = [starts[i] + d for i, d in announced.items() if d] or ([file_end] if file_end else [])
        announced_end = max(ends) if ends else None
        # The tail read starts before the earliest stream end, so a stream ending long before another (a short
        # video track beside a long soundtrack) has its last packets read too.
        stream_ends = [starts[i] + d if d else file_end for i, d in announced.items()]
        tail_from = None if None in stream_ends else max(0.0, min(stream_ends) - _TAIL_SECONDS)
        tracks = _scan(path, streams, tail_from)

        # Where each stream really ends: its last packet; a stream whose packets carry no time (raw H.264)
        # ends after the sum of their durations.
        durations, truncated = {}, False
        for s in streams:
            track, start = tracks[s.index], starts[s.index]
            measured = track.end - start if track.end is not None else (track.summed or None)
            stated = announced[s.index]
            if stated and (measured is None or measured < stated - _TRUNCATION_TOLERANCE):
                truncated = True
                durations[s.index] = measured if measured is not None else 0.0
            elif (s.type == "video" or fmt in _CLOCK_FORMATS) and stated and measured:
                # Some containers estimate the stated duration (MPEG-PS, MPEG-TS: from a bit rate, off by a
                # quarter second); a video packet's end is exact, and so is every packet's in MPEG-TS.
                durations[s.index] = max(stated, measured)
            else:
                durations[s.index] = stated or measured
        if not truncated and announced_end is not None and not any(announced.values()):
            # Matroska states only the file's duration: packets stopping well short of it are a cut-off file.
            last = max((starts[i] + d for i, d in durations.items() if d), default=0.0)
            truncated = last < announced_end - _TRUNCATION_TOLERANCE

        video = audio = None
        if vs is not None:
            readable_end = starts[vs.index] + durations[vs.index] if truncated and durations[vs.index] else None
            intervals, variable = _variable_rate(tracks[vs.index].times, float(vs.time_base), readable_end)
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
                start=starts[vs.index] - origin,
                duration=durations[vs.index],
            )
        if as_ is not None:
            early = max(0.0, origin - starts[as_.index])  # priming before the first picture (MPEG-TS)
            audio = AudioInfo(
                codec=as_.codec_context.name,
                sample_rate=as_.codec_context.sample_rate,
                channels=as_.codec_context.channels,
                start=starts[as_.index] + early - origin,
                duration=durations[as_.index] - early if durations[as_.index] else durations[as_.index],
            )
    readable = [starts[i] + d for i, d in durations.items() if d]
    total = max(readable) if readable else (0.0 if truncated else announced_end or 0.0)
    return MediaInfo(
        path=str(path),
        format=fmt,
        duration=max(0.0, float(total) - origin),
        video=video,
        audio=audio,
        truncated=truncated,
        announced_duration=float(announced_end) - origin if truncated and announced_end else None,
        origin=origin,
    )
