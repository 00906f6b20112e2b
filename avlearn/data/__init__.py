"""Manifests, the clips they list (read lazily or from the decoded cache), the datasets every task draws its
windows from, samplers, real data set adapters, and the synthetic worlds (see :mod:`avlearn.data.clips`).

from avlearn.data import ManifestDataset, RandomClipSampler, collate
ds = ManifestDataset("data/speakers/train.jsonl", clip_sampler=RandomClipSampler(1.0), with_sources=True)
"""

from avlearn.data.clips import Draw, EpochShuffle, LazyClips
from avlearn.data.datasets import (
    ManifestDataset,
    RandomClipSampler,
    SlidingWindowSampler,
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
    "Draw",
    "EpochShuffle",
    "LazyClips",
    "ManifestDataset",
    "ManifestError",
    "RandomClipSampler",
    "SlidingWindowSampler",
    "UniformClipSampler",
    "collate",
    "label_vocabulary",
    "load_annotations",
    "read_manifest",
    "save_annotations",
    "validate_row",
    "write_manifest",
]
