"""Weights as data: :class:`ExportWeights` writes the trained model as safetensors + JSON after each
validation (``weights/best`` and ``weights/last``), which is what inference loads, with no pickle involved;
:func:`checkpoint_info` is what each task's ``export_info()`` hands it (model name, arguments, task name and
preprocessing)."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import lightning as L

from avlearn.io.write import atomic_path
from avlearn.models.weights import save_weights

__all__ = ["ExportWeights", "checkpoint_info"]


class ExportWeights(L.Callback):
    """After each validation, saves ``weights/last`` and, when ``monitor`` improves, ``weights/best``.

    The task must expose ``net`` (the registered model) and ``export_info()`` (model name, arguments, task
    and preprocessing).

    Args:
        monitor: logged metric deciding "best".
        mode: ``"max"`` or ``"min"``.
    """

    def __init__(self, monitor: str = "val/acc", mode: str = "max"):
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.monitor, self.mode = monitor, mode
        self.best = -math.inf if mode == "max" else math.inf
        self.folder: str | None = None  # where weights/ was written (restored: the resumed run's)

    def state_dict(self) -> dict:
        return {"best": self.best, "folder": self.folder}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.folder = state["best"], state.get("folder")

    @staticmethod
    def _folder(trainer: L.Trainer) -> Path:
        log_dir = trainer.log_dir  # a collective under DDP: every rank must ask
        return Path(log_dir or trainer.default_root_dir) / "weights"

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """A resumed run logs into a new folder: it starts with the best weights so far, which it replaces
        only when it beats them."""
        folder = self._folder(trainer)
        old = Path(self.folder) if self.folder else None
        if not trainer.is_global_zero or old is None or old.resolve() == folder.resolve():
            return
        for name in ("best.safetensors", "best.json"):
            if (old / name).is_file() and not (folder / name).exists():
                with atomic_path(folder / name) as tmp:
                    shutil.copyfile(old / name, tmp)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        folder = self._folder(trainer)
        if not trainer.is_global_zero:
            return
        self.folder = str(folder)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        meta = {"epoch": trainer.current_epoch, "global_step": trainer.global_step, "metrics": metrics}
        meta.update(getattr(pl_module, "export_meta", dict)())  # e.g. the weights the run started from
        info = pl_module.export_info()
        save_weights(folder / "last", pl_module.net, **info, meta=meta)
        value = metrics.get(self.monitor)
        if value is not None and (value > self.best if self.mode == "max" else value < self.best):
            self.best = value
            save_weights(folder / "best", pl_module.net, **info, meta=meta)


def checkpoint_info(module: L.LightningModule, **preprocessing: Any) -> dict[str, Any]:
    """What a task's ``export_info()`` returns for :class:`ExportWeights`: the registered model's name and
    arguments (``hparams.model``, ``hparams.model_args``), ``task_name``, and the data module's
    ``preprocessing`` updated with the task's own entries."""
    dm = module.trainer.datamodule if module._trainer is not None else None
    pre = dict(dm.preprocessing) if dm is not None and hasattr(dm, "preprocessing") else {}
    pre.update(preprocessing)
    h = module.hparams
    return {
        "model_name": h.model,
        "model_args": dict(h.model_args or {}),
        "task": module.task_name,
        "preprocessing": pre,
    }
