"""Audio-only separation of real voices: the voice pool and its mixtures, the window-order stitching of an
audio-only separator's voices, and their assignment to faces by sync score in ``avlearn separate``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from avlearn.cli import main
from avlearn.data import mbrola
from avlearn.data.clips import Draw
from avlearn.data.voices import (
    LEVEL,
    ROOM_RT60_S,
    VoiceMixtures,
    VoicePool,
    load_voices,
    room_response,
    squeeze_pauses,
)
from avlearn.io import write_audio
from avlearn.models import create_model
from avlearn.models.separation import MaskUNet, SeparatorFrontEnd
from avlearn.models.weights import save_weights
from avlearn.pipelines.separate import assign_voices, separate_audio, separate_clip

DEMO = Path(__file__).resolve().parents[1] / "assets" / "demo" / "speakers"
SR = 16000
torch.set_num_threads(2)


def _pool(num: int = 3, seconds: float = 3.0) -> VoicePool:
    g = torch.Generator().manual_seed(0)
    return VoicePool(
        [f"p{i}" for i in range(num)], [torch.randn(round(seconds * SR), generator=g) * (i + 1) for i in range(num)], SR
    )


def test_mixtures_are_sums_of_different_speakers_at_equal_loudness():
    pool = _pool()
    ds = VoiceMixtures(pool, 1.0, num_mix=2, gain_db=0.0, length=6, deterministic=True)
    for i in range(len(ds)):
        item = ds[i]
        assert item["sources"].shape == (2, SR) and item["valid"].all()
        torch.testing.assert_close(item["mixture"], item["sources"].sum(0))
        torch.testing.assert_close(item["sources"].pow(2).mean(-1).sqrt(), torch.full((2,), LEVEL), rtol=1e-3, atol=0)
        # each source is a window of one speaker's voice, and the two speakers differ
        found = []
        for src in item["sources"]:
            for k, wav in enumerate(pool.audio):
                piece = wav / wav.std() * LEVEL
                if any(
                    torch.allclose(src, piece[s : s + SR], rtol=1e-2, atol=1e-4) for s in range(0, len(wav) - SR + 1)
                ):
                    found.append(k)
                    break
        assert len(found) == 2 and found[0] != found[1] and found[0] == i % 3
    torch.testing.assert_close(ds[4]["mixture"], ds[4]["mixture"])  # deterministic


def test_training_draws_change_with_the_epoch_and_repeat_within_it():
    ds = VoiceMixtures(_pool(), 1.0, length=4, seed=3)
    a, b = ds[Draw(1, 0)]["mixture"], ds[Draw(1, 1)]["mixture"]
    assert not torch.allclose(a, b)
    torch.testing.assert_close(ds[Draw(1, 0)]["mixture"], a)


def test_a_random_room_decays_by_60_db_over_its_reverberation_time():
    rir = room_response(torch.Generator().manual_seed(0), SR)
    lo, hi = ROOM_RT60_S
    assert lo * SR <= len(rir) <= hi * SR and rir[0] == 1.0
    tail = rir[1:].pow(2)
    tenth = len(tail) // 10
    decay_db = 10 * torch.log10(tail[:tenth].mean() / tail[-tenth:].mean())
    assert 45 < decay_db < 65  # the first and last tenth of the tail, ~54 dB apart


def test_reverberant_sources_are_the_targets_and_still_sum_to_the_mixture():
    pool = _pool()
    dry = VoiceMixtures(pool, 1.0, gain_db=0.0, length=2, deterministic=True)[0]["sources"]
    item = VoiceMixtures(pool, 1.0, gain_db=0.0, length=2, deterministic=True, reverb=1.0)[0]
    torch.testing.assert_close(item["mixture"], item["sources"].sum(0))
    torch.testing.assert_close(item["sources"].pow(2).mean(-1).sqrt(), torch.full((2,), LEVEL), rtol=1e-3, atol=0)
    assert not torch.allclose(item["sources"], dry, atol=1e-3)


@pytest.mark.parametrize("recurrent", [0, 8])
def test_a_recurrent_bottleneck_hears_the_whole_window(recurrent):
    torch.manual_seed(0)
    net = MaskUNet((16, 16, 16), visual_dim=0, num_masks=2, mid_layers=1, recurrent=recurrent).eval()
    mag = torch.randn(1, net.bins, 200, requires_grad=True)
    net({"mag": mag})[..., -10:, :].sum().backward()  # the last 0.1 s of the masks
    reach = mag.grad[..., :10].abs().max()  # depends on the first 0.1 s?
    assert (reach > 0) == bool(recurrent)  # the convolutions alone do not reach 1.9 s back


def test_too_few_speakers_is_refused():
    with pytest.raises(ValueError, match="need 3 speakers"):
        VoiceMixtures(_pool(2), 1.0, num_mix=3)


def test_pauses_are_shortened_and_speech_kept():
    speech = torch.randn(SR).numpy() * 0.1
    wav = np.concatenate([speech, np.zeros(2 * SR, np.float32), speech])
    out = squeeze_pauses(wav, SR)
    assert abs(len(out) - (2 * SR + 0.1 * SR)) <= 0.02 * SR
    assert np.abs(out).max() == pytest.approx(np.abs(speech).max())


def test_speaker_folders_are_named_by_their_speaker_and_cached(tmp_path):
    g = torch.Generator().manual_seed(1)
    for folder in ("en_US_f_Ann", "es_MX_f_Ann", "it_IT_m_Bob"):
        (tmp_path / folder).mkdir()
        for j in range(2):
            write_audio(tmp_path / folder / f"{j}.wav", torch.randn(1, SR // 2, generator=g) * 0.1, SR)
    sources = [str(tmp_path / f) for f in ("en_US_f_Ann", "es_MX_f_Ann", "it_IT_m_Bob")]
    pool = load_voices(sources, SR, tmp_path / "cache")
    assert pool.names == ["Ann", "Bob"]
    assert len(pool.audio[0]) == pytest.approx(2 * SR, abs=10) and len(pool.audio[1]) == pytest.approx(SR, abs=10)
    assert len(list((tmp_path / "cache").glob("voices-*.safetensors"))) == 1
    again = load_voices(sources, SR, tmp_path / "cache")
    assert again.names == pool.names and all(torch.equal(a, b) for a, b in zip(again.audio, pool.audio))


def test_a_pattern_of_folders_is_one_speaker_per_folder(tmp_path):
    g = torch.Generator().manual_seed(2)
    for folder in ("mbrola_us1", "mbrola_de4"):
        (tmp_path / "bank" / folder).mkdir(parents=True)
        write_audio(tmp_path / "bank" / folder / "0000.wav", torch.randn(1, SR // 2, generator=g) * 0.1, SR)
    pool = load_voices([str(tmp_path / "bank" / "*")], SR)
    assert pool.names == ["de4", "us1"]


@pytest.mark.skipif(
    shutil.which("espeak-ng") is None or "us1" not in mbrola.installed_voices(), reason="needs espeak-ng and mbrola-us1"
)
def test_mbrola_voices_are_spoken_sentences_moved_in_whole(tmp_path):
    text = mbrola.sentences()
    assert len(text) > 100 and all(5 <= len(s.split()) <= 30 for s in text)
    seconds = mbrola.make_voice("us1", text, tmp_path, 3.0, seed=0)
    wavs = sorted((tmp_path / "mbrola_us1").glob("*.wav"))
    assert seconds >= 3.0 and wavs and not list(tmp_path.glob(".us1-*"))  # no half-written folder left
    pool = load_voices([str(tmp_path / "mbrola_*")], SR)
    assert pool.names == ["us1"] and len(pool.audio[0]) > 2 * SR
    assert mbrola.make_voice("us1", text, tmp_path, 3.0, seed=0) == pytest.approx(seconds)  # kept, not remade


def test_assign_voices_maximizes_the_total_score():
    assert assign_voices(torch.tensor([[0.0, 1.0], [2.0, 0.5]])) == [1, 0]
    assert assign_voices(torch.tensor([[0.1, 0.3]])) == [1]  # one face: the voice its mouth goes with
    assert assign_voices(torch.tensor([[1.0, 0.0], [0.0, 0.2], [0.0, 1.0]])) == [0, None, 1]


class _SwappingSeparator(torch.nn.Module):
    """Splits the sound at 1 kHz, giving the two bands in an order that flips at every call."""

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.front_end = SeparatorFrontEnd()
        self.time_stride = 4
        self.calls = 0

    def separate(self, mixture: torch.Tensor) -> torch.Tensor:
        spec = torch.fft.rfft(mixture)
        low = torch.fft.rfftfreq(mixture.shape[-1], 1 / SR) < 1000
        bands = [torch.fft.irfft(spec * low, mixture.shape[-1]), torch.fft.irfft(spec * ~low, mixture.shape[-1])]
        self.calls += 1
        return torch.stack(bands[:: 1 if self.calls % 2 else -1], 1)


def test_separate_audio_keeps_each_voice_in_one_output_across_windows():
    t = torch.arange(20 * SR) / SR
    low, high = torch.sin(2 * torch.pi * 220 * t), torch.sin(2 * torch.pi * 3000 * t)
    net = _SwappingSeparator()
    voices = separate_audio(net, (low + high) * 0.1, window_s=2.0)
    assert net.calls > 10 and voices.shape == (2, 20 * SR)
    corr = [
        torch.nn.functional.cosine_similarity(voices[0, a : a + SR], low[a : a + SR], 0) for a in range(0, 19 * SR, SR)
    ]
    assert min(abs(float(c)) for c in corr) > 0.95  # output 0 is the low band all along


def test_a_short_clip_is_one_window():
    net = _SwappingSeparator()
    voices = separate_audio(net, torch.randn(SR // 3) * 0.1)
    assert net.calls == 1 and voices.shape == (2, SR // 3)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("ckpt")
    sep = create_model("asep_unet_pit_tiny")
    pre = {**sep.preprocessing, "window": 2.0, "crop_size": None}
    save_weights(folder / "pit", sep, model_name="asep_unet_pit_tiny", task="separation", preprocessing=pre)
    sync = create_model("avsync_mbt_tiny", crop="mouth")
    pre = {**sync.preprocessing, "window": 0.32}
    save_weights(
        folder / "sync",
        sync,
        model_name="avsync_mbt_tiny",
        model_args={"crop": "mouth"},
        task="sync",
        preprocessing=pre,
    )
    return folder / "pit", folder / "sync"


def test_separate_with_an_audio_only_checkpoint_gives_each_face_a_voice(checkpoints, tmp_path, capsys):
    pit, sync = checkpoints
    clip = DEMO / "test" / "000001.mp4"  # two drawn faces
    result = separate_clip(clip, pit, sync_checkpoint=sync)
    assert len(result.tracks) == 2 and result.voices.shape[0] == 2
    assert result.voices.shape[1] == result.mixture.shape[0] and result.voices.abs().sum(1).min() > 0
    assert "sync assignment" in result.model and {"separate_s", "assign_s"} <= set(result.timings)
    out = tmp_path / "out"
    assert (
        main(["separate", str(clip), "--out", str(out), "--checkpoint", str(pit), "--sync-checkpoint", str(sync)]) == 0
    )
    doc = json.loads((out / "result.json").read_text())
    assert len(doc["speakers"]) == 2 and (out / "speaker_1.wav").exists()
    left, right = (sp["boxes"][0][0] for sp in doc["speakers"])
    assert left < right


def test_boxes_with_an_audio_only_checkpoint_is_one_line(checkpoints, tmp_path, capsys):
    pit, sync = checkpoints
    boxes = tmp_path / "boxes.json"
    boxes.write_text("[[0, 0, 10, 10]]")
    args = ["separate", str(DEMO / "test" / "000001.mp4"), "--out", str(tmp_path / "o"), "--checkpoint", str(pit)]
    assert main(args + ["--boxes", str(boxes), "--sync-checkpoint", str(sync)]) == 1
    err = capsys.readouterr().err.strip()
    assert "is audio-only" in err and len(err.splitlines()) == 1 and not (tmp_path / "o" / "result.json").exists()


def test_a_sync_model_of_whole_frames_cannot_assign_voices(checkpoints, tmp_path, capsys):
    pit, _ = checkpoints
    args = ["separate", str(DEMO / "test" / "000001.mp4"), "--out", str(tmp_path / "o"), "--checkpoint", str(pit)]
    assert main(args + ["--sync-checkpoint", "sync_speakers"]) == 1
    err = capsys.readouterr().err.strip()
    assert "needs a sync model of mouths" in err and "--sync-checkpoint" in err and len(err.splitlines()) == 1
