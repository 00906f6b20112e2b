"""Mask U-Nets for mix-and-separate (Sound of Pixels; VisualVoice's complex masks), visual or audio-only.

::

    mixture STFT (B, F=257, Ta) ─► log|X| ─► U-Net encoder ─► bottleneck (B, C, F/32, Ta/4) ──┐
                                                                                            ├─ per stream k:
    crops of stream k (B, T, h, w, 3) ─► CropEncoder ─► (B, D, T) one vector per video frame ┘  concat, 1D convs
                                                                                               over time, decoder
                                                                                               with skips ─► mask_k

The STFT hop is 10 ms, so after the encoder's 4x time stride one bottleneck column is one 40 ms video
frame and the visual features join without resampling. The encoder runs once per mixture; the
bottleneck fusion and the decoder run once per visual stream. The mask is complex (real and imaginary
part, each bounded to (-5, 5) by a scaled tanh), multiplied with the mixture STFT.

``asep_unet_pit`` is the same network without the visual branch, its decoder emitting ``num_sources`` masks
at once, trained with a permutation-invariant loss: the audio-only baseline of the same size.
"""

from __future__ import annotations

import torch
from torch import nn

from avlearn.models.registry import register_model

MASK_BOUND = 5.0


def _block(cin: int, cout: int, stride: tuple[int, int]) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.GELU(),
        nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.GELU(),
    )


class CropEncoder(nn.Module):
    """Per-frame features of a crop track (mouth, object): ``(B, T, h, w, 3)`` uint8 -> ``(B, D, T)``.

    A 3D CNN with temporal stride 1 over the crops and their frame-to-frame differences (motion is the cue:
    an opening mouth, an object's hop), pooled over space, then 1D convolutions over time.
    """

    def __init__(self, dim: int = 128, widths: tuple[int, int, int] = (32, 64, 96)):
        super().__init__()
        w1, w2, w3 = widths
        self.features = nn.Sequential(
            nn.Conv3d(6, w1, (3, 5, 5), (1, 2, 2), (1, 2, 2), bias=False),
            nn.BatchNorm3d(w1),
            nn.GELU(),
            nn.Conv3d(w1, w2, 3, (1, 2, 2), 1, bias=False),
            nn.BatchNorm3d(w2),
            nn.GELU(),
            nn.Conv3d(w2, w3, 3, (1, 2, 2), 1, bias=False),
            nn.BatchNorm3d(w3),
            nn.GELU(),
        )
        self.temporal = nn.Sequential(
            nn.Conv1d(w3, dim, 3, padding=1), nn.GELU(), nn.Conv1d(dim, dim, 3, padding=1), nn.GELU()
        )
        self.register_buffer("mean", torch.tensor([0.45, 0.45, 0.45]).view(1, 3, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.25, 0.25, 0.25]).view(1, 3, 1, 1, 1), persistent=False)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        x = crops.permute(0, 4, 1, 2, 3).float() / 255.0  # (B, T, h, w, 3) -> (B, 3, T, h, w)
        x = (x - self.mean) / self.std
        diff = torch.diff(x, dim=2, prepend=x[:, :, :1])
        f = self.features(torch.cat([x, diff], dim=1))  # (B, C, T, h', w')
        return self.temporal(f.mean(dim=(3, 4)))  # (B, C, T) -> (B, D, T)


