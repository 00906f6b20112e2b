"""Numerical patches for models trained under reduced precision."""

from __future__ import annotations

import torch

__all__ = ["guard_bf16_conv3d"]


class _TwoFrameSafeConv3d(torch.nn.Conv3d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[2] > 2 or not torch.is_autocast_enabled(x.device.type):
            return super().forward(x)
        with torch.autocast(x.device.type, enabled=False):
            return super().forward(x.float())


def guard_bf16_conv3d(model: torch.nn.Module) -> torch.nn.Module:
    """Runs the model's temporal 3D convolutions in float32 when their input has at most two frames.

    Under CPU bf16 autocast (torch 2.14, oneDNN) the weight gradient of a ``(3, 1, 1)`` Conv3d over a
    two-frame input now and then comes out as ``inf`` (reproduced on a lone conv: 30 random batches of
    ``(32, 64, 2, 6, 6)``), which turned R(2+1)D training into NaN after a few hundred steps. Three or more
    frames, one frame and float32 are exact. The class swap keeps the state dict unchanged.
    """
    for module in model.modules():
        if type(module) is torch.nn.Conv3d and module.kernel_size[0] > 1:
            module.__class__ = _TwoFrameSafeConv3d
    return model
