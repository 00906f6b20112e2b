"""``avlearn fit -c RECIPE.yaml``: training through LightningCLI, plus the export of weights as data.

LightningCLI parses the recipe (one YAML file naming the task, the data module and the trainer), saves the
resolved config beside the logs, and runs ``Trainer.fit``; ``--ckpt_path last`` resumes a killed run from
its last Lightning checkpoint (model, optimizer, scheduler and loop state). :class:`ExportWeights` writes
the model as safetensors + JSON (``weights/best`` and ``weights/last``) after each validation: those files
are what inference loads, with no pickle involved.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
import torch

from avlearn.data.sync import EpochShuffle
from avlearn.models.weights import save_weights


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

    def state_dict(self) -> dict:
        return {"best": self.best}

    def load_state_dict(self, state: dict) -> None:
        self.best = state["best"]

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        log_dir = trainer.log_dir  # a collective under DDP: every rank must ask
        if not trainer.is_global_zero:
            return
        folder = Path(log_dir or trainer.default_root_dir) / "weights"
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        meta = {"epoch": trainer.current_epoch, "global_step": trainer.global_step, "metrics": metrics}
        info = pl_module.export_info()
        save_weights(folder / "last", pl_module.net, **info, meta=meta)
        value = metrics.get(self.monitor)
        if value is not None and (value > self.best if self.mode == "max" else value < self.best):
            self.best = value
            save_weights(folder / "best", pl_module.net, **info, meta=meta)


class WindowData(L.LightningDataModule):
    """Loaders shared by the data modules that cut windows from decoded clips in memory: training in the
    seeded per-epoch order of :class:`~avlearn.data.sync.EpochShuffle` (a resumed run sees the same batches),
    validation in order. Subclasses set ``train_set``/``val_set`` in ``setup`` and have ``batch_size``,
    ``num_workers`` and ``seed`` hyperparameters."""

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(
            self.train_set,
            batch_size=self.hparams.batch_size,
            sampler=EpochShuffle(len(self.train_set), seed=self.hparams.seed),
            drop_last=True,
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
        )

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(
            self.val_set, batch_size=self.hparams.batch_size, num_workers=self.hparams.num_workers
        )


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


def adamw_one_cycle(module: L.LightningModule, lr: float, weight_decay: float) -> dict:
    """AdamW (no decay on biases and norms) with a one-cycle schedule over the whole run, stepped per batch."""
    decay = [p for p in module.parameters() if p.ndim > 1]
    no_decay = [p for p in module.parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0}], lr=lr
    )
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=int(module.trainer.estimated_stepping_batches), pct_start=0.1
    )
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def fit_main(argv: list[str]) -> int:
    """Runs ``LightningCLI`` in fit mode with the recipe's task and data module."""
    from lightning.pytorch.cli import LightningCLI

    LightningCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=["fit", *argv],
        save_config_kwargs={"overwrite": True},
        seed_everything_default=0,
    )
    return 0


class _TwoFrameSafeConv3d(torch.nn.Conv3d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[2] > 2 or not torch.is_autocast_enabled(x.device.type):
            return super().forward(x)
        with torch.autocast(x.device.type, enabled=False):
            return super().forward(x.float())


def guard_bf16_conv3d(model: torch.nn.Module) -> torch.nn.Module:
    """Runs the model's temporal 3D convolutions in float32 when their input has at most two frames.

    Under CPU bf16 autocast (torch 2.14, oneDNN) the weight gradient of a ``(3, 1, 1)`` Conv3d over a
    two-frame input now and then comes out as ``inf`` (reproduced on a lone conv: 30 random batches of
    ``(32, 64, 2, 6, 6)``), which turned R(2+1)D training into NaN after a few hundred steps. Three or more
    frames, one frame and float32 are exact. The class swap keeps the state dict unchanged.
    """
    for module in model.modules():
        if type(module) is torch.nn.Conv3d and module.kernel_size[0] > 1:
            module.__class__ = _TwoFrameSafeConv3d
    return model
