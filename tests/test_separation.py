"""Separation: metrics against their definitions, face tracks, mixing, losses, training, and `avlearn separate`."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from avlearn.cli import main
from avlearn.data import load_annotations
from avlearn.data.manifest import read_manifest
from avlearn.data.separation import MixTracks, extract_tracks
from avlearn.io import probe, read_audio, read_clip
from avlearn.metrics.separation import bss_eval, pit_assign, si_sdr, si_sdr_matrix, stoi
from avlearn.pipelines import separate as separate_pipeline
from avlearn.pipelines.separate import DEFAULT_CHECKPOINT, frame_chunks, keep_frames, separate_clip
from avlearn.tasks.separate import Separation, snr_loss
from avlearn.video.detect import iou
from avlearn.video.faces import crop_boxes, mouth_boxes, track_faces

DEMO = Path(__file__).resolve().parents[1] / "assets" / "demo" / "speakers"
VISUAL = ["--checkpoint", "separate_speakers"]  # the visual separator (the default is audio-only + sync)
torch.set_num_threads(2)


def _noisy(ref: torch.Tensor, snr_db: float, seed: int = 0) -> torch.Tensor:
    noise = torch.randn(ref.shape, generator=torch.Generator().manual_seed(seed))
    noise = noise - noise.mean()
    noise *= ref.norm() / noise.norm() / 10 ** (snr_db / 20)
    return ref + noise


def test_si_sdr_matches_the_snr_of_an_orthogonal_error_and_ignores_scale():
    t = torch.arange(16000) / 16000
    ref = torch.sin(2 * torch.pi * 220 * t)
    est = _noisy(ref, 10.0)
    # noise is nearly orthogonal to the reference: SI-SDR ~ SNR, and scaling the estimate changes nothing
    assert abs(float(si_sdr(est, ref)) - 10.0) < 0.2
    assert abs(float(si_sdr(0.1 * est, ref)) - float(si_sdr(est, ref))) < 1e-3
    m = si_sdr_matrix(torch.stack([est, ref]), torch.stack([ref, torch.randn(16000)]))
    assert m[0, 0] > 9 and m[1, 0] > 60 and m[0, 1] < 0


def test_bss_eval_keeps_the_given_order():
    g = torch.Generator().manual_seed(0)
    refs = torch.randn(2, 8000, generator=g)
    est = torch.stack([_noisy(refs[0], 20, 1), _noisy(refs[1], 20, 2)])
    good = bss_eval(est, refs)
    swapped = bss_eval(est.flip(0), refs)  # compute_permutation=False: the swap is scored as a swap
    assert (good["sdr"] > 15).all() and (good["sir"] > 30).all()
    assert (swapped["sdr"] < 0).all()


@pytest.mark.parametrize("num_sources", [2, 3])
def test_bss_eval_equals_mir_eval(num_sources):
    separation = pytest.importorskip("mir_eval.separation")
    g = torch.Generator().manual_seed(num_sources)
    refs = torch.randn(num_sources, 6000, generator=g)
    mixing = torch.eye(num_sources) + 0.3 * torch.rand(num_sources, num_sources, generator=g)
    est = mixing @ refs + 0.1 * torch.randn(num_sources, 6000, generator=g)
    est[0] = torch.from_numpy(np.convolve(est[0].numpy(), [0.6, 0.3, 0.1])[:6000])  # a filtered estimate
    ours = bss_eval(est, refs)
    with pytest.warns(FutureWarning):
        sdr, sir, sar, perm = separation.bss_eval_sources(refs.double().numpy(), est.double().numpy(), False)
    np.testing.assert_allclose(ours["sdr"], sdr, atol=1e-6)
    np.testing.assert_allclose(ours["sir"], sir, atol=1e-6)
    np.testing.assert_allclose(ours["sar"], sar, atol=1e-6)


def test_stoi_of_clean_speech_is_one_and_drops_with_noise():
    wav, sr = read_audio(DEMO / "test" / "000001.s0.flac", 16000)
    ref = wav[0]
    assert stoi(ref, ref, sr) > 0.99
    assert stoi(_noisy(ref, -5.0), ref, sr) < 0.8


def test_face_tracks_follow_the_true_faces_and_mouth_crops_hold_the_mouth():
    clip = read_clip(DEMO / "test" / "000002.mp4", 0, 4, fps=25)
    video = clip.video.permute(1, 2, 3, 0).contiguous()
    ann = load_annotations(DEMO / "test" / "000002.npz")
    tracks = track_faces(video.numpy(), 25)
    assert len(tracks) == ann["boxes"].shape[1] == 3
    for k, tr in enumerate(tracks):  # sorted left to right, like the world's faces
        overlap = np.mean([iou(tr.boxes[t], ann["boxes"][t, k]) for t in range(100)])
        assert overlap > 0.45
        m = mouth_boxes(tr.boxes)
        cx = (ann["mouth_boxes"][:, k, 0] + ann["mouth_boxes"][:, k, 2]) / 2
        cy = (ann["mouth_boxes"][:, k, 1] + ann["mouth_boxes"][:, k, 3]) / 2
        inside = (m[:, 0] < cx) & (cx < m[:, 2]) & (m[:, 1] < cy) & (cy < m[:, 3])
        assert inside.mean() > 0.95


def test_crop_boxes_cuts_the_right_pixels():
    video = torch.zeros(2, 40, 60, 3, dtype=torch.uint8)
    video[:, 10:20, 30:50] = 200  # a bright rectangle
    crops = crop_boxes(video, np.array([[30, 10, 50, 20], [0, 0, 30, 10]], np.float32), (8, 16))
    assert crops.shape == (2, 8, 16, 3)
    assert crops[0].float().mean() > 190 and crops[1].float().mean() < 10


@pytest.fixture(scope="module")
def demo_tracks():
    return extract_tracks(read_manifest(DEMO / "test.jsonl"), workers=0)


def test_tracks_pair_each_face_with_its_stem(demo_tracks):
    rows = demo_tracks.rows
    assert len(demo_tracks.stems) == sum(r["meta"]["num_faces"] for r in rows)
    expected = [s["sounding"] for r in rows for s in sorted(r["sources"], key=lambda s: s["index"])]
    assert demo_tracks.sounding.tolist() == expected  # the listener of clip 0 gets silence


def test_instrument_tracks_are_crops_of_the_annotated_objects():
    folder = DEMO.parent / "instruments"
    tracks = extract_tracks(read_manifest(folder / "test.jsonl"), workers=0)
    rows = tracks.rows
    assert len(tracks.stems) == sum(len(r["sources"]) for r in rows)
    expected = [s["sounding"] for r in rows for s in sorted(r["sources"], key=lambda s: s["index"])]
    assert tracks.sounding.tolist() == expected  # clip 0's silent glockenspiel gets silence
    assert tracks.crops.shape[2:] == (32, 32, 3)
    # an object crop is not background: it differs from the crop of another object in the same clip
    assert (tracks.crops[0].float() - tracks.crops[1].float()).abs().mean() > 10


def test_mixtures_are_sums_of_their_sources_from_different_clips(demo_tracks):
    ds = MixTracks(demo_tracks, window=2.0, num_mix=(2, 3), seed=3)
    for i in range(len(ds)):
        item = ds[i]
        k = int(item["valid"].sum())
        assert k in (2, 3) and (item["sources"][k:] == 0).all()
        residual = item["mixture"] - item["sources"].sum(0)  # the first clip's background
        assert residual.pow(2).mean() < 0.05 * item["mixture"].pow(2).mean()
    again = MixTracks(demo_tracks, window=2.0, num_mix=(2, 3), seed=3)
    assert torch.equal(ds[1]["mixture"], again[1]["mixture"])


def test_snr_loss_ceiling_and_silent_references():
    ref = torch.randn(2, 4000)
    mix = ref.sum(0)
    assert torch.allclose(snr_loss(ref, ref, mix), torch.tensor(-30.0), atol=0.01)
    silent = snr_loss(torch.zeros(4000), torch.zeros(4000), mix)
    assert abs(float(silent) + 30.0) < 0.01  # predicting silence for a silent face is as good as it gets
    assert snr_loss(0.5 * mix, torch.zeros(4000), mix) > -7


@pytest.mark.parametrize("num_sources", [2, 3, 4])
def test_pit_assign_takes_the_best_permutation(num_sources):
    g = torch.Generator().manual_seed(num_sources)
    est, refs = torch.randn(6, num_sources, 400, generator=g), torch.randn(6, num_sources, 400, generator=g)
    mix = refs.sum(1)
    for metric, kwargs, sign in ((si_sdr, {}, 1), (snr_loss, {"mixture": mix}, -1)):
        got = pit_assign(est, refs, metric, larger_is_better=sign > 0, **kwargs)
        pair = torch.stack([torch.stack([metric(est[:, i], refs[:, j], **kwargs) for j in range(num_sources)], 1)
                            for i in range(num_sources)], 1)  # (B, estimate, reference)  # fmt: skip
        for b in range(len(est)):  # brute force: every order of the estimates, the best sum of scores
            orders = list(itertools.permutations(range(num_sources)))
            best = max(orders, key=lambda p: sign * sum(float(pair[b, i, k]) for k, i in enumerate(p)))  # noqa: B023
            torch.testing.assert_close(got[b], est[b, list(best)], rtol=0, atol=0)


def test_iou():
    box = np.array([0.0, 0.0, 2.0, 2.0])
    assert iou(box, box) == 1.0
    assert iou(box, box + 2) == 0.0  # touching corners
    assert iou(box, np.array([1.0, 0.0, 3.0, 2.0])) == pytest.approx(1 / 3)
    assert iou(np.zeros(4), np.zeros(4)) == 0.0


def test_pit_loss_ignores_the_order_of_the_references(demo_tracks):
    task = Separation(model="asep_unet_pit_tiny").eval()
    batch = MixTracks(demo_tracks, window=2.0, num_mix=2, sounding_only=True, deterministic=True)
    b = {k: torch.stack([batch[i][k] for i in range(2)]) for k in batch[0]}
    swapped = dict(b, sources=b["sources"].flip(1))
    with torch.no_grad():
        torch.testing.assert_close(task.losses(b)[0].sort().values, task.losses(swapped)[0].sort().values)


def test_visual_separation_training_reduces_the_loss(demo_tracks):
    torch.manual_seed(0)
    task = Separation(model="avsep_unet_tiny", lr=3e-3)
    ds = MixTracks(demo_tracks, window=1.0, num_mix=2, sounding_only=True, deterministic=True)
    b = {k: torch.stack([ds[i][k] for i in range(4)]) for k in ds[0]}
    opt = torch.optim.AdamW(task.parameters(), lr=3e-3)
    first = None
    for _ in range(25):
        loss = task.losses(b)[0].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert loss.item() < first - 3.0  # dB


# -- the shipped checkpoint through `avlearn separate` ---------------------------------------------------------


def test_inference_loads_models_and_builds_no_lightning_module():
    """separate and localize run the models of their checkpoints (front-ends included): no task is imported."""
    code = (
        "import sys, torch\n"
        "from avlearn.pipelines.separate import separate_clip\n"
        "from avlearn.pipelines.localize import Localizer\n"
        f"separate_clip({str(DEMO / 'test' / '000001.mp4')!r})\n"
        "Localizer().frame_maps(torch.zeros(30, 64, 64, 3, dtype=torch.uint8), torch.zeros(30 * 640))\n"
        "print(sorted(m for m in sys.modules if m.startswith(('avlearn.tasks', 'lightning'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_separate_demo_clip_gives_each_face_its_own_voice(tmp_path):
    clip = DEMO / "test" / "000001.mp4"
    before = clip.read_bytes()
    assert main(["separate", str(clip), "--out", str(tmp_path)]) == 0
    assert clip.read_bytes() == before
    doc = json.loads((tmp_path / "result.json").read_text())
    assert [s["wav"] for s in doc["speakers"]] == ["speaker_0.wav", "speaker_1.wav"]
    refs = torch.stack([read_audio(DEMO / "test" / f"000001.s{k}.flac", 16000)[0][0] for k in range(2)])
    mix = read_clip(clip, 0, 4, video=False).audio[0]
    est = torch.stack([read_audio(tmp_path / f"speaker_{k}.wav", 16000)[0][0] for k in range(2)])
    n = min(est.shape[1], refs.shape[1], mix.shape[0])
    scores = si_sdr_matrix(est[:, :n], refs[:, :n])
    improvement = scores.diagonal() - si_sdr(mix[:n].expand(2, n), refs[:, :n])
    assert (scores.argmax(1) == torch.arange(2)).all()  # each face got its own voice
    assert (improvement > 3).all(), improvement  # the mixture itself scores 0
    video = read_clip(tmp_path / "speaker_1.mp4", 0, 1.0)
    assert video.video.shape[-1] == 192 and video.audio.abs().max() > 0.01


def test_later_passes_reuse_the_frames_decoded_once_and_nothing_writes_into_them(tmp_path, monkeypatch):
    clip = DEMO / "test" / "000001.mp4"
    decoded = []
    read = separate_pipeline.read_frames
    monkeypatch.setattr(separate_pipeline, "read_frames", lambda *a, **k: decoded.append(a[1]) or read(*a, **k))
    with keep_frames():
        first = [f for _, f in frame_chunks(clip, 0, 100, 25.0, 180)]
        again = [f for _, f in frame_chunks(clip, 0, 80, 25.0, 180)]  # a shorter pass: the same chunks, cut
        assert len(decoded) == 1 and again[0].data_ptr() == first[0].data_ptr() and len(again[0]) == 80
        result = separate_clip(clip)  # the default's three passes: faces, mouths, speaker videos
        result.save(tmp_path / "out")
        kept = [f for _, f in frame_chunks(clip, 0, result.num_frames, result.fps, result.read_size)]
    fresh = [f for _, f in frame_chunks(clip, 0, result.num_frames, result.fps, result.read_size)]
    assert len(decoded) == 3  # the first pass of each size once, then the fresh pass outside the block
    assert all(torch.equal(a, b) for a, b in zip(kept, fresh, strict=True))
    with keep_frames(budget_mb=0):  # past the budget every pass decodes as before
        for _ in range(2):
            list(frame_chunks(clip, 0, 100, 25.0, 180))
    assert len(decoded) == 5


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg program")
def test_a_picture_that_starts_late_keeps_each_voice_on_its_face(tmp_path):
    """MPEG-PS as ffmpeg writes it starts the picture 0.54 s after the file's origin: separate refused it
    ("frames near 3.520s could no longer be decoded"), and counted valid samples instead of their end, which
    cut off the last half second."""
    clip = tmp_path / "late.mpg"
    src = DEMO / "test" / "000001.mp4"
    cmd = ["ffmpeg", "-loglevel", "error", "-i", str(src), "-c:v", "mpeg2video", "-q:v", "2", "-c:a", "mp2", str(clip)]
    subprocess.run(cmd, check=True)
    lag = round(probe(clip).video.start * 16000)
    assert lag > 0.3 * 16000
    assert main(["separate", str(clip), "--out", str(tmp_path / "out")]) == 0
    refs = torch.stack([read_audio(DEMO / "test" / f"000001.s{k}.flac", 16000)[0][0] for k in range(2)])
    est = torch.stack([read_audio(tmp_path / "out" / f"speaker_{k}.wav", 16000)[0][0] for k in range(2)])
    assert est.shape[1] >= lag + refs.shape[1] - 16000 // 25  # the whole sound, after the late start
    n = min(est.shape[1] - lag, refs.shape[1])
    scores = si_sdr_matrix(est[:, lag : lag + n], refs[:, :n])
    assert (scores.argmax(1) == torch.arange(2)).all(), scores
    assert (scores.diagonal() > 1).all(), scores  # the mixture scores about 0


def test_boxes_file_replaces_the_detector(tmp_path):
    ann = load_annotations(DEMO / "test" / "000001.npz")
    # speaker 0: its true face box every frame; speaker 1: one fixed box (the first frame's)
    boxes = [ann["boxes"][:, 0].tolist(), ann["boxes"][0, 1].tolist()]
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    out = tmp_path / "out"
    assert (
        main(
            ["separate", str(DEMO / "test" / "000001.mp4"), "--out", str(out), "--boxes", str(tmp_path / "boxes.json")]
            + VISUAL
        )
        == 0
    )
    doc = json.loads((out / "result.json").read_text())
    assert len(doc["speakers"]) == 2 and doc["speakers"][1]["boxes"][50] == [round(v) for v in boxes[1]]
    refs = torch.stack([read_audio(DEMO / "test" / f"000001.s{k}.flac", 16000)[0][0] for k in range(2)])
    est = torch.stack([read_audio(out / f"speaker_{k}.wav", 16000)[0][0] for k in range(2)])
    n = min(est.shape[1], refs.shape[1])
    assert (si_sdr_matrix(est[:, :n], refs[:, :n]).argmax(1) == torch.arange(2)).all()
    (tmp_path / "bad.json").write_text(json.dumps([[1, 2, 3]]))
    assert (
        main(
            [
                "separate",
                str(DEMO / "test" / "000001.mp4"),
                "--out",
                str(tmp_path / "x"),
                "--boxes",
                str(tmp_path / "bad.json"),
                *VISUAL,
            ]
        )
        == 1
    )
    assert not (tmp_path / "x").exists()


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


@pytest.mark.parametrize("audio_args", [["-ar", "8000"], ["-ar", "48000"], ["-ac", "6"]], ids=["8k", "48k", "6ch"])
def test_other_sample_rates_and_channel_counts_are_resampled(tmp_path, audio_args):
    src = tmp_path / "in.mp4"
    _ffmpeg("-i", str(DEMO / "test" / "000001.mp4"), "-c:v", "copy", "-c:a", "aac", *audio_args, str(src))
    result = separate_clip(src)
    assert result.sample_rate == 16000 and len(result.tracks) == 2
    assert any("separated as 16000 Hz mono" in n for n in result.notes)
    refs = torch.stack([read_audio(DEMO / "test" / f"000001.s{k}.flac", 16000)[0][0] for k in range(2)])
    n = min(result.voices.shape[1], refs.shape[1])
    scores = si_sdr_matrix(result.voices[:, :n], refs[:, :n])
    if audio_args != ["-ar", "8000"]:  # separate_real has heard almost no narrowband (8 kHz) sound: it does not
        assert (scores.argmax(1) == torch.arange(2)).all()  # separate it (docs/separation.md, "Cases")


def test_one_face_is_separated_from_the_background(tmp_path):
    src = tmp_path / "one.mp4"
    _ffmpeg("-i", str(DEMO / "test" / "000003.mp4"), "-vf", "crop=80:160:0:0", "-c:a", "copy", str(src))
    out = tmp_path / "out"
    assert main(["separate", str(src), "--out", str(out)]) == 0
    results = sorted(p.name for p in out.iterdir() if p.name != ".avlearn.json")  # (the run's record)
    assert results == ["result.json", "speaker_0.mp4", "speaker_0.wav"]
    assert "one face" in json.loads((out / "result.json").read_text())["notes"][0]


def test_bad_input_gets_one_line_and_no_output(tmp_path, capsys):
    no_audio = tmp_path / "silent_film.mp4"
    _ffmpeg("-i", str(DEMO / "test" / "000001.mp4"), "-an", "-c:v", "copy", str(no_audio))
    too_short = tmp_path / "short.mp4"
    _ffmpeg("-i", str(DEMO / "test" / "000001.mp4"), "-t", "0.2", str(too_short))
    no_face = tmp_path / "instruments.mp4"
    shutil.copy(DEMO.parent / "instruments" / "test" / "000002.mp4", no_face)
    cases = {
        no_audio: "no audio stream",
        too_short: "needs at least",
        no_face: "no face found",
        tmp_path / "missing.mp4": "no such file",
    }
    for clip, message in cases.items():
        out = tmp_path / f"out_{clip.stem}"
        assert main(["separate", str(clip), "--out", str(out)]) == 1
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists()
    sync = DEFAULT_CHECKPOINT.parent / "sync_speakers"
    assert (
        main(["separate", str(DEMO / "test" / "000001.mp4"), "--out", str(tmp_path / "x"), "--checkpoint", str(sync)])
        == 1
    )
    assert "'separation' checkpoint is needed" in capsys.readouterr().err


def test_a_description_that_disagrees_with_the_models_front_end_is_refused(tmp_path, capsys):
    """The model owns its rates; a JSON saying others (an edit, an export from older code) is one line, not a
    separation run on misaligned windows."""
    ck = tmp_path / "ck"
    shutil.copy(DEFAULT_CHECKPOINT.with_suffix(".safetensors"), ck.with_suffix(".safetensors"))
    doc = json.loads(DEFAULT_CHECKPOINT.with_suffix(".json").read_text())
    doc["preprocessing"]["fps"] = 30.0
    ck.with_suffix(".json").write_text(json.dumps(doc))
    clip = DEMO / "test" / "000001.mp4"
    assert main(["separate", str(clip), "--out", str(tmp_path / "out"), "--checkpoint", str(ck)]) == 1
    err = capsys.readouterr().err.strip()
    assert "says fps 30.0 (its model takes 25.0)" in err and len(err.splitlines()) == 1, err


def test_short_clip_is_padded_to_one_window(tmp_path):
    src = tmp_path / "half.mp4"
    _ffmpeg("-i", str(DEMO / "test" / "000001.mp4"), "-t", "0.6", str(src))
    result = separate_clip(src)
    assert len(result.tracks) == 2
    assert abs(result.voices.shape[1] - 0.6 * 16000) <= 16000 / 25
