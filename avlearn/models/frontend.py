"""Front-ends: what turns decoded media into a model's input, owned by the model that needs it.

A model that holds its front-end can be run from a checkpoint alone, and the training task and the inference
pipeline cannot disagree on a hop or a normalization. Every time stride is derived here from the front-end's
own rates, never from a literal:

* :class:`VideoFrontEnd`: uint8 frames ``(B, T, H, W, 3)`` at ``fps`` -> normalized ``(B, 3, T, H, W)``.
* :class:`AudioFrontEnd`: waveform ``(B, S)`` at ``sample_rate`` -> log-mel ``(B, 1, n_mels, hops)`` with
  ``hops_per_token`` hops per token at ``token_rate`` tokens per second; for the sync encoders the token rate
  is the video frame rate, so one audio token spans one video frame at any fps.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from avlearn.audio import LogMel
from avlearn.video.transforms import MEAN, STD


class VideoFrontEnd(nn.Module):
    """uint8 frames -> normalized float video.

    Args:
        fps: frame rate the model was trained at (the pipeline decodes at it).
        size: frame side in pixels.
        mean: per-channel mean of ``[0, 1]`` pixels.
        std: per-channel standard deviation.
    """

    def __init__(
        self,
        fps: float = 25.0,
        size: int = 64,
        mean: tuple[float, float, float] = MEAN,
        std: tuple[float, float, float] = STD,
    ):
        super().__init__()
        self.fps, self.size = float(fps), int(size)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1, 1), persistent=False)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """``(B, T, H, W, 3)`` uint8 -> ``(B, 3, T, H, W)`` float."""
        x = frames.permute(0, 4, 1, 2, 3).to(torch.float32, copy=True)  # in-place below: one float copy, not 3
        return x.div_(255.0).sub_(self.mean).div_(self.std)

    @property
    def preprocessing(self) -> dict[str, Any]:
        return {"fps": self.fps, "size": self.size}


class AudioFrontEnd(nn.Module):
    """Waveform -> log-mel with a whole number of hops per output token.

    Args:
        sample_rate: audio rate in Hz.
        n_mels: mel bands.
        token_rate: tokens per second the encoder behind this front-end emits (the video fps for sync).
        hops_per_token: spectrogram hops per token (the encoder's time stride).
        n_fft: FFT size.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_mels: int = 64,
        token_rate: float = 25.0,
        hops_per_token: int = 4,
        n_fft: int = 512,
    ):
        super().__init__()
        self.sample_rate, self.n_mels, self.n_fft = int(sample_rate), int(n_mels), int(n_fft)
        self.token_rate, self.hops_per_token = float(token_rate), int(hops_per_token)
        self.hop_length = round(sample_rate / (token_rate * hops_per_token))
        self.logmel = LogMel(sample_rate, n_fft=n_fft, hop_length=self.hop_length, n_mels=n_mels)
        for m in self.logmel.modules():  # the window and mel filters follow from the arguments: not in checkpoints
            for name, buffer in list(m.named_buffers(recurse=False)):
                m.register_buffer(name, buffer, persistent=False)

    def forward(self, audio: torch.Tensor, num_tokens: int | None = None) -> torch.Tensor:
        """``(B, S)`` -> ``(B, 1, n_mels, hops)``; ``num_tokens`` keeps exactly the hops of that many tokens.

        Raises:
            ValueError: if the audio is too short for ``num_tokens``.
        """
        spec = self.logmel(audio).unsqueeze(1)  # (B, S) -> (B, 1, F, S // hop + 1)
        if num_tokens is None:
            return spec
        hops = num_tokens * self.hops_per_token
        if spec.shape[-1] < hops:
            raise ValueError(f"{audio.shape[-1]} audio samples give {spec.shape[-1]} hops, fewer than {hops}")
        return spec[..., :hops]

    def num_samples(self, num_tokens: int) -> int:
        """Audio samples that span ``num_tokens`` tokens."""
        return round(num_tokens / self.token_rate * self.sample_rate)

    @property
    def preprocessing(self) -> dict[str, Any]:
        return {
            "sample_rate": self.sample_rate,
            "n_mels": self.n_mels,
            "n_fft": self.n_fft,
            "spec_hop_s": self.hop_length / self.sample_rate,
        }