class MaskUNet(nn.Module):
    """U-Net over the mixture's log-magnitude predicting complex masks, optionally conditioned on crops.

    Args:
        widths: channels of the five encoder levels (strides (2,2), (2,2), (2,1), (2,1), (2,1) in
            frequency x time: 256 bins -> 8, time / 4).
        visual_dim: width of the crop features (0: audio-only).
        num_masks: masks per forward (1 per visual stream; ``num_sources`` for the audio-only model).
        mid_layers: dilated 1D conv layers over time at the bottleneck (dilations 1, 2, 4, ...).
    """

    strides = ((2, 2), (2, 2), (2, 1), (2, 1), (2, 1))

    def __init__(
        self,
        widths: tuple[int, ...] = (16, 32, 64, 128, 128),
        visual_dim: int = 128,
        num_masks: int = 1,
        mid_layers: int = 4,
        mid_dim: int = 256,
    ):
        super().__init__()
        self.num_masks, self.visual_dim = num_masks, visual_dim
        self.crops = CropEncoder(visual_dim) if visual_dim else None
        chans = (1, *widths)
        self.down = nn.ModuleList(_block(chans[i], chans[i + 1], s) for i, s in enumerate(self.strides))
        bins = 256 // 32
        self.mid_in = nn.Conv1d(widths[-1] * bins + visual_dim, mid_dim, 1)
        self.mid = nn.ModuleList(
            nn.Sequential(
                nn.Conv1d(mid_dim, mid_dim, 3, padding=2**i, dilation=2**i), nn.GroupNorm(1, mid_dim), nn.GELU()
            )
            for i in range(mid_layers)
        )
        self.mid_out = nn.Conv1d(mid_dim, widths[-1] * bins, 1)
        self.up = nn.ModuleList()
        for i in reversed(range(len(self.strides))):
            cin, cout = widths[i] * 2, (widths[i - 1] if i > 0 else 16)
            self.up.append(
                nn.Sequential(
                    nn.ConvTranspose2d(cin, cout, self.strides[i], self.strides[i], bias=False),
                    nn.BatchNorm2d(cout),
                    nn.GELU(),
                    nn.Conv2d(cout, cout, 3, 1, 1),
                    nn.GELU(),
                )
            )
        self.head = nn.Conv2d(16, 2 * num_masks, 1)

    def encode(self, mag: torch.Tensor) -> list[torch.Tensor]:
        """``(B, 256, Ta)`` log-magnitude -> the skips of every level (last = bottleneck)."""
        x = mag.unsqueeze(1)
        skips = []
        for layer in self.down:
            x = layer(x)
            skips.append(x)
        return skips

    def decode(self, skips: list[torch.Tensor], visual: torch.Tensor | None) -> torch.Tensor:
        """Skips (batch B) and visual features ``(B, D, T)`` -> masks ``(B, num_masks, 256, Ta, 2)``."""
        x = skips[-1]
        b, c, f, t = x.shape
        h = x.reshape(b, c * f, t)
        if visual is not None:
            visual = nn.functional.interpolate(visual, size=t, mode="nearest") if visual.shape[-1] != t else visual
            h = torch.cat([h, visual.to(h.dtype)], dim=1)
        h = self.mid_in(h)
        for layer in self.mid:
            h = h + layer(h)
        x = self.mid_out(h).reshape(b, c, f, t)
        for layer, skip in zip(self.up, reversed(skips)):
            x = layer(torch.cat([x, skip], dim=1))
        m = self.head(x)  # (B, 2K, 256, Ta)
        m = MASK_BOUND * torch.tanh(m / MASK_BOUND)
        return m.reshape(b, self.num_masks, 2, *m.shape[-2:]).permute(0, 1, 3, 4, 2)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """``{"mag": (B, 256, Ta), "crops": (B, K, T, h, w, 3) uint8}`` (no crops for the audio-only model).

        Returns masks ``(B, K, 256, Ta, 2)`` (K = streams for the visual model, ``num_masks`` otherwise).
        """
        mag, crops = inputs["mag"], inputs.get("crops")
        skips = self.encode(mag)
        if self.crops is None:
            return self.decode(skips, None)
        b, k = crops.shape[:2]
        visual = self.crops(crops.flatten(0, 1))  # (B*K, D, T)
        skips = [s.repeat_interleave(k, dim=0) for s in skips]
        return self.decode(skips, visual).reshape(b, k, -1, mag.shape[-1], 2)


@register_model(input_size={"mag": (256, 200), "crops": (2, 50, 32, 48, 3)}, interface="separator")
def avsep_unet(visual_dim: int = 128, widths: tuple[int, ...] = (16, 32, 64, 128, 128), mid_layers: int = 4):
    """Visually guided mask U-Net: one complex mask per crop track (mouth or object)."""
    return MaskUNet(tuple(widths), visual_dim=visual_dim, num_masks=1, mid_layers=mid_layers)


@register_model(input_size={"mag": (256, 200), "crops": (2, 50, 32, 48, 3)}, interface="separator")
def avsep_unet_tiny(**kwargs):
    """Test-sized avsep_unet."""
    return MaskUNet((4, 8, 8, 8, 8), visual_dim=8, num_masks=1, mid_layers=1, mid_dim=16, **kwargs)


@register_model(input_size={"mag": (256, 200)}, interface="separator")
def asep_unet_pit(num_sources: int = 2, widths: tuple[int, ...] = (16, 32, 64, 128, 128), mid_layers: int = 4):
    """Audio-only mask U-Net of the same size: ``num_sources`` complex masks, trained permutation-invariantly."""
    return MaskUNet(tuple(widths), visual_dim=0, num_masks=num_sources, mid_layers=mid_layers)


@register_model(input_size={"mag": (256, 200)}, interface="separator")
def asep_unet_pit_tiny(**kwargs):
    """Test-sized asep_unet_pit."""
    return MaskUNet((4, 8, 8, 8, 8), visual_dim=0, num_masks=2, mid_layers=1, mid_dim=16, **kwargs)
