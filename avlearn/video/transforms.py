"""Video tensors from uint8 frames to normalized model input."""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Kinetics statistics, the usual choice for video models trained from scratch or fine-tuned.
MEAN = (0.43216, 0.394666, 0.37645)
STD = (0.22803, 0.22145, 0.216989)


def normalize_video(frames: torch.Tensor, channels_last_input: bool = True) -> torch.Tensor:
    """uint8 frames -> float model input ``(B, C, T, H, W)``.

    Args:
        frames: ``(B, T, H, W, C)`` (``channels_last_input``, as cached clips are stored) or ``(B, C, T, H, W)``.
        channels_last_input: which of the two layouts ``frames`` has.
    """
    x = frames.permute(0, 4, 1, 2, 3) if channels_last_input else frames  # (B,T,H,W,C) -> (B,C,T,H,W)
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1, 1)
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1, 1)
    return (x.float() / 255.0 - mean) / std


def resize_video(video: torch.Tensor, size: int) -> torch.Tensor:
    """``(B, C, T, H, W)`` float -> ``(B, C, T, size, size)``: every frame resized to the square a model was
    trained on (bilinear, antialiased when shrinking); returned as is when it already has that size."""
    if video.shape[-2:] == (size, size):
        return video
    b, c, t = video.shape[:3]
    flat = video.transpose(1, 2).flatten(0, 1)  # (B, C, T, H, W) -> (B·T, C, H, W)
    flat = F.interpolate(flat, size=(size, size), mode="bilinear", antialias=True)
    return flat.view(b, t, c, size, size).transpose(1, 2)
