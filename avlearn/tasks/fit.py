"""``avlearn fit -c RECIPE.yaml``: training through LightningCLI, plus the export of weights as data.

LightningCLI parses the recipe (one YAML file naming the task, the data module and the trainer), saves the
resolved config beside the logs, and runs ``Trainer.fit``. Before anything is written, :func:`fit_main`
checks what a user can get wrong (manifests, ``--ckpt_path``, a resumed run longer than its schedule) and
reports it as one line, exit status 1. ``--ckpt_path last`` resumes the newest intact ``last.ckpt`` of any
earlier run of the recipe (see :mod:`avlearn.tasks.checkpoints`: it is written at each epoch end and every
few minutes), or says in one line (exit 0, nothing written) that the run already finished. The resumed run
logs into a new ``version_N`` folder whose ``config.yaml`` names the checkpoint it continued
(``ckpt_path``), and whose ``metrics.csv`` starts at the saved step. :class:`ExportWeights` writes the
model as safetensors + JSON (``weights/best`` and ``weights/last``) after each validation: those
files are what inference loads, with no pickle involved.
"""

from __future__ import annotations

import math
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch

from avlearn.data.manifest import ManifestError, read_manifest
from avlearn.data.sync import EpochShuffle
from avlearn.io.errors import MediaError
from avlearn.io.write import atomic_path
from avlearn.models.weights import CheckpointError, save_weights
from avlearn.tasks.checkpoints import (
    AtomicCheckpointIO,
    FitError,
    LastCheckpoint,
    NothingToResume,
    check_checkpoint,
    check_schedule,
    check_unfinished,
    logged_runs_folder,
    newest_intact_checkpoint,
)

__all__ = [
    "ExportWeights",
    "FitError",
    "LastCheckpoint",
    "ResumableLoader",
    "WindowData",
    "adamw_one_cycle",
    "checkpoint_info",
    "fit_main",
    "guard_bf16_conv3d",
]


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
        info = pl_module.export_info()
        save_weights(folder / "last", pl_module.net, **info, meta=meta)
        value = metrics.get(self.monitor)
        if value is not None and (value > self.best if self.mode == "max" else value < self.best):
            self.best = value
            save_weights(folder / "best", pl_module.net, **info, meta=meta)


