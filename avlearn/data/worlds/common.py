"""What every synthetic world shares: the rendered-clip record, seeding, drawing, mixing and writing.

A world is a module with ``NAME``, ``DEFAULT_DURATION`` and ``render(index, seed, split, config) -> RenderedClip``.
``render`` is a pure function of its arguments (every random draw comes from :func:`clip_rng`), so clips can
be rendered in any order by any number of worker processes and the output is identical.

Drawing uses OpenCV with 4 bits of sub-pixel precision and anti-aliasing; masks are drawn with the same
geometry without anti-aliasing, so a mask is exactly the set of pixels an object covers.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

SPLITS = ("train", "val", "test")
SHIFT = 4  # OpenCV sub-pixel bits: coordinates are passed multiplied by 16
_SCALE = 1 << SHIFT


@dataclass
class WorldConfig:
    """Rendering settings shared by the worlds.

    Attributes:
        size: frame height and width in pixels (square frames).
        fps: video frames per second.
        sample_rate: audio samples per second (mono).
        duration: clip length in seconds; ``None`` uses the world's default (actions draws 20-60 s).
    """

    size: int = 160
    fps: int = 25
    sample_rate: int = 16000
    duration: float | None = None


@dataclass
class RenderedClip:
    """One rendered clip before it is written.

    Attributes:
        video: ``(T, H, W, 3)`` uint8 RGB frames.
        mix: ``(S,)`` float32 mixture in [-1, 1] (the sum of ``stems``).
        stems: name -> ``(S,)`` float32 per-source audio; sources with a visible object use ``"s{k}"``.
        row: manifest fields of this clip (labels, sources, segments, meta...) without paths.
        arrays: per-frame ground truth saved to the clip's annotation npz (boxes, masks, ...).
    """

    video: np.ndarray
    mix: np.ndarray
    stems: dict[str, np.ndarray]
    row: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def stable_hash(*parts: Any) -> int:
    """A 64-bit integer hash of ``parts`` that is the same in every process and on every machine."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def clip_rng(world: str, seed: int, split: str, index: int) -> np.random.Generator:
    """The random generator of one clip: a function of (world, seed, split, index) only."""
    return np.random.default_rng([stable_hash(world, split), int(seed), int(index)])


def split_of(key: Any, fractions: tuple[float, float] = (0.7, 0.15)) -> str:
    """Deterministically assigns an identity (voice, word, appearance, ...) to train, val or test.

    Identities are held out by hashing their key: about ``fractions[0]`` go to train, ``fractions[1]`` to val,
    the rest to test. Tests score generalization to identities the model never saw.
    """
    u = (stable_hash("split", key) % 10_000) / 10_000
    return "train" if u < fractions[0] else "val" if u < fractions[0] + fractions[1] else "test"


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    return split


