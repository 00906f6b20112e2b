"""Sound source localization metrics as the field reports them (LVS, EZ-VSL evaluation code).

A predicted map is upsampled to 224x224 and min-max normalized (:func:`prepare_maps`); binarized at its
median (``map >= its value at rank H·W/2``, as EZ-VSL's evaluator does, so at least half the image is
"predicted"); per image ``cIoU = |pred ∩ gt| / (|gt| + |pred \\ gt|)`` (:func:`ciou`). Over a test set
(:func:`summarize`): ``ciou@0.5`` the fraction of images with cIoU >= 0.5 (the column papers call "cIoU"),
``mean_ciou``, and ``auc``, the area under the fraction of images with cIoU >= t for the 21 thresholds
t = 0, 0.05, ..., 1 (trapezoids). The pointing game (:func:`pointing_hits`) asks whether the map's maximum
lies inside the ground truth.

The median binarization predicts at least half the image, so an image's cIoU is at most
``2 * gt area / image area``: objects smaller than a quarter of the frame can never reach 0.5.
:func:`binarize` also offers ``"half_max"`` (``map >= 0.5`` after normalization), which lets a map claim
only the region it is confident about; say which one a figure uses.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

EVAL_SIZE = 224
CIOU_THRESHOLDS = torch.linspace(0, 1, 21)


def prepare_maps(maps: torch.Tensor, size: int = EVAL_SIZE) -> torch.Tensor:
    """``(N, h, w)`` maps -> ``(N, size, size)``: bilinear upsampling, then min-max normalized per map.

    A constant map (no preference anywhere) becomes all ones: every pixel is its maximum.
    """
    up = F.interpolate(maps[:, None].float(), size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    lo = up.flatten(1).amin(1)[:, None, None]
    hi = up.flatten(1).amax(1)[:, None, None]
    span = hi - lo
    return torch.where(span > 0, (up - lo) / span.clamp_min(1e-12), torch.ones_like(up))


def prepare_masks(masks: torch.Tensor, size: int = EVAL_SIZE) -> torch.Tensor:
    """``(N, H, W)`` bool ground truth -> ``(N, size, size)`` bool (nearest neighbour)."""
    return F.interpolate(masks[:, None].float(), size=(size, size), mode="nearest")[:, 0] > 0.5


def binarize(maps: torch.Tensor, rule: str = "median") -> torch.Tensor:
    """``(N, H, W)`` normalized maps -> predicted regions.

    Args:
        maps: output of :func:`prepare_maps`.
        rule: ``"median"`` (the field's: ``map >= sorted(map)[H·W // 2]``) or ``"half_max"`` (``map >= 0.5``).
    """
    if rule == "median":
        flat = maps.flatten(1)
        thr = flat.sort(1).values[:, flat.shape[1] // 2]
        return maps >= thr[:, None, None]
    if rule == "half_max":
        return maps >= 0.5
    raise ValueError(f"rule must be 'median' or 'half_max', got {rule!r}")


def ciou(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Per-image cIoU ``(N,)`` = overlap / (ground-truth area + false-positive area) of bool ``(N, H, W)``."""
    inter = (pred & gt).flatten(1).sum(1).float()
    false_pos = (pred & ~gt).flatten(1).sum(1).float()
    return inter / (gt.flatten(1).sum(1).float() + false_pos).clamp_min(1)


def pointing_hits(maps: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """``(N,)`` bool: the map's maximum (first one in row-major order) lies inside ``gt`` ``(N, H, W)``."""
    peak = maps.flatten(1).argmax(1)
    return gt.flatten(1).gather(1, peak[:, None])[:, 0]


def summarize(cious: torch.Tensor) -> dict[str, float]:
    """``ciou@0.5``, ``mean_ciou`` and ``auc`` (21 thresholds, trapezoids) of per-image cIoUs."""
    success = (cious[None, :] >= CIOU_THRESHOLDS[:, None] - 1e-9).float().mean(1)  # (21,)
    auc = float(((success[1:] + success[:-1]) / 2 * CIOU_THRESHOLDS.diff()).sum())
    return {"ciou@0.5": float((cious >= 0.5).float().mean()), "mean_ciou": float(cious.mean()), "auc": auc}


def baseline_maps(kind: str, num: int, size: int = EVAL_SIZE, seed: int = 0) -> torch.Tensor:
    """Maps that ignore the input: ``"whole"`` (constant), ``"centre"`` (Gaussian prior, sigma = a quarter
    of the side), ``"random"`` (uniform noise per pixel, seeded)."""
    if kind == "whole":
        return torch.ones(num, size, size)
    if kind == "centre":
        r = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
        g = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * (size / 4) ** 2))
        return g.expand(num, size, size).clone()
    if kind == "random":
        return torch.rand(num, size, size, generator=torch.Generator().manual_seed(seed))
    raise ValueError(f"kind must be 'whole', 'centre' or 'random', got {kind!r}")


def median_ciou_bound(gt: torch.Tensor) -> torch.Tensor:
    """The best cIoU any map can reach under median binarization: ``min(1, area(gt) / ceil(H·W / 2))``."""
    n = gt.shape[-1] * gt.shape[-2]
    return (gt.flatten(1).sum(1).float() / math.ceil(n / 2)).clamp(max=1)
