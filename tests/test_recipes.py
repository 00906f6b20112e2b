"""Every recipe under recipes/ parses and builds its task, data module and trainer (nothing is trained)."""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
import pytest
from lightning.pytorch.cli import LightningCLI

from avlearn.tasks.datamodule import WindowData

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("**/*.yaml"))


def test_there_are_recipes_of_every_task():
    assert {p.parent.name for p in RECIPES} == {"sync", "separation", "localization", "preview"}


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_recipe_parses_and_builds(recipe, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["avlearn"])  # LightningCLI warns when pytest's arguments are there too
    cli = LightningCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        run=False,
        args=["-c", str(recipe), "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path)],
    )
    assert isinstance(cli.datamodule, WindowData) and cli.model.task_name
    # pointing a recipe at a real data set is its manifest paths: none pins the decoded cache on, which a data
    # set larger than memory could not take (None caches only what fits)
    assert cli.datamodule.hparams.cache is None
    manifests = cli.datamodule.hparams.train_manifest
    assert all(str(m).endswith(".jsonl") for m in (manifests if isinstance(manifests, list) else [manifests]))
