"""Windows for synchronization training: a video window, its own audio, and the same clip's audio shifted.

Samples are dicts: ``video`` ``(T, H, W, 3)`` uint8, ``audio`` ``(S,)`` the aligned audio, ``shifted``
``(K, S)`` the same clip's audio moved by ``shifts`` ``(K,)`` seconds (positive: the audio window starts
later than the video's, i.e. this audio would be heard *ahead* of its picture if played with the window),
``offset_audio`` ``(S,)`` the same clip's audio moved by ``offset`` whole video frames (uniform in
``[-max_offset_frames, max_offset_frames]``, the classes of an offset classifier), ``index`` the clip.
"""

from __future__ import annotations

import numpy as np
import torch

from avlearn.data.cache import ClipArrays


class SyncWindows(torch.utils.data.Dataset):
    """Random (training) or fixed (evaluation) windows of decoded clips with shifted audio.

    Args:
        clips: decoded clips (all of one length).
        window: window length in seconds.
        min_shift: smallest |shift| of a negative, seconds (settable between epochs for a curriculum).
        max_shift: largest |shift|, seconds (also bounded by the clip length).
        num_shifted: negatives per window.
        max_offset_frames: range of the ``offset`` draws, in video frames (0: always 0).
        deterministic: draw window and shifts from the item index alone (evaluation).
        seed: base seed of the deterministic draws.
    """

    def __init__(
        self,
        clips: ClipArrays,
        window: float,
        *,
        min_shift: float,
        max_shift: float,
        num_shifted: int = 1,
        max_offset_frames: int = 15,
        deterministic: bool = False,
        seed: int = 0,
    ):
        if window >= clips.duration:
            raise ValueError(f"window {window} s must be shorter than the clips ({clips.duration:.2f} s)")
        if not 0 < min_shift <= max_shift:
            raise ValueError(f"need 0 < min_shift <= max_shift, got {min_shift}, {max_shift}")
        if min_shift > clips.duration - window:
            raise ValueError(
                f"clips of {clips.duration:.2f} s leave no room for a {min_shift} s shift of a {window} s window"
            )
        self.clips, self.window = clips, window
        self.min_shift, self.max_shift, self.num_shifted = min_shift, max_shift, num_shifted
        self.max_offset_frames = max_offset_frames
        self.deterministic, self.seed, self.epoch = deterministic, seed, 0
        self.num_frames = round(window * clips.fps)
        self.num_samples = round(window * clips.sample_rate)

    def __len__(self) -> int:
        return len(self.clips.rows)

    def set_epoch(self, epoch: int) -> None:
        """Training draws are a function of (seed, epoch, index), so a resumed run sees the same windows."""
        self.epoch = epoch

    def _draw(self, rng: np.random.Generator) -> tuple[int, list[float]]:
        fps, length = self.clips.fps, self.clips.duration
        room = length - self.window  # window starts lie in [0, room]
        for _ in range(100):
            start_frame = int(rng.integers(0, int(room * fps) + 1))
            s = start_frame / fps
            lo, hi = -s, room - s  # shifts keeping the audio window inside the clip
            shifts = []
            for _ in range(self.num_shifted):
                sides = [(-min(self.max_shift, -lo), -self.min_shift)] if -lo >= self.min_shift else []
                if hi >= self.min_shift:
                    sides.append((self.min_shift, min(self.max_shift, hi)))
                if not sides:
                    break
                a, b = sides[int(rng.integers(len(sides)))]
                shifts.append(float(rng.uniform(a, b)))
            if len(shifts) == self.num_shifted:
                return start_frame, shifts
        raise RuntimeError("could not place a shifted window; lower min_shift or the window length")

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        key = [self.seed, index] if self.deterministic else [self.seed, self.epoch, index, 1]
        rng = np.random.default_rng(key)
        start_frame, shifts = self._draw(rng)
        sr = self.clips.sample_rate
        a0 = round(start_frame / self.clips.fps * sr)
        audio = self.clips.audio[index]
        shifted = torch.stack([audio[a0 + round(d * sr) :][: self.num_samples] for d in shifts])
        total = self.clips.video.shape[1]  # frames per clip
        k = self.max_offset_frames
        offset = int(rng.integers(max(-k, -start_frame), min(k, total - self.num_frames - start_frame) + 1))
        o0 = round((start_frame + offset) / self.clips.fps * sr)
        return {
            "video": self.clips.video[index, start_frame : start_frame + self.num_frames],
            "audio": audio[a0 : a0 + self.num_samples],
            "shifted": shifted,
            "shifts": torch.tensor(shifts, dtype=torch.float32),
            "offset_audio": audio[o0 : o0 + self.num_samples],
            "offset": torch.tensor(offset),
            "index": torch.tensor(index),
        }


class EpochShuffle(torch.utils.data.Sampler[int]):
    """A random order that depends only on (seed, epoch): resuming at an epoch boundary replays the same order.

    Lightning calls ``set_epoch`` at each epoch start (and swaps in a DistributedSampler, seeded the same
    way, under DDP).
    """

    def __init__(self, num_items: int, seed: int = 0):
        self.num_items, self.seed, self.epoch = num_items, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_items

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        return iter(torch.randperm(self.num_items, generator=g).tolist())
