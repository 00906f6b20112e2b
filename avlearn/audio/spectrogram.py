"""Log-mel spectrograms and an invertible STFT, as modules that hold their windows and filterbanks."""

from __future__ import annotations

import torch
import torchaudio
from torch import nn


class LogMel(nn.Module):
    """Waveform ``(..., S)`` -> log-mel spectrogram ``(..., n_mels, T)``, ``T = S // hop_length + 1``.

    Computed in float32 even under autocast: the mel energies of quiet frames underflow in bf16.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 512,
        hop_length: int = 160,
        n_mels: int = 64,
        f_min: float = 50.0,
        f_max: float | None = None,
        eps: float = 1e-6,
    ):
        super().__init__()
        self.sample_rate, self.hop_length, self.eps = sample_rate, hop_length, eps
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=n_fft,
            hop_length=hop_length,
            n_mels=n_mels,
            f_min=f_min,
            f_max=f_max,
            power=2.0,
            norm="slaney",
            mel_scale="slaney",
        )

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        with torch.autocast(wav.device.type, enabled=False):
            return torch.log(self.mel(wav.float()) + self.eps)


class STFT(nn.Module):
    """Complex STFT ``(..., S) -> (..., n_fft // 2 + 1, T)`` and its exact inverse (Hann window, centred)."""

    def __init__(self, n_fft: int = 512, hop_length: int = 128):
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        lead = wav.shape[:-1]
        spec = torch.stft(
            wav.float().reshape(-1, wav.shape[-1]),
            self.n_fft,
            self.hop_length,
            window=self.window,
            center=True,
            return_complex=True,
        )
        return spec.reshape(*lead, *spec.shape[-2:])

    def inverse(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        """``(..., F, T)`` complex -> ``(..., length)`` waveform."""
        lead = spec.shape[:-2]
        wav = torch.istft(
            spec.reshape(-1, *spec.shape[-2:]),
            self.n_fft,
            self.hop_length,
            window=self.window,
            center=True,
            length=length,
        )
        return wav.reshape(*lead, length)
