"""Listen to Look in three stages, one recipe each (``recipes/preview/``), each starting from the last one's
weights (``init_from``):

1. ``teacher``: the clip classifier on single windows (cross-entropy over the actions and ``background``).
2. ``student`` (IMGAUD2VID): the teacher frozen; the image+audio student learns the teacher's clip embedding
   of the same window (mean squared error, relative to the embedding's energy) and its class distribution
   (KL divergence); it classifies with a frozen copy of the teacher's classifier. No labels are used. The
   student is built anew from ``model``/``model_args`` (the teacher comes from ``init_from``); a student on
   the sync encoders may start from a sync checkpoint (``sync_from``), with a freeze period and a learning-rate
   multiplier for them (:mod:`avlearn.tasks.backbone`; a freeze of the whole run trains only the fusion MLP, a
   light head on the frozen encoders).
3. ``skim`` (IMGAUD-SKIMMING): teacher and student frozen; the selector learns, per video, which K moments to
   look at: the loss is the cross-entropy of the video's action under the student's class probabilities
   averaged over the chosen moments. Choices are hard (Gumbel noise in training, straight-through
   gradients), so training sees what inference does.

Validation is per video on the ``val`` split: dense teacher accuracy (stage 1), the student's accuracy over
every window (stage 2), skimming accuracy at K moments (stage 3); it picks the exported checkpoint.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from avlearn.data.manifest import read_manifest
from avlearn.data.preview import PreviewVideos, PreviewWindows, class_names, clip_input
from avlearn.models import create_model
from avlearn.models.precision import guard_bf16_conv3d
from avlearn.models.weights import load_weights
from avlearn.tasks.backbone import BackboneTask
from avlearn.tasks.datamodule import WindowData, check_front_end
from avlearn.tasks.export import checkpoint_info

STAGES = ("teacher", "student", "skim")


class PreviewData(WindowData):
    """Untrimmed videos cut into windows (stages 1-2) or whole (stage 3); validation on whole videos.

    Args:
        train_manifest: JSONL manifest of training videos (``labels``, optionally ``segments``).
        val_manifest: JSONL manifest of validation videos.
        unit: ``"window"`` (teacher, student) or ``"video"`` (selector) training samples.
        window: seconds per window.
        fps: video frame rate to decode at (``window * fps`` frames per teacher clip).
        size: frame side in pixels.
        sample_rate: audio rate.
        jitter: training windows start up to this many seconds off the grid.
        batch_size: samples per batch.
        num_workers: DataLoader workers, which decode the windows (with ``cache``, samples are cut from memory
            and 0 is usually fastest).
        cache: decode the clips once into memory and a safetensors file beside each manifest (small data
            sets, many epochs); false reads each window from its file (any size); None (the default) caches
            when the decoded clips fit in ``avlearn.data.cache.CACHE_BUDGET`` (4 GiB).
        seed: seed of the training order and augmentation.
    """

    def __init__(
        self,
        train_manifest: str,
        val_manifest: str,
        unit: str = "window",
        window: float = 1.0,
        fps: float = 8.0,
        size: int = 96,
        sample_rate: int = 16000,
        jitter: float = 0.5,
        batch_size: int = 32,
        num_workers: int = 0,
        cache: bool | None = None,
        seed: int = 0,
    ):
        super().__init__()
        if unit not in ("window", "video"):
            raise ValueError(f"unit must be 'window' or 'video', got {unit!r}")
        self.save_hyperparameters()
        self.train_set = self.val_set = None
        self.classes: list[str] = []

    @property
    def preprocessing(self) -> dict[str, Any]:
        h = self.hparams
        return {"window": h.window, "fps": h.fps, "size": h.size, "sample_rate": h.sample_rate,
                "classes": self.classes}  # fmt: skip

    def setup(self, stage: str | None = None) -> None:
        h = self.hparams
        if self.train_set is not None:
            return
        train_rows, val_rows = read_manifest(h.train_manifest), read_manifest(h.val_manifest)
        self.classes = class_names(train_rows)
        unknown = {r["labels"][0] for r in val_rows} - set(self.classes)
        if unknown:
            raise ValueError(f"{h.val_manifest}: labels {sorted(unknown)} do not occur in {h.train_manifest}")
        train = self.clips(h.train_manifest)
        if h.unit == "window":
            self.train_set = PreviewWindows(train, self.classes, h.window, jitter=h.jitter, seed=h.seed)
        else:
            self.train_set = PreviewVideos(train, self.classes, h.window, flip=True, seed=h.seed)
        self.val_set = PreviewVideos(self.clips(h.val_manifest), self.classes, h.window)

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        workers = self.hparams.num_workers
        return torch.utils.data.DataLoader(
            self.val_set, batch_size=4, num_workers=workers, persistent_workers=workers > 0
        )


def video_accuracy(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-video hits: ``probs`` ``(B, K, C)`` averaged over K, arg-max over the actions (not background)."""
    return (probs.mean(1)[:, :-1].argmax(-1) == labels).float()


