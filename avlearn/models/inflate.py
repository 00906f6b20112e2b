"""I3D inflation of a 2D network (Carreira & Zisserman, "Quo Vadis, Action Recognition?", CVPR 2017).

Every ``Conv2d`` becomes a ``Conv3d`` whose kernel is the 2D kernel repeated ``K_t`` times along time and divided
by ``K_t``; 2D poolings and batch norms become their 3D versions with a temporal kernel of 1. A "boring" video of
one repeated image then gives exactly the 2D network's activations at every frame, so ImageNet weights are a
meaningful start for video. Temporal padding replicates the edge frames (instead of zeros) so that this holds at
the first and last frames too.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

from avlearn.models.layers import Encoder
from avlearn.models.registry import register_model


class InflatedConv3d(nn.Conv3d):
    """A Conv3d whose temporal padding replicates the edge frames; spatial padding stays zeros as in the 2D net."""

    def __init__(self, *args, time_padding: int = 0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.time_padding = time_padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, C', T', H', W')."""
        if self.time_padding:
            x = F.pad(x, (0, 0, 0, 0, self.time_padding, self.time_padding), mode="replicate")
        return super().forward(x)


def inflate_conv(conv: nn.Conv2d, time_kernel: int = 3, time_stride: int = 1) -> InflatedConv3d:
    """The 3D version of ``conv``: its kernel repeated ``time_kernel`` times along time and divided by it.

    Raises:
        ValueError: if ``conv`` uses a padding mode other than zeros or string padding.
    """
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        raise ValueError(f"cannot inflate {conv}: only numeric zero padding is supported")
    conv3d = InflatedConv3d(
        conv.in_channels, conv.out_channels, kernel_size=(time_kernel, *conv.kernel_size),
        stride=(time_stride, *conv.stride), padding=(0, *conv.padding), dilation=(1, *conv.dilation),
        groups=conv.groups, bias=conv.bias is not None, time_padding=time_kernel // 2,
        device=conv.weight.device, dtype=conv.weight.dtype,
    )  # fmt: skip
    with torch.no_grad():
        # (C', C, kh, kw) -> (C', C, K_t, kh, kw), each temporal slice = w / K_t
        conv3d.weight.copy_(conv.weight.unsqueeze(2).repeat(1, 1, time_kernel, 1, 1) / time_kernel)
        if conv.bias is not None:
            conv3d.bias.copy_(conv.bias)
    return conv3d


def _inflate_layer(module: nn.Module, time_kernel: int) -> nn.Module | None:
    pair = lambda v: v if isinstance(v, tuple) else (v, v)
    if isinstance(module, nn.Conv2d):
        return inflate_conv(module, time_kernel if module.kernel_size != (1, 1) else 1)
    if isinstance(module, nn.BatchNorm2d):
        tensors = [t for t in (module.weight, module.running_mean) if t is not None]
        dtype = tensors[0].dtype if tensors else None
        bn = nn.BatchNorm3d(module.num_features, module.eps, module.momentum, module.affine,
                            module.track_running_stats, dtype=dtype)  # fmt: skip
        bn.load_state_dict(module.state_dict())
        return bn
    if isinstance(module, nn.MaxPool2d):
        return nn.MaxPool3d((1, *pair(module.kernel_size)), (1, *pair(module.stride)), (0, *pair(module.padding)),
                            (1, *pair(module.dilation)), ceil_mode=module.ceil_mode)  # fmt: skip
    if isinstance(module, nn.AvgPool2d):
        return nn.AvgPool3d((1, *pair(module.kernel_size)), (1, *pair(module.stride)), (0, *pair(module.padding)),
                            ceil_mode=module.ceil_mode, count_include_pad=module.count_include_pad)  # fmt: skip
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return nn.AdaptiveAvgPool3d((1, *pair(module.output_size)))
    if isinstance(module, nn.AdaptiveMaxPool2d):
        return nn.AdaptiveMaxPool3d((1, *pair(module.output_size)))
    return None


def inflate(model: nn.Module, time_kernel: int = 3) -> nn.Module:
    """A copy of a 2D network with every 2D conv, batch norm and pooling inflated to 3D.

    Convolutions with a 1x1 kernel stay 1x1x1. Global (adaptive) poolings average over time too. The forward
    code of ``model`` must only use these modules on the images (e.g. torchvision's ResNet, VGG); ``flatten`` of
    a ``(B, C, 1, 1, 1)`` map works as before.

    Args:
        model: a 2D network taking ``(B, C, H, W)``.
        time_kernel: temporal size ``K_t`` of the inflated kernels.

    Returns:
        The inflated network taking ``(B, C, T, H, W)``.
    """
    model = copy.deepcopy(model)
    for name, child in list(model.named_children()):
        new = _inflate_layer(child, time_kernel)
        setattr(model, name, new if new is not None else inflate(child, time_kernel))
    return model


class I3DResNet(Encoder):
    """An inflated torchvision ResNet (I3D-style). Features: ``(B, 512, T, H/32, W/32)`` for BasicBlock nets.

    Args:
        resnet2d: the 2D ResNet to inflate, e.g. ``torchvision.models.resnet18(weights=...)``.
        time_kernel: temporal kernel size of the inflated convolutions.
    """

    def __init__(self, resnet2d: ResNet, time_kernel: int = 3) -> None:
        super().__init__()
        self.net = inflate(resnet2d, time_kernel)
        self.num_features = resnet2d.fc.in_features
        self.num_classes = resnet2d.fc.out_features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) -> (B, D, T, H/32, W/32)."""
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        return n.layer4(n.layer3(n.layer2(n.layer1(x))))

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, D, T', H', W') -> (B, num_classes) or (B, D)."""
        x = self.net.avgpool(features).flatten(1)  # averaged over time and space
        return x if pre_logits else self.net.fc(x)


@register_model(input_size=(3, 16, 224, 224))
def i3d_resnet18(num_classes: int = 400) -> I3DResNet:
    """ResNet-18 inflated with 3x3x3 kernels (load 2D weights into a torchvision resnet18 and inflate it yourself)."""
    import torchvision

    return I3DResNet(torchvision.models.resnet18(weights=None, num_classes=num_classes))


@register_model(input_size=(3, 4, 32, 32))
def i3d_resnet18_tiny(num_classes: int = 5) -> I3DResNet:
    """An inflated ResNet with one BasicBlock per stage."""
    return I3DResNet(ResNet(BasicBlock, [1, 1, 1, 1], num_classes=num_classes))
