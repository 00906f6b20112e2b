"""torchvision's video models (no weights downloaded) behind avlearn's encoder interface.

r3d_18, mc3_18 and r2plus1d_18 (Tran et al., "A Closer Look at Spatiotemporal Convolutions", CVPR 2018),
s3d (Xie et al., ECCV 2018), mvit_v2_s (Li et al., CVPR 2022) and swin3d_t (Liu et al., CVPR 2022). Pretrained
weights can be loaded into the wrapped ``net`` with torchvision's ``weights=`` enums where they are available.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import video as tvv
from torchvision.models.video.mvit import MSBlockConfig
from torchvision.models.video.resnet import (
    BasicBlock,
    Conv2Plus1D,
    Conv3DNoTemporal,
    Conv3DSimple,
    VideoResNet,
)

from avlearn.models.layers import Encoder
from avlearn.models.registry import register_model


class VideoResNetEncoder(Encoder):
    """A torchvision ``VideoResNet`` (r3d, mc3, r2plus1d). Features: layer4's map ``(B, 512, T/8, H/16, W/16)``."""

    def __init__(self, net: VideoResNet) -> None:
        super().__init__()
        self.net = net
        self.num_features = net.fc.in_features
        self.num_classes = net.fc.out_features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) -> (B, 512, T', H', W')."""
        x = self.net.stem(x)
        return self.net.layer4(self.net.layer3(self.net.layer2(self.net.layer1(x))))

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, 512, T', H', W') -> (B, num_classes) or (B, 512)."""
        x = self.net.avgpool(features).flatten(1)
        return x if pre_logits else self.net.fc(x)


class S3DEncoder(Encoder):
    """torchvision's S3D. Its head pools adaptively here, so inputs smaller than 16x224x224 work too."""

    def __init__(self, net: tvv.S3D) -> None:
        super().__init__()
        self.net = net
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.num_features = 1024
        self.num_classes = net.classifier[1].out_channels

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) -> (B, 1024, T/8, H/32, W/32)."""
        return self.net.features(x)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, 1024, T', H', W') -> (B, num_classes) or (B, 1024)."""
        x = self.pool(features)  # (B, 1024, 1, 1, 1)
        return x.flatten(1) if pre_logits else self.net.classifier(x).flatten(1)


class MViTEncoder(Encoder):
    """torchvision's MViT (v2). Features: tokens ``(B, 1 + T'H'W', D)`` with the class token first."""

    def __init__(self, net: tvv.MViT) -> None:
        super().__init__()
        self.net = net
        self.num_features = net.norm.normalized_shape[0]
        self.num_classes = net.head[-1].out_features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) -> (B, 1 + N, D); mirrors ``MViT.forward`` up to the final norm."""
        x = self.net.conv_proj(x).flatten(2).transpose(1, 2)  # (B, D0, T', H', W') -> (B, N, D0)
        x = self.net.pos_encoding(x)
        thw = (self.net.pos_encoding.temporal_size,) + self.net.pos_encoding.spatial_size
        for block in self.net.blocks:
            x, thw = block(x, thw)
        return self.net.norm(x)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, 1 + N, D) -> class token -> (B, num_classes) or (B, D)."""
        x = features[:, 0]  # class token
        return x if pre_logits else self.net.head(x)


