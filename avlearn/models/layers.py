"""Building blocks shared by the models: the encoder interface and a pre-norm transformer block."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class Encoder(nn.Module):
    """The interface every avlearn encoder follows, so tasks can swap them.

    Subclasses set ``num_features`` (channels of the features, i.e. ``D`` of the tokens), ``num_classes``
    (0 when the model has no classifier) and, when the classifier has hidden layers (C3D's fc6/fc7),
    ``head_hidden_size`` (width of the pre-logits embedding; defaults to ``num_features``), and implement
    :meth:`forward_features` and :meth:`forward_head`.

    * ``forward_features(x)`` returns the last feature map ``(B, D, T', H', W')`` (3D CNNs), ``(B, D, H', W')``
      (2D CNNs, spectrogram CNNs) or tokens ``(B, N, D)`` (transformers, recurrent nets).
    * ``forward_tokens(x)`` returns tokens ``(B, N, D)`` for every encoder: feature maps are flattened in
      ``(t h w)`` order, so a fusion module can take any of them.
    * ``forward_head(features, pre_logits=False)`` pools the features and classifies them; with
      ``pre_logits=True`` it returns the pooled embedding ``(B, head_hidden_size)`` instead.
    """

    num_features: int
    num_classes: int

    @property
    def head_hidden_size(self) -> int:
        return getattr(self, "_head_hidden_size", self.num_features)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Input batch -> feature map ``(B, D, *S)`` or tokens ``(B, N, D)``."""
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Features -> logits ``(B, num_classes)``, or the embedding ``(B, head_hidden_size)``."""
        raise NotImplementedError

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens ``(B, N, D)`` of any encoder; feature maps ``(B, D, *S)`` become ``(B, prod(S), D)``."""
        features = self.forward_features(x)
        if features.dim() == 3:
            return features
        return features.flatten(2).transpose(1, 2)  # (B, D, *S) -> (B, N, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Input batch -> logits ``(B, num_classes)``."""
        return self.forward_head(self.forward_features(x))


def sinusoid(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer sinusoidal encoding of (fractional) positions ``(N,)`` -> ``(N, dim)``."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=positions.device) / half)
    angles = positions.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def global_pool(features: torch.Tensor) -> torch.Tensor:
    """Average a feature map ``(B, D, *S)`` over its spatial axes -> ``(B, D)``."""
    return features.flatten(2).mean(-1)


def make_head(num_features: int, num_classes: int, dropout_rate: float = 0.0) -> nn.Module:
    """A linear classifier, or an identity when ``num_classes == 0`` (feature extractor)."""
    if num_classes == 0:
        return nn.Identity()
    return nn.Sequential(nn.Dropout(dropout_rate), nn.Linear(num_features, num_classes))


class Attention(nn.Module):
    """Multi-head self-attention on tokens ``(B, N, D)`` (Vaswani et al., 2017)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim={dim} must be divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N, D) -> (B, N, D); ``mask`` ``(N, N)`` bool, True where a query may attend to a key."""
        qkv = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.num_heads)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=mask)  # (B, heads, N, D/heads)
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))


class Mlp(nn.Module):
    """Two linear layers with a GELU between them."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, N, D)."""
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """A pre-norm transformer encoder layer: ``x + attn(norm(x))`` then ``x + mlp(norm(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, norm_layer: type[nn.Module] = nn.LayerNorm):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N, D) -> (B, N, D); ``mask`` as in :class:`Attention`."""
        x = x + self.attn(self.norm1(x), mask)
        return x + self.mlp(self.norm2(x))


class TubeletEmbed(nn.Module):
    """Non-overlapping tubelets of a video, linearly embedded (ViViT's tubelet embedding, a strided Conv3d).

    Args:
        in_channels: video channels ``C``.
        dim: token width ``D``.
        tubelet_size: ``(t, p, p)``; ``t=1`` gives per-frame patches (ViT / TimeSformer).
    """

    def __init__(self, in_channels: int, dim: int, tubelet_size: tuple[int, int, int]) -> None:
        super().__init__()
        self.proj = nn.Conv3d(in_channels, dim, kernel_size=tubelet_size, stride=tubelet_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, D, T/t, H/p, W/p)."""
        return self.proj(x)


class PatchEmbed2d(nn.Module):
    """Patches of an image or spectrogram ``(B, C, F, T)``, linearly embedded (a Conv2d; overlap if stride < size).

    Args:
        in_channels: input channels.
        dim: token width ``D``.
        patch_size: patch height and width.
        stride: patch stride (``patch_size`` for non-overlapping patches; AST uses 16 with stride 10).
    """

    def __init__(self, in_channels: int, dim: int, patch_size: int, stride: int | None = None) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=stride or patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, F, T) -> (B, D, F', T')."""
        return self.proj(x)


def conv_output_size(size: int, kernel: int, stride: int, padding: int = 0) -> int:
    """Length of a conv/pool output along one axis."""
    return (size + 2 * padding - kernel) // stride + 1
