"""Callbacks the tests add to recipes from the command line."""

from pathlib import Path

import lightning as L
from safetensors.torch import save_file


class DumpWeights(L.Callback):
    """Each rank writes its weights at the start and at the end of training (DDP test)."""

    def __init__(self, out: str):
        self.out = Path(out)

    def _dump(self, trainer, module, tag: str) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().clone().contiguous() for k, v in module.state_dict().items()}
        save_file(state, str(self.out / f"rank{trainer.global_rank}{tag}.safetensors"))

    def on_train_start(self, trainer, module) -> None:
        self._dump(trainer, module, "_start")

    def on_train_end(self, trainer, module) -> None:
        self._dump(trainer, module, "")


class StopAfterEpochs(L.Callback):
    """Ends training after ``epochs`` epochs, as a kill right after that epoch's checkpoint would."""

    def __init__(self, epochs: int):
        self.epochs = epochs

    def on_train_epoch_end(self, trainer, module) -> None:
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.should_stop = True


class KillAt(L.Callback):
    """Kills its own process with SIGKILL when training reaches ``step`` (no hook, no cleanup: as ``kill -9``)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
