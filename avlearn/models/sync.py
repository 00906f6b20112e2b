"""Audio-visual synchronization models: small CNN stems that keep every video frame, fused by MBT.

::

    video (B,3,T,H,W) ──► SyncVideoStem ──► (B, T·h·w, D) ─┐                   ┌─► CLS_video ─┐
                          (temporal stride 1)              ├─► MBT bottlenecks ┤              ├─► linear ─► sync logit
    spec  (B,1,F,Ta)  ──► SyncSpecStem  ──► (B, Ta/4, D)  ─┘   (or full attn,  └─► CLS_spec  ─┘
                          (10 ms hop -> 40 ms tokens)            or late fusion)

Video runs at 25 fps and the spectrogram at a 10 ms hop, so after the spec stem's 4x time stride one audio
token spans one video frame: a one-frame shift of the audio moves every audio token by one position, which
the attention layers can see through the sinusoidal time encodings both streams share.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from avlearn.models.fusion import MBT, AVClassifier
from avlearn.models.layers import Encoder, global_pool, make_head
from avlearn.models.registry import register_model


def sinusoid(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer sinusoidal encoding of (fractional) positions ``(N,)`` -> ``(N, dim)``."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=positions.device) / half)
    angles = positions.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def _conv3d(cin: int, cout: int, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> nn.Sequential:
    pad = tuple(k // 2 for k in kernel)
    return nn.Sequential(nn.Conv3d(cin, cout, kernel, stride, pad, bias=False), nn.BatchNorm3d(cout), nn.ReLU(True))


def _conv2d(cin: int, cout: int, stride: tuple[int, int]) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True))


class SyncVideoStem(Encoder):
    """A 3D CNN with temporal stride 1: ``(B, 3, T, H, W) -> (B, D, T, H/16, W/16)``.

    Args:
        widths: channels of the three 3x3x3 (first 3x5x5) conv layers, each halving H and W.
        dim: output channels ``D`` (a last 1x3x3 conv halves H and W once more).
        num_classes: 0 for a feature extractor.
        frame_tokens: one token per frame (spatial max + mean) instead of one per location: 16x fewer
            tokens for the fusion layers, and the strongest local event of each frame survives pooling.
        changes: also feed the frame-to-frame difference (3 more input channels), so visual events
            (a hop, a flash, a mouth opening) are a linear feature of the input rather than something the
            first layers must learn to compute.
    """

    def __init__(
        self,
        widths: tuple[int, int, int] = (16, 32, 64),
        dim: int = 64,
        num_classes: int = 0,
        frame_tokens: bool = False,
        changes: bool = False,
    ):
        super().__init__()
        self.frame_tokens, self.changes = frame_tokens, changes
        w1, w2, w3 = widths
        self.features = nn.Sequential(
            _conv3d(3 + 3 * changes, w1, (3, 5, 5), (1, 2, 2)),
            _conv3d(w1, w2, (3, 3, 3), (1, 2, 2)),
            _conv3d(w2, w3, (3, 3, 3), (1, 2, 2)),
            _conv3d(w3, dim, (1, 3, 3), (1, 2, 2)),
        )
        self.num_features, self.num_classes = dim, num_classes
        self.head = make_head(dim, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.changes:
            diff = torch.diff(x, dim=2, prepend=x[:, :, :1])  # (B, 3, T, H, W): frame t minus frame t-1
            x = torch.cat([x, diff], dim=1)
        return self.features(x)

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, T, H, W) -> (B, T·h·w, D)`` with time and position encodings added."""
        f = self.forward_features(x)  # (B, D, T, h, w)
        b, d, t, h, w = f.shape
        if self.frame_tokens:
            pooled = f.amax(dim=(3, 4)) + f.mean(dim=(3, 4))  # (B, D, T, h, w) -> (B, D, T)
            return pooled.transpose(1, 2) + sinusoid(torch.arange(t, device=f.device), d).to(f.dtype)
        pos_t = sinusoid(torch.arange(t, device=f.device), d)  # one step per frame, as the audio tokens
        pos_s = sinusoid(torch.arange(h * w, device=f.device) * 7.0 + 1000.0, d)  # away from the time codes
        pos = (pos_t[:, None, :] + pos_s[None, :, :]).reshape(t * h * w, d)
        return f.flatten(2).transpose(1, 2) + pos.to(f.dtype)  # (B, D, T, h, w) -> (B, T·h·w, D)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        pooled = global_pool(features)
        return pooled if pre_logits else self.head(pooled)


