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

from avlearn.models.registry import create_model, example_input, get_model_info, list_models, register_model

# Importing the model files registers their builders.
from avlearn.models import video_cnn, tv_video, nonlocal_block, video_transformer, audio, av  # noqa: E402,F401  isort: skip

__all__ = ["create_model", "example_input", "get_model_info", "list_models", "register_model"]
