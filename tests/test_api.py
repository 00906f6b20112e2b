"""The Python API (``avlearn.separate``, ``avlearn.load_model``, ...) on the shipped demo clips, and the README's
Python examples, run as written."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import avlearn
from avlearn.data.manifest import load_annotations
from avlearn.io import read_audio, read_clip
from avlearn.metrics.separation import si_sdr, si_sdr_matrix
from avlearn.pipelines.checkpoints import DEFAULTS, DeviceError

ROOT = Path(__file__).resolve().parents[1]


def test_import_avlearn_costs_no_torch():
    """The API loads on first use: ``import avlearn`` (and finding a demo clip) imports no torch."""
    code = "import sys, avlearn; avlearn.demo_clip('actions'); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_models_by_name_and_shipped_checkpoints():
    shipped = avlearn.list_models(pretrained=True)
    assert set(DEFAULTS.values()) <= set(shipped)
    assert avlearn.list_models("sync_*", pretrained=True) == [n for n in shipped if n.startswith("sync_")]
    assert "avsync_mbt" in avlearn.list_models("avsync*") and "sync_speakers" not in avlearn.list_models()
    net = avlearn.load_model("sync_speakers")
    stored = load_file(str(avlearn.asset_path("checkpoints", "sync_speakers.safetensors")))
    state = net.state_dict()
    assert not net.training and all(torch.equal(state[k], v.to(state[k].dtype)) for k, v in stored.items())
    by_path = avlearn.load_model(avlearn.asset_path("checkpoints", "sync_speakers.json"))
    assert all(torch.equal(a, b) for a, b in zip(by_path.state_dict().values(), state.values()))
    name = json.loads(avlearn.asset_path("checkpoints", "sync_speakers.json").read_text())["model"]
    fresh = avlearn.create_model(name)  # the same architecture, random weights
    assert fresh.state_dict().keys() == state.keys() and fresh.training


def test_sync_offset_of_a_file_and_of_a_decoded_clip(tmp_path):
    clip = avlearn.demo_clip("speakers")
    result = avlearn.sync_offset(clip, shift_audio_ms=200, device="cpu")
    assert abs(result.offset_ms - 200) <= result.frame_ms and result.agreement == 1.0
    decoded = avlearn.sync_offset(read_clip(clip, 0.0, 4.0), shift_audio_ms=-120)
    assert abs(decoded.offset_ms + 120) <= decoded.frame_ms
    saved = json.loads(result.save(tmp_path / "sync", report=True).read_text())
    assert saved["offset_ms"] == result.offset_ms and len(saved["windows"]) == len(result.windows)
    assert "+200" in (tmp_path / "sync" / "report.html").read_text()


def test_separate_gives_each_face_its_voice_from_a_file_or_a_decoded_clip(tmp_path):
    clip = avlearn.demo_clip("speakers")
    result = avlearn.separate(clip)
    refs = torch.stack([read_audio(clip.with_name(f"000001.s{k}.flac"), 16000)[0][0] for k in range(2)])
    n = min(result.voices.shape[1], refs.shape[1])
    scores = si_sdr_matrix(result.voices[:, :n], refs[:, :n])
    improvement = scores.diagonal() - si_sdr(result.mixture[:n].expand(2, n), refs[:, :n])
    assert (scores.argmax(1) == torch.arange(2)).all() and (improvement > 3).all(), scores
    # a decoded clip is handed to the pipeline losslessly: the same voices
    decoded = avlearn.separate(read_clip(clip, 0.0, 4.0))
    assert torch.allclose(decoded.voices, result.voices, atol=1e-4)
    before = clip.read_bytes()
    doc = json.loads(decoded.save(tmp_path / "sep").read_text())  # reads the decoded clip's file again
    assert [s["mp4"] for s in doc["speakers"]] == ["speaker_0.mp4", "speaker_1.mp4"]
    assert read_clip(tmp_path / "sep" / "speaker_1.mp4", 0, 1.0).audio.abs().max() > 0.01
    assert clip.read_bytes() == before


def test_localize_peaks_on_the_sounding_instrument_and_saves_its_files(tmp_path):
    clip = avlearn.demo_clip("instruments")  # a sounding timpani and a silent glockenspiel
    result = avlearn.localize(clip)
    annotation = load_annotations(clip.with_suffix(".npz"))
    side, sounding = annotation["masks"].shape[-1], annotation["sounding"].astype(bool)  # boxes: source pixels
    hits = [
        any(x0 <= p.peak_u * side <= x1 and y0 <= p.peak_v * side <= y1 for x0, y0, x1, y1 in boxes[sounding])
        for p, boxes in zip(result.peaks, annotation["boxes"])
    ]
    assert result.frames == len(result.peaks) == 100 and result.silent_frames == 0
    assert np.mean(hits) >= 0.8, np.mean(hits)
    out = result.save(tmp_path / "loc")
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "grid.png",
        "heatmap.mp4",
        "peaks.json",
    ]
    saved = json.loads((out / "peaks.json").read_text())["frames"]
    assert [f["peak_x"] for f in saved] == [p.peak_x for p in result.peaks]


def test_recognize_finds_the_chopping_and_when(tmp_path):
    result = avlearn.recognize(avlearn.demo_clip("actions"))  # chopping at 5.5-7.8 s and 11.2-13.4 s
    assert result.label == "chop" and result.top[0]["probability"] > 0.5
    assert result.looked_at == 2 and result.windows == 20
    for start, end in result.top[0]["segments"]:
        assert 5.5 <= (start + end) / 2 <= 7.8 or 11.2 <= (start + end) / 2 <= 13.4
    doc = json.loads(result.save(tmp_path / "rec", report=True).read_text())
    assert doc["input"] == str(avlearn.demo_clip("actions")) and doc["top"] == result.top
    assert "chop" in (tmp_path / "rec" / "report.html").read_text()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_cuda_on_a_machine_without_it_is_one_line_and_writes_nothing(tmp_path):
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        avlearn.sync_offset(avlearn.demo_clip("speakers"), device="cuda")
    for command in ("separate", "localize", "recognize"):
        done = subprocess.run(
            [sys.executable, "-m", "avlearn.cli", command, str(avlearn.demo_clip()), "--out", str(tmp_path / "o"),
             "--device", "cuda"],
            capture_output=True, text=True,
        )  # fmt: skip
        assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
        assert done.stderr.startswith(f"avlearn {command}: error: --device cuda: this machine has no CUDA GPU")
        assert not (tmp_path / "o").exists()


def readme_examples() -> list[str]:
    """The README's Python code blocks, in order."""
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_the_readme_python_examples_run_as_written(tmp_path):
    """Every ``python`` block of the README, run in order in one fresh interpreter from an empty folder."""
    blocks = readme_examples()
    assert len(blocks) >= 4
    script = "\n".join(blocks)
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
