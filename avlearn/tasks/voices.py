"""Audio-only separation training on real voices: the data module for :class:`avlearn.tasks.separate.Separation`
with an audio-only model (``asep_unet_pit``), mixing real people's speech (:mod:`avlearn.data.voices`)."""

from __future__ import annotations

from typing import Any

from avlearn.data.voices import VoiceMixtures, load_voices
from avlearn.tasks.datamodule import WindowData

__all__ = ["VoiceData"]


class VoiceData(WindowData):
    """Mixtures of different real speakers, drawn in the seeded per-epoch order of
    :class:`~avlearn.tasks.datamodule.WindowData` (a resumed run sees the same batches).

    Args:
        train_sources: manifests of real clips and speaker folders whose voices train (see
            :func:`avlearn.data.voices.load_voices`); keep the held-out people's manifests out.
        val_sources: the same for validation (other people than training's).
        window: seconds per mixture.
        num_mix: speakers per mixture (the model's ``num_sources``).
        gain_db: random gain range of each speaker around equal loudness (validation: equal loudness).
        sample_rate: audio rate.
        batch_size: mixtures per batch.
        epoch_items: training mixtures per epoch (drawn afresh each epoch).
        val_items: fixed validation mixtures.
        cache_dir: where the decoded voices are kept between runs (None: decoded each run).
        seed: seed of the draws and their order.
        num_workers: DataLoader workers (mixtures are cut from memory: 0 is usually fastest).
    """

    def __init__(
        self,
        train_sources: list[str],
        val_sources: list[str],
        window: float = 2.0,
        num_mix: int = 2,
        gain_db: float = 5.0,
        sample_rate: int = 16000,
        batch_size: int = 16,
        epoch_items: int = 4000,
        val_items: int = 256,
        cache_dir: str | None = "data/voices",
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

    def setup(self, stage: str | None = None) -> None:
        h = self.hparams
        if self.train_set is None:
            train = load_voices(list(h.train_sources), h.sample_rate, h.cache_dir)
            val = load_voices(list(h.val_sources), h.sample_rate, h.cache_dir)
            clash = set(train.names) & set(val.names)
            if clash:
                raise ValueError(f"speakers {sorted(clash)} are in both training and validation voices")
            self.train_set = VoiceMixtures(train, h.window, h.num_mix, h.gain_db, h.epoch_items, seed=h.seed)
            self.val_set = VoiceMixtures(val, h.window, h.num_mix, 0.0, h.val_items, deterministic=True, seed=12345)
