"""Mix-and-separate training (Zhao et al. 2018) of visually guided and audio-only mask networks.

The input is the sum of several clips' sources (plus one clip's background); for each visual stream the
network predicts a complex mask of the mixture STFT, conditioned on that stream's crops (a speaker's mouth,
an instrument's box), and the masked STFT is inverted with the mixture's own phase carried by the complex
mask (VisualVoice). The loss is computed on waveforms: negative SNR with a soft 30 dB ceiling for a source
that sounds, and for a silent one (a listener) the energy of the estimate relative to the mixture (Wisdom et
al. 2020), so "this face says nothing" is learned too. The audio-only baseline predicts all masks at once
and takes the best assignment of outputs to references (permutation-invariant training).
"""

from __future__ import annotations

from typing import Any

import torch

from avlearn.data.separation import MixTracks, SourceTracks, TrackIndex, open_tracks
from avlearn.metrics.separation import pit_assign, si_sdr
from avlearn.models import create_model
from avlearn.models.separation import reads_crops
from avlearn.tasks.backbone import BackboneTask
from avlearn.tasks.datamodule import WindowData, check_front_end
from avlearn.tasks.export import checkpoint_info

_EPS = 1e-8
SNR_CEILING = 1e-3  # tau: the loss stops rewarding an estimate past 30 dB


