"""Every task's recipe pointed at a real data set: real talking heads from ``../shared/real-av/`` laid out as
VoxCeleb2 (``ROOT/dev/mp4/idNNNNN/VIDEO/UTT.mp4``, links to the clips, nothing copied), made into a manifest
by its adapter, and trained for one tiny epoch under two-process gloo DDP, each rank's windows decoded
lazily by two DataLoader workers (no cache)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch
from procs import run_group
from safetensors.torch import load_file

from avlearn.data.adapters import voxceleb2
from avlearn.data.manifest import write_manifest

ROOT = Path(__file__).resolve().parents[1]
REAL_AV = ROOT.parent / "shared" / "real-av"
# four people talking, 3.0-4.4 s (LRS2-style 160x160 and VoxCeleb2-style 224x224 crops)
CLIPS = (
    "video/smeetrs+deep_avsr/audio_only/demo/00008.mp4",
    "video/smeetrs+deep_avsr/audio_only/demo/00022.mp4",
    "video/smeetrs+deep_avsr/audio_only/demo/00009.mp4",
    "video/Hangz-nju-cuhk+Talking-Face_PC-AVS/misc/Pose_Source/620900105.mp4",
)
COMMON = ("--data.init_args.num_workers", "2", "--data.init_args.cache", "false", "--data.init_args.batch_size", "2")
TASKS = {
    "sync": (
        "sync/instruments_avsync_mbt.yaml",
        "--model.init_args.model", "avsync_mbt_tiny", "--model.init_args.model_args", "{}",
        "--data.init_args.size", "32", "--data.init_args.window", "0.5",
    ),
    "separation": (
        "separation/speakers_avsep.yaml",
        "--model.init_args.model", "avsep_unet_tiny", "--data.init_args.window", "1.0",
        "--data.init_args.num_mix", "2", "--data.init_args.val_items", "2",
    ),
    "localization": (
        "localization/instruments_lvs.yaml",
        "--model.init_args.model", "avloc_tiny", "--model.init_args.model_args", '{"size": 32}',
        "--data.init_args.size", "32", "--data.init_args.window", "0.5", "--data.init_args.val_starts", "[0.5]",
    ),
    "preview": (
        "preview/actions_teacher.yaml",
        "--model.init_args.model", "listen_to_look_tiny", "--data.init_args.size", "32",
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    """The clips as a VoxCeleb2 download lays them out, and the manifest its adapter writes."""
    if not REAL_AV.is_dir():
        pytest.skip(f"real clips {REAL_AV} not present")
    root = tmp_path_factory.mktemp("voxceleb2")
    for k, clip in enumerate(CLIPS):
        link = root / "dev" / "mp4" / f"id{k:05d}" / f"video{k}" / "00001.mp4"
        link.parent.mkdir(parents=True)
        link.symlink_to(REAL_AV / clip)
    rows, report = voxceleb2(root)
    assert report.found == len(CLIPS) and not report.missing, report
    write_manifest(root / "vox.jsonl", rows)
    return root / "vox.jsonl"


def _args(task: str, manifest: Path, run: Path) -> list[str]:
    recipe, *task_args = TASKS[task]
    return [
        "-c", str(ROOT / "recipes" / recipe), *task_args, *COMMON,
        "--data.init_args.train_manifest", str(manifest), "--data.init_args.val_manifest", str(manifest),
        "--trainer.max_epochs", "1", "--trainer.precision", "32-true", "--trainer.limit_val_batches", "1",
        "--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir", str(run),
        "--trainer.default_root_dir", str(run), "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.num_sanity_val_steps", "0",
    ]  # fmt: skip


@pytest.mark.parametrize("task", sorted(TASKS))
def test_each_task_trains_an_epoch_of_real_clips_under_two_process_gloo_ddp(task, manifest, tmp_path):
    """Each rank reads its share of the windows lazily, in its two workers, and the replicas stay identical."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests"), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
        "-m", "avlearn.cli", "fit", *_args(task, manifest, tmp_path),
        "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
        "--trainer.callbacks+=callbacks.DumpWeights", "--trainer.callbacks.init_args.out", str(tmp_path / "replicas"),
    ]  # fmt: skip
    proc = run_group(cmd, env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (load_file(str(tmp_path / "replicas" / f"rank{r}.safetensors")) for r in (0, 1))
    start = load_file(str(tmp_path / "replicas" / "rank0_start.safetensors"))
    for key in r0:
        torch.testing.assert_close(r0[key], r1[key], rtol=0, atol=0, msg=key)
    assert any(not torch.equal(start[k], r0[k]) for k in r0)  # they trained, and stayed in step
    doc = json.loads(next(tmp_path.glob("**/weights/last.json")).read_text())
    assert doc["meta"]["global_step"] >= 1 and doc["preprocessing"]["window"] > 0
    assert not (manifest.parent / ".avlearn-cache").exists()  # cache: false writes nothing beside the data
