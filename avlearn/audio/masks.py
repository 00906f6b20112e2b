"""Time-frequency masks for mix-and-separate training (Sound of Pixels, VisualVoice).

All take complex or magnitude spectrograms ``(..., F, T)``; ``sources`` stack the sources on dim -3,
``(..., N, F, T)``, and ``mix`` is ``(..., F, T)``.
"""

from __future__ import annotations

import torch

_EPS = 1e-8


def ideal_ratio_mask(sources: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
    """``|S_i| / |X|`` clipped to [0, 1] (the ratio mask of Zhao et al. 2018), ``(..., N, F, T)``."""
    return (sources.abs() / (mix.abs().unsqueeze(-3) + _EPS)).clamp(0.0, 1.0)


def ideal_binary_mask(sources: torch.Tensor) -> torch.Tensor:
    """1 where source ``i`` is the loudest in a bin, else 0, ``(..., N, F, T)``."""
    mag = sources.abs()
    return (mag >= mag.max(dim=-3, keepdim=True).values).to(mag.dtype)


def complex_ratio_mask(sources: torch.Tensor, mix: torch.Tensor, bound: float = 10.0) -> torch.Tensor:
    """The complex ideal ratio mask ``S_i / X``, each part squashed into ``(-bound, bound)`` by ``tanh``
    scaling so a network can regress it (Williamson et al. 2016; VisualVoice). Returns complex
    ``(..., N, F, T)``; ``apply_mask`` undoes the squashing."""
    ratio = sources / (mix.unsqueeze(-3) + _EPS)
    squash = lambda x: bound * torch.tanh(x / bound)  # noqa: E731
    return torch.complex(squash(ratio.real), squash(ratio.imag))


def apply_mask(mix: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked sources ``(..., N, F, T)``: a real mask scales the complex mixture (keeping its phase), a
    complex mask multiplies it."""
    return mix.unsqueeze(-3) * mask
