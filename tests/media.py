"""Writes small real media files with known content for the tests.

Every frame carries its own index as a 12-bit code of black and white blocks (robust to H.264), and the
audio carries short clicks at known instants, so a test can tell exactly which frame and which sample
a reader returned.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

BITS = 12
BLOCK_H, BLOCK_W = 16, 16  # 2 rows x 6 columns of blocks -> 32 x 96 frame
HEIGHT, WIDTH = 2 * BLOCK_H, 6 * BLOCK_W


def code_frame(index: int) -> np.ndarray:
    """``(H, W, 3)`` uint8 frame showing ``index`` in binary."""
    img = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    for b in range(BITS):
        if index >> b & 1:
            r, c = divmod(b, 6)
            img[r * BLOCK_H : (r + 1) * BLOCK_H, c * BLOCK_W : (c + 1) * BLOCK_W] = 255
    return img


def decode_frames(video) -> np.ndarray:
    """Frame indices shown by a ``(C, T, H, W)`` clip of coded frames (resized or not)."""
    v = np.asarray(video, dtype=np.float32).mean(0)  # (T, H, W)
    t, h, w = v.shape
    out = np.zeros(t, np.int64)
    for b in range(BITS):
        r, c = divmod(b, 6)
        y0, y1 = int((r + 0.25) * h / 2), int((r + 0.75) * h / 2)
        x0, x1 = int((c + 0.25) * w / 6), int((c + 0.75) * w / 6)
        out += (v[:, y0:y1, x0:x1].mean((1, 2)) > 127).astype(np.int64) << b
    return out


def click_track(times: list[float], duration: float, sample_rate: int, channels: int = 2) -> np.ndarray:
    """``(channels, S)`` silence with a 1 ms click starting at each of ``times``."""
    wav = np.zeros((channels, round(duration * sample_rate)), np.float32)
    n = max(2, sample_rate // 1000)
    for t in times:
        i = round(t * sample_rate)
        wav[:, i : i + n] = 0.9
    return wav


def click_onsets(audio, sample_rate: int) -> np.ndarray:
    """Times (s) where clicks start in a ``(channels, S)`` waveform."""
    x = np.abs(np.asarray(audio)).max(0)
    above = x > 0.3
    starts = np.flatnonzero(above & ~np.r_[False, above[:-1]])
    # merge rising edges closer than 5 ms (resampler ringing inside one click)
    keep = [s for i, s in enumerate(starts) if i == 0 or s - starts[i - 1] > sample_rate // 200]
    return np.asarray(keep, np.float64) / sample_rate


def write_coded(
    path: Path,
    frame_times: list[float],
    *,
    audio: np.ndarray | None = None,
    sample_rate: int = 44100,
    audio_start: float = 0.0,
    rotation: int = 0,
    gop: int = 15,
    faststart: bool = False,
) -> Path:
    """Writes coded frames at the given presentation times (so variable frame rates and late starts are
    possible) with optional audio starting at ``audio_start``; ``rotation`` is PyAV's display rotation."""
    options = {"movflags": "faststart"} if faststart else {}
    tb = Fraction(1, 90000)
    with av.open(str(path), "w", format="mp4", options=options) as out:
        vs = out.add_stream("libx264", rate=30)
        vs.width, vs.height, vs.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        vs.time_base = tb
        vs.codec_context.time_base = tb
        vs.codec_context.gop_size = gop
        vs.options = {"crf": "12", "preset": "ultrafast", "bf": "2", "sc_threshold": "0"}
        if rotation:
            vs.set_display_rotation(rotation)
        as_ = None
        if audio is not None:
            as_ = out.add_stream("aac", rate=sample_rate)
            as_.layout = "stereo" if audio.shape[0] == 2 else "mono"
        for k, t in enumerate(frame_times):
            frame = av.VideoFrame.from_ndarray(code_frame(k), format="rgb24")
            frame.pts, frame.time_base = round(t * 90000), tb
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
        if as_ is not None:
            offset = round(audio_start * sample_rate)
            for i in range(0, audio.shape[1], 1024):
                block = np.ascontiguousarray(audio[:, i : i + 1024])
                frame = av.AudioFrame.from_ndarray(block, format="fltp", layout=as_.layout.name)
                frame.sample_rate, frame.pts = sample_rate, offset + i
                out.mux(as_.encode(frame))
            out.mux(as_.encode(None))
    return path
