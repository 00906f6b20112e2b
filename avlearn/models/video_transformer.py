"""Video transformers: a tubelet tokenizer, TimeSformer (divided space-time attention), ViViT (factorized encoder)."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from avlearn.models.layers import Attention, Block, Encoder, Mlp, TubeletEmbed
from avlearn.models.registry import register_model


class VideoTokenizer(Encoder):
    """Tubelet embedding plus a learned position embedding: the video input of :class:`~avlearn.models.fusion.MBT`.

    Args:
        in_channels: video channels ``C``.
        dim: token width ``D``.
        tubelet_size: ``(t, p, p)``.
        clip_size: ``(T, H, W)`` of the clips; fixes the number of position embeddings.
    """

    def __init__(
        self,
        in_channels: int = 3,
        dim: int = 768,
        tubelet_size: tuple[int, int, int] = (2, 16, 16),
        clip_size: tuple[int, int, int] = (8, 224, 224),
    ) -> None:
        super().__init__()
        self.num_features = dim
        self.num_classes = 0
        self.embed = TubeletEmbed(in_channels, dim, tubelet_size)
        self.grid_size = tuple(n // k for n, k in zip(clip_size, tubelet_size))  # (T', H', W')
        self.pos_embed = nn.Parameter(
            torch.randn(1, self.grid_size[0] * self.grid_size[1] * self.grid_size[2], dim) * 0.02
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> tokens (B, T'H'W', D); reshape with ``grid_size`` for a spatial map."""
        x = self.embed(x)
        if tuple(x.shape[2:]) != self.grid_size:
            raise ValueError(
                f"clip gives a {tuple(x.shape[2:])} tubelet grid, the tokenizer was built for {self.grid_size}"
            )
        return rearrange(x, "b d t h w -> b (t h w) d") + self.pos_embed

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, N, D) -> mean token (B, D) (no classifier: tokenizers feed a fusion module)."""
        return features.mean(1)


class DividedBlock(nn.Module):
    """TimeSformer's divided space-time block: temporal attention, then spatial attention, then an MLP.

    Tokens ``(B, T, S, D)`` plus a class token ``(B, 1, D)``: temporal attention runs over the ``T`` frames at each
    of the ``S`` positions; spatial attention over the ``S`` positions (and the class token) of each frame.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm_time = nn.LayerNorm(dim)
        self.attn_time = Attention(dim, num_heads)
        self.norm_space = nn.LayerNorm(dim)
        self.attn_space = Attention(dim, num_heads)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, cls: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, S, D), (B, 1, D) -> same shapes."""
        b, t, s, _ = x.shape
        xt = rearrange(x, "b t s d -> (b s) t d")
        x = x + rearrange(self.attn_time(self.norm_time(xt)), "(b s) t d -> b t s d", b=b)
        xs = torch.cat([cls.repeat_interleave(t, dim=0), rearrange(x, "b t s d -> (b t) s d")], dim=1)
        ys = self.attn_space(self.norm_space(xs))  # (B*T, 1 + S, D)
        cls = cls + rearrange(ys[:, :1], "(b t) 1 d -> b t d", b=b).mean(1, keepdim=True)  # averaged over frames
        x = x + rearrange(ys[:, 1:], "(b t) s d -> b t s d", b=b)
        x = x + self.mlp(self.norm_mlp(x))
        cls = cls + self.mlp(self.norm_mlp(cls))
        return x, cls


class TimeSformer(Encoder):
    """TimeSformer with divided space-time attention (Bertasius et al., "Is Space-Time Attention All You Need for
    Video Understanding?", ICML 2021).

    Args:
        num_classes: classes (0: no classifier).
        in_channels: video channels.
        clip_size: ``(T, H, W)``.
        patch_size: square patch side (patches are per frame).
        dim: token width.
        depth: number of divided blocks.
        num_heads: attention heads.
    """

    def __init__(
        self,
        num_classes: int = 400,
        in_channels: int = 3,
        clip_size: tuple[int, int, int] = (8, 224, 224),
        patch_size: int = 16,
        dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_features = dim
        t, h, w = clip_size
        self.grid_size = (t, h // patch_size, w // patch_size)
        self.embed = TubeletEmbed(in_channels, dim, (1, patch_size, patch_size))
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos_space = nn.Parameter(torch.randn(1, 1, self.grid_size[1] * self.grid_size[2], dim) * 0.02)
        self.pos_time = nn.Parameter(torch.randn(1, t, 1, dim) * 0.02)
        self.blocks = nn.ModuleList(DividedBlock(dim, num_heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes) if num_classes else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> tokens (B, 1 + T*S, D), class token first, then frames in (t h w) order."""
        x = self.embed(x)
        if tuple(x.shape[2:]) != self.grid_size:
            raise ValueError(
                f"clip gives a {tuple(x.shape[2:])} patch grid, TimeSformer was built for {self.grid_size}"
            )
        x = rearrange(x, "b d t h w -> b t (h w) d") + self.pos_space + self.pos_time
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        for block in self.blocks:
            x, cls = block(x, cls)
        return self.norm(torch.cat([cls, rearrange(x, "b t s d -> b (t s) d")], dim=1))

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, 1 + T*S, D) -> class token -> (B, num_classes) or (B, D)."""
        x = features[:, 0]
        return x if pre_logits else self.head(x)


class ViViT(Encoder):
    """ViViT, factorized encoder (model 2 of Arnab et al., "ViViT: A Video Vision Transformer", ICCV 2021).

    A spatial transformer encodes each tubelet-frame with its own class token; a temporal transformer then runs over
    the per-frame class tokens.

    Args:
        num_classes: classes (0: no classifier).
        in_channels: video channels.
        clip_size: ``(T, H, W)``.
        tubelet_size: ``(t, p, p)``.
        dim: token width.
        spatial_depth: layers of the spatial transformer.
        temporal_depth: layers of the temporal transformer.
        num_heads: attention heads.
    """

    def __init__(
        self,
        num_classes: int = 400,
        in_channels: int = 3,
        clip_size: tuple[int, int, int] = (32, 224, 224),
        tubelet_size: tuple[int, int, int] = (2, 16, 16),
        dim: int = 768,
        spatial_depth: int = 12,
        temporal_depth: int = 4,
        num_heads: int = 12,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_features = dim
        self.grid_size = tuple(n // k for n, k in zip(clip_size, tubelet_size))
        t, h, w = self.grid_size
        self.embed = TubeletEmbed(in_channels, dim, tubelet_size)
        self.pos_space = nn.Parameter(torch.randn(1, 1 + h * w, dim) * 0.02)
        self.pos_time = nn.Parameter(torch.randn(1, 1 + t, dim) * 0.02)
        self.cls_space = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.cls_time = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.spatial = nn.Sequential(*(Block(dim, num_heads) for _ in range(spatial_depth)), nn.LayerNorm(dim))
        self.temporal = nn.Sequential(*(Block(dim, num_heads) for _ in range(temporal_depth)), nn.LayerNorm(dim))
        self.head = nn.Linear(dim, num_classes) if num_classes else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> temporal tokens (B, 1 + T', D), class token first."""
        b = x.shape[0]
        x = self.embed(x)
        if tuple(x.shape[2:]) != self.grid_size:
            raise ValueError(f"clip gives a {tuple(x.shape[2:])} tubelet grid, ViViT was built for {self.grid_size}")
        x = rearrange(x, "b d t h w -> (b t) (h w) d")
        x = torch.cat([self.cls_space.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_space
        frames = rearrange(self.spatial(x)[:, 0], "(b t) d -> b t d", b=b)  # per-frame class tokens
        x = torch.cat([self.cls_time.expand(b, -1, -1), frames], dim=1) + self.pos_time
        return self.temporal(x)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, 1 + T', D) -> class token -> (B, num_classes) or (B, D)."""
        x = features[:, 0]
        return x if pre_logits else self.head(x)


@register_model(input_size=(3, 8, 224, 224))
def timesformer(num_classes: int = 400) -> TimeSformer:
    """TimeSformer-Base, divided space-time attention, 8x224x224."""
    return TimeSformer(num_classes=num_classes)


@register_model(input_size=(3, 4, 32, 32))
def timesformer_tiny(num_classes: int = 5) -> TimeSformer:
    """Two divided blocks of width 32."""
    return TimeSformer(num_classes=num_classes, clip_size=(4, 32, 32), patch_size=8, dim=32, depth=2, num_heads=2)


@register_model(input_size=(3, 32, 224, 224))
def vivit(num_classes: int = 400) -> ViViT:
    """ViViT-Base factorized encoder (12 spatial + 4 temporal layers), 32x224x224, tubelets 2x16x16."""
    return ViViT(num_classes=num_classes)


@register_model(input_size=(3, 4, 32, 32))
def vivit_tiny(num_classes: int = 5) -> ViViT:
    """One spatial and one temporal layer of width 32."""
    return ViViT(
        num_classes=num_classes,
        clip_size=(4, 32, 32),
        tubelet_size=(2, 8, 8),
        dim=32,
        spatial_depth=1,
        temporal_depth=1,
        num_heads=2,
    )
