"""The summary tool reproduces the reference tables (receptive fields, C3D, AlexNet, VGG-16) and runs as a CLI."""

from __future__ import annotations

import pytest
import torch
import torchvision

from avlearn.cli import main
from avlearn.models import create_model, get_model_info, list_models
from avlearn.models.summary import parse_size, summarize

torch.set_num_threads(2)

# after conv1, pool1, conv2 and the global pool, for input 3x20x64x64
RF_TABLE = {
    "late_fusion": ((1, 3, 3), (1, 6, 6), (1, 14, 14), (20, 64, 64)),
    "early_fusion": ((20, 3, 3), (20, 6, 6), (20, 14, 14), (20, 64, 64)),
    "cnn3d": ((3, 3, 3), (6, 6, 6), (14, 14, 14), (20, 64, 64)),
}


@pytest.mark.parametrize("name", sorted(RF_TABLE))
def test_receptive_field_table(name):
    summary = summarize(create_model(name), (3, 20, 64, 64))
    after_conv1, after_pool1, after_conv2, final = RF_TABLE[name]
    assert summary.row("conv1").rf == after_conv1
    assert summary.row("pool1").rf == after_pool1
    assert summary.row("conv2").rf == after_conv2
    assert summary.row("pool").rf == final
    assert summary.rows[-1].rf == final  # the classifier sees the whole clip


@pytest.mark.parametrize("name", ["cnn3d", "c3d_tiny"])
def test_analytic_receptive_field_matches_measured(name):
    model = create_model(name)
    size = (3, 20, 64, 64) if name == "cnn3d" else (3, 16, 32, 32)
    analytic = summarize(model, size, rf="analytic")
    measured = summarize(model, size, rf="gradient")
    assert all(r.rf_method == "analytic" for r in analytic.rows)
    assert [r.rf for r in analytic.rows] == [r.rf for r in measured.rows]


def test_c3d_table():
    summary = summarize(create_model("c3d"), (3, 16, 112, 112))
    expected = {"conv1": 1.04, "conv2": 11.10, "conv3a": 5.55, "conv3b": 11.10, "conv4a": 2.77, "conv4b": 5.55,
                "conv5a": 0.69, "conv5b": 0.69}  # fmt: skip
    for layer, gmacs in expected.items():
        assert round(summary.row(layer).macs / 1e9, 2) == gmacs, layer
    assert summary.row("pool5").output_size == (512, 1, 3, 3)
    assert summary.row("fc8").output_size == (487,)
    # fc layers counted by their definition: in x out
    assert summary.row("fc6").macs == 4608 * 4096
    assert summary.row("fc7").macs == 4096 * 4096
    assert summary.row("fc8").macs == 4096 * 487
    assert round(summary.total_gmacs, 1) == 38.5


@pytest.mark.parametrize(("name", "gmacs"), [("alexnet", 0.71), ("vgg16", 15.47)])
def test_torchvision_reference_gmacs(name, gmacs):
    summary = summarize(torchvision.models.get_model(name, weights=None), (3, 224, 224))
    assert round(summary.total_gmacs, 2) == gmacs


def test_attention_matmuls_are_counted():
    tiny = [n for n in list_models("*_tiny") if n.startswith("timesformer")]
    if not tiny:
        pytest.skip("no transformer registered")
    summary = summarize(create_model(tiny[0]), get_model_info(tiny[0]).input_size)
    assert any(r.kind == "Attention" and r.macs > 0 for r in summary.rows)


def test_parse_size():
    assert parse_size("3x16x112x112") == (3, 16, 112, 112)
    with pytest.raises(ValueError, match="CxTxHxW"):
        parse_size("3by16")


def test_cli(capsys):
    assert main(["summary", "c3d", "--input", "3x16x112x112"]) == 0
    out = capsys.readouterr().out
    assert "conv5b" in out and "512x1x3x3" in out and "38.53" in out
    assert main(["summary", "alexnet", "--input", "3x224x224"]) == 0
    assert "0.71" in capsys.readouterr().out
    assert main(["summary", "late_fusion", "--markdown"]) == 0
    assert "| features.conv2 | Conv2d | 24x16x16 | 1x14x14* |" in capsys.readouterr().out
    assert main(["summary", "no_such_model"]) == 2
    assert main(["summary", "c3d", "--input", "3x16x64x64"]) == 2  # fc6 is sized for 112x112
    assert "cannot run on input 3x16x64x64" in capsys.readouterr().out


@pytest.mark.parametrize("name", list_models("*_tiny"))
def test_summary_runs_on_every_tiny_model(name):
    model = create_model(name)
    summary = summarize(model, get_model_info(name).input_size, rf="off")
    assert summary.rows and summary.total_macs > 0
    assert summary.total_params == sum(p.numel() for p in model.parameters())
    assert sum(r.macs for r in summary.rows) == summary.total_macs  # every MAC is in exactly one row


def test_gradient_receptive_field_through_residual_blocks():
    summary = summarize(create_model("r3d_18_tiny"), (3, 4, 32, 32))  # residual sums: measured
    assert summary.row("net.stem.0").rf == (3, 7, 7) and summary.row("net.stem.0").rf_method == "analytic"
    assert summary.row("net.layer1.0.conv2.0").rf_method == "analytic"  # still a chain from the input
    assert summary.row("net.layer2.0.conv1.0").rf_method == "gradient"  # after the first residual sum
    assert summary.row("net.layer2.0.conv2.0").rf == (4, 27, 27)
    assert summary.row("net.fc").rf == (4, 32, 32)


def test_cli_dict_input(capsys):
    assert main(["summary", "two_stream_tiny", "--input", "video=3x3x32x32", "--input", "flow=2x2x32x32"]) == 0
    assert "temporal_head" in capsys.readouterr().out
