"""The package as a user gets it: a wheel built from this checkout, installed the usual way (not editable) into
a fresh virtualenv, runs every inference command on a shipped demo clip from another folder, with no
``--checkpoint`` (the default checkpoints and demo clips travel inside the wheel).

Offline and quick: the wheel is built without build isolation (setuptools from this environment), the fresh
virtualenv gets the heavy dependencies (torch, ...) through a ``.pth`` line naming this environment's
site-packages (a path listed there is searched, its own ``.pth`` files, this checkout's editable hook among
them, are not run), and the wheel is installed with ``--no-deps``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # about a minute: four commands that each start torch


def _run(cmd: list, cwd: Path, timeout: float = 240) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh virtualenv with the wheel of this checkout installed; returns its ``bin`` folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"  # a copy: the build's own files (build/, *.egg-info) stay out of the checkout
    src.mkdir()
    junk = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("avlearn", "assets"):  # avlearn/assets links to assets/: kept a link, as in a clone
        shutil.copytree(ROOT / name, src / name, symlinks=True, ignore=junk)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", tmp / "dist", src], tmp)
    (wheel,) = (tmp / "dist").glob("avlearn-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = [p.relative_to(ROOT).as_posix() for p in (ROOT / "assets").rglob("*") if p.is_file()]
    assert len(shipped) >= 10 and [f for f in shipped if f"avlearn/{f}" not in names] == []
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], tmp)
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(_run([venv / "bin" / "python", "-c", purelib], tmp).strip())
    (site / "heavy_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([*pip, "--python", venv / "bin" / "python", "install", "--no-deps", "--no-index", wheel], tmp)
    return venv / "bin"


def test_the_installed_wheel_runs_every_command_from_another_folder(installed, tmp_path):
    where = _run([installed / "python", "-c", "import avlearn; print(avlearn.__file__)"], tmp_path)
    assert Path(where.strip()).is_relative_to(installed.parent), f"not the installed copy: {where}"
    code = "import avlearn, json; print(json.dumps({w: str(avlearn.demo_clip(w)) for w in avlearn.DEMO_CLIPS}))"
    clips = json.loads(_run([installed / "python", "-c", code], tmp_path))
    assert all(Path(c).is_relative_to(installed.parent) and Path(c).is_file() for c in clips.values())
    avlearn = installed / "avlearn"

    out = _run(
        [avlearn, "sync-offset", clips["speakers"], "--shift-audio-ms", "200", "--json", "--device", "cpu"], tmp_path
    )
    result = json.loads(out)
    assert abs(result["offset_ms"] - 200) <= result["frame_ms"] and "site-packages" in result["checkpoint"]

    _run([avlearn, "separate", clips["speakers"], "--out", "separate"], tmp_path)
    doc = json.loads((tmp_path / "separate" / "result.json").read_text())
    assert len(doc["speakers"]) == 2 and (tmp_path / "separate" / "speaker_1.wav").stat().st_size > 10_000

    _run([avlearn, "localize", clips["instruments"], "--out", "localize"], tmp_path)
    peaks = json.loads((tmp_path / "localize" / "peaks.json").read_text())
    assert len(peaks["frames"]) == 100 and (tmp_path / "localize" / "heatmap.mp4").stat().st_size > 10_000

    printed = _run([avlearn, "recognize", clips["actions"], "--out", "recognize"], tmp_path)
    assert printed.splitlines()[0].startswith("chop")
    assert json.loads((tmp_path / "recognize" / "result.json").read_text())["top"][0]["label"] == "chop"