class SeparationData(WindowData):
    """Mixtures of source tracks from a world's manifests, drawn in the seeded per-epoch order of
    :class:`~avlearn.tasks.datamodule.WindowData`, so a killed run resumed with ``--ckpt_path last`` sees the
    same batches.

    Args:
        train_manifest: JSONL manifest of training clips.
        val_manifest: JSONL manifest of validation clips (fixed mixtures).
        window: seconds per mixture.
        num_mix: tracks per training mixture (a list draws one count per mixture).
        gain_db: random gain range of each track.
        sounding_only: train only on tracks that carry sound (the audio-only baseline needs it).
        fps: video rate of the crops.
        sample_rate: audio rate.
        batch_size: mixtures per batch.
        val_items: fixed validation mixtures.
        cache: decode the tracks once into memory and beside each manifest (small data sets, many epochs);
            false finds the tracks (face tracking where there are no annotated boxes) and reads each window
            from its files, writing nothing; None (the default) caches when the decoded crops and stems fit
            in ``avlearn.data.cache.CACHE_BUDGET`` (4 GiB).
        seed: seed of the training draws and their order.
        num_workers: DataLoader workers, which decode the windows (with ``cache``, mixtures are cut from memory
            and 0 is usually fastest).
    """

    def __init__(
        self,
        train_manifest: str,
        val_manifest: str,
        window: float = 2.0,
        num_mix: list[int] | int = 2,
        gain_db: float = 5.0,
        sounding_only: bool = False,
        fps: float = 25.0,
        sample_rate: int = 16000,
        batch_size: int = 16,
        val_items: int = 256,
        cache: bool | None = None,
        seed: int = 0,
        num_workers: int = 0,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.train_set = self.val_set = None

    @property
    def preprocessing(self) -> dict[str, Any]:
        h = self.hparams
        tracks = self.train_set.tracks if self.train_set is not None else None
        return {
            "window": h.window,
            "fps": h.fps,
            "sample_rate": h.sample_rate,
            "crop_size": list(tracks.crop_size) if tracks is not None else None,
            "world": tracks.rows[0].get("world") if tracks is not None else None,
        }

    def tracks(self, manifest: str) -> TrackIndex | SourceTracks:
        h = self.hparams
        return open_tracks(manifest, fps=h.fps, sample_rate=h.sample_rate, cache=h.cache)

    def setup(self, stage: str | None = None) -> None:
        h = self.hparams
        if self.train_set is None:
            num_mix = tuple(h.num_mix) if isinstance(h.num_mix, (list, tuple)) else h.num_mix
            self.train_set = MixTracks(
                self.tracks(h.train_manifest), h.window, num_mix, h.gain_db, h.sounding_only, seed=h.seed
            )
            self.val_set = MixTracks(
                self.tracks(h.val_manifest),
                h.window,
                max(self.train_set.num_mix),
                0.0,
                sounding_only=True,
                deterministic=True,
                seed=12345,
                length=h.val_items,
            )


def snr_loss(estimate: torch.Tensor, reference: torch.Tensor, mixture: torch.Tensor) -> torch.Tensor:
    """Per-source loss ``(...,)`` in dB: -SNR with a soft ceiling where the reference sounds, else the
    estimate's energy relative to the mixture's (both ``(..., S)``, ``mixture`` broadcastable)."""
    ref_energy = reference.pow(2).sum(-1)
    err = (reference - estimate).pow(2).sum(-1)
    active = 10 * torch.log10(err + SNR_CEILING * ref_energy + _EPS) - 10 * torch.log10(ref_energy + _EPS)
    mix_energy = mixture.pow(2).sum(-1)
    silent = 10 * torch.log10(estimate.pow(2).sum(-1) + SNR_CEILING * mix_energy + _EPS) - 10 * torch.log10(
        mix_energy + _EPS
    )
    return torch.where(ref_energy > 1e-6 * mix_energy, active, silent)


class Separation(BackboneTask):
    """Mask network + losses; the network's own ``separate`` (front-end included) is what inference calls.

    Args:
        model: registered separator (``avsep_unet`` visual, ``avsep_sync`` visual on the sync encoders,
            ``asep_unet_pit`` audio-only).
        model_args: keyword arguments of its builder (its front-end's ``sample_rate``, ``n_fft``, ``hop_length``
            and ``fps`` among them; they must match the data's).
        lr: peak learning rate (AdamW, one-cycle).
        weight_decay: AdamW weight decay.
        init_from: a sync checkpoint whose encoders ``avsep_sync`` starts from (see :mod:`avlearn.tasks.backbone`).
        freeze_epochs: epochs during which the pretrained encoders stay as loaded (the whole run: frozen).
        backbone_lr_mult: their learning rate relative to ``lr`` afterwards.
    """

    task_name = "separation"

    def __init__(
        self,
        model: str = "avsep_unet",
        model_args: dict[str, Any] | None = None,
        lr: float = 2e-3,
        weight_decay: float = 0.01,
        init_from: str | None = None,
        freeze_epochs: int = 0,
        backbone_lr_mult: float = 1.0,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.net = create_model(model, **(model_args or {}))
        self.visual = reads_crops(self.net)
        self.start_from_backbone(init_from, freeze_epochs, backbone_lr_mult)

    def setup(self, stage: str) -> None:
        check_front_end(self.trainer, self.net)

    def losses(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss per valid source, SI-SDR improvement per valid sounding source)``."""
        mix, refs, valid = batch["mixture"], batch["sources"], batch["valid"]
        if self.visual:
            est = self.net.separate(mix, batch["crops"])
            per = snr_loss(est, refs, mix.unsqueeze(1))  # (B, K)
        else:
            est = self.net.separate(mix)
            k = est.shape[1]
            refs, valid = refs[:, :k], valid[:, :k]
            est = pit_assign(est, refs, snr_loss, larger_is_better=False, mixture=mix)
            per = snr_loss(est, refs, mix.unsqueeze(1))
        sounding = valid & (refs.pow(2).sum(-1) > 1e-6 * mix.pow(2).sum(-1, keepdim=True))
        improvement = si_sdr(est.float(), refs) - si_sdr(mix.unsqueeze(1).expand_as(refs), refs)
        return per[valid], improvement[sounding]

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, sisdri = self.losses(batch)
        loss = loss.mean()
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/si_sdri", sisdri.mean(), prog_bar=True, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss, sisdri = self.losses(batch)
        self.log("val/loss", loss.mean(), sync_dist=True)
        self.log("val/si_sdri", sisdri.mean(), prog_bar=True, sync_dist=True)

    def configure_optimizers(self):
        return self.optimizer(self.hparams.lr, self.hparams.weight_decay)

    def export_info(self) -> dict[str, Any]:
        return checkpoint_info(self, **self.net.preprocessing)