class ResumableLoader(torch.utils.data.DataLoader):
    """A DataLoader whose position within the epoch is saved in Lightning checkpoints, so a run resumed from
    a mid-epoch checkpoint goes on with the next batch instead of starting the epoch over.

    Lightning saves ``state_dict()`` of every training loader that has one and hands it back on resume; it
    restarts the interrupted epoch, and this loader then skips the batches already trained on (it reads
    and drops them: the order, e.g. :class:`~avlearn.data.sync.EpochShuffle`'s, must depend only on the
    seed and the epoch for the skipped ones to be the same). A checkpoint at an epoch end skips nothing.

    Each pass draws its worker seed from the loader's own generator, not from torch's global one, so
    starting an epoch does not move the global random state that dropout draws from: the state a
    checkpoint saves (see :class:`~avlearn.tasks.checkpoints.LastCheckpoint`) is the one the next step uses.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        if kwargs.get("generator") is None:
            kwargs["generator"] = torch.Generator().manual_seed(0)
        super().__init__(*args, **kwargs)
        self._pass = [None, 0]  # [epoch, batches handed out] of the current pass
        self._resume: tuple[int | None, int] | None = None  # the same, saved by a checkpoint

    def __iter__(self):
        epoch = getattr(self.sampler, "epoch", None)  # set by Lightning (set_epoch) before each epoch
        resume, self._resume = self._resume, None
        skip = resume[1] if resume is not None and resume[0] == epoch else 0
        batches = super().__iter__()
        for _ in range(skip):
            next(batches)
        self._pass = [epoch, skip]
        for batch in batches:
            self._pass[1] += 1
            yield batch

    def state_dict(self) -> dict[str, int | None]:
        return {"epoch": self._pass[0], "batches": self._pass[1]}

    def load_state_dict(self, state: dict[str, int | None]) -> None:
        epoch, served = state.get("epoch"), int(state.get("batches") or 0)
        # A checkpoint at an epoch end is followed by the next epoch, which skips nothing; a sampler without
        # epochs leaves only the count to tell whether the pass was complete.
        if epoch is not None or 0 < served < len(self):
            self._resume = (epoch, served)


class WindowData(L.LightningDataModule):
    """Loaders shared by the data modules that cut windows from decoded clips in memory: training in the
    seeded per-epoch order of :class:`~avlearn.data.sync.EpochShuffle` through a :class:`ResumableLoader`
    (a run resumed at an epoch end or in the middle of one sees the same batches), validation in order.
    Subclasses set ``train_set``/``val_set`` in ``setup`` and have ``batch_size``, ``num_workers`` and
    ``seed`` hyperparameters."""

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return ResumableLoader(
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


def check_manifests(data_args: Any) -> None:
    """Reads every ``*manifest`` argument of the data module before training prints or writes anything: a
    missing, unreadable or empty manifest, or one listing a missing media file, is one line instead of a
    traceback from the middle of ``setup``.

    Args:
        data_args: the data module's ``init_args`` (a mapping).

    Raises:
        ManifestError, FitError.
    """
    for key, value in dict(data_args or {}).items():
        if not key.endswith("manifest") or not isinstance(value, (str, Path)):
            continue
        rows = read_manifest(value)
        if not rows:
            raise FitError(f"{value}: the manifest has no rows; point --data.init_args.{key} at one that lists clips")
        missing = next((row["path"] for row in rows if not Path(row["path"]).is_file()), None)
        if missing is not None:
            raise FitError(f"{value}: lists {missing}, which does not exist; fix that row or render the data again")


def _cli_class():
    from lightning.pytorch.cli import LightningCLI
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    class FitCLI(LightningCLI):
        """LightningCLI with avlearn's checks and ``--ckpt_path last`` across runs."""

        def parse_arguments(self, parser, args) -> None:
            # LightningCLI warns whenever args are given while sys.argv has any (as under `avlearn fit`)
            self.config = parser.parse_args(args)
            config = self.config[self.config.subcommand]
            data = config.get("data")
            check_manifests(data.get("init_args") if data is not None and "init_args" in data else data)
            ckpt_path = config.get("ckpt_path")
            if ckpt_path and ckpt_path not in ("last", "best", "hpc", "registry"):
                ckpt = check_checkpoint(ckpt_path)  # before LightningCLI itself unpickles it for hyperparameters
                self._checked = (ckpt_path, ckpt)  # before_fit takes it from here instead of reading it again
                trainer = config.get("trainer") or {}
                max_steps = trainer.get("max_steps", -1)
                max_epochs = trainer.get("max_epochs")  # None: as Trainer, 1000 unless max_steps is set
                max_epochs = (1000 if max_steps == -1 else -1) if max_epochs is None else max_epochs
                check_schedule(ckpt_path, ckpt, max_epochs, max_steps)

        def before_fit(self) -> None:
            trainer = self.trainer
            ckpt_path = self.config.fit.get("ckpt_path")
            say = print if trainer.is_global_zero else (lambda *a, **k: None)
            ckpt = None
            if ckpt_path == "last":
                warn = lambda line: say(f"avlearn fit: warning: {line}", file=sys.stderr)  # noqa: E731
                found = newest_intact_checkpoint(trainer, warn)  # a damaged newer one: skipped, with a warning
                if found is None:
                    say(
                        f"avlearn fit: warning: {logged_runs_folder(trainer)}: no last.ckpt of an earlier run "
                        "to resume; starting from scratch",
                        file=sys.stderr,
                    )
                ckpt_path, ckpt = (None, None) if found is None else (str(found[0]), found[1])
            if ckpt_path and ckpt_path not in ("best", "hpc", "registry"):
                if ckpt is None:  # an explicit path: parse_arguments has read it already
                    checked_path, checked = getattr(self, "_checked", (None, None))
                    ckpt = checked if checked_path == ckpt_path else check_checkpoint(ckpt_path)
                check_unfinished(ckpt_path, ckpt, trainer.max_epochs, trainer.max_steps)  # before anything is written
                check_schedule(ckpt_path, ckpt, trainer.max_epochs, trainer.max_steps)
                say(
                    f"avlearn fit: resuming {ckpt_path} (epoch {ckpt['epoch']}, step {ckpt['global_step']})",
                    file=sys.stderr,
                )
            # the saved config.yaml records which checkpoint this run continued
            self.config.fit.ckpt_path = self.config_init.fit.ckpt_path = ckpt_path
            if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
                trainer.strategy.checkpoint_io = AtomicCheckpointIO()

    return FitCLI


def fit_main(argv: list[str]) -> int:
    """Runs ``LightningCLI`` in fit mode with the recipe's task and data module; a user error (bad manifest,
    media, checkpoint or resume request) is one line on stderr and exit status 1."""
    warnings.filterwarnings(  # Lightning's own use of a torch API torch 2.14 deprecates: nothing a user can do
        "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", module="lightning"
    )
    try:
        _cli_class()(
            L.LightningModule,
            L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=["fit", *argv],
            save_config_kwargs={"overwrite": True},
            seed_everything_default=0,
        )
    except (FitError, ManifestError, MediaError, CheckpointError) as err:
        print(f"avlearn fit: error: {err}", file=sys.stderr)
        return 1
    except NothingToResume as done:  # exit 0: rerunning a finished job (a requeued batch job) is no error
        print(f"avlearn fit: {done}", file=sys.stderr)
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
