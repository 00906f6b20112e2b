"""Checkpoints: safetensors + JSON round trip, and clear refusals of wrong or damaged checkpoints."""

import pytest
import torch

from avlearn.models import create_model, example_input
from avlearn.models.weights import CheckpointError, load_weights, read_weights_info, save_weights


def test_round_trip_rebuilds_the_same_model(tmp_path):
    model = create_model("c3d_tiny", num_classes=3).eval()
    path = save_weights(
        tmp_path / "ck", model, model_name="c3d_tiny", model_args={"num_classes": 3}, task="classify",
        preprocessing={"fps": 25}, meta={"acc": 0.5},
    )  # fmt: skip
    assert path.suffix == ".safetensors" and (tmp_path / "ck.json").is_file()
    loaded, doc = load_weights(tmp_path / "ck.json", task="classify")
    x = example_input("c3d_tiny")
    torch.testing.assert_close(loaded(x), model(x))
    assert doc["preprocessing"] == {"fps": 25} and read_weights_info(path)["meta"]["acc"] == 0.5


def test_float16_storage_keeps_what_float16_cannot_hold(tmp_path):
    model = create_model("asep_unet_pit_tiny").eval()
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d))
    bn.running_var[0] = 1e5  # a batch norm's running variance past float16's largest value, 65504
    save_weights(tmp_path / "ck", model, model_name="asep_unet_pit_tiny", task="demo", dtype=torch.float16)
    loaded, _ = load_weights(tmp_path / "ck.json", task="demo")
    name = next(k for k, v in model.named_buffers() if v is bn.running_var)
    assert dict(loaded.named_buffers())[name][0] == 1e5
    x = example_input("asep_unet_pit_tiny")
    torch.testing.assert_close(loaded(x), model(x), rtol=1e-2, atol=1e-2)  # the rest rounded to float16


def test_refuses_other_task_damaged_and_mismatched(tmp_path):
    model = create_model("c3d_tiny", num_classes=3)
    save_weights(tmp_path / "ck", model, model_name="c3d_tiny", model_args={"num_classes": 3}, task="classify")
    with pytest.raises(CheckpointError, match="'classify' model"):
        load_weights(tmp_path / "ck", task="sync")
    with pytest.raises(CheckpointError, match="not found"):
        load_weights(tmp_path / "nothing")
    # same tensors, other architecture arguments: refused, not silently half-loaded
    doc = (tmp_path / "ck.json").read_text().replace('"num_classes": 3', '"num_classes": 4')
    (tmp_path / "ck.json").write_text(doc)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_weights(tmp_path / "ck")
    (tmp_path / "ck.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="damaged"):
        load_weights(tmp_path / "ck")
    (tmp_path / "x.json").write_text("[1, 2]")
    (tmp_path / "x.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="not an avlearn checkpoint"):
        load_weights(tmp_path / "x")
