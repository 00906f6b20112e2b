"""A model for inference: built from its checkpoint, with the preprocessing its front-end takes.

A model that owns its front-end (fps, sample rate, STFT or log-mel settings) is the authority on them; the
checkpoint's ``preprocessing`` adds what belongs to the data (window, crop size, classes). The two must
agree: a checkpoint whose description says one rate while its model is built for another would be run on
misaligned inputs, so it is refused instead.
"""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from avlearn.models.weights import CheckpointError, load_weights


def load_model(checkpoint: str | os.PathLike, task: str) -> tuple[nn.Module, dict[str, Any]]:
    """``(model in eval mode, description)`` of a ``task`` checkpoint; the description's ``preprocessing``
    includes the model's front-end settings.

    Raises:
        CheckpointError: as :func:`avlearn.models.weights.load_weights`, or a description that disagrees
            with the model's front-end.
    """
    net, doc = load_weights(checkpoint, task=task)
    own = getattr(net, "preprocessing", {})
    pre = doc["preprocessing"]
    clash = [f"{k} {pre[k]} (its model takes {v})" for k, v in own.items() if pre.get(k, v) != v]
    if clash:
        raise CheckpointError(
            f"{checkpoint}: the checkpoint's description says {', '.join(clash)}; export it again, or give the "
            "model these settings in its model_args"
        )
    return net, {**doc, "preprocessing": {**pre, **own}}
