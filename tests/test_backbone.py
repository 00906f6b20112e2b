"""Tasks start from the sync encoders: init_from fills them, the freeze period keeps them, the run records it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import lightning as L
import pytest
import torch

from avlearn.data.manifest import read_manifest
from avlearn.data.separation import MixTracks, extract_tracks
from avlearn.models import create_model
from avlearn.models.weights import CheckpointError, save_weights
from avlearn.tasks.backbone import load_backbone
from avlearn.tasks.separate import Separation

DEMO = Path(__file__).resolve().parents[1] / "assets" / "demo" / "speakers"


@pytest.fixture(scope="module")
def sync_checkpoint(tmp_path_factory):
    """A tiny sync model with its encoders' weights set apart from a fresh initialization."""
    torch.manual_seed(1)
    net = create_model("avsync_mbt_tiny")
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.5)
    path = tmp_path_factory.mktemp("sync") / "sync"
    save_weights(path, net, model_name="avsync_mbt_tiny", task="sync", components=net.components())
    return path, net


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sb = b.state_dict()
    return all(torch.equal(v, sb[k]) for k, v in a.state_dict().items())


def test_load_backbone_fills_both_encoders_and_refuses_other_encoders(sync_checkpoint):
    path, sync = sync_checkpoint
    sep = create_model("avsep_sync_tiny")
    record = load_backbone(sep, path)
    assert _same(sep.backbone["video"], sync.encoders["video"]) and _same(sep.backbone["audio"], sync.encoders["audio"])
    assert record["components"] == ["audio", "video"]
    assert record["sha256"] == hashlib.sha256(path.with_suffix(".safetensors").read_bytes()).hexdigest()
    with pytest.raises(CheckpointError, match="encoder was built with"):
        load_backbone(create_model("avsep_sync"), path)  # full-size encoders: not the tiny checkpoint's
    with pytest.raises(CheckpointError, match="no pretrained parts"):
        load_backbone(create_model("avsep_unet_tiny"), path)


@pytest.fixture(scope="module")
def batches():
    tracks = extract_tracks(read_manifest(DEMO / "test.jsonl"), workers=0)
    ds = MixTracks(tracks, window=1.0, num_mix=2, sounding_only=True, deterministic=True)
    return torch.utils.data.DataLoader(ds, batch_size=2)


def _fit(task, batches, epochs):
    trainer = L.Trainer(max_epochs=epochs, limit_train_batches=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(task, train_dataloaders=batches)
    return trainer


def test_freeze_period_keeps_the_encoders_then_they_train(sync_checkpoint, batches):
    path, sync = sync_checkpoint
    torch.manual_seed(0)
    task = Separation(model="avsep_sync_tiny", init_from=str(path), freeze_epochs=1, backbone_lr_mult=0.5)
    head = task.net.head.weight.detach().clone()
    _fit(task, batches, epochs=1)
    assert _same(task.net.backbone["video"], sync.encoders["video"])  # batch norm statistics included
    assert _same(task.net.backbone["audio"], sync.encoders["audio"])
    assert not torch.equal(task.net.head.weight, head)  # the new parts learned meanwhile
    _fit(task, batches, epochs=2)  # a new trainer: epoch 0 is frozen again, epoch 1 trains everything
    assert not _same(task.net.backbone["video"], sync.encoders["video"])
    stats = [k for k in sync.encoders["video"].state_dict() if "running_" in k]
    for key in stats:  # the weights fine-tune, the batch norms keep the pretraining's statistics
        assert torch.equal(task.net.backbone["video"].state_dict()[key], sync.encoders["video"].state_dict()[key])
    groups = task.trainer.optimizers[0].param_groups
    peaks = {g["backbone"]: g["max_lr"] for g in groups}
    assert peaks[True] == pytest.approx(0.5 * peaks[False])
    assert task.export_meta()["init_from"]["freeze_epochs"] == 1


def test_a_whole_run_freeze_takes_no_gradient_in_the_encoders(sync_checkpoint, batches):
    path, sync = sync_checkpoint
    task = Separation(model="avsep_sync_tiny", init_from=str(path), freeze_epochs=5)
    _fit(task, batches, epochs=1)
    assert all(not p.requires_grad for m in task.net.backbone.values() for p in m.parameters())
    assert _same(task.net.backbone["video"], sync.encoders["video"])
    assert not any(g["backbone"] for g in task.trainer.optimizers[0].param_groups)


@pytest.mark.parametrize("layers", [2, 3])
def test_the_localizer_takes_the_first_layers_of_the_video_encoder(sync_checkpoint, layers):
    path, sync = sync_checkpoint
    loc = create_model("avloc_sync_tiny", video_layers=layers)
    load_backbone(loc, path)
    video = sync.encoders["video"].state_dict()
    for key, value in loc.backbone["video"].state_dict().items():
        assert torch.equal(value, video[key]), key
    assert not any(k.startswith(f"features.{layers}.") for k in loc.backbone["video"].state_dict())
    frames, audio = torch.randint(0, 255, (2, 8, 32, 32, 3), dtype=torch.uint8), torch.randn(2, 8 * 640)
    v, a = loc.embed(frames, audio)
    side = 32 // 2**layers
    assert v.shape == (2, 8, 8, side, side) and a.shape == (2, 8, 8)  # (B, D, T, h, w)
