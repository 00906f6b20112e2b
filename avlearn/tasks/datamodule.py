"""The DataModule base of the tasks: clips read lazily or from the decoded cache, a seeded per-epoch training
order that resumes exactly and carries the task's per-epoch parameters to the workers, validation in order."""

from __future__ import annotations

import json

import lightning as L
import torch

from avlearn.data.cache import ClipArrays, open_clips
from avlearn.data.clips import EpochShuffle, LazyClips
from avlearn.data.loader import ResumableLoader
from avlearn.tasks.checkpoints import FitError

__all__ = ["WindowData"]


class WindowData(L.LightningDataModule):
    """Loaders shared by the tasks' data modules (see :mod:`avlearn.data.clips` for the data layer).

    Training goes in the seeded per-epoch order of :class:`~avlearn.data.clips.EpochShuffle` through a
    :class:`~avlearn.data.loader.ResumableLoader` (a run resumed at an epoch end or in the middle of one sees
    the same batches), with persistent workers. When the task (the LightningModule) has a method
    ``epoch_params(epoch) -> dict`` (a curriculum), its result travels in every training key of that epoch.
    Subclasses set ``train_set``/``val_set`` in ``setup`` and have ``batch_size``, ``num_workers``, ``cache``
    and ``seed`` hyperparameters (and ``fps``, ``size``, ``sample_rate`` to use :meth:`clips`).
    """

    def clips(self, manifest: str) -> ClipArrays | LazyClips:
        """The manifest's clips at the data module's ``fps``, ``size`` and ``sample_rate``: decoded by the
        loader's workers window by window, or once into memory with ``cache``."""
        h = self.hparams
        return open_clips(manifest, fps=h.fps, size=h.size, sample_rate=h.sample_rate, cache=h.cache)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        module = self.trainer.lightning_module if self.trainer is not None else None
        sampler = EpochShuffle(
            len(self.train_set), seed=self.hparams.seed, params=getattr(module, "epoch_params", None)
        )
        return ResumableLoader(
            self.train_set,
            batch_size=self.hparams.batch_size,
            sampler=sampler,
            drop_last=True,
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
        )

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(
            self.val_set,
            batch_size=self.hparams.batch_size,
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
        )


def check_front_end(trainer: L.Trainer, net: torch.nn.Module) -> None:
    """Refuses data decoded other than the model's front-ends take (picture and sound would misalign): one line
    naming the ``model_args`` that would make them agree.

    Raises:
        FitError: the data module's ``preprocessing`` disagrees with ``net.preprocessing``.
    """
    data = getattr(trainer.datamodule, "preprocessing", None) or {}
    own = net.preprocessing
    clash = {k: data[k] for k, v in own.items() if k in data and _differs(data[k], v)}
    if clash:
        raise FitError(
            f"the data is decoded at {clash} but the model's front-end takes { {k: own[k] for k in clash} }: "
            f"give the model the same, --model.init_args.model_args '{json.dumps(clash)}'"
        )


def _differs(a, b) -> bool:
    """25 and 25.0 are the same rate."""
    try:
        return float(a) != float(b)
    except (TypeError, ValueError):
        return a != b