class ListenToLookTask(BackboneTask):
    """One stage of Listen to Look (see the module docstring).

    Args:
        stage: ``"teacher"``, ``"student"`` or ``"skim"``.
        model: registered Listen to Look model (the teacher stage's, and the student's the student stage builds).
        model_args: its builder's arguments (``num_classes`` is set from the data or the previous stage; a
            student on the sync encoders: ``{"video": {...}, "audio": {...}}``, the sync checkpoint's components'
            arguments).
        init_from: weights of the previous stage (``.../weights/best``); required for stages 2 and 3.
        sync_from: a sync checkpoint whose encoders the student starts from (stage 2, a student on the sync
            encoders; recorded in the exported ``meta.init_from``).
        freeze_epochs: epochs during which the student's sync encoders stay as loaded (the whole run: frozen).
        backbone_lr_mult: their learning rate relative to ``lr`` afterwards.
        steps: moments the selector looks at (stage 3).
        temperature: Gumbel-softmax temperature of the selector's choices in training.
        lr: peak learning rate (AdamW, one-cycle schedule).
        weight_decay: AdamW weight decay.
    """

    task_name = "preview"

    def __init__(
        self,
        stage: str = "teacher",
        model: str = "listen_to_look",
        model_args: dict[str, Any] | None = None,
        init_from: str | None = None,
        sync_from: str | None = None,
        freeze_epochs: int = 0,
        backbone_lr_mult: float = 1.0,
        steps: int = 5,
        temperature: float = 1.0,
        lr: float = 2e-3,
        weight_decay: float = 0.05,
    ):
        super().__init__()
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        if stage != "teacher" and not init_from:
            raise ValueError(f"stage {stage!r} starts from the previous stage's weights: set init_from")
        if sync_from and stage != "student":
            raise ValueError(f"sync_from fills the student's encoders: it belongs to the student stage, not {stage!r}")
        self.save_hyperparameters()
        self.net: torch.nn.Module | None = None  # built when the run starts (files are read then, not when parsed)
        self.classes: list[str] | None = None
        self.start_from_backbone(None, freeze_epochs, backbone_lr_mult)  # the sync weights load with the net

    def configure_callbacks(self) -> list[L.Callback]:
        self._build_from_previous_stage()  # Lightning asks for callbacks (the backbone's freeze) before setup
        return super().configure_callbacks()

    def _build_from_previous_stage(self) -> None:
        """Stage 2: a new student beside the previous stage's teacher (its encoders from ``sync_from``); stage 3:
        the previous stage's whole model. Once; the teacher stage builds its model in setup."""
        h = self.hparams
        if self.net is not None or not h.init_from:
            return
        previous, info = load_weights(h.init_from, task=self.task_name)
        self.classes = info["preprocessing"].get("classes")
        if h.stage == "skim":
            self.net, h.model, h.model_args = previous, info["model"], dict(info["model_args"])
        else:
            h.model_args = {**(h.model_args or {}), "num_classes": len(self.classes)}
            self.net = create_model(h.model, **h.model_args)
            try:
                self.net.teacher.load_state_dict(previous.teacher.state_dict())
            except RuntimeError:
                raise ValueError(f"{h.init_from}: its teacher is not the teacher of {h.model}; start from a teacher "
                                 f"stage of the same model") from None  # fmt: skip
            self.net.student.head.load_state_dict(self.net.teacher.net.fc.state_dict())
        self._freeze_all_but_the_stage()
        self.start_from_backbone(h.sync_from, h.freeze_epochs, h.backbone_lr_mult)

    def _freeze_all_but_the_stage(self) -> None:
        h, net = self.hparams, self.net
        guard_bf16_conv3d(net.teacher)
        trained = {"teacher": net.teacher, "student": net.student, "skim": net.selector}[h.stage]
        net.requires_grad_(False)
        trained.requires_grad_(True)
        if h.stage == "student":
            net.student.head.requires_grad_(False)  # the teacher's classifier: embeddings keep its meaning

    def setup(self, stage: str | None = None) -> None:
        dm = self.trainer.datamodule
        self._build_from_previous_stage()
        if self.net is None:
            h = self.hparams
            h.model_args = {**(h.model_args or {}), "num_classes": len(dm.classes)}
            self.net, self.classes = create_model(h.model, **h.model_args), dm.classes
            self._freeze_all_but_the_stage()
        elif self.classes != dm.classes:
            raise ValueError(f"{self.hparams.init_from} was trained on classes {self.classes}, "
                             f"the data has {dm.classes}")  # fmt: skip
        check_front_end(self.trainer, self.net)

    def on_train_batch_start(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """The parts this stage does not train run in eval mode: their batch norms keep their statistics (the
        teacher's targets and the student's features are what inference computes). Set at every batch: Lightning
        never calls ``train()`` in a fit, it restores each module's mode after validation."""
        frozen = {"teacher": (self.net.student, self.net.selector), "student": (self.net.teacher,),
                  "skim": (self.net.teacher, self.net.student)}[self.hparams.stage]  # fmt: skip
        for part in frozen:
            part.eval()

    # -- inputs ---------------------------------------------------------------------------------------------
    def video_windows(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Whole-video batch -> windows ``(B, W, T, H, W, 3)`` uint8, their audio ``(B, W, S)``, W."""
        w = batch["window_labels"].shape[1]
        video, audio = batch["video"], batch["audio"]
        b = video.shape[0]
        return video.view(b, w, video.shape[1] // w, *video.shape[2:]), audio.view(b, w, -1), w

    # -- stages ---------------------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        h, net = self.hparams, self.net
        if h.stage == "teacher":
            logits = net.teacher(clip_input(batch["video"]))
            loss = F.cross_entropy(logits, batch["label"])
            self.log("train/acc", (logits.argmax(-1) == batch["label"]).float().mean(), prog_bar=True)
        elif h.stage == "student":
            with torch.no_grad():
                target = net.teacher_embed(clip_input(batch["video"])).float()
                target_logp = net.classify(target).log_softmax(-1)
            emb = net.student.embed(net.student.image_features(batch["video"]),
                                    net.student.audio_features(batch["audio"])).float()  # fmt: skip
            mse = (emb - target).square().mean() / target.square().mean().clamp_min(1e-6)
            kl = F.kl_div(net.classify(emb).log_softmax(-1), target_logp, log_target=True, reduction="batchmean")
            loss = mse + kl
            self.log_dict({"train/mse": mse, "train/kl": kl}, prog_bar=True)
        else:
            windows, audio, w = self.video_windows(batch)
            b = audio.shape[0]
            with torch.no_grad():
                image = net.student.image_features(windows.flatten(0, 1)).view(b, w, -1)
                sound = net.student.audio_features(audio.flatten(0, 1)).view(b, w, -1)
                embeddings = net.student.embed(image, sound)  # (B, W, D): what a look at each window gives
                where = net.preview_windows(w)
                image_bank = net.image_bank(image[:, where], where, w)
            look = lambda choice: torch.einsum("bw,bwd->bd", choice, embeddings)  # noqa: E731
            _, probs = net.skim(image_bank, sound, look, h.steps, temperature=h.temperature)
            mean = probs.float().mean(1)[:, :-1]
            loss = F.nll_loss(mean.clamp_min(1e-8).log(), batch["label"])
            self.log("train/acc", (mean.argmax(-1) == batch["label"]).float().mean(), prog_bar=True)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        h, net = self.hparams, self.net
        windows, audio, w = self.video_windows(batch)
        b = audio.shape[0]
        if h.stage == "teacher":
            logits = net.teacher(clip_input(windows.flatten(0, 1))).view(b, w, -1)
        elif h.stage == "student":
            image = net.student.image_features(windows.flatten(0, 1))
            sound = net.student.audio_features(audio.flatten(0, 1))
            logits = net.classify(net.student.embed(image, sound)).view(b, w, -1)
        else:
            _, probs = net.skim_video(windows, audio, h.steps)
            self.log("val/acc", video_accuracy(probs.float(), batch["label"]).mean(), prog_bar=True, batch_size=b)
            return
        probs = logits.float().softmax(-1)
        window_hits = (logits.argmax(-1) == batch["window_labels"]).float().mean()
        self.log("val/window_acc", window_hits, batch_size=b)
        self.log("val/acc", video_accuracy(probs, batch["label"]).mean(), prog_bar=True, batch_size=b)

    def configure_optimizers(self):
        return self.optimizer(self.hparams.lr, self.hparams.weight_decay)

    def export_info(self) -> dict[str, Any]:
        """What a checkpoint needs besides the tensors (see avlearn.models.weights): the data's decoding, the
        student's front-ends (log-mel bands and hop), K and the stage."""
        h = self.hparams
        return checkpoint_info(self, **self.net.preprocessing, steps=h.steps, stage=h.stage)
