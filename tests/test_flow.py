"""Farneback optical flow of a clip whose content moves by a known amount."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avlearn.video.flow import farneback_flow, normalize_flow


def _moving_texture(dx: int, dy: int, frames: int = 3, size: int = 64) -> torch.Tensor:
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (size + 40, size + 40), dtype=np.uint8)
    import cv2

    texture = cv2.GaussianBlur(texture, (7, 7), 2)
    clip = [texture[20 - t * dy : 20 - t * dy + size, 20 - t * dx : 20 - t * dx + size] for t in range(frames)]
    gray = np.stack(clip)  # (T, H, W): content moves by (+dx, +dy) per frame
    return torch.from_numpy(np.stack([gray, gray, gray]))  # (3, T, H, W)


def test_flow_recovers_a_known_translation():
    flow = farneback_flow(_moving_texture(dx=2, dy=-1))
    assert flow.shape == (2, 2, 64, 64) and flow.dtype == torch.float32
    interior = flow[:, :, 16:-16, 16:-16]
    assert interior[0].median().item() == pytest.approx(2.0, abs=0.2)
    assert interior[1].median().item() == pytest.approx(-1.0, abs=0.2)


def test_flow_rejects_float_clips_and_single_frames():
    with pytest.raises(ValueError, match="uint8"):
        farneback_flow(torch.rand(3, 4, 16, 16))
    with pytest.raises(ValueError, match="T >= 2"):
        farneback_flow(torch.zeros(3, 1, 16, 16, dtype=torch.uint8))


def test_normalize_flow_removes_camera_motion():
    flow = torch.full((2, 3, 8, 8), 5.0)
    assert normalize_flow(flow).abs().max() == 0
    assert normalize_flow(flow, bound=2.0, subtract_mean=False).max() == 1.0
