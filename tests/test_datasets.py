"""The one data layer: lazy windows equal the cached ones, and per-epoch state reaches persistent workers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from avlearn.data import cache as cache_module
from avlearn.data.cache import open_clips, use_cache
from avlearn.data.clips import Draw, EpochShuffle, LazyClips
from avlearn.data.manifest import read_manifest
from avlearn.data.separation import MixTracks, SourceTracks, TrackIndex, open_tracks
from avlearn.data.sync import SyncWindows
from avlearn.data.synth import synthesize
from avlearn.data.worlds import WorldConfig
from avlearn.io import write_video


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world")
    synthesize("instruments", out, 4, seed=0, split="train", config=WorldConfig(size=32, duration=2.0), workers=0)
    return out


def _sync(clips) -> SyncWindows:
    return SyncWindows(clips, 0.5, min_shift=0.25, max_shift=0.75, num_shifted=2, max_offset_frames=3, seed=5)


def test_lazy_windows_equal_the_cached_ones(world):
    """cache: true is a speed-up of the same datasets: same draws, same pixels and samples."""
    kw = {"fps": 25, "size": 32, "sample_rate": 16000}
    lazy, cached = (open_clips(world / "train.jsonl", **kw, cache=c) for c in (False, True))
    assert isinstance(lazy, LazyClips) and not isinstance(cached, LazyClips)
    a, b = _sync(lazy), _sync(cached)
    for key in (Draw(0, 0), Draw(3, 2), 1):
        x, y = a[key], b[key]
        for name in ("shifts", "offset", "index"):
            assert torch.equal(x[name], y[name]), name
        assert x["video"].shape == y["video"].shape == (12, 32, 32, 3) and x["video"].dtype == torch.uint8
        assert (x["video"].float() - y["video"].float()).abs().mean() < 1.0
        for name in ("audio", "shifted", "offset_audio"):  # equal but for AAC's warm-up after a seek (~1%)
            assert (x[name] - y[name]).abs().mean() < 1e-3 and (x[name] - y[name]).abs().max() < 0.05, name


def test_shifted_audio_is_read_where_the_shift_says(tmp_path):
    """On a tone whose loudness rises linearly, a window's level tells where in the clip it was read."""
    seconds, fps, sr = 4.0, 25, 16000
    time = np.arange(int(seconds * sr)) / sr
    audio = (0.8 * time / seconds * np.sin(2 * np.pi * 500 * time))[None].astype(np.float32)
    write_video(tmp_path / "ramp.mp4", np.zeros((3, int(seconds * fps), 16, 16), np.uint8), fps, audio, sr)
    rows = [{"path": str(tmp_path / "ramp.mp4"), "start": 0.0, "end": seconds}] * 6
    ds = SyncWindows(LazyClips(rows, fps=fps, size=16, sample_rate=sr), 1.0, min_shift=0.5, max_shift=2.0)
    for i in range(len(ds)):
        item = ds[Draw(i, 3)]
        level = item["audio"][:800].abs().max()  # peak of the first 50 ms ~ 0.8 * (start + 0.05) / seconds
        shifted = item["shifted"][0, :800].abs().max()
        assert 0.5 <= abs(float(item["shifts"][0])) <= 2.0
        assert float(shifted - level) == pytest.approx(0.8 * float(item["shifts"][0]) / seconds, abs=0.05)
        moved = item["offset_audio"][:800].abs().max()
        assert float(moved - level) == pytest.approx(0.8 * int(item["offset"]) / fps / seconds, abs=0.05)


def test_separation_tracks_lazy_and_cached_mix_the_same(world):
    lazy = open_tracks(world / "train.jsonl", fps=25, sample_rate=16000, cache=False, workers=0)
    cached = open_tracks(world / "train.jsonl", fps=25, sample_rate=16000, cache=True, workers=0)
    assert isinstance(lazy, TrackIndex) and isinstance(cached, SourceTracks)
    a, b = (MixTracks(t, window=1.0, num_mix=2, seed=3) for t in (lazy, cached))
    x, y = a[Draw(2, 1)], b[Draw(2, 1)]
    assert (x["sources"] - y["sources"]).abs().max() < 0.05 and (x["mixture"] - y["mixture"]).abs().mean() < 1e-3
    assert x["crops"].shape == y["crops"].shape and (x["crops"].float() - y["crops"].float()).abs().mean() < 1.0


def test_persistent_workers_see_each_epoch_and_its_curriculum(world):
    """The sampler carries (epoch, params) to the workers: windows change every epoch and follow the curriculum
    (a dataset attribute set in the main process never reached persistent workers)."""
    ds = _sync(LazyClips(read_manifest(world / "train.jsonl"), fps=25, size=32, sample_rate=16000))
    schedule = {0: 0.7, 1: 0.25}
    sampler = EpochShuffle(len(ds), seed=1, params=lambda epoch: {"min_shift": schedule[epoch]})
    loader = torch.utils.data.DataLoader(ds, batch_size=2, sampler=sampler, num_workers=2, persistent_workers=True)
    seen = {}
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        seen[epoch] = {int(i): s for batch in loader for i, s in zip(batch["index"], batch["shifts"])}
        for i, shifts in seen[epoch].items():
            assert torch.equal(shifts, ds[Draw(i, epoch, {"min_shift": schedule[epoch]})]["shifts"])
    assert min(s.abs().min() for s in seen[0].values()) >= 0.7
    assert any(not torch.equal(seen[0][i], seen[1][i]) for i in seen[0])


def test_cache_none_decodes_only_what_fits(world, monkeypatch):
    rows = read_manifest(world / "train.jsonl")
    kw = {"fps": 25, "pixels": 32 * 32, "sample_rate": 16000}
    assert use_cache(None, rows, **kw) and not use_cache(False, rows, **kw)
    monkeypatch.setattr(cache_module, "CACHE_BUDGET", 1000)
    assert not use_cache(None, rows, **kw) and use_cache(True, rows, **kw)
    assert isinstance(open_clips(world / "train.jsonl", fps=25, size=32, sample_rate=16000, cache=None), LazyClips)
