"""avlearn.audio by property: batched == item by item, STFT round trip, oracle masks reconstruct."""

import math

import torch

from avlearn.audio import STFT, LogMel, apply_mask, complex_ratio_mask, ideal_binary_mask, ideal_ratio_mask


def test_logmel_shapes_batched_equals_items():
    mel = LogMel(sample_rate=16000, n_mels=40, hop_length=160)
    wav = torch.randn(2, 3, 16000) * 0.1
    out = mel(wav)
    assert out.shape == (2, 3, 40, 101) and torch.isfinite(out).all()
    torch.testing.assert_close(out[1, 2], mel(wav[1, 2]), atol=1e-4, rtol=1e-4)


def test_logmel_places_a_tone_in_the_right_band():
    mel = LogMel(sample_rate=16000, n_mels=64)
    t = torch.arange(16000) / 16000
    low, high = mel(torch.sin(2 * math.pi * 300 * t)), mel(torch.sin(2 * math.pi * 4000 * t))
    assert low.mean(-1).argmax() < high.mean(-1).argmax()


def test_stft_round_trip_and_batching():
    stft = STFT(n_fft=512, hop_length=128)
    wav = torch.randn(2, 2, 8000)
    spec = stft(wav)
    assert spec.shape == (2, 2, 257, 63) and spec.is_complex()
    torch.testing.assert_close(stft.inverse(spec, 8000), wav, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(spec[1, 0], stft(wav[1, 0]))


def test_oracle_masks_reconstruct_sources():
    stft = STFT()
    sources = torch.randn(2, 16000) * torch.tensor([[1.0], [0.3]])
    spec = stft(sources)  # (N, F, T)
    mix = spec.sum(0)
    crm = complex_ratio_mask(spec, mix, bound=1e6)  # unbounded: exact
    torch.testing.assert_close(stft.inverse(apply_mask(mix, crm), 16000), sources, atol=1e-3, rtol=1e-3)
    irm = ideal_ratio_mask(spec, mix)
    assert irm.min() >= 0 and irm.max() <= 1
    est = stft.inverse(apply_mask(mix, irm), 16000)
    err = ((est - sources) ** 2).sum(-1)
    mix_err = ((mix_wav := sources.sum(0)) - sources).pow(2).sum(-1)
    assert (err < mix_err).all()  # the ratio mask with the mixture phase beats the mixture for each source
    assert mix_wav.shape == (16000,)
    ibm = ideal_binary_mask(spec)
    torch.testing.assert_close(ibm.sum(0), torch.ones_like(ibm[0]))