def cache_dir() -> Path:
    """Where pre-rendered sound banks are cached: ``$AVLEARN_CACHE`` or ``~/.cache/avlearn``."""
    root = os.environ.get("AVLEARN_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "avlearn")
    return Path(root)


# ----------------------------------------------------------------------------------------------- drawing


def fixed(points: np.ndarray) -> np.ndarray:
    """Float pixel coordinates ``(..., 2)`` -> OpenCV fixed-point int32 (``SHIFT`` fractional bits)."""
    return np.round(np.asarray(points, dtype=np.float64) * _SCALE).astype(np.int32)


def ellipse_points(center, axes, angle_deg: float = 0.0, num: int = 48) -> np.ndarray:
    """``(num, 2)`` float points of an ellipse outline."""
    t = np.linspace(0, 2 * np.pi, num, endpoint=False)
    a = np.radians(angle_deg)
    x, y = axes[0] * np.cos(t), axes[1] * np.sin(t)
    return np.stack([center[0] + x * np.cos(a) - y * np.sin(a), center[1] + x * np.sin(a) + y * np.cos(a)], -1)


def fill_poly(img: np.ndarray, points: np.ndarray, color, mask: np.ndarray | None = None) -> None:
    """Fills a polygon (float ``(N, 2)`` points) anti-aliased into ``img`` and exactly into ``mask`` if given."""
    pts = fixed(points)[None]
    cv2.fillPoly(img, pts, tuple(float(c) for c in np.broadcast_to(color, (3,))), cv2.LINE_AA, SHIFT)
    if mask is not None:
        cv2.fillPoly(mask, pts, 1, cv2.LINE_8, SHIFT)


def fill_ellipse(img: np.ndarray, center, axes, angle_deg: float, color, mask: np.ndarray | None = None) -> None:
    """Fills an ellipse anti-aliased into ``img`` (and exactly into ``mask``)."""
    c = tuple(int(v) for v in fixed(center))
    ax = tuple(max(1, int(v)) for v in fixed(axes))
    col = tuple(float(v) for v in np.broadcast_to(color, (3,)))
    cv2.ellipse(img, c, ax, float(angle_deg), 0, 360, col, -1, cv2.LINE_AA, SHIFT)
    if mask is not None:
        cv2.ellipse(mask, c, ax, float(angle_deg), 0, 360, 1, -1, cv2.LINE_8, SHIFT)


def draw_line(img: np.ndarray, p0, p1, color, thickness: float) -> None:
    col = tuple(float(v) for v in np.broadcast_to(color, (3,)))
    cv2.line(
        img,
        tuple(int(v) for v in fixed(p0)),
        tuple(int(v) for v in fixed(p1)),
        col,
        max(1, round(thickness)),
        cv2.LINE_AA,
        SHIFT,
    )


def gradient_background(size: int, t: float, params: np.ndarray) -> np.ndarray:
    """A slowly changing background: two colours blended along a rotating axis plus drifting soft blobs.

    Args:
        size: frame side in pixels.
        t: time in seconds.
        params: ``(16,)`` random numbers in [0, 1) drawn once per clip.

    Returns:
        ``(size, size, 3)`` uint8.
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    angle = 2 * np.pi * params[0] + 0.25 * t * (params[1] - 0.5)
    u = np.clip(0.5 + xx * np.cos(angle) + yy * np.sin(angle), 0, 1)[..., None]
    c0 = 40 + 170 * params[2:5] * (0.85 + 0.15 * np.sin(0.7 * t + 6 * params[5]))
    c1 = 40 + 170 * params[6:9] * (0.85 + 0.15 * np.cos(0.5 * t + 6 * params[9]))
    img = c0 * (1 - u) + c1 * u
    for k in range(2):  # two soft blobs drifting across the frame
        bx = ((params[10 + k] + 0.03 * t * (1 + k)) % 1.3) - 0.65
        by = params[12 + k] - 0.5 + 0.1 * np.sin(0.8 * t + k)
        r2 = (xx - bx) ** 2 + (yy - by) ** 2
        img = img + (25 * (1 - 2 * params[14 + k])) * np.exp(-r2 / 0.03)[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


def box_of_mask(mask: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool -> ``[x0, y0, x1, y1]`` float32 pixel box (exclusive right/bottom); NaNs when empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return np.full(4, np.nan, np.float32)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


# ------------------------------------------------------------------------------------------------- audio


def event_envelope(times: np.ndarray, onsets, tau: float) -> np.ndarray:
    """Sum of decaying exponentials ``exp(-(t - onset) / tau)`` starting at each onset, clipped to 1."""
    env = np.zeros_like(times, dtype=np.float32)
    for onset in onsets:
        dt = times - onset
        env += np.where(dt >= 0, np.exp(-np.clip(dt, 0, None) / tau), 0.0).astype(np.float32)
    return np.minimum(env, 1.0)


def irregular_onsets(rng: np.random.Generator, duration: float, rate: float, min_gap: float, margin: float = 0.05):
    """Onset times at irregular intervals (a Poisson-like process with a refractory gap), sorted, in seconds."""
    onsets, t = [], margin + rng.uniform(0, 1.0 / rate)
    while t < duration - margin:
        onsets.append(round(float(t), 4))
        t += min_gap + rng.exponential(1.0 / rate)
    return onsets


def place(buffer: np.ndarray, sound: np.ndarray, start: int, gain: float = 1.0) -> None:
    """Adds ``gain * sound`` into ``buffer`` at sample ``start`` (truncated at either end)."""
    if start >= len(buffer) or start + len(sound) <= 0:
        return
    s0, s1 = max(0, -start), min(len(sound), len(buffer) - start)
    buffer[start + s0 : start + s1] += gain * sound[s0:s1]


def normalize_mix(stems: dict[str, np.ndarray], peak: float = 0.9) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Scales all stems by one factor so their sum peaks at most at ``peak``; returns (mix, stems)."""
    mix = np.sum(list(stems.values()), axis=0).astype(np.float32)
    scale = min(1.0, peak / max(float(np.abs(mix).max()), 1e-9))
    return (mix * scale).astype(np.float32), {k: (v * scale).astype(np.float32) for k, v in stems.items()}


def pink_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """``(n,)`` float32 pink (1/f) noise with unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spec / np.sqrt(f), n)
    return (x / (np.sqrt(np.mean(x**2)) + 1e-12)).astype(np.float32)
