"""The training DataLoader that a checkpoint can resume in the middle of an epoch."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["ResumableLoader"]


class ResumableLoader(torch.utils.data.DataLoader):
    """A DataLoader whose position within the epoch is saved in Lightning checkpoints, so a run resumed from
    a mid-epoch checkpoint goes on with the next batch instead of starting the epoch over.

    Lightning saves ``state_dict()`` of every training loader that has one and hands it back on resume; it
    restarts the interrupted epoch, and this loader then skips the batches already trained on (it reads
    and drops them: the order, e.g. :class:`~avlearn.data.clips.EpochShuffle`'s, must depend only on the
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
