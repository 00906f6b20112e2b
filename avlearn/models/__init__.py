"""avlearn.models: encoders, fusion modules and heads, behind one registry.

    >>> from avlearn.models import create_model, list_models
    >>> model = create_model("c3d_tiny", num_classes=5)

Every encoder follows :class:`~avlearn.models.layers.Encoder`:

* ``forward(x)`` -> logits ``(B, num_classes)``.
* ``forward_features(x)`` -> the last feature map, ``(B, D, T', H', W')`` for 3D CNNs (spatial maps for
  localization), ``(B, D, H', W')`` for 2D and spectrogram CNNs, or tokens ``(B, N, D)`` for transformers.
* ``forward_tokens(x)`` -> tokens ``(B, N, D)`` for every encoder (maps flattened in ``(t h w)`` order).
* ``forward_head(features, pre_logits=False)`` -> logits, or the pooled embedding ``(B, D)``.
* ``num_features`` (``D``) and ``num_classes`` (0 = no classifier).

Inputs: video ``(B, C, T, H, W)`` float normalized; spectrogram ``(B, 1, F, T)``; tokens ``(B, N, D)``.
"""

# Importing the model files registers their builders (those built on torchvision on first use: registry.DEFERRED).
from avlearn.models import audio as audio  # isort: skip
from avlearn.models import av as av
from avlearn.models import localize as localize
from avlearn.models import preview as preview
from avlearn.models import recurrent as recurrent
from avlearn.models import separation as separation
from avlearn.models import sync as sync
from avlearn.models import two_stream as two_stream
from avlearn.models import video_cnn as video_cnn
from avlearn.models import video_transformer as video_transformer
from avlearn.models.registry import create_model, example_input, get_model_info, list_models, register_model

__all__ = ["create_model", "example_input", "get_model_info", "list_models", "register_model"]
