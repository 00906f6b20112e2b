"""Aligned reads: a window of video frames and the audio of the same window, chosen by timestamps.

Frames and samples are placed by their presentation timestamps, never by counting, so variable frame
rates, streams that start at different times and containers with odd timestamps (AVI with packed
B-frames) all give a clip whose frame ``k`` and audio sample ``round(k * sample_rate / fps)`` show and
sound at the same instant. A read seeks to the keyframe before the window and decodes only what the
window needs, so a window costs the same in a one-minute and a one-hour file. Scaling and resampling run
inside FFmpeg (a shared swscale context, swresample), never in Python loops over pixels or samples.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import warnings
from dataclasses import dataclass

import av
import numpy as np
import torch
from av.video.reformatter import Interpolation, VideoReformatter

from avlearn.io.errors import (
    ClipRangeError,
    InvalidMediaError,
    MissingStreamError,
    TruncatedMediaError,
    TruncatedMediaWarning,
)
from avlearn.io.probe import MediaInfo, first_stream, open_media, probe, time_origin
from avlearn.io.write import reading

# Timestamps closer than this are the same instant (container time bases round to ~1e-5 s).
_TIME_TOL = 1e-4
# Video packets this long before the window start are decoded only if later frames refer to them.
_SKIP_MARGIN = 0.5
# Audio decoded around the window so the resampler's filter has settled at the window's edges.
_AUDIO_MARGIN = 0.05
# Neutral words: these messages also reach command-line users, who pass no Python arguments.
_NO_AUDIO = "the file has no audio stream (a silent video); a file with sound is needed"
_NO_VIDEO = "the file has no video stream (sound only); a file with a picture is needed"
# A window ending this close to where a cut-off file's data stop is warned about.
_CUT_NEAR = 0.5
# The lowest audio rate a read resamples to: FFmpeg's resampler produces nothing useful below it.
MIN_SAMPLE_RATE = 1000
# The highest: studio audio's top rate; above it a read only allocates (10**9 Hz ran out of memory).
MAX_SAMPLE_RATE = 384000
# Sane bounds on what a read returns: FFmpeg's scaler refuses larger pictures with a bare "Invalid
# argument", higher rates only repeat frames, and a window whose output (padding included) needs more
# memory than this is refused before anything is decoded (1e9 s used to fail allocating 186 GiB).
MAX_SIZE = 8192
MAX_FPS = 1000
MAX_CLIP_BYTES = 4 * 2**30


@dataclass
class AVClip:
    """A window of a media file: video and audio covering the same time span.

    Attributes:
        video: ``(C, T, H, W)`` uint8 RGB, or None when not read.
        audio: ``(channels, S)`` float32 in [-1, 1], or None when not read.
        start: window start in seconds (file time).
        duration: window length in seconds.
        fps: frame rate of ``video`` (the requested one, or the stream's average rate).
        sample_rate: sample rate of ``audio``.
        video_times: ``(T,)`` float64, the instant each returned frame stands for (seconds).
        video_valid: ``(T,)`` bool, False where the window ran past the stream and the frame is padding.
        audio_valid: ``(S,)`` bool, False where the audio is padding (zeros).
        path: the file read.
    """

    video: torch.Tensor | None
    audio: torch.Tensor | None
    start: float
    duration: float
    fps: float | None
    sample_rate: int | None
    video_times: torch.Tensor | None
    video_valid: torch.Tensor | None
    audio_valid: torch.Tensor | None
    path: str

    @property
    def valid_duration(self) -> float:
        """Seconds of the window backed by real data in every stream read."""
        spans = []
        if self.video_valid is not None and self.fps:
            spans.append(float(self.video_valid.sum()) / self.fps)
        if self.audio_valid is not None and self.sample_rate:
            spans.append(float(self.audio_valid.sum()) / self.sample_rate)
        return min([self.duration, *spans])

    @property
    def video_end(self) -> int:
        """Frames up to and including the last real one (0 if none): where the picture ends in the window,
        black frames before a late start included (``valid_duration`` counts real data only)."""
        return _end(self.video_valid)

    @property
    def audio_end(self) -> int:
        """Samples up to and including the last real one (0 if none), silence before a late start included."""
        return _end(self.audio_valid)

    def to_dict(self) -> dict[str, torch.Tensor]:
        """The clip as a sample dict keyed by modality (``video``, ``audio``), the data contract of avlearn.data."""
        return {k: v for k, v in (("video", self.video), ("audio", self.audio)) if v is not None}


def _end(valid: torch.Tensor | None) -> int:
    real = valid.nonzero() if valid is not None else ()
    return int(real[-1]) + 1 if len(real) else 0


def _presentation_times(pts: list[int | None], dts: list[int | None]) -> list[int]:
    """Timestamps of frames in decoder output (display) order.

    Display order means the times must increase. Frame pts do in sane files; some containers (AVI with
    packed B-frames) label decoded frames with reordered or missing pts while their dts increase
    steadily, and FFmpeg's own best-effort timestamp then falls back to dts, as this does.
    """

    def increasing(seq: list[int | None]) -> bool:
        return all(x is not None for x in seq) and all(a < b for a, b in zip(seq, seq[1:]))

    if increasing(pts):
        return pts
    if increasing(dts):
        return dts
    known = sorted(x for x in pts if x is not None)
    # None left where neither is known (raw streams): the caller counts frames there
    return known if len(known) == len(pts) else [x if x is not None else d for x, d in zip(pts, dts)]


def _whole(x, least: int, most: int) -> int | None:
    """``x`` as an int if it is a whole number in ``[least, most]`` (``112`` or ``112.0``), else None."""
    if isinstance(x, bool) or not isinstance(x, numbers.Real) or not math.isfinite(x) or x != int(x):
        return None
    return int(x) if least <= x <= most else None


def _secs(x: float) -> str:
    """Seconds for a message: ``12.345``, or ``1e+300`` where three decimals would print 300 digits."""
    return f"{x:.3f}" if abs(x) < 1e7 else f"{x:.3g}"


def _check_size(size) -> int | tuple[int, int] | None:
    """``size`` as ints; ValueError unless it is None, a positive whole number or a ``(height, width)`` pair."""
    if size is None:
        return None
    pair = [_whole(v, 1, MAX_SIZE) for v in size] if isinstance(size, (tuple, list)) and len(size) == 2 else [None]
    if None not in pair:
        return pair[0], pair[1]
    if _whole(size, 1, MAX_SIZE) is not None:
        return _whole(size, 1, MAX_SIZE)
    raise ValueError(
        f"size must be a whole number of pixels from 1 to {MAX_SIZE} (the shorter side) or a (height, width) pair "
        f"of them, got {size!r}"
    )


def _check_fps(fps) -> float | None:
    """``fps`` as a float; ValueError unless it is None (the stored frames) or a rate in ``(0, MAX_FPS]``."""
    if fps is None:
        return None
    if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not (0 < fps <= MAX_FPS):
        raise ValueError(
            f"fps must be a number of frames per second above 0 and at most {MAX_FPS}, or None for the stored "
            f"frames; got {fps!r}"
        )
    return float(fps)


def _check_sample_rate(sample_rate) -> int | None:
    """``sample_rate`` as an int; ValueError unless it is None (the file's rate) or a rate FFmpeg can produce."""
    if sample_rate is None:
        return None
    rate = _whole(sample_rate, MIN_SAMPLE_RATE, MAX_SAMPLE_RATE)
    if rate is None:
        raise ValueError(
            f"sample_rate must be a whole number of Hz, at least {MIN_SAMPLE_RATE} and at most {MAX_SAMPLE_RATE}, "
            f"or None to keep the file's rate; got {sample_rate!r}"
        )
    return rate


def _memory_exhausted(nbytes: int) -> bool:
    """Whether ``nbytes`` more cannot be allocated now.

    A decoder that cannot get a picture buffer says "Invalid data found when processing input", not "out of
    memory": a long window read whole used to end in a false warning of a damaged file and then a
    MemoryError. Asked right after a decoding error, with a few pictures' worth, this tells the two apart.
    """
    try:
        bytearray(nbytes)  # zero-filled, so really committed
    except MemoryError:
        return True
    return False


def _output_size(info_hw: tuple[int, int], size: int | tuple[int, int] | None) -> tuple[int, int]:
    h, w = info_hw
    if size is None:
        return h, w
    if isinstance(size, int):
        scale = size / min(h, w)
        return max(2, round(h * scale / 2) * 2), max(2, round(w * scale / 2) * 2)
    return size


def _open_at(
    path: str, kind: str, seconds: float | None, closing: contextlib.ExitStack, shared=None, origin: float = 0.0
) -> tuple[av.container.InputContainer, av.stream.Stream, bool]:
    """A container positioned at the keyframe before file time ``seconds`` (``origin`` on the stream clock
    is file time 0) in its first ``kind`` stream, that stream,
    and whether it could seek: a raw stream (.h264) cannot, and is then read from its start in a freshly
    opened container, as is every read with ``seconds`` None. ``shared``, an open container of the file, is
    reused where it seeks (one open per read); containers opened here close with ``closing``."""
    if seconds is None:
        fresh = closing.enter_context(open_media(path))
        return fresh, first_stream(fresh, kind), False
    container = shared if shared is not None else closing.enter_context(open_media(path))
    stream = first_stream(container, kind)
    try:
        container.seek(
            max(0, int((seconds + origin) / float(stream.time_base))), stream=stream, backward=True, any_frame=False
        )
        return container, stream, True
    except av.FFmpegError:
        fresh = closing.enter_context(open_media(path))
        return fresh, first_stream(fresh, kind), False


def _read_video(
    path: str,
    info: MediaInfo,
    start: float,
    duration: float,
    fps: float | None,
    size: int | tuple[int, int] | None,
    closing: contextlib.ExitStack,
    explain_stop: bool = True,
    shared: av.container.InputContainer | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Returns frames ``(T, H, W, 3)``, their times ``(T,)``, validity ``(T,)`` and the frame rate.

    Reads through ``shared`` where it can seek; containers opened here stay open in ``closing`` until the
    frames are converted. ``explain_stop`` False leaves a decoding error unreported (the caller has
    already said the file is cut off).
    """
    vinfo, shift = info.video, info.origin
    first = _open_at(path, "video", start, closing, shared, shift)
    time_base = float(first[1].time_base)
    # Timestamps are rounded to the container's time base (1 ms in webm/mkv): treat as one instant
    # whatever lies within one tick, or 30 fps read at 30 fps would duplicate and drop frames. Coarser
    # time bases are frame rates themselves (1/25 in AVI), whose ticks are exact.
    tol = max(_TIME_TOL, min(time_base, 1e-3))
    end = start + duration
    out_h, out_w = _output_size(vinfo.display_size, size)
    # Scale in the stored orientation, then turn: the scaler never sees the display geometry.
    scale_w, scale_h = (out_h, out_w) if vinfo.rotation in (90, 270) else (out_w, out_h)
    frame_dur = 1.0 / vinfo.fps if vinfo.fps else 0.04
    rate = float(fps) if fps else vinfo.fps
    if fps:
        targets = start + np.arange(max(1, round(duration * fps))) / fps
    else:
        targets = None  # native: every stored frame whose time falls inside the window
    reformatter = VideoReformatter()

    def convert(frame: av.VideoFrame) -> np.ndarray:
        rgb = reformatter.reformat(
            frame, width=scale_w, height=scale_h, format="rgb24", interpolation=Interpolation.BILINEAR
        ).to_ndarray()
        return np.rot90(rgb, k=-vinfo.rotation // 90, axes=(0, 1)) if vinfo.rotation else rgb

    # (pts, dts, time, frame) in display order; time counts frames where the stream has no timestamps
    decoded: list[tuple[int | None, int | None, float, av.VideoFrame]] = []

    def frames_after_seek(container, stream, seeked):
        # A seek without an index (MPEG-TS) lands on any packet: the ones before the next keyframe cannot
        # be decoded, and are not fed to the decoder (which would show nothing, or garbage, until it).
        # Without a keyframe before the window ends the seek landed too late: None says so.
        keyed = not seeked
        # Between the keyframe and the window, frames nothing refers to (most B-frames) are never shown:
        # the decoder skips them, which saves up to half the work of a long GOP.
        ctx, skipping = stream.codec_context, None
        for packet in container.demux(stream):
            ts = packet.pts if packet.pts is not None else packet.dts
            if not keyed:
                if packet.is_keyframe:
                    keyed = True
                elif not packet.size or (ts is not None and ts * time_base - shift >= end):
                    yield None
                    return
                else:
                    continue
            skip = ts is not None and ts * time_base - shift < start - _SKIP_MARGIN
            if skip != skipping:
                ctx.skip_frame, skipping = ("NONREF" if skip else "DEFAULT"), skip
            yield from packet.decode()
        if not keyed:
            yield None

    def decode_from(seek_time: float, opened=None) -> bool:
        """Decodes from the keyframe before ``seek_time``; False if that keyframe lies after the window start."""
        decoded.clear()
        container, stream, seeked = opened or _open_at(path, "video", seek_time, closing, shared, shift)
        if not stream.codec_context.is_open:  # settable only before the first decode (a retry reuses it)
            stream.thread_type = "AUTO"
        latest = -math.inf
        try:
            for frame in frames_after_seek(container, stream, seeked):
                if frame is None:
                    return False  # no keyframe between where the seek landed and the window's end
                ts = frame.pts if frame.pts is not None else frame.dts
                t = ts * time_base - shift if ts is not None else (latest + frame_dur if decoded else vinfo.start)
                if seeked and not decoded and t > max(start, vinfo.start) + tol:
                    return False  # the seek landed past the window start (B-frames, coarse index, MPEG-PS)
                latest = max(latest, t)
                decoded.append((frame.pts, frame.dts, t, frame))
                if latest + frame_dur <= start + tol:
                    del decoded[:-4]  # before the window: keep the last few, one of them holds into it
                if latest >= end - tol:
                    break
        except av.FFmpegError as err:
            if isinstance(err, MemoryError) or _memory_exhausted(4 * vinfo.width * vinfo.height * 3 // 2):
                raise MemoryError(
                    f"{info.path}: out of memory decoding a {duration:.1f} s window of video ({len(decoded)} "
                    "pictures held); read shorter windows"
                ) from None
            if explain_stop:
                where = f"near {latest:.3f} s" if decoded else f"at its first frame after {seek_time:.3f} s"
                warnings.warn(
                    f"{info.path}: video decoding stopped {where} ({err.strerror}); the rest of the window is padded",
                    TruncatedMediaWarning,
                    stacklevel=4,
                )
        return True

    seek_time, opened = start, first
    while not decode_from(seek_time, opened):
        if seek_time <= vinfo.start + tol:  # even a seek to the stream start lands late: read from the top
            opened = _open_at(path, "video", None, closing)
        else:
            opened, seek_time = None, max(vinfo.start, seek_time - 2.0)

    stamps = _presentation_times([p for p, _, _, _ in decoded], [d for _, d, _, _ in decoded])
    times = np.array(
        [ts * time_base - shift if ts is not None else t for ts, (_, _, t, _) in zip(stamps, decoded)], dtype=np.float64
    )
    pictures = [frame for _, _, _, frame in decoded]
    stream_end = (vinfo.start + vinfo.duration) if vinfo.duration else (times[-1] + frame_dur if len(times) else 0)
    if targets is None:
        inside = (times >= start - tol) & (times < end - tol)
        keep = np.flatnonzero(inside)
        if not len(keep) and len(times) and start < stream_end - tol:
            # No frame begins inside a window shorter than a frame interval (or starting in the last one):
            # the frame on screen at its start stands for it.
            on_screen = np.flatnonzero((times <= start + tol) & (times + frame_dur > start + tol))
            keep = on_screen[-1:]
        n_pad = max(0, round((end - max(stream_end, start)) * rate)) if end > stream_end + tol else 0
        frames = [convert(pictures[i]) for i in keep]
        out_times = np.concatenate([times[keep], stream_end + np.arange(n_pad) / rate])
        valid = np.r_[np.ones(len(keep), bool), np.zeros(n_pad, bool)]
        blank = np.zeros((out_h, out_w, 3), np.uint8)
        frames += [blank] * n_pad
        if not frames:
            frames = [blank]
            out_times, valid = np.array([start]), np.zeros(1, bool)
        return np.stack(frames), out_times, valid, rate

    # Sample and hold: target instant t shows the last frame whose time is <= t. The first frame also
    # stands for the instants just before it (a stream starting a frame late); the last one holds for one
    # frame interval, after which the window has run past the stream and is padded.
    # A frame presented a little after an instant (under a quarter of the output and of the stored frame
    # interval) counts as on screen then: muxers shift timestamps by a few ms (WebM makes room for Opus
    # priming), which must not delay the picture by a whole output frame against the sound.
    lead = max(tol, 0.25 * min(1.0 / rate, frame_dur))
    idx = np.searchsorted(times, targets + lead, side="right") - 1
    first_ok = (idx < 0) & (len(times) > 0) & (targets >= (times[0] if len(times) else 0) - frame_dur)
    idx = np.where(first_ok, 0, idx)
    last_t = times[-1] if len(times) else -np.inf
    hold_end = min(last_t + frame_dur, stream_end + tol) if len(times) else -np.inf
    valid = (idx >= 0) & (targets < hold_end - tol)
    out = np.zeros((len(targets), out_h, out_w, 3), np.uint8)
    cache: dict[int, np.ndarray] = {}
    for k in np.flatnonzero(valid):
        i = int(idx[k])
        if i not in cache:
            cache[i] = convert(pictures[i])
        out[k] = cache[i]
    return out, targets, valid, rate


def _decode_audio(
    path: str,
    start: float,
    end: float | None,
    sample_rate: int | None,
    mono: bool,
    explain_stop: bool = True,
    shared: av.container.InputContainer | None = None,
    shift: float = 0.0,
) -> tuple[np.ndarray, float, int, bool]:
    """Decodes and resamples the audio around ``[start, end)`` (file time; ``shift`` on the stream clock is
    file time 0), through ``shared`` where it can seek.

    Returns:
        samples ``(channels, N)`` float32, the file time of sample 0, the sample rate, and whether the
        stream ended (EOF or a decode error) before ``end``.
    """
    seek_time = max(0.0, start - _AUDIO_MARGIN)
    with contextlib.ExitStack() as closing:
        container, stream, seeked = _open_at(path, "audio", seek_time, closing, shared, shift)
        out_rate = int(sample_rate or stream.codec_context.sample_rate)
        layout = "mono" if mono else stream.codec_context.layout.name
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=out_rate)
        chunks: list[np.ndarray] = []
        origin = None
        consumed = 0  # samples of output so far, to place chunks whose pts are missing
        ended_early = True

        def take(frames: list[av.AudioFrame]) -> None:
            nonlocal consumed
            for out in frames:
                chunks.append(out.to_ndarray())
                consumed += out.samples

        def frames():
            # A seek into a stream without an index (MPEG-PS) can land inside a packet, which then fails to
            # decode: skip such packets until one decodes; a failure after that means the data stop.
            for packet in container.demux(stream):
                try:
                    yield from packet.decode()
                except av.FFmpegError:
                    if origin is not None:
                        raise

        try:
            for frame in frames():
                t = frame.time - shift if frame.time is not None else None
                if t is not None and t + frame.samples / frame.sample_rate < start - _AUDIO_MARGIN:
                    continue
                if origin is None:
                    origin = t if t is not None else (seek_time if seeked else 0.0)
                take(resampler.resample(frame))
                if end is not None and t is not None and t > end + _AUDIO_MARGIN:
                    ended_early = False
                    break
        except av.FFmpegError as err:
            if explain_stop:
                warnings.warn(
                    f"{path}: audio decoding stopped ({err.strerror}); the rest of the window is padded",
                    TruncatedMediaWarning,
                    stacklevel=4,
                )
        take(resampler.resample(None))
        channels = 1 if mono else stream.codec_context.channels
        data = np.concatenate(chunks, axis=1) if chunks else np.zeros((channels, 0), np.float32)
        origin = float(origin if origin is not None else start)
        return data.astype(np.float32, copy=False), origin, out_rate, ended_early


def _validate_window(path: str, info: MediaInfo, start, duration) -> None:
    def number(x) -> bool:
        return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)

    if not (number(duration) and duration > 0):
        raise ClipRangeError(path, f"duration must be a positive number of seconds, got {duration!r}")
    if not (number(start) and start >= 0):
        raise ClipRangeError(path, f"start must be a number of seconds >= 0, got {start!r}")
    if start >= info.duration and info.truncated:
        raise TruncatedMediaError(
            path,
            f"the file is cut off at {info.duration:.3f} s (it announces {info.announced_duration:.3f} s), so "
            f"nothing of the window {_secs(start)}-{_secs(start + duration)}s could be decoded; use a complete copy",
        )
    if start >= info.duration:
        raise ClipRangeError(
            path, f"start {_secs(start)}s is past the end of the file ({info.duration:.3f}s); choose an earlier start"
        )


def _check_clip_bytes(
    path: str, info: MediaInfo, duration: float, fps, size, sample_rate, mono: bool, video: bool, audio: bool
) -> None:
    """ClipRangeError for a window whose output, padding past the end included, would not fit in memory."""
    nbytes = 0.0
    if video:
        h, w = _output_size(info.video.display_size, size)
        nbytes += duration * (fps or info.video.fps or 25.0) * (h * w * 3 + 9)  # pixels, time, validity
    if audio:
        channels = 1 if mono else info.audio.channels
        nbytes += duration * (sample_rate or info.audio.sample_rate) * (4 * channels + 1)
    if nbytes > MAX_CLIP_BYTES:
        raise ClipRangeError(
            path,
            f"a {_secs(duration)} s window would take {nbytes / 2**30:.3g} GiB of memory (padding past the "
            f"file's end at {info.duration:.3f} s included), more than the {MAX_CLIP_BYTES // 2**30} GiB a read "
            "may return; read shorter windows (or a lower fps, size or sample_rate)",
        )


def read_clip(
    path: str | os.PathLike,
    start: float,
    duration: float,
    *,
    fps: float | None = None,
    size: int | tuple[int, int] | None = None,
    sample_rate: int | None = 16000,
    mono: bool = True,
    video: bool = True,
    audio: bool = True,
) -> AVClip:
    """Reads the video and the audio of one time window of a media file.

    Frame ``k`` stands for the instant ``start + k / fps`` and shows the frame on screen then (the last
    frame presented at or before it, or one presented less than a quarter frame interval later: muxers
    shift timestamps by a few milliseconds, which must not cost a whole frame of sync); audio sample ``j``
    is the sound at ``start + j / sample_rate``. A window that runs past the end of a stream is padded
    (black frames, silence) and marked in ``video_valid``/``audio_valid``.

    Args:
        path: media file (mp4, webm, mkv, avi, ...).
        start: window start, seconds from the file's time origin.
        duration: window length in seconds.
        fps: frames per second to sample, at most ``MAX_FPS`` (1000); None returns the stored frames inside the
            window (or, in a window shorter than a frame interval, the frame on screen at its start).
        size: ``(height, width)``, or an int for the shorter side keeping the aspect ratio, at most
            ``MAX_SIZE`` (8192) pixels each; None keeps the stored size. Rotation metadata is applied, so
            sizes refer to the upright picture.
        sample_rate: audio rate to resample to, in whole Hz, from ``MIN_SAMPLE_RATE`` (1000) to
            ``MAX_SAMPLE_RATE`` (384000); None keeps the file's rate.
        mono: downmix to one channel (in FFmpeg).
        video: read the video stream; a file without one raises MissingStreamError (read it with
            ``video=False``, or use ``read_audio``).
        audio: read the audio stream; a file without one raises MissingStreamError (read it with
            ``audio=False``).

    Returns:
        An AVClip with ``video (C, T, H, W)`` uint8 and ``audio (channels, S)`` float32.

    Raises:
        MediaNotFoundError, InvalidMediaError: the file is missing or unreadable.
        MissingStreamError: ``video``/``audio`` asked for and the file has no such stream.
        ClipRangeError: a start or duration that is not a number, non-positive duration, negative start, a
            start past the end, or a window whose output would take more than ``MAX_CLIP_BYTES`` (4 GiB):
            read shorter windows.
        TruncatedMediaError: the file is cut off before the window and nothing of it could be decoded, or
            the picture ends before a window the sound still covers (the message says which).
        ValueError: ``fps``, ``size`` or ``sample_rate`` out of range (see above).

    Warns:
        TruncatedMediaWarning: the file is cut off inside the window; the readable part is returned and the
            rest padded and marked invalid.
    """
    path = os.fspath(path)
    if not (video or audio):
        raise ValueError("read_clip: ask for video, audio or both")
    fps, sample_rate, size = _check_fps(fps), _check_sample_rate(sample_rate), _check_size(size)
    info = probe(path)
    if video and info.video is None:
        raise MissingStreamError(path, _NO_VIDEO)
    if audio and info.audio is None:
        raise MissingStreamError(path, _NO_AUDIO)
    _validate_window(path, info, start, duration)
    _check_clip_bytes(path, info, duration, fps, size, sample_rate, mono, video, audio)
    end = start + duration
    # A window reaching the cut (a whole-file read ends exactly there) is told once here, instead of once per
    # stream where decoding stops.
    cut = info.truncated and end > info.duration - _CUT_NEAR
    if cut:
        warnings.warn(
            f"{path}: the file is cut off: its data stop near {info.duration:.3f} s of the "
            f"{info.announced_duration:.3f} s it announces; what follows is padded",
            TruncatedMediaWarning,
            stacklevel=2,
        )
    clip = AVClip(None, None, start, duration, None, None, None, None, None, path)
    with reading(path), contextlib.ExitStack() as closing:
        shared = closing.enter_context(open_media(path))
        if video:
            frames, times, valid, rate = _read_video(path, info, start, duration, fps, size, closing, not cut, shared)
            video_end = info.video.start + (info.video.duration or math.inf)
            if not valid.any() and start >= video_end - _TIME_TOL:  # the type callers catch past the picture
                raise TruncatedMediaError(
                    path,
                    f"the picture ends at {video_end:.3f} s, before the window {_secs(start)}-{_secs(end)}s; choose "
                    "an earlier start, or read the sound alone (video=False)",
                )
            if not valid.any():
                raise TruncatedMediaError(path, f"no frame of the window {_secs(start)}-{_secs(end)}s could be decoded")
            if not cut:
                _warn_if_truncated(path, "video", info.video.start + (info.video.duration or 0), end, valid, times)
            clip.video = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2)  # (T,H,W,C) -> (C,T,H,W)
            clip.video_times, clip.video_valid, clip.fps = torch.from_numpy(times), torch.from_numpy(valid), rate
        if audio:
            data, origin, rate, ended = _decode_audio(path, start, end, sample_rate, mono, not cut, shared, info.origin)
            num = max(1, round(duration * rate))
            out = np.zeros((data.shape[0], num), np.float32)
            valid = np.zeros(num, bool)
            offset = round((start - origin) * rate)  # index in data of the window's first sample
            # Samples past the announced end are codec padding (AAC's last frame), not sound.
            audio_end = info.audio.start + info.audio.duration if info.audio.duration else math.inf
            real_end = data.shape[1]
            if math.isfinite(audio_end):
                real_end = min(real_end, math.ceil((audio_end - origin) * rate))
            lo, hi = max(0, offset), min(real_end, offset + num)
            if hi > lo:
                out[:, lo - offset : hi - offset] = data[:, lo:hi]
                valid[lo - offset : hi - offset] = True
            if not valid.any():
                raise TruncatedMediaError(path, f"no audio of the window {_secs(start)}-{_secs(end)}s could be decoded")
            if not cut and ended and not valid[-1] and origin + data.shape[1] / rate < min(end, audio_end) - 0.1:
                warnings.warn(
                    f"{path}: audio ends at {origin + data.shape[1] / rate:.3f}s, before the {audio_end:.3f}s the "
                    "file announces (truncated file?); the rest of the window is silence",
                    TruncatedMediaWarning,
                    stacklevel=2,
                )
            clip.audio, clip.audio_valid, clip.sample_rate = torch.from_numpy(out), torch.from_numpy(valid), rate
    return clip


def read_frames(
    path: str | os.PathLike, start: float, duration: float, *, fps: float, size: int | tuple[int, int] | None = None
) -> torch.Tensor:
    """The frames of a window at ``fps``, ``(T, H, W, 3)`` uint8, up to the last frame the video holds.

    For commands that read a long clip stretch by stretch: ``T`` falls short of the window where the video
    ends inside it, and is 0 where it ended before it. Instants before a picture that starts late (MPEG-PS
    as ffmpeg writes it, 0.54 s) are black frames, so frame ``k`` stays at ``start + k / fps``.

    Raises:
        as ``read_clip`` (a window that holds no frame is an empty result, not a TruncatedMediaError).
    """
    try:
        clip = read_clip(path, start, duration, fps=fps, size=size, audio=False)
    except TruncatedMediaError:
        h, w = _output_size(probe(path).video.display_size, _check_size(size))
        return torch.zeros(0, h, w, 3, dtype=torch.uint8)
    return clip.video[:, : clip.video_end].permute(1, 2, 3, 0)  # (C, T, H, W) -> (T, H, W, C)


def _warn_if_truncated(path: str, kind: str, announced_end: float, end: float, valid, times) -> None:
    last_real = times[valid][-1] if valid.any() else None
    if last_real is not None and not valid[-1] and announced_end > last_real + 0.5 and end > last_real + 0.5:
        warnings.warn(
            f"{path}: {kind} ends near {last_real:.3f}s, before the {announced_end:.3f}s the file announces "
            "(truncated file?); the rest of the window is padded",
            TruncatedMediaWarning,
            stacklevel=3,
        )


def read_audio(path: str | os.PathLike, sample_rate: int | None = None, mono: bool = True) -> tuple[torch.Tensor, int]:
    """Reads a whole audio stream (of an audio or a video file).

    Args:
        path: media file.
        sample_rate: rate to resample to (in FFmpeg), at least ``MIN_SAMPLE_RATE`` Hz; None keeps the file's rate.
        mono: downmix to one channel.

    Returns:
        ``(wav, sample_rate)`` with ``wav`` ``(channels, S)`` float32 in [-1, 1], sample 0 at the stream start
        (in an MPEG-TS, at its first picture: the priming before it is dropped, see ``probe.time_origin``).

    Raises:
        MediaNotFoundError, InvalidMediaError, MissingStreamError: see ``read_clip``.
        ValueError: a ``sample_rate`` below ``MIN_SAMPLE_RATE`` Hz (as ``read_clip``).
    """
    path = os.fspath(path)
    sample_rate = _check_sample_rate(sample_rate)
    with reading(path), open_media(path) as container:
        if first_stream(container, "audio") is None:
            raise MissingStreamError(path, _NO_AUDIO)
        try:
            data, first, rate, _ = _decode_audio(
                path, 0.0, None, sample_rate, mono, shared=container, shift=time_origin(container)
            )
            data = data[:, max(0, round(-first * rate)) :]  # an MPEG-TS's priming before its first picture
        except av.FFmpegError as err:  # pragma: no cover - decode errors are turned into warnings inside
            raise InvalidMediaError(path, f"audio could not be decoded ({err.strerror})") from None
    if data.shape[1] == 0:
        raise InvalidMediaError(path, "the audio stream holds no decodable samples")
    return torch.from_numpy(np.ascontiguousarray(data)), rate
