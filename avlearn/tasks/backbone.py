"""Tasks that start from the sync-pretrained encoders: ``init_from``, a freeze period and a learning-rate
multiplier for the pretrained parts.

A model that can start from a sync checkpoint says which of its submodules are which component
(``net.backbone = {"video": module, "audio": module}``, modules built like the components: same registered
encoder and arguments). :func:`load_backbone` fills them from the checkpoint's ``components``
(:func:`~avlearn.models.weights.load_component`); a submodule may use only the first layers of its encoder
(a localizer keeps a finer map), so the component may hold tensors the submodule lacks, never the reverse.

The freeze period keeps the pretrained parts as loaded for the first ``freeze_epochs`` epochs (their
learning rate 0) while the new parts learn to read them; then they train at ``backbone_lr_mult`` times the
task's learning rate. Their batch norms stay in eval mode for the whole run, normalizing with the statistics
of the sync pretraining while the weights fine-tune (as detection backbones are fine-tuned): the task's
batches are small and differently composed (crops, mixtures), and the transfer tables of ``docs/backbone.md``
were measured so. A freeze period of the whole run is a probe of the pretrained features (a light head on
frozen encoders); their parameters then need no gradient at all. The freeze is a learning rate of 0 rather
than ``requires_grad=False`` so that under DDP the set of parameters with gradients never changes during a run.
"""

from __future__ import annotations

import os
from typing import Any

import lightning as L
from torch import nn

from avlearn.models.weights import CheckpointError, load_component, weights_sha256
from avlearn.tasks.optim import adamw_one_cycle

__all__ = ["BackboneFreeze", "BackboneTask", "load_backbone"]


def load_backbone(net: nn.Module, path: str | os.PathLike) -> dict[str, Any]:
    """Fills ``net.backbone``'s modules from the sync checkpoint at ``path``; returns what the run records:
    ``{"path", "sha256", "components"}``.

    Raises:
        CheckpointError: a model without a backbone, a checkpoint without the component, or a component built
            with other arguments than the module it should fill.
    """
    parts: dict[str, nn.Module] = getattr(net, "backbone", None) or {}
    if not parts:
        raise CheckpointError(
            f"{path}: {type(net).__name__} has no pretrained parts to fill (init_from needs a "
            "model built on the sync encoders, e.g. avsep_sync or avloc_sync)"
        )
    for name, module in parts.items():
        encoder, part = load_component(path, name)
        want = getattr(module, "config", None)
        if want is not None and dict(part.get("args", {})) != dict(want):
            raise CheckpointError(
                f"{path}: its {name!r} encoder was built with {part.get('args')}, this model's with {want}; "
                "build the model with the checkpoint's encoder arguments"
            )
        have = encoder.state_dict()
        own = module.state_dict()
        missing = [k for k in own if k not in have or have[k].shape != own[k].shape]
        if missing:
            raise CheckpointError(f"{path}: its {name!r} encoder lacks or reshapes {', '.join(missing[:4])}")
        module.load_state_dict({k: have[k] for k in own})
    return {"path": str(path), "sha256": weights_sha256(path), "components": sorted(parts)}


class BackboneFreeze(L.Callback):
    """Keeps the pretrained modules as loaded during the first ``epochs`` epochs (learning rate 0 in their
    optimizer groups; for a whole-run freeze no gradient at all), and their batch norms in eval mode
    throughout (Lightning never calls ``train()`` in a fit; modes are set again at every batch)."""

    def __init__(self, modules: list[nn.Module], epochs: int):
        self.modules, self.epochs = modules, epochs

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # before the strategy wraps the model (DDP) and builds the optimizer
        if stage == "fit":
            whole_run = trainer.max_epochs is not None and 0 <= trainer.max_epochs <= self.epochs
            for m in self.modules:
                m.requires_grad_(not whole_run)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, idx: int) -> None:
        for m in self.modules:
            m.eval()
        if trainer.current_epoch >= self.epochs:
            return
        for opt in trainer.optimizers:
            for group in opt.param_groups:
                if group.get("backbone"):
                    group["lr"] = 0.0  # the one-cycle scheduler sets it again after this step


class BackboneTask(L.LightningModule):
    """A task whose model may start from a sync checkpoint. Subclasses build ``self.net``, then call
    :meth:`start_from_backbone`; the optimizer, the freeze and the exported ``meta.init_from`` follow."""

    init_from: dict[str, Any] | None = None

    def start_from_backbone(self, init_from: str | None, freeze_epochs: int, backbone_lr_mult: float) -> None:
        """Loads the pretrained parts (when ``init_from`` is given) and keeps the schedule's settings."""
        self._freeze_epochs, self._backbone_lr_mult = freeze_epochs, backbone_lr_mult
        self.init_from = load_backbone(self.net, init_from) if init_from else None

    def backbone_modules(self) -> list[nn.Module]:
        return list((getattr(self.net, "backbone", None) or {}).values()) if self.init_from else []

    def configure_callbacks(self) -> list[L.Callback]:
        modules = self.backbone_modules()
        return [BackboneFreeze(modules, self._freeze_epochs)] if modules else []

    def optimizer(self, lr: float, weight_decay: float) -> dict:
        """AdamW one-cycle with the pretrained parameters in groups of their own (``backbone_lr_mult``)."""
        backbone = [p for m in self.backbone_modules() for p in m.parameters()]
        return adamw_one_cycle(self, lr, weight_decay, backbone=backbone, backbone_lr_mult=self._backbone_lr_mult)

    def export_meta(self) -> dict[str, Any]:
        """Exported with the weights' metadata: which weights this run started from, and how."""
        if not self.init_from:
            return {}
        schedule = {"freeze_epochs": self._freeze_epochs, "backbone_lr_mult": self._backbone_lr_mult}
        return {"init_from": {**self.init_from, **schedule}}
