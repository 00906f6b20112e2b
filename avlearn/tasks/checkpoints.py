"""Training that survives being killed: when ``last.ckpt`` is written, how, and which one ``--ckpt_path last`` means.

* :class:`LastCheckpoint` is Lightning's ``ModelCheckpoint`` keeping one file, ``checkpoints/last.ckpt``,
  rewritten at each epoch end *and* every ``minutes`` of training (Lightning's ``train_time_interval``) or
  every ``every_n_train_steps``. Lightning alone writes ``last.ckpt`` with ``save_top_k=0`` only when
  training ends, so a run killed with ``kill -9`` left nothing to resume.
* :class:`AtomicCheckpointIO` writes each checkpoint beside its destination and renames it into place:
  a kill in the middle of a write leaves the previous ``last.ckpt`` whole. (Lightning's own IO writes into
  the system temp folder and *moves* the file, which is a copy, not a rename, when that folder is on
  another file system.)
* :func:`newest_intact_checkpoint` looks for the newest ``last.ckpt`` in every ``version_N`` folder of the
  run's logger, so a resumed run (which logs into a new ``version_N``) finds its predecessor's; a damaged
  newer one is skipped with a warning for the next intact one.
* :func:`check_checkpoint` and :func:`check_schedule` turn what would be tracebacks deep in Lightning (a
  missing file, a pickle that is no training checkpoint, a longer run than the learning-rate schedule was
  built for) into one line before anything is written; :func:`check_unfinished` says, instead of training
  nothing into a new empty ``version_N``, that the run to resume already finished.

Mid-epoch checkpoints resume exactly because the training loaders are :class:`avlearn.data.loader.ResumableLoader`
(their position is saved in the checkpoint) and draw their samples from (seed, epoch, index).
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from avlearn.io.write import atomic_path

# what a resumed run needs of a checkpoint (Lightning's own keys)
_TRAINING_KEYS = ("state_dict", "loops", "global_step", "optimizer_states")
_RUN_KEY = "avlearn_fit"  # what the run was planned as, for check_schedule


class FitError(Exception):
    """A user error of ``avlearn fit``; the message is ``<file>: <reason>; <what to do>``."""


class LastCheckpoint(ModelCheckpoint):
    """Keeps ``checkpoints/last.ckpt`` current: after each epoch (after its validation) and every ``minutes``
    of training, or every ``every_n_train_steps`` optimizer steps instead.

    Args:
        minutes: wall-clock training time between mid-epoch checkpoints (0: after every step; None: only
            at epoch ends, or every ``every_n_train_steps``).
        every_n_train_steps: save every this many steps instead of by time (then ``minutes`` must be None).
        dirpath: where to write; by default the logger's ``version_N/checkpoints``.
    """

    def __init__(
        self, minutes: float | None = 10.0, every_n_train_steps: int | None = None, dirpath: str | None = None
    ):
        if minutes is not None and every_n_train_steps:
            raise ValueError("LastCheckpoint: give minutes or every_n_train_steps, not both (set minutes: null)")
        if minutes is not None and minutes < 0:
            raise ValueError(f"LastCheckpoint: minutes must be >= 0, got {minutes}")
        super().__init__(
            dirpath=dirpath,
            save_last=True,
            save_top_k=0,
            every_n_train_steps=every_n_train_steps,
            train_time_interval=None if minutes is None else timedelta(minutes=minutes),
            enable_version_counter=False,  # one last.ckpt, overwritten
        )

    @property
    def state_key(self) -> str:
        return "LastCheckpoint"  # not keyed by the interval: a run may be resumed with another one

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # A resumed run writes into a new version folder: nothing of the old folder's bookkeeping applies
        # (ModelCheckpoint would warn that the dirpath changed).
        if state_dict.get("dirpath") == self.dirpath:
            self.last_model_path = state_dict.get("last_model_path", self.last_model_path)

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self._rng = checkpoint.get(_RUN_KEY, {}).get("rng")
        self._loader_states = (
            checkpoint.get("loops", {}).get("fit_loop", {}).get("state_dict", {}).get("combined_loader")
        )

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        states, self._loader_states = getattr(self, "_loader_states", None), None
        if states:
            # Lightning hands the saved loader positions back only if the loaders are built after the restore;
            # a task whose configure_optimizers asks for trainer.estimated_stepping_batches built them before.
            iterables = trainer.train_dataloader
            flat = list(iterables.values()) if isinstance(iterables, dict) else iterables
            flat = list(flat) if isinstance(flat, (list, tuple)) else [flat]
            stateful = [dl for dl in flat if callable(getattr(dl, "load_state_dict", None))]
            if len(stateful) == len(states):
                for loader, state in zip(stateful, states):
                    loader.load_state_dict(state)
        if trainer.fit_loop.restarted_mid_epoch:
            # Lightning does not call on_train_epoch_start when it resumes in the middle of an epoch, but the
            # tasks set per-epoch state there (the epoch of the window draws, the curriculum): replay it.
            pl_module.on_train_epoch_start()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any, **kwargs: Any) -> None:
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return  # the epoch-end checkpoint follows, after validation
        super().on_train_batch_end(trainer, pl_module, *args, **kwargs)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_now(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_now(trainer)

    def _save_last_now(self, trainer: L.Trainer) -> None:
        # ModelCheckpoint (Lightning >= 2.5) writes last.ckpt at an epoch end only if it also kept a top-k file
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any, **kwargs: Any) -> None:
        rng, self._rng = getattr(self, "_rng", None), None
        if rng:  # the first step after a resume draws (dropout, ...) what the uninterrupted run drew
            torch.set_rng_state(rng["torch"])
            if rng.get("cuda") and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(rng["cuda"])

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else []
        rng = {"torch": torch.get_rng_state(), "cuda": cuda}
        checkpoint[_RUN_KEY] = {"max_epochs": trainer.max_epochs, "max_steps": trainer.max_steps, "rng": rng}


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO, writing each file under a temporary name beside it and renaming it into place."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)


def logged_runs_folder(trainer: L.Trainer) -> Path:
    """The folder holding a recipe's ``version_N`` runs (the first logger's ``save_dir/name``), or, without a
    logger, the trainer's ``default_root_dir`` (where Lightning then writes ``checkpoints/``)."""
    logger = trainer.loggers[0] if trainer.loggers else None
    if logger is not None and logger.save_dir is not None:
        return Path(logger.save_dir) / str(logger.name or "")
    return Path(trainer.default_root_dir)


