"""Training that survives ``kill -9``: a real ``avlearn fit`` killed mid-epoch resumes with ``--ckpt_path last``
and ends with the weights of an uninterrupted run; what a user can get wrong is one line, exit 1, nothing written."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from avlearn.cli import main
from avlearn.data.synth import synthesize
from avlearn.data.worlds import WorldConfig
from avlearn.tasks.checkpoints import AtomicCheckpointIO

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "sync" / "instruments_avsync_mbt.yaml"
EPOCHS, BATCHES = 2, 4  # 8 training clips in batches of 2
# last.ckpt every 3 steps (and at each epoch end); the kill comes one step after the one at step 6, mid-epoch
OVERRIDE = {
    "trainer": {
        "log_every_n_steps": 1,
        "callbacks": [
            {
                "class_path": "avlearn.tasks.checkpoints.LastCheckpoint",
                "init_args": {"minutes": None, "every_n_train_steps": 3},
            },
            {"class_path": "avlearn.tasks.export.ExportWeights", "init_args": {"monitor": "val/acc", "mode": "max"}},
        ],
    }
}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world")
    config = WorldConfig(size=32, duration=2.0)
    synthesize("instruments", out, 8, seed=0, split="train", config=config, workers=0)
    synthesize("instruments", out, 4, seed=1, split="val", config=config, workers=0)
    (out / "override.yaml").write_text(yaml.safe_dump(OVERRIDE))
    return out


def _args(world: Path, run: Path, *extra: str) -> list[str]:
    return [
        "-c", str(RECIPE),
        "-c", str(world / "override.yaml"),
        "--model.init_args.model", "avsync_mbt_tiny",
        "--model.init_args.model_args", "{}",
        "--data.init_args.train_manifest", str(world / "train.jsonl"),
        "--data.init_args.val_manifest", str(world / "val.jsonl"),
        "--data.init_args.size", "32",
        "--data.init_args.window", "0.5",
        "--data.init_args.batch_size", "2",
        "--trainer.max_epochs", str(EPOCHS),
        "--trainer.precision", "32-true",
        "--trainer.default_root_dir", str(run),
        "--trainer.logger", "lightning.pytorch.loggers.CSVLogger",
        "--trainer.logger.save_dir", str(run),
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        *extra,
    ]  # fmt: skip


def _fit(*argv: str) -> tuple[int, str]:
    """Runs ``avlearn fit`` in this process; returns its exit status and the avlearn lines of its stderr that
    are not library warnings (pytest shows deprecation warnings a plain run hides)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["fit", *argv])
    lines = err.getvalue().splitlines()
    ours = [line for line in lines if line.startswith("avlearn fit: ") and "Warning" not in line]
    assert not any("Traceback" in line for line in lines)
    return code, "".join(line + "\n" for line in ours if "deprecat" not in line)


@pytest.fixture(scope="module")
def straight(world, tmp_path_factory) -> tuple[Path, str]:
    """An uninterrupted run, started with ``--ckpt_path last`` where there is nothing to resume."""
    run = tmp_path_factory.mktemp("straight")
    code, err = _fit(*_args(world, run, "--ckpt_path", "last"))
    assert code == 0, err
    return run / "lightning_logs" / "version_0", err


