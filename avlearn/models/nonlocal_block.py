"""Non-local block (Wang et al., "Non-local Neural Networks", CVPR 2018) and a helper to insert it into a 3D CNN."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from avlearn.models.registry import register_model
from avlearn.models.tv_video import TINY_WIDTHS, VideoResNetEncoder, _tiny_video_resnet, tvv


class NonLocalBlock(nn.Module):
    """Spatio-temporal self-attention over all ``T*H*W`` positions, added back residually (embedded Gaussian).

    ``z = x + BN(W_z(softmax(theta(x)^T phi(x)) g(x)))``. As in the paper, the BN's scale starts at zero so an
    inserted block is the identity at initialization and a pretrained network is unchanged by the insertion.

    Args:
        in_channels: channels ``C`` of the feature map.
        inter_channels: channels of theta, phi and g (default ``C // 2``).
        zero_init: start the output BN's scale at zero (identity block).
    """

    def __init__(self, in_channels: int, inter_channels: int | None = None, zero_init: bool = True) -> None:
        super().__init__()
        inter = inter_channels or max(1, in_channels // 2)
        self.theta = nn.Conv3d(in_channels, inter, kernel_size=1)
        self.phi = nn.Conv3d(in_channels, inter, kernel_size=1)
        self.g = nn.Conv3d(in_channels, inter, kernel_size=1)
        self.out = nn.Conv3d(inter, in_channels, kernel_size=1)
        self.bn = nn.BatchNorm3d(in_channels)
        if zero_init:
            nn.init.zeros_(self.bn.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, C, T, H, W)."""
        t, h, w = x.shape[2:]
        q, k, v = (rearrange(f(x), "b c t h w -> b 1 (t h w) c") for f in (self.theta, self.phi, self.g))
        y = F.scaled_dot_product_attention(q, k, v, scale=1.0)  # (B, 1, THW, C'); softmax(q k^T) v, unscaled
        y = rearrange(y, "b 1 (t h w) c -> b c t h w", t=t, h=h, w=w)
        return x + self.bn(self.out(y))


def insert_nonlocal(model: nn.Module, locations: dict[str, int], zero_init: bool = True) -> nn.Module:
    """Insert a :class:`NonLocalBlock` after each named submodule of a 3D CNN, in place.

    Args:
        model: any network producing ``(B, C, T, H, W)`` maps at ``locations``.
        locations: ``{dotted module path: its output channels}``, e.g. ``{"net.layer2": 128, "net.layer3": 256}``.
        zero_init: see :class:`NonLocalBlock`.

    Returns:
        ``model``, whose named submodules are now ``Sequential(original, NonLocalBlock)``.

    Raises:
        ValueError: if a path names no submodule.
    """
    for path, channels in locations.items():
        parent_path, _, child = path.rpartition(".")
        try:
            parent = model.get_submodule(parent_path) if parent_path else model
            original = getattr(parent, child)
        except AttributeError as err:
            raise ValueError(f"{type(model).__name__} has no submodule {path!r}") from err
        setattr(parent, child, nn.Sequential(original, NonLocalBlock(channels, zero_init=zero_init)))
    return model


@register_model(input_size=(3, 16, 112, 112))
def r3d_18_nonlocal(num_classes: int = 400) -> VideoResNetEncoder:
    """r3d_18 with non-local blocks after layer2 and layer3."""
    model = VideoResNetEncoder(tvv.r3d_18(weights=None, num_classes=num_classes))
    return insert_nonlocal(model, {"net.layer2": 128, "net.layer3": 256})


@register_model(input_size=(3, 4, 32, 32))
def r3d_18_nonlocal_tiny(num_classes: int = 5) -> VideoResNetEncoder:
    """Tiny r3d with a non-local block after layer2 (not zero-initialized, so the test sees its gradients)."""
    from torchvision.models.video.resnet import Conv3DSimple

    model = VideoResNetEncoder(_tiny_video_resnet(Conv3DSimple, num_classes))
    return insert_nonlocal(model, {"net.layer2": TINY_WIDTHS[1]}, zero_init=False)
