"""The optimizer every task uses: AdamW with a one-cycle learning rate over the whole run."""

from __future__ import annotations

from collections.abc import Iterable

import lightning as L
import torch

__all__ = ["adamw_one_cycle"]


def adamw_one_cycle(
    module: L.LightningModule,
    lr: float,
    weight_decay: float,
    backbone: Iterable[torch.nn.Parameter] = (),
    backbone_lr_mult: float = 1.0,
) -> dict:
    """AdamW (no decay on biases and norms) with a one-cycle schedule over the whole run, stepped per batch.

    Parameters in ``backbone`` (pretrained parts) peak at ``backbone_lr_mult * lr`` in groups marked
    ``"backbone"``; parameters that take no gradient are left out.
    """
    pretrained = {id(p) for p in backbone}
    groups, peaks = [], []
    for is_backbone, mult in ((False, 1.0), (True, backbone_lr_mult)):
        params = [p for p in module.parameters() if p.requires_grad and (id(p) in pretrained) == is_backbone]
        for decay in (True, False):
            chosen = [p for p in params if (p.ndim > 1) == decay]
            if chosen:
                groups.append(
                    {"params": chosen, "weight_decay": weight_decay if decay else 0.0, "backbone": is_backbone}
                )
                peaks.append(lr * mult)
    opt = torch.optim.AdamW(groups, lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=peaks, total_steps=int(module.trainer.estimated_stepping_batches), pct_start=0.1
    )
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
