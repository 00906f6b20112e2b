"""Registered audio-visual models: tokenizers or encoders per modality, a fusion module, a linear classifier.

Inputs are dicts ``{"video": (B, 3, T, H, W), "spec": (B, 1, F, T)}``.
"""

from __future__ import annotations

from avlearn.models.audio import SpecTokenizer, VGGish
from avlearn.models.fusion import MBT, AVClassifier, ConcatFusion
from avlearn.models.registry import register_model
from avlearn.models.video_cnn import CNN3D
from avlearn.models.video_transformer import VideoTokenizer

AV_INPUT = {"video": (3, 8, 224, 224), "spec": (1, 128, 800)}
AV_INPUT_TINY = {"video": (3, 4, 32, 32), "spec": (1, 32, 32)}


def _tokenizers(dim: int, tiny: bool) -> dict:
    if tiny:
        return {
            "video": VideoTokenizer(dim=dim, tubelet_size=(2, 8, 8), clip_size=(4, 32, 32)),
            "spec": SpecTokenizer(dim=dim, patch_size=8, spec_size=(32, 32)),
        }
    return {"video": VideoTokenizer(dim=dim), "spec": SpecTokenizer(dim=dim)}


@register_model(input_size=AV_INPUT)
def mbt(num_classes: int = 527, fusion_layer: int = 8, num_bottlenecks: int = 4) -> AVClassifier:
    """MBT-Base: ViT-B per modality, 4 bottleneck tokens from layer 8 (8x224x224 video, 128x800 log-mel)."""
    fusion = MBT(
        ("video", "spec"),
        dim=768,
        num_layers=12,
        num_heads=12,
        fusion_layer=fusion_layer,
        num_bottlenecks=num_bottlenecks,
    )
    return AVClassifier(_tokenizers(768, tiny=False), fusion, num_classes)


@register_model(input_size=AV_INPUT_TINY)
def mbt_tiny(num_classes: int = 5, fusion_layer: int = 2, num_bottlenecks: int = 2) -> AVClassifier:
    """MBT with 4 layers of width 32, bottlenecks from layer 2."""
    fusion = MBT(
        ("video", "spec"), dim=32, num_layers=4, num_heads=2, fusion_layer=fusion_layer, num_bottlenecks=num_bottlenecks
    )
    return AVClassifier(_tokenizers(32, tiny=True), fusion, num_classes)


@register_model(input_size=AV_INPUT)
def xattn_av(num_classes: int = 527, fusion_layer: int = 8) -> AVClassifier:
    """Full cross-modal attention from layer 8 (MBT's vanilla fusion: all tokens attend to all)."""
    fusion = MBT(("video", "spec"), dim=768, num_layers=12, num_heads=12, fusion_layer=fusion_layer, num_bottlenecks=0)
    return AVClassifier(_tokenizers(768, tiny=False), fusion, num_classes)


@register_model(input_size=AV_INPUT_TINY)
def xattn_av_tiny(num_classes: int = 5, fusion_layer: int = 2) -> AVClassifier:
    """Full cross-modal attention, 4 layers of width 32."""
    fusion = MBT(("video", "spec"), dim=32, num_layers=4, num_heads=2, fusion_layer=fusion_layer, num_bottlenecks=0)
    return AVClassifier(_tokenizers(32, tiny=True), fusion, num_classes)


@register_model(input_size={"video": (3, 16, 64, 64), "spec": (1, 64, 96)})
def concat_av(num_classes: int = 527) -> AVClassifier:
    """Late (concat) fusion of two CNNs: a 3D CNN (64-128-256) and VGGish's conv stack, averaged, concatenated."""
    encoders = {
        "video": CNN3D(num_classes=0, widths=(64, 128, 256), pool_size=2),
        "spec": VGGish(num_classes=0, fc_dim=0),
    }
    return AVClassifier(encoders, ConcatFusion(("video", "spec"), dim=256), num_classes)


@register_model(input_size={"video": (3, 4, 16, 16), "spec": (1, 32, 48)})
def concat_av_tiny(num_classes: int = 5) -> AVClassifier:
    """Late (concat) fusion of two tiny CNNs."""
    encoders = {
        "video": CNN3D(num_classes=0, widths=(4, 8), pool_size=2),
        "spec": VGGish(num_classes=0, widths=(4, 8, 16, 16), fc_dim=0),
    }
    return AVClassifier(encoders, ConcatFusion(("video", "spec"), dim=8), num_classes)
