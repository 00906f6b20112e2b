"""Dense optical flow of a clip by OpenCV's Farneback algorithm (Farneback, "Two-Frame Motion Estimation Based on
Polynomial Expansion", SCIA 2003), the input of the temporal stream of two-stream networks.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch


def farneback_flow(
    video: torch.Tensor | np.ndarray,
    *,
    pyr_scale: float = 0.5,
    levels: int = 3,
    winsize: int = 15,
    iterations: int = 3,
    poly_n: int = 5,
    poly_sigma: float = 1.2,
) -> torch.Tensor:
    """Optical flow between consecutive frames.

    Args:
        video: uint8 clip ``(C, T, H, W)`` with ``C`` 3 (RGB) or 1 (gray), ``T >= 2``.
        pyr_scale, levels, winsize, iterations, poly_n, poly_sigma: ``cv2.calcOpticalFlowFarneback``'s parameters.

    Returns:
        Float32 flow ``(2, T - 1, H, W)``: ``[0]`` the horizontal, ``[1]`` the vertical displacement in pixels from
        frame ``t`` to frame ``t + 1`` (a pattern moving right has positive ``[0]``).

    Raises:
        ValueError: if ``video`` is not a uint8 ``(C, T, H, W)`` clip with 1 or 3 channels and at least 2 frames.
    """
    clip = video.detach().cpu().numpy() if isinstance(video, torch.Tensor) else np.asarray(video)
    if clip.dtype != np.uint8 or clip.ndim != 4 or clip.shape[0] not in (1, 3) or clip.shape[1] < 2:
        raise ValueError(
            f"expected a uint8 (C, T, H, W) clip with C in (1, 3) and T >= 2, got {clip.dtype} "
            f"{clip.shape}; convert float clips with (x * 255).round().to(torch.uint8)"
        )
    if clip.shape[0] == 3:
        gray = [cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY) for frame in clip.transpose(1, 2, 3, 0)]
    else:
        gray = [np.ascontiguousarray(frame) for frame in clip[0]]
    flows = [
        cv2.calcOpticalFlowFarneback(prev, nxt, None, pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, 0)
        for prev, nxt in zip(gray[:-1], gray[1:])
    ]  # each (H, W, 2)
    return torch.from_numpy(np.stack(flows).transpose(3, 0, 1, 2).copy())  # (T-1, H, W, 2) -> (2, T-1, H, W)


def normalize_flow(flow: torch.Tensor, bound: float = 20.0, subtract_mean: bool = True) -> torch.Tensor:
    """Scale flow ``(2, ..., H, W)`` to about [-1, 1]: optionally remove each frame's mean displacement (camera
    motion, as in Simonyan & Zisserman 2014), clip to ``[-bound, bound]`` pixels and divide by ``bound``."""
    if subtract_mean:
        flow = flow - flow.mean(dim=(-2, -1), keepdim=True)
    return flow.clamp(-bound, bound) / bound