def _metrics(version: Path) -> list[dict[str, str]]:
    with open(version / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_nothing_to_resume_starts_fresh_with_one_line(straight):
    version, err = straight
    notices = [line for line in err.splitlines() if "last.ckpt" in line]
    assert len(notices) == 1 and notices[0].endswith("no last.ckpt of an earlier run to resume; starting from scratch")
    assert min(int(row["step"]) for row in _metrics(version)) == 0


def test_kill_9_mid_epoch_then_ckpt_path_last_ends_with_the_same_weights(world, straight, tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    kill = ["--trainer.callbacks+=callbacks.KillAt", "--trainer.callbacks.init_args.step", "7"]
    proc = subprocess.run(
        [sys.executable, "-m", "avlearn.cli", "fit", *_args(world, run), *kill],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    first = run / "lightning_logs" / "version_0"
    saved = torch.load(first / "checkpoints" / "last.ckpt", weights_only=True)
    assert (saved["epoch"], saved["global_step"]) == (1, 6)  # mid-epoch: 2 of the epoch's 4 batches done

    code, err = _fit(*_args(world, run, "--ckpt_path", "last"))
    assert code == 0, err
    assert f"avlearn fit: resuming {first / 'checkpoints' / 'last.ckpt'} (epoch 1, step 6)" in err
    second = run / "lightning_logs" / "version_1"
    assert yaml.safe_load((second / "config.yaml").read_text())["ckpt_path"] == str(first / "checkpoints" / "last.ckpt")
    rows = _metrics(second)
    assert min(int(r["step"]) for r in rows) == 6 and min(int(r["epoch"]) for r in rows) == 1  # not from epoch 0
    assert max(int(r["step"]) for r in rows) == EPOCHS * BATCHES - 1

    for name in ("last", "best"):  # best: carried into the new folder, replaced only when beaten
        a = load_file(str(straight[0] / "weights" / f"{name}.safetensors"))
        b = load_file(str(second / "weights" / f"{name}.safetensors"))
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=f"{name}: {key}")


def test_resuming_for_more_epochs_than_the_schedule_is_refused(world, straight, tmp_path):
    ckpt = straight[0] / "checkpoints" / "last.ckpt"
    before = ckpt.stat().st_mtime_ns
    code, err = _fit(*_args(world, tmp_path, "--ckpt_path", str(ckpt), "--trainer.max_epochs", str(EPOCHS + 2)))
    assert code == 1
    assert err.strip() == (
        f"avlearn fit: error: {ckpt}: its learning-rate schedule was built for {EPOCHS} epochs, not {EPOCHS + 2}; "
        f"resume with --trainer.max_epochs {EPOCHS}, or start a new run (without --ckpt_path) to train longer"
    )
    assert not any(tmp_path.iterdir()) and ckpt.stat().st_mtime_ns == before


def _copy_run(straight: Path, tmp: Path) -> Path:
    """A copy of the finished ``straight`` run as ``<tmp>/run/lightning_logs/version_0``; returns the logs folder."""
    logs = tmp / "run" / "lightning_logs"
    shutil.copytree(straight, logs / "version_0")
    return logs


def _damage(ckpt: Path, how: str, newer_than: Path | None = None) -> None:
    data = ckpt.read_bytes()
    if how == "cut short":  # a copy or a full disk that stopped halfway
        ckpt.write_bytes(data[: len(data) // 2])
    elif how == "overwritten":
        ckpt.write_bytes(bytes(range(256)) * 64)
    else:  # a whole zip whose pickled part is garbage
        at = data.index(b"data.pkl") + 60
        ckpt.write_bytes(data[:at] + b"A" * 140 + data[at + 140 :])
    if newer_than is not None:
        stamp = newer_than.stat().st_mtime_ns + 10**9
        os.utime(ckpt, ns=(stamp, stamp))


FINISHED = (
    "already finished (epoch {e} of {e}); nothing to resume: start a new run without --ckpt_path, "
    "or raise max_epochs in a new run"
)
DAMAGED = {  # how -> the reason given for an explicit --ckpt_path
    "cut short": "damaged: cut short (a write or copy that did not finish)",
    "overwritten": "not a Lightning training checkpoint (not a whole file written by torch.save)",
    "garbage inside": "damaged: its contents cannot be read",
}


@pytest.mark.parametrize("ckpt_path", ["last", "explicit"])
def test_resuming_a_finished_run_says_so_in_one_line_and_writes_nothing(world, straight, tmp_path, ckpt_path):
    """Lightning would "resume", train nothing and leave a new version_N with only config.yaml and hparams.yaml."""
    logs = _copy_run(straight[0], tmp_path)
    ckpt = logs / "version_0" / "checkpoints" / "last.ckpt"
    (logs / "version_1").mkdir()  # what a fit killed while starting leaves: no checkpoint, so never picked
    (logs / "version_1" / "config.yaml").write_text("{}\n")
    code, err = _fit(*_args(world, tmp_path / "run", "--ckpt_path", "last" if ckpt_path == "last" else str(ckpt)))
    assert code == 0
    assert err == f"avlearn fit: the run in {logs / 'version_0'} {FINISHED.format(e=EPOCHS)}\n"
    assert sorted(p.name for p in logs.iterdir()) == ["version_0", "version_1"]
    assert [p.name for p in (logs / "version_1").iterdir()] == ["config.yaml"]


@pytest.mark.parametrize("how", list(DAMAGED))
def test_ckpt_path_last_skips_a_damaged_newest_checkpoint_for_the_next_intact_one(world, straight, tmp_path, how):
    """The older intact checkpoint is taken (here it is finished, so nothing is trained: the choice is what counts)."""
    logs = _copy_run(straight[0], tmp_path)
    intact = logs / "version_0" / "checkpoints" / "last.ckpt"
    damaged = logs / "version_1" / "checkpoints" / "last.ckpt"
    damaged.parent.mkdir(parents=True)
    shutil.copyfile(intact, damaged)
    _damage(damaged, how, newer_than=intact)
    code, err = _fit(*_args(world, tmp_path / "run", "--ckpt_path", "last"))
    assert code == 0, err
    warning, finished = err.splitlines()
    taking = f"skipped, taking {intact}, the newest intact last.ckpt"
    assert warning == f"avlearn fit: warning: {damaged}: {DAMAGED[how]}; {taking}"
    assert finished == f"avlearn fit: the run in {logs / 'version_0'} {FINISHED.format(e=EPOCHS)}"
    assert sorted(p.name for p in logs.iterdir()) == ["version_0", "version_1"]


def test_ckpt_path_last_with_no_intact_checkpoint_is_one_error_line(world, straight, tmp_path):
    logs = _copy_run(straight[0], tmp_path)
    older = logs / "version_0" / "checkpoints" / "last.ckpt"
    newest = logs / "version_1" / "checkpoints" / "last.ckpt"
    newest.parent.mkdir(parents=True)
    shutil.copyfile(older, newest)
    _damage(older, "overwritten")
    _damage(newest, "cut short", newer_than=older)
    code, err = _fit(*_args(world, tmp_path / "run", "--ckpt_path", "last"))
    assert code == 1
    assert err == (
        f"avlearn fit: error: {newest}: damaged: cut short (a write or copy that did not finish) (and 1 older ones); "
        "no intact last.ckpt is left to resume: start a new run without --ckpt_path\n"
    )
    assert sorted(p.name for p in logs.iterdir()) == ["version_0", "version_1"]


@pytest.mark.parametrize("how", list(DAMAGED))
def test_an_explicit_damaged_checkpoint_is_not_told_to_pass_what_was_passed(world, straight, tmp_path, how):
    logs = _copy_run(straight[0], tmp_path)
    ckpt = logs / "version_0" / "checkpoints" / "last.ckpt"
    _damage(ckpt, how)
    code, err = _fit(*_args(world, tmp_path / "run", "--ckpt_path", str(ckpt)))
    assert code == 1 and err.count("\n") == 1 and err.startswith(f"avlearn fit: error: {ckpt}: "), err
    reason, todo = err.removeprefix(f"avlearn fit: error: {ckpt}: ").rstrip("\n").split("; ", 1)
    assert reason == DAMAGED[how]
    assert todo == (
        "pass an intact last.ckpt of an avlearn fit run (each version_N/checkpoints holds one), "
        "or --ckpt_path last to take the newest intact one"
    )
    assert sorted(p.name for p in logs.iterdir()) == ["version_0"]


def _bad_inputs(world: Path, tmp: Path) -> dict[str, tuple[list[str], str, str]]:
    """case -> (extra arguments, file named in the error, words of the reason)."""
    (tmp / "binary.jsonl").write_bytes(b"\x80\x81\x00\xff" * 16)
    (tmp / "lines.jsonl").write_text('{"path": "a.mp4", "start": 0, "end": 1}\nthis is not json\n')
    (tmp / "empty.jsonl").write_text("")
    (tmp / "pickle.ckpt").write_bytes(b"\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01a\x94K\x01s.")
    torch.save({"weights": torch.zeros(2)}, tmp / "tensors.ckpt")
    train, ckpt = "--data.init_args.train_manifest", "--ckpt_path"
    return {
        "missing manifest": ([train, str(tmp / "nope.jsonl")], str(tmp / "nope.jsonl"), "no such manifest"),
        "binary manifest": ([train, str(tmp / "binary.jsonl")], str(tmp / "binary.jsonl"), "not a text file"),
        "not JSON lines": ([train, str(tmp / "lines.jsonl")], str(tmp / "lines.jsonl") + ":2", "not valid JSON"),
        "empty manifest": ([train, str(tmp / "empty.jsonl")], str(tmp / "empty.jsonl"), "has no rows"),
        "pickle checkpoint": ([ckpt, str(tmp / "pickle.ckpt")], str(tmp / "pickle.ckpt"), "not a Lightning training"),
        "other checkpoint": ([ckpt, str(tmp / "tensors.ckpt")], str(tmp / "tensors.ckpt"), "not a Lightning training"),
        "missing checkpoint": ([ckpt, str(tmp / "none.ckpt")], str(tmp / "none.ckpt"), "no such checkpoint"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing manifest",
        "binary manifest",
        "not JSON lines",
        "empty manifest",
        "pickle checkpoint",
        "other checkpoint",
        "missing checkpoint",
    ],
)
def test_fit_errors_are_one_line_and_write_nothing(world, tmp_path, case):
    extra, named, reason = _bad_inputs(world, tmp_path)[case]
    run = tmp_path / "run"
    code, err = _fit(*_args(world, run, *extra))
    assert code == 1
    assert err.count("\n") == 1 and err.startswith(f"avlearn fit: error: {named}: ") and reason in err, err
    assert not run.exists()


def test_fit_command_line_has_no_traceback_and_no_lightningcli_warning(world, tmp_path):
    bad = tmp_path / "val.jsonl"
    bad.write_text("{not json}\n")
    cmd = [sys.executable, "-m", "avlearn.cli", "fit", *_args(world, tmp_path / "run"), "--data.init_args.val_manifest"]
    proc = subprocess.run([*cmd, str(bad)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1, proc.stderr  # no traceback, no LightningCLI warning about its args
    assert proc.stderr.startswith(f"avlearn fit: error: {bad}:1: not valid JSON")


def test_a_checkpoint_write_that_dies_leaves_the_previous_one_whole(tmp_path):
    path = tmp_path / "last.ckpt"
    io_ = AtomicCheckpointIO()
    io_.save_checkpoint({"global_step": 1, "w": torch.ones(1000)}, path)

    class Explodes:  # pickling fails after part of the checkpoint has been written
        def __reduce__(self):
            raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed mid-write"):
        io_.save_checkpoint({"global_step": 2, "w": torch.zeros(1000), "x": Explodes()}, path)
    assert torch.load(path, weights_only=True)["global_step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left behind


def test_separation_recipe_killed_mid_epoch_resumes_exactly(tmp_path):
    """The separation recipes draw mixtures in the seeded per-epoch order too (they shuffled with the global RNG
    before, so a resumed run saw other batches than the run it continued)."""
    demo = ROOT / "assets" / "demo" / "speakers" / "test.jsonl"
    recipe = ROOT / "recipes" / "separation" / "speakers_avsep.yaml"
    (tmp_path / "override.yaml").write_text(
        yaml.safe_dump(
            {
                "trainer": {
                    "callbacks": [
                        {
                            "class_path": "avlearn.tasks.checkpoints.LastCheckpoint",
                            "init_args": {"minutes": None, "every_n_train_steps": 2},
                        },
                        {
                            "class_path": "avlearn.tasks.export.ExportWeights",
                            "init_args": {"monitor": "val/si_sdri", "mode": "max"},
                        },
                    ]
                }
            }
        )
    )

    def args(run: Path) -> list[str]:
        return [
            "-c", str(recipe), "-c", str(tmp_path / "override.yaml"),
            "--model.init_args.model", "avsep_unet_tiny",
            "--data.init_args.train_manifest", str(demo), "--data.init_args.val_manifest", str(demo),
            "--data.init_args.window", "1.0", "--data.init_args.batch_size", "2",
            "--data.init_args.val_items", "2", "--data.init_args.cache", "false",
            "--trainer.max_epochs", "2", "--trainer.precision", "32-true", "--trainer.log_every_n_steps", "1",
            "--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir", str(run),
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        ]  # fmt: skip

    code, err = _fit(*args(tmp_path / "straight"))
    assert code == 0, err
    run = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    kill = ["--trainer.callbacks+=callbacks.KillAt", "--trainer.callbacks.init_args.step", "3"]
    proc = subprocess.run(
        [sys.executable, "-m", "avlearn.cli", "fit", *args(run), *kill], env=env, capture_output=True, text=True,
        timeout=180,
    )  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    code, err = _fit(*args(run), "--ckpt_path", "last")
    assert code == 0, err
    a = load_file(str(tmp_path / "straight" / "lightning_logs" / "version_0" / "weights" / "last.safetensors"))
    b = load_file(str(run / "lightning_logs" / "version_1" / "weights" / "last.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
