"""Sound source localization: metrics by hand, sliding maps, the three objectives, `avlearn localize` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from avlearn.cli import main
from avlearn.data.manifest import load_annotations
from avlearn.metrics.localization import (
    baseline_maps,
    binarize,
    ciou,
    median_ciou_bound,
    pointing_hits,
    prepare_maps,
    summarize,
)
from avlearn.models import create_model, example_input
from avlearn.models.localize import similarity, sliding_similarity

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "assets" / "checkpoints" / "localize_instruments"
DEMO = ROOT / "assets" / "demo" / "instruments" / "test"


def test_ciou_by_hand():
    gt = torch.zeros(1, 4, 4, dtype=torch.bool)
    gt[0, :2, :2] = True  # 4 pixels
    pred = torch.zeros_like(gt)
    pred[0, :2, :3] = True  # covers gt + 2 false positives
    assert ciou(pred, gt).item() == pytest.approx(4 / (4 + 2))
    pred = torch.zeros_like(gt)
    pred[0, 0, 0] = True  # a quarter of gt, no false positive: cIoU does not punish missed ground truth twice
    assert ciou(pred, gt).item() == pytest.approx(1 / 4)


def test_median_binarization_keeps_half_the_image_and_bounds_ciou():
    maps = prepare_maps(torch.rand(3, 7, 7))
    pred = binarize(maps, "median")
    assert (pred.flatten(1).sum(1) >= 224 * 224 // 2).all()
    gt = torch.zeros(1, 224, 224, dtype=torch.bool)
    gt[0, :48, :48] = True  # 4.6% of the image
    perfect = prepare_maps(gt.float()[:, ::4, ::4])  # the ground truth itself as a map
    best = ciou(binarize(perfect, "median"), gt)
    assert best.item() <= median_ciou_bound(gt).item() + 1e-6 < 0.11
    assert ciou(binarize(perfect, "half_max"), gt).item() > 0.9


def test_summary_auc_and_baselines():
    s = summarize(torch.ones(10))
    assert s == {"ciou@0.5": 1.0, "mean_ciou": 1.0, "auc": pytest.approx(1.0)}
    s = summarize(torch.tensor([0.0, 0.5]))  # success 1 at t=0, 0.5 up to 0.5, 0 after
    assert s["ciou@0.5"] == 0.5 and s["auc"] == pytest.approx(0.0375 + 0.5 * 0.45 + 0.0125)
    gt = torch.zeros(2, 224, 224, dtype=torch.bool)
    gt[:, 100:124, 100:124] = True
    whole = prepare_maps(baseline_maps("whole", 2))
    assert torch.allclose(ciou(binarize(whole, "median"), gt), torch.full((2,), 24 * 24 / 224**2))
    assert pointing_hits(prepare_maps(baseline_maps("centre", 2)), gt).all()


def test_sliding_maps_equal_maps_of_cut_windows():
    model = create_model("avloc_tiny").eval()
    x = example_input("avloc_tiny", batch_size=1, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        f = model.forward_features(x)
    v, a = f["video"][0], f["spec"][0]
    maps = sliding_similarity(v, a, 5)
    for t in (2, 3, 5):
        window = similarity(v[None, :, t - 2 : t + 3], a[None, :, t - 2 : t + 3])[0]
        torch.testing.assert_close(maps[t], window, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("fps", [12.5, 25.0, 30.0])
def test_localizer_front_ends_give_one_audio_step_per_frame_at_any_fps(fps):
    model = create_model("avloc_tiny", fps=fps, size=32).eval()
    frames = torch.randint(0, 256, (1, 10, 48, 40, 3), dtype=torch.uint8)  # any frame size: resized to 32
    audio = torch.randn(1, model.audio_front_end.num_samples(10))  # the 10 frames' sound
    with torch.no_grad():
        v, a = model.embed(frames, audio)
    assert v.shape[2:] == (10, 8, 8) and a.shape[2] == 10
    hop = model.audio_front_end.hop_length
    assert hop * model.audio_front_end.hops_per_token == pytest.approx(16000 / fps, abs=2)


@pytest.mark.parametrize("method", ["lvs", "ezvsl", "attention"])
def test_objectives_train_the_localizer(method):
    """Each objective gives a finite loss whose gradient reaches every weight; a few steps lower it."""
    from avlearn.tasks.localize import LocalizationTask

    task = LocalizationTask(method=method, model="avloc_tiny", model_args={"size": 32})
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (4, 8, 32, 32, 3), dtype=torch.uint8, generator=g)
    audio = torch.randn(4, 8 * 640, generator=g) * 0.1
    opt = torch.optim.Adam(task.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        loss = task.loss(*task.net.embed(frames, audio))
        opt.zero_grad()
        loss.backward()
        losses.append(loss.item())
        missing = [n for n, p in task.net.named_parameters() if p.grad is None]
        assert not missing
        opt.step()
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    maps = task.maps(*task.net.embed(frames[:2], audio[:2]))
    assert maps.shape == (2, 8, 8)


def test_unknown_method_is_refused():
    from avlearn.tasks.localize import LocalizationTask

    with pytest.raises(ValueError, match="method must be one of"):
        LocalizationTask(method="grad_cam", model="avloc_tiny")


def _peak_on_sounding(peaks: dict, annotation: dict) -> float:
    source_size = annotation["masks"].shape[-1]
    hits = []
    for k, frame in enumerate(peaks["frames"]):
        x = frame["peak_u"] * source_size
        y = frame["peak_v"] * source_size
        boxes = annotation["boxes"][k][annotation["sounding"].astype(bool)]
        hits.append(any(x0 <= x <= x1 and y0 <= y <= y1 for x0, y0, x1, y1 in boxes))
    return float(np.mean(hits))


def test_localize_demo_clip_peaks_on_the_sounding_object(tmp_path, capsys):
    """The README's example: the shipped checkpoint on a shipped test clip (one sounding object and a silent
    distractor that moves the same way)."""
    clip = DEMO / "000000.mp4"
    assert main(["localize", str(clip), "--out", str(tmp_path)]) == 0
    assert "100 frames" in capsys.readouterr().out
    peaks = json.loads((tmp_path / "peaks.json").read_text())
    assert len(peaks["frames"]) == 100 and peaks["width"] == peaks["height"] == 224
    assert _peak_on_sounding(peaks, load_annotations(clip.with_suffix(".npz"))) >= 0.8
    from avlearn.io import probe

    info = probe(tmp_path / "heatmap.mp4")
    assert info.audio is not None and info.video.width == 224 and abs(info.duration - 4.0) < 0.1
    assert (tmp_path / "grid.png").stat().st_size > 10_000


def test_localize_with_the_sync_model_class_activation(tmp_path, capsys):
    ck = ROOT / "assets" / "checkpoints" / "sync_instruments"
    assert main(["localize", str(DEMO / "000001.mp4"), "--out", str(tmp_path), "--checkpoint", str(ck)]) == 0
    assert "sync_cam" in capsys.readouterr().out
    assert json.loads((tmp_path / "peaks.json").read_text())["method"] == "sync_cam"


def test_localize_bad_input(tmp_path, capsys):
    from avlearn.io import write_video

    no_audio = write_video(tmp_path / "no_audio.mp4", torch.zeros(3, 30, 32, 32, dtype=torch.uint8), 25)
    assert main(["localize", str(no_audio), "--out", str(tmp_path / "a")]) == 1
    assert "no audio stream" in capsys.readouterr().err
    assert not (tmp_path / "a" / "heatmap.mp4").exists()

    short = torch.zeros(3, 2, 32, 32, dtype=torch.uint8)
    write_video(tmp_path / "short.mp4", short, 25, torch.zeros(1, 1280), 16000)
    assert main(["localize", str(tmp_path / "short.mp4"), "--out", str(tmp_path / "b")]) == 1
    assert "needs at least" in capsys.readouterr().err

    # silence: outputs are written, every frame is marked silent, no peak is claimed
    frames = torch.randint(0, 256, (3, 20, 48, 48), dtype=torch.uint8)
    write_video(tmp_path / "silent.mp4", frames, 25, torch.zeros(1, 12800), 16000)
    assert main(["localize", str(tmp_path / "silent.mp4"), "--out", str(tmp_path / "c")]) == 0
    err = capsys.readouterr().err.splitlines()  # one line each, on stderr, as every command's warnings
    assert any(line.startswith("avlearn localize: warning: ") and "audio is silent" in line for line in err)
    assert any(line.startswith("avlearn localize: warning: ") and "shorter than the model's" in line for line in err)
    peaks = json.loads((tmp_path / "c" / "peaks.json").read_text())
    assert all(f["silent"] and f["peak_x"] is None for f in peaks["frames"])

    other = tmp_path / "other"
    from avlearn.models.weights import save_weights

    save_weights(other, create_model("c3d_tiny"), model_name="c3d_tiny", task="classify")
    clip = str(DEMO / "000000.mp4")
    assert main(["localize", clip, "--out", str(tmp_path / "d"), "--checkpoint", str(other)]) == 1
    assert "'classify' checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize("rotation", [0, 90])
def test_localize_odd_sizes_and_rotation(tmp_path, rotation, capsys):
    """A 100x76 picture (not square, not the model's size), stored rotated: the output keeps the upright
    aspect ratio and every frame gets a peak inside it."""
    import av

    path = tmp_path / f"odd_{rotation}.mp4"
    sr, n = 16000, 30
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = 100, 76, "yuv420p"  # x264 needs even sizes; crop below
        if rotation:
            vs.set_display_rotation(rotation)
        as_ = out.add_stream("aac", rate=sr)
        as_.layout = "mono"
        for k in range(n):
            img = np.full((76, 100, 3), 40, np.uint8)
            if k % 6 == 0:
                img[10:30, 60:90] = 250  # a flash
            out.mux(vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(vs.encode(None))
        t = np.arange(round(n / 25 * sr)) / sr
        wav = (0.3 * np.sin(2 * np.pi * 440 * t) * (np.mod(t, 0.24) < 0.05)).astype(np.float32)[None]
        for i in range(0, wav.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wav[:, i : i + 1024]), format="fltp", layout="mono")
            frame.sample_rate = sr
            out.mux(as_.encode(frame))
        out.mux(as_.encode(None))
    assert main(["localize", str(path), "--out", str(tmp_path / "o")]) == 0
    capsys.readouterr()
    peaks = json.loads((tmp_path / "o" / "peaks.json").read_text())
    short, long = sorted((peaks["height"], peaks["width"]))
    assert short == 224 and abs(long - 224 * 100 / 76) <= 2
    assert (peaks["height"] > peaks["width"]) == (rotation == 90)
    assert len(peaks["frames"]) == n
    assert all(0 <= f["peak_u"] <= 1 and 0 <= f["peak_v"] <= 1 for f in peaks["frames"])


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from avlearn.data.synth import synthesize
    from avlearn.data.worlds import WorldConfig

    out = tmp_path_factory.mktemp("world")
    config = WorldConfig(size=32, duration=2.0)
    synthesize("instruments", out, 4, seed=0, split="train", config=config, workers=0)
    synthesize("instruments", out, 2, seed=1, split="val", config=config, workers=0)
    return out


@pytest.mark.parametrize("method", ["ezvsl", "lvs", "attention"])
def test_recipe_fits_and_its_weights_localize(method, world, tmp_path, capsys):
    """`avlearn fit -c recipes/localization/instruments_METHOD.yaml` on a tiny rendered world (tiny model, one
    epoch) exports `localize` weights that `avlearn localize` runs with."""
    from avlearn.models.weights import load_weights

    run = tmp_path / "run"
    args = [
        "fit", "-c", str(ROOT / "recipes" / "localization" / f"instruments_{method}.yaml"),
        "--model.init_args.model", "avloc_tiny",
        "--data.init_args.train_manifest", str(world / "train.jsonl"),
        "--data.init_args.val_manifest", str(world / "val.jsonl"),
        "--data.init_args.size", "32",
        "--data.init_args.window", "0.5",
        "--data.init_args.val_starts", "[0.5]",
        "--data.init_args.batch_size", "4",
        "--trainer.max_epochs", "1",
        "--trainer.default_root_dir", str(run),
        "--trainer.logger", "lightning.pytorch.loggers.CSVLogger",
        "--trainer.logger.save_dir", str(run),
        "--trainer.enable_progress_bar", "false",
    ]  # fmt: skip
    if method == "ezvsl":  # a model whose front-end takes other frames than the data's is refused in one line
        assert main(args) == 1
        err = capsys.readouterr().err
        assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("avlearn fit: error: the data")
        assert err.strip().endswith("""--model.init_args.model_args '{"size": 32}'""")
    assert main([*args, "--model.init_args.model_args", '{"size": 32}']) == 0
    weights = next(run.glob("**/weights/last.safetensors"))
    _, doc = load_weights(weights, task="localize")
    assert doc["preprocessing"]["method"] == method and doc["preprocessing"]["window"] == 0.5
    assert doc["model_args"] == {"size": 32} and doc["preprocessing"]["size"] == 32
    assert "val/pointing" in doc["meta"]["metrics"]
    clip = sorted((world / "val").glob("*.mp4"))[0]
    assert main(["localize", str(clip), "--out", str(tmp_path / "out"), "--checkpoint", str(weights)]) == 0
    assert method in capsys.readouterr().out
    assert len(json.loads((tmp_path / "out" / "peaks.json").read_text())["frames"]) == 50
