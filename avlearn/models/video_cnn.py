"""Convolutional video classifiers: single-frame, late, early and slow fusion (Karpathy et al., 2014), and C3D.

All take a video batch ``(B, C, T, H, W)`` (float, normalized) and return logits ``(B, num_classes)``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from einops import rearrange
from torch import nn

from avlearn.models.layers import Encoder, global_pool, make_head
from avlearn.models.registry import register_model


def frame_cnn(in_channels: int, widths: tuple[int, ...], pool_size: int) -> nn.Sequential:
    """A plain 2D CNN: 3x3 convs (padding 1) with ReLU, a ``pool_size`` max-pool after every conv but the last."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for i, width in enumerate(widths, start=1):
        layers[f"conv{i}"] = nn.Conv2d(in_channels, width, kernel_size=3, padding=1)
        layers[f"relu{i}"] = nn.ReLU(inplace=True)
        if i < len(widths):
            layers[f"pool{i}"] = nn.MaxPool2d(pool_size)
        in_channels = width
    return nn.Sequential(layers)


class SingleFrame(Encoder):
    """Each frame is classified by the same 2D CNN and the per-frame logits are averaged over time.

    Args:
        num_classes: number of classes (0: no classifier, :meth:`forward_head` returns the embedding).
        in_channels: input channels ``C``.
        widths: channels of the 3x3 convolutions.
        pool_size: max-pool kernel and stride after each conv but the last.
    """

    def __init__(
        self,
        num_classes: int = 400,
        in_channels: int = 3,
        widths: tuple[int, ...] = (64, 128, 256, 512),
        pool_size: int = 2,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_features = widths[-1]
        self.features = frame_cnn(in_channels, widths, pool_size)
        self.head = make_head(self.num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> per-frame maps (B, D, T, H', W')."""
        b = x.shape[0]
        x = self.features(rearrange(x, "b c t h w -> (b t) c h w"))
        return rearrange(x, "(b t) d h w -> b d t h w", b=b)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, D, T, H', W') -> logits averaged over frames (B, num_classes), or the embedding (B, D)."""
        if pre_logits or self.num_classes == 0:
            return global_pool(features)
        per_frame = self.head(rearrange(features, "b d t h w -> b t (h w) d").mean(2))  # (B, T, num_classes)
        return per_frame.mean(1)


class LateFusion(Encoder):
    """Late fusion: a per-frame 2D CNN, then pooling (or one FC layer) over time.

    With ``temporal_fusion="pool"`` the frame maps are averaged over time and space (global average pool);
    with ``"fc"`` each frame is pooled over space and the ``num_frames`` vectors are concatenated into the
    classifier, as in Karpathy et al. (2014).

    Args:
        num_classes: number of classes (0: no classifier).
        in_channels: input channels ``C``.
        widths: channels of the 3x3 convolutions.
        pool_size: max-pool kernel after each conv but the last.
        temporal_fusion: ``"pool"`` or ``"fc"``.
        num_frames: frames per clip, needed by ``"fc"``.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        widths: tuple[int, ...] = (12, 24),
        pool_size: int = 4,
        temporal_fusion: str = "pool",
        num_frames: int = 20,
    ) -> None:
        super().__init__()
        if temporal_fusion not in ("pool", "fc"):
            raise ValueError(f"temporal_fusion={temporal_fusion!r}; choose 'pool' or 'fc'")
        self.num_classes = num_classes
        self.temporal_fusion = temporal_fusion
        self.num_features = widths[-1]
        self._head_hidden_size = widths[-1] * (num_frames if temporal_fusion == "fc" else 1)
        self.features = frame_cnn(in_channels, widths, pool_size)
        self.pool = nn.AdaptiveAvgPool3d(1) if temporal_fusion == "pool" else nn.AdaptiveAvgPool3d((None, 1, 1))
        self.head = make_head(self._head_hidden_size, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> per-frame maps (B, D, T, H', W')."""
        b = x.shape[0]
        x = self.features(rearrange(x, "b c t h w -> (b t) c h w"))
        return rearrange(x, "(b t) d h w -> b d t h w", b=b)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, D, T, H', W') -> (B, num_classes), or the fused embedding (B, D) or (B, D * T)."""
        x = self.pool(features).flatten(1)  # (B, D) or (B, D * T)
        return x if pre_logits else self.head(x)


class EarlyFusion(Encoder):
    """Early fusion: time folded into the input channels of the first 2D convolution.

    Args:
        num_classes: number of classes (0: no classifier).
        in_channels: input channels ``C``.
        num_frames: frames per clip ``T``; the first conv sees ``C * T`` channels.
        widths: channels of the 3x3 convolutions.
        pool_size: max-pool kernel after each conv but the last.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        num_frames: int = 20,
        widths: tuple[int, ...] = (12, 24),
        pool_size: int = 4,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_frames = num_frames
        self.num_features = widths[-1]
        self.features = frame_cnn(in_channels * num_frames, widths, pool_size)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = make_head(self.num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, D, H', W')."""
        if x.shape[2] != self.num_frames:
            raise ValueError(f"EarlyFusion was built for num_frames={self.num_frames}, got a clip of {x.shape[2]}")
        return self.features(rearrange(x, "b c t h w -> b (c t) h w"))

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, D, H', W') -> (B, num_classes) or (B, D)."""
        x = self.pool(features).flatten(1)
        return x if pre_logits else self.head(x)


class CNN3D(Encoder):
    """Slow fusion as a small 3D CNN: 3x3x3 convs (padding 1) with ReLU and ``pool_size`` cubic max-pools.

    Args:
        num_classes: number of classes (0: no classifier).
        in_channels: input channels ``C``.
        widths: channels of the 3x3x3 convolutions.
        pool_size: max-pool kernel (in T, H and W) after each conv but the last.
    """

    def __init__(
        self, num_classes: int = 10, in_channels: int = 3, widths: tuple[int, ...] = (12, 24), pool_size: int = 4
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_features = widths[-1]
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for i, width in enumerate(widths, start=1):
            layers[f"conv{i}"] = nn.Conv3d(in_channels, width, kernel_size=3, padding=1)
            layers[f"relu{i}"] = nn.ReLU(inplace=True)
            if i < len(widths):
                layers[f"pool{i}"] = nn.MaxPool3d(pool_size)
            in_channels = width
        self.features = nn.Sequential(layers)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.head = make_head(self.num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, D, T', H', W')."""
        return self.features(x)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, D, T', H', W') -> (B, num_classes) or (B, D)."""
        x = self.pool(features).flatten(1)
        return x if pre_logits else self.head(x)


class C3D(Encoder):
    """C3D (Tran et al., "Learning Spatiotemporal Features with 3D Convolutional Networks", ICCV 2015).

    Eight 3x3x3 convolutions (stride 1, padding 1) and five max-pools: pool1 is 1x2x2 (no temporal pooling
    so early layers keep the time resolution), pool2..pool5 are 2x2x2. For a 3x16x112x112 clip pool5 gives
    512x1x3x3 = 4608 features for fc6; fc6 and fc7 have 4096 units, fc8 has 487 classes (Sports-1M).

    Args:
        num_classes: fc8 outputs (0: no classifier; :meth:`forward_head` then returns fc7's output).
        in_channels: input channels ``C``.
        widths: channels of conv1, conv2, conv3a/b, conv4a/b, conv5a/b.
        fc_dim: width of fc6 and fc7.
        clip_size: ``(T, H, W)`` of the input clip; fixes fc6's input size.
        dropout_rate: dropout after fc6 and fc7.
    """

    def __init__(
        self,
        num_classes: int = 487,
        in_channels: int = 3,
        widths: tuple[int, ...] = (64, 128, 256, 512, 512),
        fc_dim: int = 4096,
        clip_size: tuple[int, int, int] = (16, 112, 112),
        dropout_rate: float = 0.5,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.num_features = widths[-1]
        self._head_hidden_size = fc_dim
        w1, w2, w3, w4, w5 = widths
        conv = lambda cin, cout: nn.Conv3d(cin, cout, kernel_size=3, padding=1)
        self.features = nn.Sequential(OrderedDict([
            ("conv1", conv(in_channels, w1)), ("relu1", nn.ReLU(inplace=True)),
            ("pool1", nn.MaxPool3d((1, 2, 2))),
            ("conv2", conv(w1, w2)), ("relu2", nn.ReLU(inplace=True)),
            ("pool2", nn.MaxPool3d(2)),
            ("conv3a", conv(w2, w3)), ("relu3a", nn.ReLU(inplace=True)),
            ("conv3b", conv(w3, w3)), ("relu3b", nn.ReLU(inplace=True)),
            ("pool3", nn.MaxPool3d(2)),
            ("conv4a", conv(w3, w4)), ("relu4a", nn.ReLU(inplace=True)),
            ("conv4b", conv(w4, w4)), ("relu4b", nn.ReLU(inplace=True)),
            ("pool4", nn.MaxPool3d(2)),
            ("conv5a", conv(w4, w5)), ("relu5a", nn.ReLU(inplace=True)),
            ("conv5b", conv(w5, w5)), ("relu5b", nn.ReLU(inplace=True)),
        ]))  # fmt: skip
        self.pool5 = nn.MaxPool3d(2)
        t, h, w = clip_size
        pooled = w5 * (t // 16) * (h // 32) * (w // 32)  # 512 * 1 * 3 * 3 = 4608 at 16x112x112
        if pooled == 0:
            raise ValueError(f"clip_size={clip_size} is too small for C3D's five poolings; use at least 16x32x32")
        self.flatten = nn.Flatten()
        self.fc6 = nn.Linear(pooled, fc_dim)
        self.fc7 = nn.Linear(fc_dim, fc_dim)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(dropout_rate)
        self.fc8 = nn.Linear(fc_dim, num_classes) if num_classes else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, 16, 112, 112) -> conv5b maps (B, 512, 2, 7, 7)."""
        return self.features(x)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, 512, 2, 7, 7) -> pool5 (B, 512, 1, 3, 3) -> fc6, fc7 (B, 4096) -> fc8 (B, num_classes)."""
        x = self.flatten(self.pool5(features))
        x = self.dropout(self.relu(self.fc6(x)))
        x = self.dropout(self.relu(self.fc7(x)))
        return x if pre_logits else self.fc8(x)


# --- registered variants -----------------------------------------------------------------------------------


@register_model(input_size=(3, 8, 112, 112))
def single_frame(num_classes: int = 400) -> SingleFrame:
    """Single-frame 2D CNN (64-128-256-512) with logits averaged over frames."""
    return SingleFrame(num_classes=num_classes)


@register_model(input_size=(3, 4, 32, 32))
def single_frame_tiny(num_classes: int = 5) -> SingleFrame:
    """Tiny single-frame CNN for tests."""
    return SingleFrame(num_classes=num_classes, widths=(8, 16))


@register_model(input_size=(3, 20, 64, 64))
def late_fusion(num_classes: int = 10) -> LateFusion:
    """Late fusion: per-frame Conv 3x3 3->12, MaxPool 4x4, Conv 3x3 12->24, global average pool."""
    return LateFusion(num_classes=num_classes)


@register_model(input_size=(3, 4, 16, 16))
def late_fusion_tiny(num_classes: int = 5) -> LateFusion:
    """Tiny late fusion with FC fusion over the 4 frames."""
    return LateFusion(num_classes=num_classes, widths=(4, 8), pool_size=2, temporal_fusion="fc", num_frames=4)


@register_model(input_size=(3, 20, 64, 64))
def early_fusion(num_classes: int = 10) -> EarlyFusion:
    """Early fusion: Conv 3x3 over 3*20 channels ->12, MaxPool 4x4, Conv 3x3 12->24, global average pool."""
    return EarlyFusion(num_classes=num_classes)


@register_model(input_size=(3, 4, 16, 16))
def early_fusion_tiny(num_classes: int = 5) -> EarlyFusion:
    """Tiny early fusion."""
    return EarlyFusion(num_classes=num_classes, num_frames=4, widths=(4, 8), pool_size=2)


@register_model(input_size=(3, 20, 64, 64))
def cnn3d(num_classes: int = 10) -> CNN3D:
    """Slow fusion / 3D CNN: Conv 3x3x3 3->12, MaxPool 4x4x4, Conv 3x3x3 12->24, global average pool."""
    return CNN3D(num_classes=num_classes)


@register_model(input_size=(3, 4, 16, 16))
def cnn3d_tiny(num_classes: int = 5) -> CNN3D:
    """Tiny 3D CNN."""
    return CNN3D(num_classes=num_classes, widths=(4, 8), pool_size=2)


@register_model(input_size=(3, 16, 112, 112))
def c3d(num_classes: int = 487) -> C3D:
    """C3D as in Tran et al. (2015), Sports-1M head (487 classes)."""
    return C3D(num_classes=num_classes)


@register_model(input_size=(3, 16, 32, 32))
def c3d_tiny(num_classes: int = 5) -> C3D:
    """C3D's layout with narrow layers, for tests."""
    return C3D(num_classes=num_classes, widths=(4, 8, 8, 16, 16), fc_dim=32, clip_size=(16, 32, 32))
