"""The DataModule base of the tasks: a seeded per-epoch training order that resumes exactly, validation in order."""

from __future__ import annotations

import lightning as L
import torch

from avlearn.data.loader import ResumableLoader
from avlearn.data.sync import EpochShuffle

__all__ = ["WindowData"]


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
