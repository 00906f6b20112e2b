"""Two-stream network (Simonyan & Zisserman, "Two-Stream Convolutional Networks for Action Recognition in Videos",
NeurIPS 2014)::

    video (B,3,T,H,W) ── middle frame (B,3,H,W) ───────► spatial CNN ──► softmax ─┐
                                                                                   ├─ weighted mean ─► log-probs
    flow  (B,2,T-1,H,W) ── stacked (B,2(T-1),H,W) ──────► temporal CNN ─► softmax ─┘

Flow comes from :func:`avlearn.video.flow.farneback_flow` (a data transform, not part of the model).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from avlearn.models.layers import Encoder
from avlearn.models.registry import register_model
from avlearn.models.video_cnn import frame_cnn


class TwoStream(Encoder):
    """RGB and optical-flow streams with late score fusion.

    Args:
        num_classes: classes.
        num_flow_frames: flow fields per clip ``T - 1``; the temporal stream sees ``2 * num_flow_frames`` channels.
        widths: channels of each stream's 3x3 convolutions.
        pool_size: max-pool kernel after each conv but the last.
        flow_weight: weight of the temporal stream's probabilities (the spatial one gets ``1 - flow_weight``).
    """

    def __init__(
        self,
        num_classes: int = 101,
        num_flow_frames: int = 10,
        widths: tuple[int, ...] = (64, 128, 256, 512),
        pool_size: int = 2,
        flow_weight: float = 0.5,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError("TwoStream fuses class scores, so num_classes must be >= 1")
        self.num_classes = num_classes
        self.num_features = widths[-1]
        self._head_hidden_size = 2 * widths[-1]
        self.num_flow_frames = num_flow_frames
        self.flow_weight = flow_weight
        self.spatial = frame_cnn(3, widths, pool_size)
        self.temporal = frame_cnn(2 * num_flow_frames, widths, pool_size)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.spatial_head = nn.Linear(widths[-1], num_classes)
        self.temporal_head = nn.Linear(widths[-1], num_classes)

    def forward_features(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{"video": (B, 3, T, H, W), "flow": (B, 2, T-1, H, W)}`` -> ``{"rgb": (B, D, H', W'), "flow": ...}``."""
        video, flow = x["video"], x["flow"]
        if flow.shape[2] != self.num_flow_frames:
            raise ValueError(f"built for {self.num_flow_frames} flow fields, got {flow.shape[2]}")
        rgb = video[:, :, video.shape[2] // 2]  # the middle frame
        stacked = rearrange(flow, "b two t h w -> b (t two) h w")  # x0, y0, x1, y1, ...
        return {"rgb": self.spatial(rgb), "flow": self.temporal(stacked)}

    def forward_head(self, features: dict[str, torch.Tensor], pre_logits: bool = False) -> torch.Tensor:
        """Stream maps -> log of the weighted mean of the streams' softmax scores (B, num_classes)."""
        rgb, flow = self.pool(features["rgb"]).flatten(1), self.pool(features["flow"]).flatten(1)
        if pre_logits:
            return torch.cat([rgb, flow], dim=1)
        p_rgb = self.spatial_head(rgb).softmax(-1)
        p_flow = self.temporal_head(flow).softmax(-1)
        return ((1 - self.flow_weight) * p_rgb + self.flow_weight * p_flow).clamp_min(1e-12).log()

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        """``{"video": (B, 3, T, H, W), "flow": (B, 2, T-1, H, W)}`` -> log-probabilities (B, num_classes)."""
        return self.forward_head(self.forward_features(x))


@register_model(input_size={"video": (3, 11, 112, 112), "flow": (2, 10, 112, 112)})
def two_stream(num_classes: int = 101) -> TwoStream:
    """Two streams of 64-128-256-512 CNNs; the temporal one on 10 stacked flow fields (20 channels)."""
    return TwoStream(num_classes=num_classes)


@register_model(input_size={"video": (3, 3, 32, 32), "flow": (2, 2, 32, 32)})
def two_stream_tiny(num_classes: int = 5) -> TwoStream:
    """Tiny two-stream net on 2 flow fields."""
    return TwoStream(num_classes=num_classes, num_flow_frames=2, widths=(4, 8))
