"""Audio features: log-mel spectrograms, STFT/iSTFT and time-frequency masks.

Shapes follow torchaudio: waveforms ``(..., S)``, spectrograms ``(..., F, T)`` with leading dims free.
"""

from avlearn.audio.masks import apply_mask, complex_ratio_mask, ideal_binary_mask, ideal_ratio_mask
from avlearn.audio.spectrogram import STFT, LogMel

__all__ = ["STFT", "LogMel", "apply_mask", "complex_ratio_mask", "ideal_binary_mask", "ideal_ratio_mask"]
