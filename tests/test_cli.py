"""The command line as a user runs it: probe, demo, and clear errors on bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from media import click_track, write_coded

from avlearn.cli import main
from avlearn.io import read_audio


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "clip.mp4"
    return write_coded(path, [k / 25 for k in range(75)], audio=click_track([0.5, 1.5], 3.0, 44100))


def test_help_lists_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("probe", "demo", "summary", "synth"):
        assert name in out


def test_probe_prints_streams(clip, capsys):
    assert main(["probe", str(clip)]) == 0
    assert "h264 96x32" in capsys.readouterr().out
    assert main(["probe", "--json", str(clip)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["video"]["fps"] == pytest.approx(25) and info["audio"]["sample_rate"] == 44100


def test_demo_writes_sheet_and_window_audio(clip, tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", str(clip), "--out", str(out), "--start", "0.4", "--duration", "1.5"]) == 0
    assert (out / "contact_sheet.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    wav, rate = read_audio(out / "window.wav")
    assert rate == 16000 and wav.shape[1] == 24000
    onset = np.flatnonzero(wav[0].abs().numpy() > 0.3)[0] / rate  # the 0.5 s click, 0.1 s into the window
    assert onset == pytest.approx(0.1, abs=1e-3)
    assert json.loads((out / "probe.json").read_text())["video"]["width"] == 96


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    out = tmp_path / "out"
    assert main(["demo", str(text), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "notes.mp4" in err and "not a readable media file" in err and "Traceback" not in err
    assert not out.exists()
    assert main(["probe", str(tmp_path / "missing.mp4")]) == 1
    assert "no such file" in capsys.readouterr().err


@pytest.mark.parametrize(
    "change, says",
    [
        ({"format_version": 99}, "written in checkpoint format 99, this avlearn reads format 1"),
        ({"model": None}, "lacks model"),
    ],
)
def test_a_checkpoint_description_from_the_future_or_without_a_model_is_one_line(tmp_path, capsys, change, says):
    """QA: a description with ``"format_version": 99`` loaded silently; one without ``model`` named no key."""
    import shutil
    from pathlib import Path

    shipped = Path(__file__).resolve().parents[1] / "assets" / "checkpoints" / "sync_speakers"
    shutil.copy(shipped.with_suffix(".safetensors"), tmp_path / "ck.safetensors")
    doc = json.loads(shipped.with_suffix(".json").read_text())
    doc.update({k: v for k, v in change.items() if v is not None})
    for k in [k for k, v in change.items() if v is None]:
        del doc[k]
    (tmp_path / "ck.json").write_text(json.dumps(doc))
    clip = Path(__file__).resolve().parents[1] / "assets" / "demo" / "speakers" / "test" / "000001.mp4"
    assert main(["sync-offset", str(clip), "--checkpoint", str(tmp_path / "ck")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("avlearn sync-offset: error: ") and says in err, err
