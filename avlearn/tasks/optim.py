"""The optimizer every task uses: AdamW with a one-cycle learning rate over the whole run."""

from __future__ import annotations

import lightning as L
import torch

__all__ = ["adamw_one_cycle"]


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
