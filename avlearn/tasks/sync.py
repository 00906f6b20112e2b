"""Self-supervised audio-visual synchronization: is this audio the one that goes with this video, and when?

Two objectives train one sync model (:class:`avlearn.models.sync.SyncModel`, by registered name), whose
encoders load on their own (``avlearn.models.weights.load_component``) for other tasks to start from. The
default model is ``avsync_mbt``: MBT attention bottlenecks that carry time (see README, sync ablation):

- :class:`SyncBinary` (Owens & Efros 2018): aligned audio vs. the same clip's audio shifted well outside
  the tolerance, balanced, binary cross-entropy; accuracy is ``(logit > 0) == label``.
- :class:`SyncContrastive` (AVTS, Korbar et al. 2018): the aligned audio against easy negatives (other clips'
  audio) and hard negatives (the same clip shifted), softmax over the candidates, with a curriculum that
  starts from easy negatives and moves the hard ones ever closer in time.

Both can also train the model's offset head (classification over ``-K..K`` frames, as Synchformer does); it
stays far below the search over candidate offsets (README), so ``avlearn sync-offset`` does not use it.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics.classification import BinaryAccuracy

from avlearn.data.mouths import open_mouths
from avlearn.data.sync import AugmentedWindows, SyncWindows
from avlearn.models import create_model
from avlearn.models.weights import CheckpointError, load_weights, weights_sha256
from avlearn.tasks.datamodule import WindowData, check_front_end
from avlearn.tasks.export import checkpoint_info
from avlearn.tasks.optim import adamw_one_cycle


class SyncData(WindowData):
    """Windows of a world (or any manifest) for sync training (:class:`~avlearn.data.sync.SyncWindows`).

    Args:
        train_manifest: JSONL manifest of training clips.
        val_manifest: JSONL manifest of validation clips (evaluated with fixed windows and shifts).
        window: seconds of video and audio per example.
        fps: video frame rate to decode at.
        size: frame side in pixels.
        sample_rate: audio rate.
        min_shift: smallest |shift| of a negative, seconds (default: half the window, scaled from Owens &
            Efros' 2-6 s shifts of 4.2 s clips).
        max_shift: largest |shift|, seconds.
        num_shifted: shifted negatives per example.
        max_offset_frames: range of the ``offset`` draws, whole video frames (None: the ``K`` of the model's
            offset head, ``net.max_offset_frames``).
        batch_size: examples per batch.
        num_workers: DataLoader workers, which decode the windows (with ``cache``, windows are cut from memory
            and 0 is usually fastest).
        cache: decode the clips once into memory and a safetensors file beside each manifest (small data
            sets, many epochs); false reads each window from its file (any size); None (the default) caches
            when the decoded clips fit in ``avlearn.data.cache.CACHE_BUDGET`` (4 GiB).
        seed: seed of the training order and windows (both a function of seed, epoch and index).
        crop: ``"frame"`` whole pictures; ``"mouth"`` the talking faces of annotated manifests as aligned mouth
            crops of side ``size`` with their own sound (:class:`~avlearn.data.mouths.MouthClips`; real clips
            annotated by ``python -m avlearn.data.real --annotate``, the speakers world by its renderer).
        mouth_pieces: with ``crop="mouth"``, :class:`~avlearn.data.mouths.MouthClips` arguments for the training
            faces (``segment``, ``max_segments``, ``repeats``); validation takes every piece once.
        augment: flip and jitter the training windows (:class:`~avlearn.data.sync.AugmentedWindows`).
    """

    def __init__(
        self,
        train_manifest: str | list[str],
        val_manifest: str,
        window: float = 1.0,
        fps: float = 25.0,
        size: int = 64,
        sample_rate: int = 16000,
        min_shift: float | None = None,
        max_shift: float | None = None,
        num_shifted: int = 1,
        max_offset_frames: int | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
        cache: bool | None = None,
        seed: int = 0,
        crop: str = "frame",
        mouth_pieces: dict[str, Any] | None = None,
        augment: bool = False,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.min_shift = min_shift if min_shift is not None else 0.5 * window
        self.max_shift = max_shift if max_shift is not None else 1.5 * window
        self.train_set = self.val_set = None

    @property
    def preprocessing(self) -> dict[str, Any]:
        h = self.hparams
        return {"window": h.window, "fps": h.fps, "size": h.size, "sample_rate": h.sample_rate, "crop": h.crop}

    def clips(self, manifest: str | list[str], train: bool = False):
        h = self.hparams
        if h.crop == "frame":
            return super().clips(manifest)
        pieces = (h.mouth_pieces or {}) if train else {"max_segments": None}
        return open_mouths(manifest, fps=h.fps, size=h.size, sample_rate=h.sample_rate, **pieces)

    def setup(self, stage: str | None = None) -> None:
        h = self.hparams
        if self.train_set is None:
            k = h.max_offset_frames
            if k is None:
                net = getattr(self.trainer.lightning_module, "net", None) if self.trainer is not None else None
                k = getattr(net, "max_offset_frames", 15)
            shifts = {"min_shift": self.min_shift, "max_shift": self.max_shift, "max_offset_frames": k}
            windows = AugmentedWindows if h.augment else SyncWindows
            self.train_set = windows(
                self.clips(h.train_manifest, train=True), h.window, **shifts, num_shifted=h.num_shifted, seed=h.seed
            )
            self.val_set = SyncWindows(self.clips(h.val_manifest), h.window, **shifts, deterministic=True)


class SyncTask(L.LightningModule):
    """What the sync objectives share: the sync model (with its front-ends), optimizer, exported metadata.

    Models with an offset head (``max_offset_frames > 0``) also learn the offset of a third audio window, moved
    by a random whole number of frames (the data's ``offset``), with cross-entropy over the ``2K+1`` offsets,
    from epoch ``offset_from_epoch`` on; ``offset_weight`` scales that loss. Trained from the first step, this
    hard 31-way loss kept both heads at chance on the worlds (the sync head learns in an epoch without it), so
    it waits until the encoders have learned what goes together. Subclasses implement :meth:`common_step` returning
    ``(loss, logits, labels)`` for binary accuracy.

    Args:
        model: registered sync model name (``avsync_mbt``, ``avsync_tconv``, ...).
        model_args: keyword arguments of its builder (e.g. ``frames_per_bottleneck``, ``fusion_layer``).
        lr: peak learning rate (AdamW, one-cycle schedule).
        weight_decay: AdamW weight decay.
        offset_weight: weight of the offset classification loss (0: no offset training).
        offset_from_epoch: first epoch with the offset loss.
        init_from: a sync checkpoint of the same model to start from (e.g. one trained on another world); its
            path and sha256 go into the exported weights' ``meta.init_from``.
    """

    task_name = "sync"

    def __init__(
        self,
        model: str = "avsync_mbt",
        model_args: dict[str, Any] | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        offset_weight: float = 1.0,
        offset_from_epoch: int = 3,
        init_from: str | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.net = create_model(model, **(model_args or {}))
        self.init_from = None
        if init_from:
            start, doc = load_weights(init_from, task="sync")
            if doc["model"] != model:
                raise CheckpointError(f"{init_from}: a {doc['model']} checkpoint; this run trains {model}")
            self.net.load_state_dict(start.state_dict())
            self.init_from = {"path": str(init_from), "sha256": weights_sha256(init_from)}
        self.train_acc, self.val_acc = BinaryAccuracy(), BinaryAccuracy()

    def setup(self, stage: str) -> None:
        check_front_end(self.trainer, self.net)

    # -- training ------------------------------------------------------------------------------------
    def common_step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def binary_logits(self, batch: dict[str, torch.Tensor], vt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Aligned vs. first shifted audio: logits ``(2B,)`` and labels ``(2B,)``."""
        t = vt.shape[1]
        pos = self.net.score(vt, self.net.audio_tokens(batch["audio"], t))
        neg = self.net.score(vt, self.net.audio_tokens(batch["shifted"][:, 0], t))
        labels = torch.cat([torch.ones_like(pos), torch.zeros_like(neg)])
        return torch.cat([pos, neg]), labels

    def offset_loss(self, batch: dict[str, torch.Tensor], vt: torch.Tensor, stage: str) -> torch.Tensor:
        """Cross-entropy of the offset head on the batch's offset audio (0 without an offset head)."""
        h = self.hparams
        if self.net.offset_head is None:
            return vt.new_zeros(())
        if h.offset_weight == 0 or self.current_epoch < h.offset_from_epoch:
            # the head still takes part, with zero gradient: under DDP a parameter left out of the loss keeps
            # its gradient bucket from being reduced, and the replicas drift apart
            return sum(p.sum() for p in self.net.offset_head.parameters()) * 0.0
        at = self.net.audio_tokens(batch["offset_audio"], vt.shape[1])
        logits = self.net.offset_head(self.net.embed(vt, at)).float()
        target = batch["offset"] + self.net.max_offset_frames
        within = ((logits.argmax(1) - target).abs() <= 1).float().mean()
        self.log(f"{stage}/offset_acc", within, prog_bar=stage == "val", sync_dist=stage == "val")
        return self.hparams.offset_weight * F.cross_entropy(logits, target)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, logits, labels = self.common_step(batch)
        self.train_acc(logits, labels)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", self.train_acc, prog_bar=True, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        vt = self.net.video_tokens(batch["video"])
        logits, labels = self.binary_logits(batch, vt)
        self.offset_loss(batch, vt, "val")
        self.val_acc(logits, labels)
        self.log("val/loss", F.binary_cross_entropy_with_logits(logits, labels), sync_dist=True)
        self.log("val/acc", self.val_acc, prog_bar=True)
        # the aligned audio scored above the shifted one: what the offset search needs, and the only accuracy
        # a contrastive objective (whose logits have no fixed zero) can be judged by
        pos, neg = logits.chunk(2)
        self.log("val/rank_acc", (pos > neg).float().mean(), sync_dist=True)

    def configure_optimizers(self):
        return adamw_one_cycle(self, self.hparams.lr, self.hparams.weight_decay)

    def export_info(self) -> dict[str, Any]:
        """What a checkpoint needs besides the tensors (see avlearn.models.weights): the data's window, the
        model's front-ends, and the components a task can load on their own (``load_component``)."""
        info = checkpoint_info(self, **self.net.preprocessing)
        info["components"] = self.net.components()
        return info

    def export_meta(self) -> dict[str, Any]:
        """Exported with the weights' metadata: which weights this run started from."""
        return {"init_from": self.init_from} if self.init_from else {}


class SyncBinary(SyncTask):
    """Aligned vs. shifted, balanced binary cross-entropy (Owens & Efros, ECCV 2018), plus the offset head."""

    def common_step(self, batch):
        vt = self.net.video_tokens(batch["video"])
        logits, labels = self.binary_logits(batch, vt)
        loss = F.binary_cross_entropy_with_logits(logits, labels) + self.offset_loss(batch, vt, "train")
        return loss, logits, labels


class SyncContrastive(SyncTask):
    """AVTS (Korbar et al., NeurIPS 2018): the aligned audio against easy and hard negatives.

    Each video window is scored against its aligned audio, ``num_easy`` other clips' audio (easy) and the
    dataset's shifted copies of its own audio (hard); the loss is the cross-entropy of picking the aligned
    one. Curriculum: for the first ``easy_epochs`` only easy negatives count; then hard negatives join, and
    their smallest shift shrinks linearly from the data's ``min_shift`` to ``hard_min_shift`` over
    ``curriculum_epochs``, so late training separates offsets a couple of frames apart.

    Args:
        num_easy: negatives from other clips per window.
        easy_epochs: epochs with easy negatives only.
        curriculum_epochs: epochs over which the hard shifts shrink.
        hard_min_shift: smallest hard shift at the end of the curriculum, seconds (2 frames at 25 fps).
        **kwargs: see :class:`SyncTask`.
    """

    def __init__(
        self,
        num_easy: int = 3,
        easy_epochs: int = 1,
        curriculum_epochs: int = 4,
        hard_min_shift: float = 0.08,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.save_hyperparameters()

    def epoch_params(self, epoch: int) -> dict[str, float]:
        """The curriculum's ``min_shift`` of an epoch; the training sampler carries it to the data's workers
        (see :mod:`avlearn.data.clips`), so it holds with persistent workers and after a resume."""
        h, start = self.hparams, self.trainer.datamodule.min_shift
        progress = min(1.0, max(0.0, (epoch - h.easy_epochs) / max(1, h.curriculum_epochs)))
        return {"min_shift": start + progress * (h.hard_min_shift - start)}

    def on_train_epoch_start(self) -> None:
        self.log("curriculum/min_shift", self.epoch_params(self.current_epoch)["min_shift"])

    def common_step(self, batch):
        vt = self.net.video_tokens(batch["video"])
        t = vt.shape[1]
        b = vt.shape[0]
        candidates = [batch["audio"]]
        candidates += [batch["audio"].roll(k + 1, dims=0) for k in range(min(self.hparams.num_easy, b - 1))]
        if self.current_epoch >= self.hparams.easy_epochs:
            candidates += list(batch["shifted"].unbind(1))
        logits = torch.stack([self.net.score(vt, self.net.audio_tokens(a, t)) for a in candidates], dim=1)
        loss = F.cross_entropy(logits, torch.zeros(b, dtype=torch.long, device=vt.device))
        loss = loss + self.offset_loss(batch, vt, "train")
        # binary view for the accuracy: aligned vs. the hardest negative present
        pair = torch.cat([logits[:, 0], logits[:, -1]])
        return loss, pair, torch.cat([torch.ones(b, device=vt.device), torch.zeros(b, device=vt.device)])
