"""Self-supervised sound source localization: three objectives of the field around one localizer.

Every objective scores the cosine maps ``S_ij`` of video ``i`` against audio ``j`` of a batch
(:func:`avlearn.models.localize.pair_similarity`); they differ in how a map becomes a score:

- ``lvs`` (Chen et al., CVPR 2021, "Localizing Visual Sounds the Hard Way"): from the image's own map, a
  soft positive region ``sigmoid((S_ii - eps_pos) / tau)`` and a soft hard-negative background
  ``1 - sigmoid((S_ii - eps_neg) / tau)``; the positive is the mean similarity inside the region, the hard
  negative the mean over the background, the easy negatives the mean inside the positive region of each
  other clip's audio on this picture (as the authors' code does), and the loss the cross-entropy of picking
  the positive.
- ``ezvsl`` (Mo & Morgado, ECCV 2022, "Localizing Visual Sounds the Easy Way"): multiple-instance contrastive
  learning, a clip pair's score is the maximum of its map over locations; symmetric InfoNCE over the batch.
- ``attention`` (Senocak et al., CVPR 2018): a softmax attention over locations guided by the audio pools
  the visual embeddings; a triplet loss pulls the attended embedding to its own audio and pushes it from
  another clip's. The attention is the map.

Training needs no labels; the validation metric (pointing game on the ``val`` split's annotated sounding
objects) only picks the exported checkpoint.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from avlearn.data.cache import ClipArrays
from avlearn.data.clips import Draw, LazyClips, draw_key
from avlearn.data.manifest import load_annotations
from avlearn.models import create_model
from avlearn.models.localize import pair_similarity, similarity
from avlearn.tasks.backbone import BackboneTask
from avlearn.tasks.datamodule import WindowData, check_front_end
from avlearn.tasks.export import checkpoint_info

METHODS = ("lvs", "ezvsl", "attention")


def sounding_boxes_mask(annotation: dict[str, np.ndarray], frame: int, size: int, source_size: int) -> torch.Tensor:
    """``(size, size)`` bool mask of the union of the sounding objects' boxes at ``frame``.

    Args:
        annotation: a clip's annotations (:func:`avlearn.data.manifest.load_annotations`): ``boxes`` and
            ``sounding`` per object (``instruments``) or ``speaking`` per frame and face (``speakers``).
        frame: frame index.
        size: side of the mask.
        source_size: side of the frames the boxes are given in.
    """
    mask = torch.zeros(size, size, dtype=torch.bool)
    scale = size / source_size
    sounding = annotation["sounding"] if "sounding" in annotation else annotation["speaking"][frame]
    for k in np.flatnonzero(sounding):
        x0, y0, x1, y1 = (float(c) * scale for c in annotation["boxes"][frame, k])
        mask[int(y0) : int(np.ceil(y1)), int(x0) : int(np.ceil(x1))] = True
    return mask


class LocalizationWindows(torch.utils.data.Dataset):
    """Windows of clips: random in training, fixed and with targets for validation.

    Samples: ``video`` ``(T, H, W, 3)`` uint8, ``audio`` ``(S,)``; with ``starts`` also ``target``
    ``(H, W)`` bool, the sounding objects' boxes at the window's centre frame (all False for a row without
    ``annotations``: the pointing game needs annotated validation clips to mean anything).

    Args:
        clips: :class:`~avlearn.data.clips.LazyClips` or the decoded cache.
        window: seconds per window.
        starts: fixed window starts (seconds) for every clip; None draws one random start per clip from
            ``(seed, epoch, index)`` of the :class:`~avlearn.data.clips.Draw` key.
        source_size: frame side of the annotations (with ``starts``).
        seed: base seed of the random draws.
    """

    def __init__(
        self,
        clips: ClipArrays | LazyClips,
        window: float,
        starts: list[float] | None = None,
        source_size: int | None = None,
        seed: int = 0,
    ):
        self.clips, self.starts, self.seed = clips, starts, seed
        self.num_frames = round(window * clips.fps)
        self.num_samples = round(window * clips.sample_rate)
        shortest = min(clips.num_frames(i) for i in range(len(clips)))
        if self.num_frames >= shortest:
            raise ValueError(f"window {window} s must be shorter than the clips ({shortest / clips.fps:.2f} s)")
        self.targets = None
        if starts is not None:
            size = clips.size
            self.targets = []
            for row in clips.rows:
                ann = load_annotations(row["annotations"]) if row.get("annotations") else None
                src = source_size or row.get("height") or size
                for s in starts:
                    centre = round(s * clips.fps) + self.num_frames // 2
                    empty = torch.zeros(size, size, dtype=torch.bool)
                    self.targets.append(empty if ann is None else sounding_boxes_mask(ann, centre, size, src))

    def __len__(self) -> int:
        return len(self.clips) * (len(self.starts) if self.starts is not None else 1)

    def __getitem__(self, key: int | Draw) -> dict[str, torch.Tensor]:
        index, epoch, _ = draw_key(key)
        if self.starts is None:
            clip = index
            room = self.clips.num_frames(clip) - self.num_frames
            f0 = int(np.random.default_rng([self.seed, epoch, index]).integers(0, room + 1))
        else:
            clip, k = divmod(index, len(self.starts))
            f0 = round(self.starts[k] * self.clips.fps)
        a0 = round(f0 / self.clips.fps * self.clips.sample_rate)
        sample = {
            "video": self.clips.video_window(clip, f0, self.num_frames),
            "audio": self.clips.audio_window(clip, a0, self.num_samples),
        }
        if self.targets is not None:
            sample["target"] = self.targets[index]
        return sample


class LocalizationData(WindowData):
    """Windows of a world's (or any manifest's) clips for localization training.

    Args:
        train_manifest: JSONL manifest of training clips (no annotations needed).
        val_manifest: JSONL manifest of validation clips with annotations (sounding flags, boxes).
        window: seconds of video and audio per example.
        fps: video frame rate to decode at.
        size: frame side in pixels.
        sample_rate: audio rate.
        val_starts: window starts (seconds) evaluated in every validation clip.
        batch_size: examples per batch (the contrastive losses' negatives come from the batch).
        num_workers: DataLoader workers, which decode the windows (with ``cache``, windows are cut from memory
            and 0 is usually fastest).
        cache: decode the clips once into memory and a safetensors file beside each manifest (small data
            sets, many epochs); false reads each window from its file (any size); None (the default) caches
            when the decoded clips fit in ``avlearn.data.cache.CACHE_BUDGET`` (4 GiB).
        seed: seed of the training order and windows.
    """

    def __init__(
        self,
        train_manifest: str,
        val_manifest: str,
        window: float = 1.0,
        fps: float = 25.0,
        size: int = 64,
        sample_rate: int = 16000,
        val_starts: tuple[float, ...] = (0.5, 1.5, 2.5),
        batch_size: int = 32,
        num_workers: int = 0,
        cache: bool | None = None,
        seed: int = 0,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.train_set = self.val_set = None

    @property
    def preprocessing(self) -> dict[str, Any]:
        h = self.hparams
        return {"window": h.window, "fps": h.fps, "size": h.size, "sample_rate": h.sample_rate}

    def setup(self, stage: str | None = None) -> None:
        h = self.hparams
        if self.train_set is None:
            self.train_set = LocalizationWindows(self.clips(h.train_manifest), h.window, seed=h.seed)
            self.val_set = LocalizationWindows(self.clips(h.val_manifest), h.window, starts=list(h.val_starts))


class LocalizationTask(BackboneTask):
    """One localizer trained with one of :data:`METHODS` (see the module docstring).

    Args:
        method: ``"lvs"``, ``"ezvsl"`` or ``"attention"``.
        model: registered localizer (its ``forward_features`` gives ``{"video": (B, D, T, h, w), "spec": (B, D, T)}``).
        model_args: keyword arguments of its builder (its front-ends' ``fps``, ``size``, ``sample_rate`` and
            ``n_mels`` among them; the first three must match the data's).
        temperature: of the contrastive logits (LVS and EZ-VSL use 0.07 and 0.03).
        eps_pos: LVS positive-region threshold on the cosine map.
        eps_neg: LVS background threshold.
        tau: LVS soft-threshold temperature.
        margin: triplet margin of the attention objective (on squared distances of unit vectors).
        lr: peak learning rate (AdamW, one-cycle schedule).
        weight_decay: AdamW weight decay.
        init_from: a sync checkpoint whose encoders ``avloc_sync`` starts from (see :mod:`avlearn.tasks.backbone`).
        freeze_epochs: epochs during which the pretrained encoders stay as loaded (the whole run: frozen).
        backbone_lr_mult: their learning rate relative to ``lr`` afterwards.
    """

    task_name = "localize"

    def __init__(
        self,
        method: str = "ezvsl",
        model: str = "avloc",
        model_args: dict[str, Any] | None = None,
        temperature: float = 0.07,
        eps_pos: float = 0.65,
        eps_neg: float = 0.4,
        tau: float = 0.03,
        margin: float = 0.5,
        lr: float = 2e-3,
        weight_decay: float = 0.05,
        init_from: str | None = None,
        freeze_epochs: int = 0,
        backbone_lr_mult: float = 1.0,
    ):
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        self.save_hyperparameters()
        self.net = create_model(model, **(model_args or {}))
        self.start_from_backbone(init_from, freeze_epochs, backbone_lr_mult)

    def setup(self, stage: str) -> None:
        check_front_end(self.trainer, self.net)

    def maps(self, v: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """Each clip's map for its own audio, ``(B, h, w)``: the cosine map, or the attention for ``attention``."""
        s = similarity(v, a)
        if self.hparams.method == "attention":
            return (s.flatten(1) / self.hparams.temperature).softmax(1).view_as(s)
        return s

    def loss(self, v: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        h = self.hparams
        s = pair_similarity(v, a)  # (B, B, h, w): video i with audio j
        b = s.shape[0]
        labels = torch.arange(b, device=s.device)
        if h.method == "ezvsl":
            logits = s.flatten(2).amax(2) / h.temperature  # max over locations: multiple-instance
            return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
        if h.method == "lvs":
            flat = s.flatten(2)  # (B, B, h·w)
            pos_region = torch.sigmoid((flat - h.eps_pos) / h.tau)  # each pair's own soft positive region
            region_mean = (pos_region * flat).sum(2) / pos_region.sum(2).clamp_min(1e-6)  # (B, B)
            pos = region_mean.diagonal()
            own = flat[labels, labels]  # (B, h·w)
            neg_region = 1 - torch.sigmoid((own - h.eps_neg) / h.tau)
            hard = (neg_region * own).sum(1) / neg_region.sum(1).clamp_min(1e-6)
            # easy negatives: the positive region of another clip's audio on this picture (so a region that
            # lights up whatever the sound cannot win)
            easy = region_mean.masked_fill(torch.eye(b, dtype=torch.bool, device=s.device), float("-inf"))
            logits = torch.cat([pos[:, None], hard[:, None], easy], dim=1) / h.temperature
            return F.cross_entropy(logits, torch.zeros_like(labels))
        # attention (Senocak et al.): the audio-guided attention pools video i's embeddings, for audio i and
        # for another clip's audio j; triplet loss on the distances to the audio embeddings
        vn = F.normalize(v.flatten(1, 2), dim=1)  # (B, K, h, w)
        an = F.normalize(a.flatten(1), dim=1)  # (B, K)
        j = labels.roll(1)
        dists = []
        for audio_idx in (labels, j):
            att = (s[labels, audio_idx].flatten(1) / h.temperature).softmax(1)  # (B, h·w)
            z = F.normalize(torch.einsum("bkl,bl->bk", vn.flatten(2), att), dim=1)
            dists.append((z - an[audio_idx]).square().sum(1))
        return F.relu(dists[0] - dists[1] + h.margin).mean()

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.loss(*self.net.embed(batch["video"], batch["audio"]))
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        v, a = self.net.embed(batch["video"], batch["audio"])
        self.log("val/loss", self.loss(v, a), sync_dist=True)
        target = batch["target"]  # (B, H, W)
        maps = F.interpolate(self.maps(v, a)[:, None].float(), size=target.shape[-2:], mode="bilinear")[:, 0]
        peak = maps.flatten(1).argmax(1)
        hit = target.flatten(1).gather(1, peak[:, None])[:, 0].float()
        self.log("val/pointing", hit.mean(), prog_bar=True, sync_dist=True)

    def configure_optimizers(self):
        return self.optimizer(self.hparams.lr, self.hparams.weight_decay)

    def export_info(self) -> dict[str, Any]:
        """What a checkpoint needs besides the tensors (see avlearn.models.weights)."""
        h = self.hparams
        return checkpoint_info(self, **self.net.preprocessing, method=h.method, temperature=h.temperature)