def find_last_checkpoints(trainer: L.Trainer) -> list[Path]:
    """Every ``last*.ckpt`` of earlier runs of this recipe, newest (by modification time) first.

    Looks in ``<runs folder>/*/checkpoints``, ``<runs folder>/checkpoints`` and the ``dirpath`` of every
    checkpoint callback given one. A ``version_N`` without a checkpoint (a run killed while starting, or one
    refused before training) holds none, so it is never picked.
    """
    root = logged_runs_folder(trainer)
    folders = [*root.glob("*/checkpoints"), root / "checkpoints"]
    folders += [Path(cb.dirpath) for cb in trainer.checkpoint_callbacks if getattr(cb, "dirpath", None)]
    found = {p.resolve(): p for folder in folders if folder.is_dir() for p in folder.glob("last*.ckpt") if p.is_file()}
    return sorted(found.values(), key=lambda p: p.stat().st_mtime_ns, reverse=True)


class BadCheckpoint(FitError):
    """A checkpoint that cannot be resumed. ``reason`` says why without advice, so that ``--ckpt_path last``
    can skip the file with a warning instead of giving the advice meant for an explicit path."""

    def __init__(self, path: Path, reason: str, todo: str):
        super().__init__(f"{path}: {reason}; {todo}")
        self.path, self.reason = path, reason