class SyncSpecStem(Encoder):
    """A 2D CNN over a log-mel spectrogram: ``(B, 1, F, Ta) -> (B, D, F/16, Ta/4)``; tokens average frequency.

    Args:
        widths: channels of the three conv layers.
        dim: output channels ``D``.
        num_classes: 0 for a feature extractor.
        changes: also feed the rise of the log-mel energy from one hop to the next (spectral flux), the onsets.
    """

    def __init__(
        self, widths: tuple[int, int, int] = (16, 32, 64), dim: int = 64, num_classes: int = 0, changes: bool = False
    ):
        super().__init__()
        self.changes = changes
        w1, w2, w3 = widths
        self.features = nn.Sequential(
            _conv2d(1 + changes, w1, (2, 1)),
            _conv2d(w1, w2, (2, 2)),
            _conv2d(w2, w3, (2, 2)),
            _conv2d(w3, dim, (2, 1)),
        )
        self.num_features, self.num_classes = dim, num_classes
        self.head = make_head(dim, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.changes:
            flux = torch.relu(torch.diff(x, dim=-1, prepend=x[..., :1]))  # (B, 1, F, Ta)
            x = torch.cat([x, flux], dim=1)
        return self.features(x)

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, F, Ta) -> (B, Ta/4, D)``: one token per 40 ms, with the time encoding of the video."""
        f = self.forward_features(x).mean(2)  # (B, D, F', T') -> (B, D, T')
        pos = sinusoid(torch.arange(f.shape[-1], device=f.device), f.shape[1])
        return f.transpose(1, 2) + pos.to(f.dtype)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        pooled = global_pool(features)
        return pooled if pre_logits else self.head(pooled)


class TemporalConvFusion(nn.Module):
    """Early fusion in time (Owens & Efros 2018 fuse by concatenating the streams' features at each time
    step): per-frame video and audio tokens are concatenated frame by frame and mixed by 1D convolutions over
    time, so "does this sound go with this picture at this instant" is a local pattern from the first layer.

    Takes ``{"video": (B, T, D), "spec": (B, T', D)}`` (one token per frame each) and returns the fused
    sequence ``(B, min(T, T'), 2D)`` under both keys; ``pool`` takes the maximum over time.

    Args:
        modalities: the two modality names.
        dim: token width ``D`` of each modality.
        num_layers: 1D conv layers (kernel 3).
    """

    def __init__(self, modalities: tuple[str, str] = ("video", "spec"), dim: int = 64, num_layers: int = 3):
        super().__init__()
        self.modalities = tuple(modalities)
        self.num_features = dim  # per modality, as AVClassifier expects
        layers = []
        for _ in range(num_layers):
            layers += [nn.Conv1d(2 * dim, 2 * dim, 3, padding=1), nn.GELU()]
        self.mix = nn.Sequential(*layers)

    def forward(self, tokens: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        a, b = (tokens[m] for m in self.modalities)
        t = min(a.shape[1], b.shape[1])
        x = torch.cat([a[:, :t], b[:, :t]], dim=-1).transpose(1, 2)  # (B, T, 2D) -> (B, 2D, T)
        fused = self.mix(x).transpose(1, 2)  # (B, T, 2D)
        return {m: fused for m in self.modalities}

    def pool(self, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Max over time of the fused sequence, split back into one ``(B, D)`` half per modality."""
        pooled = outputs[self.modalities[0]].amax(dim=1)  # (B, 2D)
        return dict(zip(self.modalities, pooled.chunk(2, dim=-1)))


def _stems(dim: int, widths: tuple[int, int, int], frame_tokens: bool, changes: bool) -> dict[str, Encoder]:
    """The video and spectrogram stems every sync classifier shares."""
    return {
        "video": SyncVideoStem(widths, dim, frame_tokens=frame_tokens, changes=changes),
        "spec": SyncSpecStem(widths, dim, changes=changes),
    }


def _avsync(
    dim: int,
    widths: tuple[int, int, int],
    num_layers: int,
    num_heads: int,
    fusion_layer: int,
    num_bottlenecks: int,
    frame_tokens: bool = False,
    changes: bool = False,
) -> AVClassifier:
    fusion = MBT(("video", "spec"), dim, num_layers, num_heads, fusion_layer, num_bottlenecks)
    return AVClassifier(_stems(dim, widths, frame_tokens, changes), fusion, num_classes=1)


SYNC_INPUT = {"video": (3, 25, 64, 64), "spec": (1, 64, 100)}  # 1 s: 25 frames, 64 mel x 100 hops of 10 ms
SYNC_INPUT_TINY = {"video": (3, 8, 32, 32), "spec": (1, 32, 32)}


@register_model(input_size=SYNC_INPUT)
def avsync_mbt(
    fusion_layer: int = 2, num_bottlenecks: int = 4, frame_tokens: bool = True, changes: bool = True
) -> AVClassifier:
    """Sync classifier: CNN stems (16-32-64, D=64), 4 MBT layers, 4 bottlenecks from layer 2, a token per frame."""
    return _avsync(64, (16, 32, 64), 4, 4, fusion_layer, num_bottlenecks, frame_tokens, changes)


@register_model(input_size=SYNC_INPUT)
def avsync_tconv(changes: bool = True) -> AVClassifier:
    """Sync classifier with early fusion in time: the same stems' per-frame tokens concatenated frame by frame,
    three 1D convs, max over time (Owens & Efros-style fusion; frame differences and spectral flux as inputs)."""
    fusion = TemporalConvFusion(("video", "spec"), 64)
    return AVClassifier(_stems(64, (16, 32, 64), True, changes), fusion, num_classes=1)


@register_model(input_size=SYNC_INPUT_TINY)
def avsync_tconv_tiny(changes: bool = True) -> AVClassifier:
    """Tiny early-fusion-in-time sync classifier."""
    fusion = TemporalConvFusion(("video", "spec"), 16, num_layers=2)
    return AVClassifier(_stems(16, (4, 8, 16), True, changes), fusion, num_classes=1)


@register_model(input_size=SYNC_INPUT)
def avsync_xattn(fusion_layer: int = 2, frame_tokens: bool = True, changes: bool = True) -> AVClassifier:
    """Sync classifier with full cross-modal attention from layer 2 (same stems and width as avsync_mbt)."""
    return _avsync(64, (16, 32, 64), 4, 4, fusion_layer, 0, frame_tokens, changes)


@register_model(input_size=SYNC_INPUT)
def avsync_late(frame_tokens: bool = True, changes: bool = True) -> AVClassifier:
    """Sync classifier with late fusion: 4 layers per modality, CLS tokens meet only in the linear head."""
    return _avsync(64, (16, 32, 64), 4, 4, 4, 4, frame_tokens, changes)


@register_model(input_size=SYNC_INPUT_TINY)
def avsync_mbt_tiny(fusion_layer: int = 1, num_bottlenecks: int = 2) -> AVClassifier:
    """Tiny sync classifier for tests: D=16, 2 MBT layers."""
    return _avsync(16, (4, 8, 16), 2, 2, fusion_layer, num_bottlenecks)


@register_model(input_size=SYNC_INPUT_TINY)
def avsync_xattn_tiny(fusion_layer: int = 1) -> AVClassifier:
    """Tiny sync classifier with full cross-modal attention."""
    return _avsync(16, (4, 8, 16), 2, 2, fusion_layer, 0)


@register_model(input_size=SYNC_INPUT_TINY)
def avsync_late_tiny() -> AVClassifier:
    """Tiny sync classifier with late fusion."""
    return _avsync(16, (4, 8, 16), 2, 2, 2, 4)
