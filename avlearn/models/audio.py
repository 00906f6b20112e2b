"""Spectrogram encoders: a VGGish-style CNN, an AST-style patch transformer and a patch tokenizer for MBT.

Input: log-mel spectrogram batches ``(B, 1, F, T)`` (mel bins, frames).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from einops import rearrange
from torch import nn

from avlearn.models.layers import Block, Encoder, PatchEmbed2d, conv_output_size
from avlearn.models.registry import register_model


class SpecTokenizer(Encoder):
    """Non-overlapping spectrogram patches plus a learned position embedding: MBT's audio input.

    Args:
        dim: token width ``D``.
        patch_size: square patch side.
        spec_size: ``(F, T)`` of the spectrograms; fixes the number of position embeddings.
    """

    input_axes = ("F", "T")

    def __init__(self, dim: int = 768, patch_size: int = 16, spec_size: tuple[int, int] = (128, 800)) -> None:
        super().__init__()
        self.num_features = dim
        self.num_classes = 0
        self.embed = PatchEmbed2d(1, dim, patch_size)
        self.grid_size = (spec_size[0] // patch_size, spec_size[1] // patch_size)
        self.pos_embed = nn.Parameter(torch.randn(1, self.grid_size[0] * self.grid_size[1], dim) * 0.02)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, F, T) -> tokens (B, F'T', D)."""
        x = self.embed(x)
        if tuple(x.shape[2:]) != self.grid_size:
            raise ValueError(
                f"spectrogram gives a {tuple(x.shape[2:])} patch grid, the tokenizer was built for {self.grid_size}"
            )
        return rearrange(x, "b d f t -> b (f t) d") + self.pos_embed

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, N, D) -> mean token (B, D) (no classifier: tokenizers feed a fusion module)."""
        return features.mean(1)


class VGGish(Encoder):
    """VGGish-style CNN (Hershey et al., "CNN Architectures for Large-Scale Audio Classification", ICASSP 2017).

    VGG's 3x3 convs on a log-mel patch (VGGish: 96 frames x 64 mel bands): conv64, pool, conv128, pool, 2x conv256,
    pool, 2x conv512, pool, then fc 4096, 4096 and a 128-d embedding, then a classifier.

    Args:
        num_classes: classes (0: :meth:`forward` returns the embedding).
        widths: channels of the four conv stages.
        fc_dim: width of the two hidden fc layers; 0 drops the fc stack (the embedding is then the average of the
            last conv map, and any ``spec_size`` works).
        embed_dim: embedding width (ignored when ``fc_dim=0``).
        spec_size: ``(F, T)``; fixes the first fc layer's input.
    """

    input_axes = ("F", "T")

    def __init__(
        self,
        num_classes: int = 527,
        widths: tuple[int, int, int, int] = (64, 128, 256, 512),
        fc_dim: int = 4096,
        embed_dim: int = 128,
        spec_size: tuple[int, int] = (64, 96),
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_features = widths[-1]
        w1, w2, w3, w4 = widths
        conv = lambda cin, cout: nn.Conv2d(cin, cout, kernel_size=3, padding=1)
        self.features = nn.Sequential(OrderedDict([
            ("conv1", conv(1, w1)), ("relu1", nn.ReLU(inplace=True)), ("pool1", nn.MaxPool2d(2)),
            ("conv2", conv(w1, w2)), ("relu2", nn.ReLU(inplace=True)), ("pool2", nn.MaxPool2d(2)),
            ("conv3_1", conv(w2, w3)), ("relu3_1", nn.ReLU(inplace=True)),
            ("conv3_2", conv(w3, w3)), ("relu3_2", nn.ReLU(inplace=True)), ("pool3", nn.MaxPool2d(2)),
            ("conv4_1", conv(w3, w4)), ("relu4_1", nn.ReLU(inplace=True)),
            ("conv4_2", conv(w4, w4)), ("relu4_2", nn.ReLU(inplace=True)),
        ]))  # fmt: skip
        self.pool4 = nn.MaxPool2d(2)
        flat = w4 * (spec_size[0] // 16) * (spec_size[1] // 16)  # 512 * 4 * 6 = 12288 for 64x96
        if flat == 0 and fc_dim:
            raise ValueError(f"spec_size={spec_size} is too small for four poolings; use at least 16x16")
        if fc_dim:
            self.embedding = nn.Sequential(
                nn.Flatten(), nn.Linear(flat, fc_dim), nn.ReLU(inplace=True), nn.Linear(fc_dim, fc_dim),
                nn.ReLU(inplace=True), nn.Linear(fc_dim, embed_dim), nn.ReLU(inplace=True),
            )  # fmt: skip
        else:  # no fc stack: the embedding is the globally pooled conv map
            self.embedding = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
            embed_dim = w4
        self._head_hidden_size = embed_dim
        self.head = nn.Linear(embed_dim, num_classes) if num_classes else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, F, T) -> (B, 512, F/8, T/8)."""
        return self.features(x)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, 512, F/8, T/8) -> logits (B, num_classes), or the 128-d embedding."""
        x = self.embedding(self.pool4(features))
        return x if pre_logits else self.head(x)


class AST(Encoder):
    """Audio Spectrogram Transformer (Gong et al., Interspeech 2021): overlapping 16x16 patches, a ViT encoder.

    Simplified to a single class token (AST also has a distillation token).

    Args:
        num_classes: classes (0: no classifier).
        spec_size: ``(F, T)``.
        patch_size: patch side.
        stride: patch stride (10 in AST: patches overlap by 6).
        dim: token width.
        depth: transformer layers.
        num_heads: attention heads.
    """

    input_axes = ("F", "T")

    def __init__(
        self,
        num_classes: int = 527,
        spec_size: tuple[int, int] = (128, 1024),
        patch_size: int = 16,
        stride: int = 10,
        dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_features = dim
        self.embed = PatchEmbed2d(1, dim, patch_size, stride)
        self.grid_size = tuple(conv_output_size(n, patch_size, stride) for n in spec_size)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + self.grid_size[0] * self.grid_size[1], dim) * 0.02)
        self.blocks = nn.Sequential(*(Block(dim, num_heads) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes) if num_classes else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, F, T) -> tokens (B, 1 + F'T', D), class token first."""
        x = rearrange(self.embed(x), "b d f t -> b (f t) d")
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        return self.norm(self.blocks(x))

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, 1 + F'T', D) -> class token -> (B, num_classes) or (B, D)."""
        x = features[:, 0]
        return x if pre_logits else self.head(x)


@register_model(input_size=(1, 64, 96))
def vggish(num_classes: int = 527) -> VGGish:
    """VGGish on a 64-mel x 96-frame (0.96 s) log-mel patch, 128-d embedding, AudioSet's 527 classes."""
    return VGGish(num_classes=num_classes)


@register_model(input_size=(1, 32, 48))
def vggish_tiny(num_classes: int = 5) -> VGGish:
    """Narrow VGGish."""
    return VGGish(num_classes=num_classes, widths=(4, 8, 16, 16), fc_dim=32, embed_dim=16, spec_size=(32, 48))


@register_model(input_size=(1, 128, 1024))
def ast(num_classes: int = 527) -> AST:
    """AST-Base on 128 mel x 1024 frames (10 s), 16x16 patches with stride 10 (1212 patches)."""
    return AST(num_classes=num_classes)


@register_model(input_size=(1, 32, 48))
def ast_tiny(num_classes: int = 5) -> AST:
    """Two layers of width 32."""
    return AST(num_classes=num_classes, spec_size=(32, 48), dim=32, depth=2, num_heads=2)