def check_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Loads a training checkpoint without running any code from it (``weights_only``), or raises
    :class:`BadCheckpoint`.

    Returns:
        The checkpoint, memory-mapped (cheap: only what is read is loaded).
    """
    path = Path(path)
    todo = "pass the checkpoints/last.ckpt of an avlearn fit run, or --ckpt_path last to find the newest one"
    # the user passed a file, maybe a run's last.ckpt that is damaged: the advice must not be what they did
    intact = (
        "pass an intact last.ckpt of an avlearn fit run (each version_N/checkpoints holds one), "
        "or --ckpt_path last to take the newest intact one"
    )
    if not path.is_file():
        raise BadCheckpoint(path, "is a folder, not a checkpoint" if path.is_dir() else "no such checkpoint", todo)
    if not zipfile.is_zipfile(path):  # what torch.save writes (a bare pickle, text, ... is not)
        with open(path, "rb") as f:
            cut = f.read(4) == b"PK\x03\x04"  # a zip whose end (the central directory) is missing
        if cut:
            raise BadCheckpoint(path, "damaged: cut short (a write or copy that did not finish)", intact)
        reason = "not a Lightning training checkpoint (not a whole file written by torch.save)"
        raise BadCheckpoint(path, reason, intact)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as err:
        if "Unsupported global" in str(err):  # weights_only refused a class: loading it could run code
            reason = "holds objects other than tensors and plain data, so it is not loaded"
            raise BadCheckpoint(path, reason, intact) from None
        raise BadCheckpoint(path, "damaged: its contents cannot be read", intact) from None
    except Exception as err:  # noqa: BLE001 - whatever torch says, the file is unusable: one line
        raise BadCheckpoint(path, f"damaged: its contents cannot be read ({type(err).__name__})", intact) from None
    missing = [k for k in _TRAINING_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise BadCheckpoint(path, f"not a Lightning training checkpoint (no {', '.join(missing)})", intact)
    return ckpt


def newest_intact_checkpoint(trainer: L.Trainer, warn: Callable[[str], None]) -> tuple[Path, dict] | None:
    """What ``--ckpt_path last`` resumes: the newest ``last.ckpt`` of an earlier run that can be read.

    A damaged newer one (cut short by a full disk or a copy, overwritten) is skipped with one warning line
    naming it and the one resumed instead: losing the steps since the older checkpoint beats losing the run.

    Returns:
        (path, checkpoint), or None when no earlier run left a checkpoint.

    Raises:
        FitError: there are checkpoints, but none can be read.
    """
    skipped: list[BadCheckpoint] = []
    for path in find_last_checkpoints(trainer):
        try:
            ckpt = check_checkpoint(path)
        except BadCheckpoint as bad:
            skipped.append(bad)
            continue
        for bad in skipped:
            warn(f"{bad.path}: {bad.reason}; skipped, taking {path}, the newest intact last.ckpt")
        return path, ckpt
    if not skipped:
        return None
    first = skipped[0]
    others = f" (and {len(skipped) - 1} older ones)" if len(skipped) > 1 else ""
    raise FitError(
        f"{first.path}: {first.reason}{others}; no intact last.ckpt is left to resume: "
        "start a new run without --ckpt_path"
    )


class NothingToResume(Exception):
    """``--ckpt_path`` names a run that already reached its ``max_epochs``/``max_steps``: not an error (rerunning a
    finished job is), but no training either, and no new ``version_N`` folder."""


def check_unfinished(path: str | os.PathLike, ckpt: dict[str, Any], max_epochs: int | None, max_steps: int) -> None:
    """Raises :class:`NothingToResume` when resuming ``ckpt`` with these limits would train nothing (Lightning's
    own test: its fit loop stops at once, after writing a new, empty ``version_N``)."""
    loop = (ckpt.get("loops") or {}).get("fit_loop") or {}
    epochs = ((loop.get("epoch_progress") or {}).get("current") or {}).get("processed", 0)  # as Lightning counts
    step = ckpt.get("global_step", 0)
    if max_steps not in (None, -1) and step >= max_steps:
        done, limit = f"step {step} of {max_steps}", "max_steps"
    elif max_epochs not in (None, -1) and epochs >= max_epochs:
        done, limit = f"epoch {epochs} of {max_epochs}", "max_epochs"
    else:
        return
    path = Path(path)
    run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    raise NothingToResume(
        f"the run in {run} already finished ({done}); nothing to resume: start a new run without --ckpt_path, "
        f"or raise {limit} in a new run"
    )


def check_schedule(path: str | os.PathLike, ckpt: dict[str, Any], max_epochs: int | None, max_steps: int) -> None:
    """Refuses to resume a run for longer than it was planned: the one-cycle learning-rate schedule (built for
    the planned number of steps, and restored with the checkpoint) cannot be stretched without changing the
    whole run, so the longer run would fail at the old end ("Tried to step N times").

    Raises:
        FitError: ``max_epochs`` or ``max_steps`` is larger than when the checkpoint was written.
    """
    planned = ckpt.get(_RUN_KEY)
    if not planned or not any("total_steps" in s for s in ckpt.get("lr_schedulers") or []):
        return  # not written by LastCheckpoint, or no fixed-length schedule to outrun
    old_epochs, old_steps = planned.get("max_epochs"), planned.get("max_steps", -1)
    todo = "or start a new run (without --ckpt_path) to train longer"
    if old_epochs not in (None, -1) and (max_epochs in (None, -1) or max_epochs > old_epochs):
        raise FitError(
            f"{path}: its learning-rate schedule was built for {old_epochs} epochs, not {max_epochs}; "
            f"resume with --trainer.max_epochs {old_epochs}, {todo}"
        )
    if old_steps not in (None, -1) and (max_steps in (None, -1) or max_steps > old_steps):
        raise FitError(
            f"{path}: its learning-rate schedule was built for {old_steps} steps, not {max_steps}; "
            f"resume with --trainer.max_steps {old_steps}, {todo}"
        )
