"""Manifests, datasets and clip samplers, real data set adapters, and the synthetic worlds.

from avlearn.data import ManifestDataset, RandomClipSampler, collate
ds = ManifestDataset("data/speakers/train.jsonl", clip_sampler=RandomClipSampler(1.0), with_sources=True)
"""

from avlearn.data.datasets import (
    ManifestDataset,
    MixDataset,
    RandomClipSampler,
    SlidingWindowSampler,
    SyncOffsetDataset,
    UniformClipSampler,
    collate,
)
from avlearn.data.manifest import (
    ManifestError,
    label_vocabulary,
    load_annotations,
    read_manifest,
    save_annotations,
    validate_row,
    write_manifest,
)

__all__ = [
    "ManifestDataset",
    "ManifestError",
    "MixDataset",
    "RandomClipSampler",
    "SlidingWindowSampler",
    "SyncOffsetDataset",
    "UniformClipSampler",
    "collate",
    "label_vocabulary",
    "load_annotations",
    "read_manifest",
    "save_annotations",
    "validate_row",
    "write_manifest",
]
