"""Mask U-Nets for mix-and-separate (Sound of Pixels; VisualVoice's complex masks), visual or audio-only.

::

    mixture STFT (B, F=257, Ta) ─► log|X| (256 bins as channels) ─► 1D U-Net encoder ─► (B, C, Ta/4) ──┐
                                                                                                     ├─ per stream k:
    crops of stream k (B, T, h, w, 3) ─► CropEncoder ─► (B, D, T) one vector per video frame ─────────┘  concat,
                                                                   dilated convs, decoder with skips ─► mask_k

The model owns its front-end (:class:`SeparatorFrontEnd`: sample rate, STFT, the video frame rate of the
crops), so training and ``avlearn separate`` both call :meth:`MaskUNet.separate` on waveforms and crops. With
the shipped settings the STFT hop is 10 ms, so after the encoder's time stride (4) one bottleneck column is
one 40 ms video frame and the visual features join without resampling (at other rates they are resampled
to the columns). The encoder runs once per mixture; the bottleneck fusion and the decoder run once per
visual stream. The mask is complex (real and imaginary part, each bounded to (-5, 5) by a scaled tanh),
multiplied with the mixture STFT.

``asep_unet_pit`` is the same network without the visual branch, its decoder emitting ``num_sources`` masks
at once, trained with a permutation-invariant loss: the audio-only baseline of the same size.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from avlearn.audio import STFT
from avlearn.models.registry import register_model
from avlearn.models.sync import SyncAudioEncoder, SyncVideoEncoder, encoder_args

MASK_BOUND = 5.0


def _conv1d(cin: int, cout: int, kernel: int = 3, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (kernel - 1) // 2
    return nn.Sequential(
        nn.Conv1d(cin, cout, kernel, stride, pad, dilation=dilation, bias=False), nn.BatchNorm1d(cout), nn.GELU()
    )


class CropEncoder(nn.Module):
    """Per-frame features of a crop track (mouth, object): ``(B, T, h, w, 3)`` uint8 -> ``(B, D, T)``.

    A small 2D CNN on each crop and its difference from the previous frame (motion is the cue: an opening
    mouth, an object's hop), then 1D convolutions over time that see +-4 frames.
    """

    def __init__(self, dim: int = 128, widths: tuple[int, int, int] = (32, 64, 128)):
        super().__init__()
        w1, w2, w3 = widths
        self.frames = nn.Sequential(
            nn.Conv2d(6, w1, 3, 2, 1, bias=False),
            nn.BatchNorm2d(w1),
            nn.GELU(),
            nn.Conv2d(w1, w2, 3, 2, 1, bias=False),
            nn.BatchNorm2d(w2),
            nn.GELU(),
            nn.Conv2d(w2, w3, 3, 2, 1, bias=False),
            nn.BatchNorm2d(w3),
            nn.GELU(),
            nn.AdaptiveAvgPool2d((2, 3)),
            nn.Flatten(),
        )
        self.temporal = nn.Sequential(_conv1d(6 * w3, 2 * dim, 5), _conv1d(2 * dim, dim, 5))
        self.register_buffer("mean", torch.tensor(0.45), persistent=False)
        self.register_buffer("std", torch.tensor(0.25), persistent=False)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        b, t = crops.shape[:2]
        x = (crops.permute(0, 1, 4, 2, 3).float() / 255.0 - self.mean) / self.std  # (B, T, 3, h, w)
        diff = torch.diff(x, dim=1, prepend=x[:, :1])
        f = self.frames(torch.cat([x, diff], dim=2).flatten(0, 1))  # (B*T, C)
        return self.temporal(f.reshape(b, t, -1).transpose(1, 2))  # (B, C, T) -> (B, D, T)


class SyncCropEncoder(nn.Module):
    """Per-frame features of a crop track from the sync-pretrained video encoder (``avsync_video``):
    ``(B, T, h, w, 3)`` uint8 -> ``(B, D, T)``, each frame's feature map pooled as the sync model pools it
    (spatial max + mean), without the time code.

    The crops enter at their own size: the CNN is fully convolutional and pools per frame, and an object crop
    (32 px in the ``instruments`` world) shows its object at about the scale the encoder saw it at in whole
    64 px scenes; resizing crops to the encoder's frame size would enlarge objects beyond that and cost 4x.
    """

    def __init__(self, **video: Any):
        super().__init__()
        self.encoder = SyncVideoEncoder(**video)
        self.num_features = self.encoder.num_features

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return self.encoder.frame_features(crops)


class SyncMixtureEncoder(nn.Module):
    """The sync-pretrained audio encoder (``avsync_audio``) on the mixture: ``(B, S)`` -> ``(B, D, T)``, one
    step per video frame, which is one bottleneck column of the U-Net (both derive their hop from the fps)."""

    def __init__(self, **audio: Any):
        super().__init__()
        self.encoder = SyncAudioEncoder(**audio)
        self.num_features = self.encoder.num_features

    def forward(self, audio: torch.Tensor, num_tokens: int) -> torch.Tensor:
        return self.encoder.frame_features(audio, num_tokens)


class SeparatorFrontEnd(nn.Module):
    """What a separator reads and gives back: mono audio at ``sample_rate`` through a Hann STFT of ``n_fft``
    points every ``hop_length`` samples (inverted with the same), and crop tracks at ``fps`` frames per
    second. The crops' size is the tracker's (recorded by the data as ``crop_size``): the crop encoder pools
    to a fixed grid, so it is not a model setting.

    Args:
        sample_rate: audio rate in Hz.
        n_fft: STFT size (512 at 16 kHz: 32 ms).
        hop_length: STFT hop (160 at 16 kHz: 10 ms).
        fps: frame rate of the crops.
    """

    def __init__(self, sample_rate: int = 16000, n_fft: int = 512, hop_length: int = 160, fps: float = 25.0):
        super().__init__()
        self.sample_rate, self.fps = int(sample_rate), float(fps)
        self.stft = STFT(n_fft, hop_length)  # its window is a non-persistent buffer: not in checkpoints

    @property
    def preprocessing(self) -> dict[str, Any]:
        return {
            "sample_rate": self.sample_rate,
            "n_fft": self.stft.n_fft,
            "hop_length": self.stft.hop_length,
            "fps": self.fps,
        }


class MaskUNet(nn.Module):
    """U-Net over the time axis of the mixture spectrogram, frequency bins as channels, predicting complex masks.

    Encoder: 1D convolutions over STFT frames (10 ms) with the 256 log-magnitude bins as input channels,
    twice halving time (to one column per 40 ms video frame); bottleneck: the visual features joined by
    concatenation, then dilated convolutions over time (receptive field ~2 s); decoder: transposed
    convolutions back to 10 ms with skip connections, a 1x1 convolution to the real and imaginary mask of
    every bin. Every bin's mask sees all bins and +-1 s of context from the first layers; the wide 1D
    convolutions are matrix products, which a CPU runs near its peak. (The first version was a 2D U-Net
    over frequency x time as in Sound of Pixels; under the same shared load its training steps were no
    faster per MAC, and it was not trained to the end, so the two have not been compared in quality.)

    Args:
        widths: channels at 10, 20 and 40 ms resolution.
        visual_dim: width of the crop features (0: audio-only).
        num_masks: masks per forward (1 per visual stream; ``num_sources`` for the audio-only model).
        mid_layers: dilated layers at the bottleneck (dilations 1, 2, 4, ...).
        recurrent: hidden size of a bidirectional LSTM after them (0: none), residual: it sees the whole
            window, so a voice is followed from its first word to its last (the convolutions see +-1.2 s).
        crop_widths: channels of the crop encoder's three conv layers.
        front_end: :class:`SeparatorFrontEnd` arguments (``sample_rate``, ``n_fft``, ``hop_length``, ``fps``).
    """

    def __init__(
        self,
        widths: tuple[int, int, int] = (384, 448, 512),
        visual_dim: int = 128,
        num_masks: int = 1,
        mid_layers: int = 5,
        crop_widths: tuple[int, int, int] = (32, 64, 128),
        sync_encoders: dict[str, dict[str, Any]] | None = None,
        recurrent: int = 0,
        **front_end: Any,
    ):
        super().__init__()
        w1, w2, w3 = widths
        self.num_masks = num_masks
        self.front_end = SeparatorFrontEnd(**front_end)
        self.bins = self.front_end.stft.n_fft // 2  # the STFT's bins but the Nyquist one (its mask is copied)
        self.mixture = None  # the sync audio encoder's features of the mixture, joined at the bottleneck
        if sync_encoders is not None:
            self.crops = SyncCropEncoder(**sync_encoders["video"])
            self.mixture = SyncMixtureEncoder(**sync_encoders["audio"])
            visual_dim = self.crops.num_features
        else:
            self.crops = CropEncoder(visual_dim, crop_widths) if visual_dim else None
        self.visual_dim = visual_dim
        mixture_dim = self.mixture.num_features if self.mixture is not None else 0
        self.enc1 = nn.Sequential(_conv1d(self.bins, w1), _conv1d(w1, w1))
        self.enc2 = nn.Sequential(_conv1d(w1, w2, stride=2), _conv1d(w2, w2))
        self.enc3 = nn.Sequential(_conv1d(w2, w3, stride=2), _conv1d(w3, w3))
        self.join = _conv1d(w3 + visual_dim + mixture_dim, w3, 1)
        self.mid = nn.ModuleList(_conv1d(w3, w3, 3, dilation=2**i) for i in range(mid_layers))
        self.lstm = nn.LSTM(w3, recurrent, batch_first=True, bidirectional=True) if recurrent else None
        self.lstm_out = nn.Linear(2 * recurrent, w3) if recurrent else None
        self.up2 = nn.ConvTranspose1d(w3, w2, 2, 2)
        self.dec2 = nn.Sequential(_conv1d(2 * w2, w2), _conv1d(w2, w2))
        self.up1 = nn.ConvTranspose1d(w2, w1, 2, 2)
        self.dec1 = nn.Sequential(_conv1d(2 * w1, w1), _conv1d(w1, w1))
        self.head = nn.Conv1d(w1, 2 * self.bins * num_masks, 1)
        self.time_stride = 1  # STFT frames per bottleneck column: the product of the encoder's strides
        for m in (*self.enc1.modules(), *self.enc2.modules(), *self.enc3.modules()):
            if isinstance(m, nn.Conv1d):
                self.time_stride *= m.stride[0]

    @property
    def preprocessing(self) -> dict[str, Any]:
        return self.front_end.preprocessing

    @property
    def backbone(self) -> dict[str, nn.Module]:
        """The parts a sync checkpoint fills (``init_from``): its video and audio encoders."""
        if self.mixture is None:
            return {}
        return {"video": self.crops.encoder, "audio": self.mixture.encoder}

    def separate(self, mixture: torch.Tensor, crops: torch.Tensor | None = None) -> torch.Tensor:
        """``mixture (B, S)`` and, for the visual model, ``crops (B, K, T, h, w, 3)`` uint8 -> estimates ``(B, K, S)``.

        The mixture is scaled to unit RMS, its STFT's log-magnitude goes through the network, the complex masks
        multiply the STFT and the inverse STFT gives the estimates at the mixture's level. The STFT frames past
        the last multiple of ``time_stride`` (fewer than that, at the end) get the last column's mask.
        """
        stft = self.front_end.stft
        rms = mixture.pow(2).mean(-1, keepdim=True).sqrt() + 1e-4
        spec = stft(mixture / rms)  # (B, F, Ta) complex
        frames = spec.shape[-1] // self.time_stride * self.time_stride
        mag = torch.log(spec[:, : self.bins, :frames].abs() + 1e-3)
        inputs = {"mag": mag} if crops is None else {"mag": mag, "crops": crops}
        if self.mixture is not None:
            inputs["audio"] = mixture / rms
        masks = self(inputs).float()  # (B, K, bins, frames, 2)
        masks = nn.functional.pad(masks, (0, 0, 0, spec.shape[-1] - frames, 0, 1), mode="replicate")
        est = spec.unsqueeze(1) * torch.complex(masks[..., 0], masks[..., 1])
        return stft.inverse(est, mixture.shape[-1]) * rms.unsqueeze(1)

    def encode(self, mag: torch.Tensor) -> list[torch.Tensor]:
        """``(B, bins, Ta)`` log-magnitude -> features at 1, 2 and 4 STFT hops (10, 20 and 40 ms as shipped)."""
        s1 = self.enc1(mag)
        s2 = self.enc2(s1)
        return [s1, s2, self.enc3(s2)]

    def decode(self, skips: list[torch.Tensor], *extra: torch.Tensor | None) -> torch.Tensor:
        """Encoder features (batch B) and further features ``(B, D, T)`` joined at the bottleneck (visual, and
        the sync audio encoder's) -> masks ``(B, num_masks, bins, Ta, 2)``."""
        s1, s2, x = skips
        for features in extra:
            if features is None:
                continue
            if features.shape[-1] != x.shape[-1]:
                features = nn.functional.interpolate(features, size=x.shape[-1], mode="nearest")
            x = torch.cat([x, features.to(x.dtype)], dim=1)
        x = self.join(x)
        for layer in self.mid:
            x = x + layer(x)
        if self.lstm is not None:
            with torch.autocast(x.device.type, enabled=False):  # LSTM kernels run in float32
                seq = self.lstm(x.float().transpose(1, 2))[0]
                x = x.float() + self.lstm_out(seq).transpose(1, 2)
        x = self.dec2(torch.cat([self.up2(x), s2], dim=1))
        x = self.dec1(torch.cat([self.up1(x), s1], dim=1))
        m = self.head(x)  # (B, 2 * bins * K, Ta)
        m = MASK_BOUND * torch.tanh(m / MASK_BOUND)
        b, _, t = m.shape
        return m.reshape(b, self.num_masks, 2, self.bins, t).permute(0, 1, 3, 4, 2)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """``{"mag": (B, bins, Ta), "crops": (B, K, T, h, w, 3) uint8}`` (no crops for the audio-only model),
        ``Ta`` a multiple of ``time_stride``.

        Returns masks ``(B, K, bins, Ta, 2)`` (K = streams for the visual model, ``num_masks`` otherwise).
        """
        mag, crops = inputs["mag"], inputs.get("crops")
        skips = self.encode(mag)
        if self.mixture is not None:
            skips.append(self.mixture(inputs["audio"], mag.shape[-1] // self.time_stride))
        if self.crops is None:
            return self.decode(skips[:3], *skips[3:])
        b, k = crops.shape[:2]
        visual = self.crops(crops.flatten(0, 1))  # (B*K, D, T)
        skips = [s.repeat_interleave(k, dim=0) for s in skips]
        return self.decode(skips[:3], visual, *skips[3:]).reshape(b, k, self.bins, mag.shape[-1], 2)


def reads_crops(separator: nn.Module) -> bool:
    """Whether a separator is visual (one mask per crop track it is given) rather than audio-only (a fixed
    number of voices from the sound alone, in no particular order): what decides its training and its route
    through ``avlearn separate``."""
    return getattr(separator, "crops", None) is not None


@register_model(input_size={"mag": (256, 200), "crops": (2, 50, 32, 48, 3)}, interface="separator")
def avsep_unet(
    visual_dim: int = 128, widths: tuple[int, int, int] = (384, 448, 512), mid_layers: int = 5, **front_end: Any
):
    """Visually guided mask U-Net: one complex mask per crop track (mouth or object)."""
    return MaskUNet(tuple(widths), visual_dim=visual_dim, num_masks=1, mid_layers=mid_layers, **front_end)


@register_model(input_size={"mag": (256, 200), "crops": (2, 50, 32, 48, 3)}, interface="separator")
def avsep_unet_tiny(**front_end: Any):
    """Test-sized avsep_unet."""
    return MaskUNet((16, 16, 16), visual_dim=8, num_masks=1, mid_layers=1, crop_widths=(4, 4, 4), **front_end)


@register_model(input_size={"mag": (256, 200), "crops": (2, 50, 32, 48, 3), "audio": (32000,)}, interface="separator")
def avsep_sync(
    widths: tuple[int, int, int] = (384, 448, 512),
    mid_layers: int = 5,
    video: dict[str, Any] | None = None,
    audio: dict[str, Any] | None = None,
    **front_end: Any,
):
    """Visually guided mask U-Net on the sync encoders (``avsync_video`` on each crop track, ``avsync_audio``
    on the mixture, both joined at the bottleneck): the separator that starts from a sync checkpoint
    (``init_from``). ``video``/``audio``: the encoders' arguments, as the sync checkpoint lists them."""
    defaults = encoder_args()
    encoders = {"video": video or defaults["video"], "audio": audio or defaults["audio"]}
    return MaskUNet(tuple(widths), num_masks=1, mid_layers=mid_layers, sync_encoders=encoders, **front_end)


@register_model(input_size={"mag": (256, 200), "crops": (2, 50, 32, 48, 3), "audio": (32000,)}, interface="separator")
def avsep_sync_tiny(**front_end: Any):
    """Test-sized avsep_sync on the tiny sync encoders (``avsync_video_tiny``/``avsync_audio_tiny``)."""
    encoders = encoder_args(tiny=True)
    return MaskUNet((16, 16, 16), num_masks=1, mid_layers=1, sync_encoders=encoders, **front_end)


@register_model(input_size={"mag": (256, 200)}, interface="separator")
def asep_unet_pit(
    num_sources: int = 2,
    widths: tuple[int, int, int] = (384, 448, 512),
    mid_layers: int = 5,
    recurrent: int = 0,
    **front_end: Any,
):
    """Audio-only mask U-Net of the same size: ``num_sources`` complex masks, trained permutation-invariantly
    (``recurrent``: a bidirectional LSTM at the bottleneck, see :class:`MaskUNet`)."""
    return MaskUNet(
        tuple(widths), visual_dim=0, num_masks=num_sources, mid_layers=mid_layers, recurrent=recurrent, **front_end
    )


@register_model(input_size={"mag": (256, 200)}, interface="separator")
def asep_unet_pit_tiny(**front_end: Any):
    """Test-sized asep_unet_pit."""
    return MaskUNet((16, 16, 16), visual_dim=0, num_masks=2, mid_layers=1, **front_end)
