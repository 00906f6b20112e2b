"""Sync pretraining end to end on a tiny rendered world: recipe -> fit -> weights -> exact resume -> DDP."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from procs import run_group
from safetensors.torch import load_file

from avlearn.cli import main
from avlearn.data.synth import synthesize
from avlearn.data.worlds import WorldConfig
from avlearn.models.weights import load_weights

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "sync" / "instruments_avsync_mbt.yaml"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world")
    config = WorldConfig(size=32, duration=2.0)
    synthesize("instruments", out, 8, seed=0, split="train", config=config, workers=0)
    synthesize("instruments", out, 4, seed=1, split="val", config=config, workers=0)
    return out


def _args(world: Path, run: Path, *extra: str) -> list[str]:
    return [
        "-c", str(RECIPE),
        "--model.init_args.model", "avsync_mbt_tiny",
        "--model.init_args.model_args", "{}",
        "--data.init_args.train_manifest", str(world / "train.jsonl"),
        "--data.init_args.val_manifest", str(world / "val.jsonl"),
        "--data.init_args.size", "32",
        "--data.init_args.window", "0.5",
        "--data.init_args.batch_size", "4",
        "--trainer.precision", "32-true",
        "--trainer.default_root_dir", str(run),
        "--trainer.logger", "lightning.pytorch.loggers.CSVLogger",
        "--trainer.logger.save_dir", str(run),
        "--trainer.enable_progress_bar", "false",
        *extra,
    ]  # fmt: skip


def test_fit_writes_config_metrics_and_weights(world, tmp_path):
    assert main(["fit", *_args(world, tmp_path, "--trainer.max_epochs", "1")]) == 0
    version = next(tmp_path.glob("lightning_logs/version_*"))
    assert (version / "config.yaml").is_file() and (version / "metrics.csv").is_file()
    net, doc = load_weights(version / "weights" / "last", task="sync")
    assert doc["model"] == "avsync_mbt_tiny" and doc["preprocessing"]["fps"] == 25
    assert doc["preprocessing"]["window"] == 0.5 and "val/acc" in doc["meta"]["metrics"]


def test_a_run_starts_from_given_weights_and_records_them(world, tmp_path, capsys):
    from avlearn.tasks.sync import SyncBinary

    first, second = tmp_path / "first", tmp_path / "second"
    assert main(["fit", *_args(world, first, "--trainer.max_epochs", "1")]) == 0
    start = next(first.glob("**/weights/last.safetensors"))
    task = SyncBinary(model="avsync_mbt_tiny", model_args={}, init_from=str(start))
    saved = load_file(str(start))
    for key, value in task.net.state_dict().items():
        torch.testing.assert_close(value, saved[key], rtol=0, atol=0, msg=key)
    more = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1"]
    more += ["--model.init_args.init_from", str(start)]
    assert main(["fit", *_args(world, second, *more)]) == 0
    doc = json.loads(next(second.glob("**/weights/last.json")).read_text())
    assert doc["meta"]["init_from"] == {"path": str(start), "sha256": hashlib.sha256(start.read_bytes()).hexdigest()}
    capsys.readouterr()
    assert main(["fit", *_args(world, second, *more, "--model.init_args.model", "avsync_tconv_tiny")]) == 1
    assert "a avsync_mbt_tiny checkpoint; this run trains avsync_tconv_tiny" in capsys.readouterr().err


def test_resume_continues_exactly(world, tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert main(["fit", *_args(world, straight, "--trainer.max_epochs", "2")]) == 0
    stop = ["--trainer.callbacks+=callbacks.StopAfterEpochs", "--trainer.callbacks.init_args.epochs", "1"]
    assert main(["fit", *_args(world, killed, "--trainer.max_epochs", "2", *stop)]) == 0  # "killed" after epoch 1
    assert main(["fit", *_args(world, killed, "--trainer.max_epochs", "2", "--ckpt_path", "last")]) == 0
    resumed = killed / "lightning_logs" / "version_1"  # a new folder, continuing version_0's last.ckpt
    assert (resumed / "config.yaml").read_text().count("version_0/checkpoints/last.ckpt") == 1
    a = load_file(str(next(straight.glob("**/weights/last.safetensors"))))
    b = load_file(str(max(killed.glob("**/weights/last.safetensors"), key=os.path.getmtime)))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


@pytest.mark.slow
def test_ddp_two_cpu_processes_keep_identical_replicas(world, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
        "-m", "avlearn.cli", "fit",
        *_args(world, tmp_path, "--trainer.max_steps", "3", "--trainer.max_epochs", "1"),
        "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
        "--trainer.callbacks+=callbacks.DumpWeights",
        "--trainer.callbacks.init_args.out", str(tmp_path / "replicas"),
    ]  # fmt: skip
    proc = run_group(cmd, env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (load_file(str(tmp_path / "replicas" / f"rank{r}.safetensors")) for r in (0, 1))
    assert r0.keys() == r1.keys()
    for key in r0:
        torch.testing.assert_close(r0[key], r1[key], rtol=0, atol=0, msg=key)
    start = load_file(str(tmp_path / "replicas" / "rank0_start.safetensors"))
    assert any(not torch.equal(start[k], r0[k]) for k in r0)  # they trained, and stayed in step


@pytest.fixture(scope="module")
def tiny_checkpoint(world, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run")
    assert main(["fit", *_args(world, run, "--trainer.max_epochs", "1")]) == 0
    return next(run.glob("**/weights/last.safetensors"))


def test_sync_offset_cli_reports_windows_and_clip(world, tiny_checkpoint, capsys):
    clip = sorted((world / "val").glob("*.mp4"))[0]
    assert main(["sync-offset", str(clip), "--checkpoint", str(tiny_checkpoint), "--max-frames", "3"]) == 0
    out = capsys.readouterr().out
    assert "window start" in out and "confidence" in out and "ms" in out.splitlines()[-1]
    assert main(["sync-offset", str(clip), "--checkpoint", str(tiny_checkpoint), "--max-frames", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["windows"]) >= 2 and result["frame_ms"] == 40.0
    assert abs(result["offset_ms"]) <= 120 and 0 < result["confidence"] <= 1


def test_sync_offset_bad_input(world, tiny_checkpoint, tmp_path, capsys):
    from avlearn.io import write_video

    write_video(tmp_path / "short.mp4", torch.zeros(3, 10, 32, 32, dtype=torch.uint8), 25, torch.zeros(1, 6400), 16000)
    silent = write_video(tmp_path / "silent.mp4", torch.zeros(3, 75, 32, 32, dtype=torch.uint8), 25)
    ck = str(tiny_checkpoint)
    assert main(["sync-offset", str(tmp_path / "short.mp4"), "--checkpoint", ck]) == 1
    assert "needs at least" in capsys.readouterr().err
    assert main(["sync-offset", str(silent), "--checkpoint", ck]) == 1
    assert "no audio stream" in capsys.readouterr().err
    other = tmp_path / "other"
    from avlearn.models import create_model
    from avlearn.models.weights import save_weights

    save_weights(other, create_model("c3d_tiny"), model_name="c3d_tiny", task="classify")
    assert main(["sync-offset", str(sorted((world / "val").glob("*.mp4"))[0]), "--checkpoint", str(other)]) == 1
    assert "'classify' model" in capsys.readouterr().err


def test_delay_shifts_audio_both_ways():
    from avlearn.pipelines.sync_offset import delay

    x = torch.arange(1.0, 6.0)
    assert delay(x, 2).tolist() == [0, 0, 1, 2, 3]
    assert delay(x, -2).tolist() == [3, 4, 5, 0, 0]
    assert torch.equal(delay(x, 0), x)


@pytest.mark.parametrize(("world", "checkpoint"), [("speakers", "sync_speakers"), ("instruments", "sync_instruments")])
def test_shipped_checkpoints_find_known_shifts_in_demo_clips(world, checkpoint, capsys):
    root = Path(__file__).resolve().parents[1] / "assets"
    clip = root / "demo" / world / "test" / ("000001.mp4" if world == "speakers" else "000002.mp4")
    for shift in (0, 200, -120):
        args = ["sync-offset", str(clip), "--shift-audio-ms", str(shift), "--json"]
        assert main([*args, "--checkpoint", str(root / "checkpoints" / checkpoint)]) == 0
        result = json.loads(capsys.readouterr().out)
        assert abs(result["offset_ms"] - shift) <= 40, result  # within one 25 fps frame


def test_contrastive_objective_trains_with_its_curriculum(world, tmp_path):
    args = _args(
        world, tmp_path, "--trainer.max_epochs", "3",
        "--model.class_path", "avlearn.tasks.sync.SyncContrastive",
        "--model.init_args.easy_epochs", "1", "--model.init_args.curriculum_epochs", "1",
        "--data.init_args.num_shifted", "2",
    )  # fmt: skip
    assert main(["fit", *args]) == 0
    version = next(tmp_path.glob("lightning_logs/version_*"))
    rows = (version / "metrics.csv").read_text().splitlines()
    col = rows[0].split(",").index("curriculum/min_shift")
    shifts = [float(r.split(",")[col]) for r in rows[1:] if r.split(",")[col]]
    assert shifts[0] == pytest.approx(0.25) and shifts[-1] == pytest.approx(0.08)  # half a window -> 2 frames
    assert load_weights(version / "weights" / "last", task="sync")[1]["model"] == "avsync_mbt_tiny"


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg program")
def test_an_offset_beyond_the_search_range_is_flagged_by_the_windows_disagreeing(tmp_path):
    """QA: a 1 s delay (beyond the +-600 ms searched) read "+440 ms, confidence 0.86" with no word: the product
    of many windows' distributions is confident even when they disagree."""
    from avlearn.pipelines.sync_offset import FRAME_CHECKPOINT, MIN_AGREEMENT, sync_offset

    demo = Path(__file__).resolve().parents[1] / "assets" / "demo" / "speakers" / "test"
    clip = tmp_path / "four_clips.mp4"  # 16 s, in sync, re-encoded so the joins keep time
    inputs = [arg for k in range(4) for arg in ("-i", str(demo / f"00000{k}.mp4"))]
    streams = "".join(f"[{k}:v][{k}:a]" for k in range(4))
    subprocess.run(
        ["ffmpeg", "-v", "error", *inputs, "-filter_complex", f"{streams}concat=n=4:v=1:a=1[v][a]",
         "-map", "[v]", "-map", "[a]", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(clip)],
        check=True,
    )  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        inside = sync_offset(clip, FRAME_CHECKPOINT, shift_audio_ms=200)  # the mechanism, on the frames model
        assert not caught
        beyond = sync_offset(clip, FRAME_CHECKPOINT, shift_audio_ms=1000)
    assert inside.offset_ms == 200 and inside.agreement >= MIN_AGREEMENT
    assert beyond.agreement < MIN_AGREEMENT
    assert len(caught) == 1 and "try --max-frames 30" in str(caught[0].message)