class Swin3DEncoder(Encoder):
    """torchvision's Video Swin Transformer. Features: the last stage's map ``(B, D, T/2, H/32, W/32)``."""

    def __init__(self, net: tvv.SwinTransformer3d) -> None:
        super().__init__()
        self.net = net
        self.num_features = net.num_features
        self.num_classes = net.head.out_features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) -> (B, D, T', H', W')."""
        x = self.net.features(self.net.pos_drop(self.net.patch_embed(x)))  # (B, T', H', W', D)
        return self.net.norm(x).permute(0, 4, 1, 2, 3)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, D, T', H', W') -> (B, num_classes) or (B, D)."""
        x = self.net.avgpool(features).flatten(1)
        return x if pre_logits else self.net.head(x)


class NarrowVideoResNet(VideoResNet):
    """torchvision's ``VideoResNet`` (its blocks, conv makers and stems) with other stage widths.

    torchvision fixes the widths at 64-128-256-512; the ``_tiny`` variants use this to stay small on CPU.

    Args:
        conv_makers: one torchvision conv maker per stage (``Conv3DSimple``, ``Conv3DNoTemporal``, ``Conv2Plus1D``).
        layers: BasicBlocks per stage.
        widths: channels of the stem and the four stages.
        factored_stem: R(2+1)D's stem (a 1x7x7 then a 3x1x1 conv) instead of the 3x7x7 one.
        num_classes: classes.
    """

    def __init__(self, conv_makers: list[type[nn.Module]], layers: list[int], widths: tuple[int, int, int, int],
                 factored_stem: bool = False, num_classes: int = 400) -> None:  # fmt: skip
        nn.Module.__init__(self)  # VideoResNet.__init__ would build the 64-wide stem and stages
        w0 = widths[0]
        if factored_stem:  # R2Plus1dStem with 45/64 of the width in the middle
            mid = max(1, 45 * w0 // 64)
            self.stem = nn.Sequential(
                nn.Conv3d(3, mid, (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False), nn.BatchNorm3d(mid), nn.ReLU(True),
                nn.Conv3d(mid, w0, (3, 1, 1), 1, (1, 0, 0), bias=False), nn.BatchNorm3d(w0), nn.ReLU(True),
            )  # fmt: skip
        else:  # BasicStem
            self.stem = nn.Sequential(
                nn.Conv3d(3, w0, (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=False), nn.BatchNorm3d(w0), nn.ReLU(True)
            )
        self.inplanes = w0
        self.layer1 = self._make_layer(BasicBlock, conv_makers[0], widths[0], layers[0], stride=1)
        self.layer2 = self._make_layer(BasicBlock, conv_makers[1], widths[1], layers[1], stride=2)
        self.layer3 = self._make_layer(BasicBlock, conv_makers[2], widths[2], layers[2], stride=2)
        self.layer4 = self._make_layer(BasicBlock, conv_makers[3], widths[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
        self.fc = nn.Linear(widths[3], num_classes)
        for m in self.modules():  # torchvision's initialization
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.fc.weight, 0, 0.01)
        nn.init.zeros_(self.fc.bias)


TINY_WIDTHS = (8, 16, 32, 64)


def _tiny_video_resnet(conv_maker: type[nn.Module], num_classes: int, first: type[nn.Module] | None = None):
    makers = [first or conv_maker] + [conv_maker] * 3
    return NarrowVideoResNet(makers, [1, 1, 1, 1], TINY_WIDTHS, conv_maker is Conv2Plus1D, num_classes)


@register_model(input_size=(3, 16, 112, 112))
def r3d_18(num_classes: int = 400) -> VideoResNetEncoder:
    """torchvision r3d_18: 3D ResNet-18."""
    return VideoResNetEncoder(tvv.r3d_18(weights=None, num_classes=num_classes))


@register_model(input_size=(3, 4, 32, 32))
def r3d_18_tiny(num_classes: int = 5) -> VideoResNetEncoder:
    """r3d with one block per stage, widths 8-16-32-64."""
    return VideoResNetEncoder(_tiny_video_resnet(Conv3DSimple, num_classes))


@register_model(input_size=(3, 16, 112, 112))
def mc3_18(num_classes: int = 400) -> VideoResNetEncoder:
    """torchvision mc3_18: mixed convolutions (3D in the first stage, 2D after)."""
    return VideoResNetEncoder(tvv.mc3_18(weights=None, num_classes=num_classes))


@register_model(input_size=(3, 4, 32, 32))
def mc3_18_tiny(num_classes: int = 5) -> VideoResNetEncoder:
    """mc3 with one block per stage, widths 8-16-32-64."""
    return VideoResNetEncoder(_tiny_video_resnet(Conv3DNoTemporal, num_classes, first=Conv3DSimple))


@register_model(input_size=(3, 16, 112, 112))
def r2plus1d_18(num_classes: int = 400) -> VideoResNetEncoder:
    """torchvision r2plus1d_18: R(2+1)D, each 3D conv factored into a 2D spatial and a 1D temporal conv."""
    return VideoResNetEncoder(tvv.r2plus1d_18(weights=None, num_classes=num_classes))


@register_model(input_size=(3, 4, 32, 32))
def r2plus1d_18_tiny(num_classes: int = 5) -> VideoResNetEncoder:
    """R(2+1)D with one block per stage, widths 8-16-32-64."""
    return VideoResNetEncoder(_tiny_video_resnet(Conv2Plus1D, num_classes))


@register_model(input_size=(3, 16, 224, 224))
def s3d(num_classes: int = 400) -> S3DEncoder:
    """torchvision S3D: separable 3D Inception."""
    return S3DEncoder(tvv.s3d(weights=None, num_classes=num_classes))


@register_model(input_size=(3, 8, 32, 32))
def s3d_tiny(num_classes: int = 5) -> S3DEncoder:
    """S3D itself (torchvision fixes its widths) on a tiny clip."""
    return S3DEncoder(tvv.s3d(weights=None, num_classes=num_classes))


@register_model(input_size=(3, 16, 224, 224))
def mvit_v2_s(num_classes: int = 400) -> MViTEncoder:
    """torchvision mvit_v2_s: multiscale vision transformer v2, small."""
    return MViTEncoder(tvv.mvit_v2_s(weights=None, num_classes=num_classes))


@register_model(input_size=(3, 4, 32, 32))
def mvit_v2_s_tiny(num_classes: int = 5) -> MViTEncoder:
    """MViT v2 with two narrow blocks (pooled keys/values, then a pooled query stage)."""
    blocks = [
        MSBlockConfig(
            num_heads=1,
            input_channels=16,
            output_channels=16,
            kernel_q=[3, 3, 3],
            kernel_kv=[3, 3, 3],
            stride_q=[1, 1, 1],
            stride_kv=[1, 2, 2],
        ),
        MSBlockConfig(
            num_heads=2,
            input_channels=16,
            output_channels=32,
            kernel_q=[3, 3, 3],
            kernel_kv=[3, 3, 3],
            stride_q=[1, 2, 2],
            stride_kv=[1, 1, 1],
        ),
    ]
    net = tvv.MViT(
        spatial_size=(32, 32),
        temporal_size=4,
        block_setting=blocks,
        residual_pool=True,
        residual_with_cls_embed=False,
        rel_pos_embed=True,
        proj_after_attn=True,
        num_classes=num_classes,
    )
    return MViTEncoder(net)


@register_model(input_size=(3, 16, 224, 224))
def swin3d_t(num_classes: int = 400) -> Swin3DEncoder:
    """torchvision swin3d_t: Video Swin Transformer, tiny."""
    return Swin3DEncoder(tvv.swin3d_t(weights=None, num_classes=num_classes))


@register_model(input_size=(3, 4, 32, 32))
def swin3d_t_tiny(num_classes: int = 5) -> Swin3DEncoder:
    """Video Swin with two narrow stages."""
    net = tvv.SwinTransformer3d(
        patch_size=[2, 4, 4],
        embed_dim=16,
        depths=[1, 1],
        num_heads=[1, 2],
        window_size=[2, 4, 4],
        stochastic_depth_prob=0.0,
        num_classes=num_classes,
    )
    return Swin3DEncoder(net)


@register_model(input_size=(3, 8, 96, 96))
def r2plus1d_cpu(num_classes: int = 400, widths: tuple[int, int, int, int] = (16, 32, 64, 128)) -> VideoResNetEncoder:
    """R(2+1)D with one block per stage, widths 16-32-64-128: a clip classifier that trains on a CPU."""
    return VideoResNetEncoder(NarrowVideoResNet([Conv2Plus1D] * 4, [1, 1, 1, 1], tuple(widths), True, num_classes))


@register_model(input_size=(3, 4, 32, 32))
def r2plus1d_cpu_tiny(num_classes: int = 5) -> VideoResNetEncoder:
    """r2plus1d_cpu at widths 4-8-8-16."""
    return r2plus1d_cpu(num_classes, widths=(4, 8, 8, 16))
