"""Self-supervised audio-visual synchronization: is this audio the one that goes with this video, and when?

Three objectives share one model (``avlearn.models`` by name) whose scalar output scores a (video window,
audio window) pair. The default is ``avsync_tconv``, early fusion in time, because it learns the worlds in
minutes on a CPU where the attention fusions (``avsync_mbt`` bottlenecks, ``avsync_xattn``, ``avsync_late``)
stayed near chance for the same budget (see README, sync ablation):

- :class:`SyncBinary` (Owens & Efros 2018): aligned audio vs. the same clip's audio shifted well outside
  the tolerance, balanced, binary cross-entropy; accuracy is ``(logit > 0) == label``.
- :class:`SyncContrastive` (AVTS, Korbar et al. 2018): the aligned audio against easy negatives (other clips'
  audio) and hard negatives (the same clip shifted), softmax over the candidates, with a curriculum that
  starts from easy negatives and moves the hard ones ever closer in time.
- offset estimation (:func:`estimate_offset`): score K candidate offsets (±15 video frames, as SyncNet
  searches) and report the best with a softmax confidence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics.classification import BinaryAccuracy

from avlearn.audio import LogMel
from avlearn.data.cache import decode_clips
from avlearn.data.manifest import read_manifest
from avlearn.data.sync import SyncWindows
from avlearn.models import create_model
from avlearn.tasks.fit import WindowData, adamw_one_cycle, checkpoint_info
from avlearn.video.transforms import normalize_video

SPEC_HOP_S = 0.01  # 10 ms log-mel hop: four spectrogram frames per 25 fps video frame


class SyncData(WindowData):
    """Decoded windows of a world (or any manifest) for sync training.

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
        batch_size: examples per batch.
        num_workers: DataLoader workers (windows are cut from memory; 0 is usually fastest).
        cache: keep decoded clips in a safetensors file beside each manifest.
        seed: seed of the training order and windows (both a function of seed, epoch and index).
    """

    def __init__(
        self,
        train_manifest: str,
        val_manifest: str,
        window: float = 1.0,
        fps: float = 25.0,
        size: int = 64,
        sample_rate: int = 16000,
        min_shift: float | None = None,
        max_shift: float | None = None,
        num_shifted: int = 1,
        batch_size: int = 32,
        num_workers: int = 0,
        cache: bool = True,
        seed: int = 0,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.min_shift = min_shift if min_shift is not None else 0.5 * window
        self.max_shift = max_shift if max_shift is not None else 1.5 * window
        self.train_set = self.val_set = None

    @property
    def preprocessing(self) -> dict[str, Any]:
        h = self.hparams
        return {"window": h.window, "fps": h.fps, "size": h.size, "sample_rate": h.sample_rate}

    def _clips(self, manifest: str):
        h = self.hparams
        cache = Path(manifest).parent / ".avlearn-cache" if h.cache else None
        return decode_clips(read_manifest(manifest), fps=h.fps, size=h.size, sample_rate=h.sample_rate, cache_dir=cache)

    def setup(self, stage: str | None = None) -> None:
        h = self.hparams
        if self.train_set is None:
            train = self._clips(h.train_manifest)
            max_shift = min(self.max_shift, train.duration - h.window)
            self.train_set = SyncWindows(
                train, h.window, min_shift=self.min_shift, max_shift=max_shift, num_shifted=h.num_shifted, seed=h.seed
            )
            val = self._clips(h.val_manifest)
            self.val_set = SyncWindows(
                val,
                h.window,
                min_shift=self.min_shift,
                max_shift=min(self.max_shift, val.duration - h.window),
                num_shifted=1,
                deterministic=True,
            )


class SyncTask(L.LightningModule):
    """What the sync objectives share: the scoring model, log-mel features, optimizer, exported metadata.

    Subclasses implement :meth:`common_step` returning ``(loss, logits, labels)`` for binary accuracy.

    Args:
        model: registered model name; it maps ``{"video", "spec"}`` to one logit per example.
        model_args: keyword arguments of its builder (e.g. ``fusion_layer``, ``num_bottlenecks``).
        sample_rate: audio rate of the data.
        n_mels: mel bands.
        lr: peak learning rate (AdamW, one-cycle schedule).
        weight_decay: AdamW weight decay.
    """

    task_name = "sync"

    def __init__(
        self,
        model: str = "avsync_tconv",
        model_args: dict[str, Any] | None = None,
        sample_rate: int = 16000,
        n_mels: int = 64,
        lr: float = 2e-3,
        weight_decay: float = 0.05,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.net = create_model(model, **(model_args or {}))
        self.logmel = LogMel(sample_rate, n_fft=512, hop_length=round(sample_rate * SPEC_HOP_S), n_mels=n_mels)
        self.train_acc, self.val_acc = BinaryAccuracy(), BinaryAccuracy()

    # -- scoring -------------------------------------------------------------------------------------
    def video_tokens(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, T, H, W, 3)`` -> video tokens ``(B, N_v, D)``."""
        return self.net.proj["video"](self.net.encoders["video"].forward_tokens(normalize_video(frames)))

    def spec_tokens(self, audio: torch.Tensor, num_frames: int) -> torch.Tensor:
        """``(B, S)`` -> spec tokens ``(B, N_a, D)`` covering ``num_frames`` video frames."""
        spec = self.logmel(audio)[..., : 4 * num_frames].unsqueeze(1)  # (B, S) -> (B, 1, F, 4T)
        return self.net.proj["spec"](self.net.encoders["spec"].forward_tokens(spec))

    def score(self, video_tokens: torch.Tensor, spec_tokens: torch.Tensor) -> torch.Tensor:
        """Sync logits ``(B,)`` of token pairs."""
        fused = self.net.fusion({"video": video_tokens, "spec": spec_tokens})
        return self.net.forward_head(fused).squeeze(-1)

    # -- training ------------------------------------------------------------------------------------
    def common_step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def binary_logits(self, batch: dict[str, torch.Tensor], vt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Aligned vs. first shifted audio: logits ``(2B,)`` and labels ``(2B,)``."""
        t = batch["video"].shape[1]
        pos = self.score(vt, self.spec_tokens(batch["audio"], t))
        neg = self.score(vt, self.spec_tokens(batch["shifted"][:, 0], t))
        labels = torch.cat([torch.ones_like(pos), torch.zeros_like(neg)])
        return torch.cat([pos, neg]), labels

    def on_train_epoch_start(self) -> None:
        self.trainer.datamodule.train_set.set_epoch(self.current_epoch)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, logits, labels = self.common_step(batch)
        self.train_acc(logits, labels)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", self.train_acc, prog_bar=True, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits, labels = self.binary_logits(batch, self.video_tokens(batch["video"]))
        self.val_acc(logits, labels)
        self.log("val/loss", F.binary_cross_entropy_with_logits(logits, labels), sync_dist=True)
        self.log("val/acc", self.val_acc, prog_bar=True)

    def configure_optimizers(self):
        return adamw_one_cycle(self, self.hparams.lr, self.hparams.weight_decay)

    def export_info(self) -> dict[str, Any]:
        """What a checkpoint needs besides the tensors (see avlearn.models.weights)."""
        return checkpoint_info(self, n_mels=self.hparams.n_mels, spec_hop_s=SPEC_HOP_S)


class SyncBinary(SyncTask):
    """Aligned vs. shifted, balanced binary cross-entropy (Owens & Efros, ECCV 2018)."""

    def common_step(self, batch):
        logits, labels = self.binary_logits(batch, self.video_tokens(batch["video"]))
        return F.binary_cross_entropy_with_logits(logits, labels), logits, labels


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
        self._start_min_shift = None

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        ds = self.trainer.datamodule.train_set
        if self._start_min_shift is None:
            self._start_min_shift = ds.min_shift
        h = self.hparams
        progress = min(1.0, max(0.0, (self.current_epoch - h.easy_epochs) / max(1, h.curriculum_epochs)))
        ds.min_shift = self._start_min_shift + progress * (h.hard_min_shift - self._start_min_shift)
        self.log("curriculum/min_shift", ds.min_shift)

    def common_step(self, batch):
        vt = self.video_tokens(batch["video"])
        t = batch["video"].shape[1]
        b = vt.shape[0]
        candidates = [batch["audio"]]
        candidates += [batch["audio"].roll(k + 1, dims=0) for k in range(min(self.hparams.num_easy, b - 1))]
        if self.current_epoch >= self.hparams.easy_epochs:
            candidates += list(batch["shifted"].unbind(1))
        logits = torch.stack([self.score(vt, self.spec_tokens(a, t)) for a in candidates], dim=1)  # (B, 1 + neg)
        loss = F.cross_entropy(logits, torch.zeros(b, dtype=torch.long, device=vt.device))
        # binary view for the accuracy: aligned vs. the hardest negative present
        pair = torch.cat([logits[:, 0], logits[:, -1]])
        return loss, pair, torch.cat([torch.ones(b, device=vt.device), torch.zeros(b, device=vt.device)])


@torch.no_grad()
def estimate_offset(
    task: SyncTask,
    frames: torch.Tensor,
    audio: torch.Tensor,
    audio_start: int,
    fps: float,
    sample_rate: int,
    max_frames: int = 15,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores candidate audio offsets of whole video frames for one or more video windows.

    Args:
        task: a trained sync task (its model scores pairs).
        frames: ``(B, T, H, W, 3)`` uint8 video windows.
        audio: ``(B, S_ext)`` audio around each window.
        audio_start: index in ``audio`` of the sample aligned with the windows' first frame (per the file).
        fps: video frame rate.
        sample_rate: audio rate.
        max_frames: candidates are ``-max_frames .. +max_frames`` frames.

    Returns:
        ``(offsets (K,) seconds, log-probabilities (B, K))``: candidate ``d`` means the audio that goes with
        the picture lies ``d`` seconds later in the file (the audio lags, plays behind, by ``d``).
    """
    t = frames.shape[1]
    n = round(t / fps * sample_rate)
    vt = task.video_tokens(frames)
    steps = torch.arange(-max_frames, max_frames + 1)
    scores = []
    for k in steps.tolist():
        a0 = audio_start + round(k / fps * sample_rate)
        if a0 < 0 or a0 + n > audio.shape[1]:
            raise ValueError(f"audio does not cover offset {k} frames; pass {max_frames} frames of margin")
        scores.append(task.score(vt, task.spec_tokens(audio[:, a0 : a0 + n], t)))
    logits = torch.stack(scores, dim=1)  # (B, K)
    return steps.float() / fps, logits.log_softmax(dim=1)
