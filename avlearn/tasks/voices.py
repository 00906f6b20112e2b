"""Audio-only separation training on real voices: the data module for :class:`avlearn.tasks.separate.Separation`
with an audio-only model (``asep_unet_pit``), mixing real people's speech (:mod:`avlearn.data.voices`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from avlearn.data.voices import VoiceMixtures, load_voices
from avlearn.tasks.datamodule import WindowData

__all__ = ["VoiceData"]


class VoiceData(WindowData):
    """Mixtures of different real speakers, drawn in the seeded per-epoch order of
    :class:`~avlearn.tasks.datamodule.WindowData` (a resumed run sees the same batches).

    Args:
        train_manifest: real clips whose people's voices train (``data/real/train.jsonl``); keep the held-out
            people's manifests out.
        val_manifest: real clips of other people, for validation.
        train_folders: more training speakers, a folder of recordings each (see
            :func:`avlearn.data.voices.load_voices`).
        window: seconds per mixture.
        num_mix: speakers per mixture (the model's ``num_sources``).
        gain_db: random gain range of each speaker around equal loudness (validation: equal loudness).
        reverb: share of training voices heard in a random room (validation: as recorded).
        sample_rate: audio rate.
        batch_size: mixtures per batch.
        epoch_items: training mixtures per epoch (drawn afresh each epoch).
        val_items: fixed validation mixtures.
        cache: keep the decoded voices beside each manifest (``.avlearn-cache/``) for the next run (None, the
            default, and True; the voices are held in memory either way); False decodes them every run.
        seed: seed of the draws and their order.
        num_workers: DataLoader workers (mixtures are cut from memory: 0 is usually fastest).
    """

    def __init__(
        self,
        train_manifest: str,
        val_manifest: str,
        train_folders: list[str] | None = None,
        window: float = 2.0,
        num_mix: int = 2,
        gain_db: float = 5.0,
        reverb: float = 0.0,
        sample_rate: int = 16000,
        batch_size: int = 16,
        epoch_items: int = 4000,
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
        return {"window": h.window, "sample_rate": h.sample_rate, "crop_size": None, "world": "real-voices"}

    def _voices(self, manifest: str, folders: list[str]):
        cache_dir = None if self.hparams.cache is False else Path(manifest).parent / ".avlearn-cache"
        return load_voices([manifest, *folders], self.hparams.sample_rate, cache_dir)

    def setup(self, stage: str | None = None) -> None:
        h = self.hparams
        if self.train_set is None:
            train = self._voices(h.train_manifest, list(h.train_folders or []))
            val = self._voices(h.val_manifest, [])
            clash = set(train.names) & set(val.names)
            if clash:
                raise ValueError(f"speakers {sorted(clash)} are in both training and validation voices")
            self.train_set = VoiceMixtures(
                train, h.window, h.num_mix, h.gain_db, h.epoch_items, seed=h.seed, reverb=h.reverb
            )
            self.val_set = VoiceMixtures(val, h.window, h.num_mix, 0.0, h.val_items, deterministic=True, seed=12345)
