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

from avlearn.data.clips import Draw, draw_key


class SyncWindows(torch.utils.data.Dataset):
    """Random (training) or fixed (evaluation) windows of clips with shifted audio.

    A training item's window, shifts and offset are drawn from ``(seed, epoch, index)`` of its
    :class:`~avlearn.data.clips.Draw` key; the key's ``params`` may set ``min_shift`` for that epoch (a
    curriculum). Clips too short for a window and its smallest shift are left out (``num_skipped``).

    Args:
        clips: :class:`~avlearn.data.clips.LazyClips` or the decoded cache (:class:`~avlearn.data.cache.ClipArrays`).
        window: window length in seconds.
        min_shift: smallest |shift| of a negative, seconds (a :class:`Draw` may lower it for its epoch).
        max_shift: largest |shift|, seconds (also bounded by each clip's length).
        num_shifted: negatives per window.
        max_offset_frames: range of the ``offset`` draws, in video frames (0: always 0).
        deterministic: draw window and shifts from the item index alone (evaluation).
        seed: base seed of the draws.
    """

    def __init__(
        self,
        clips,
        window: float,
        *,
        min_shift: float,
        max_shift: float,
        num_shifted: int = 1,
        max_offset_frames: int = 15,
        deterministic: bool = False,
        seed: int = 0,
    ):
        if not 0 < min_shift <= max_shift:
            raise ValueError(f"need 0 < min_shift <= max_shift, got {min_shift}, {max_shift}")
        self.num_frames = round(window * clips.fps)
        self.num_samples = round(window * clips.sample_rate)
        self.items = [i for i in range(len(clips)) if clips.num_frames(i) / clips.fps - window >= min_shift]
        self.num_skipped = len(clips) - len(self.items)
        if not self.items:
            longest = max(clips.num_frames(i) for i in range(len(clips))) / clips.fps
            raise ValueError(
                f"clips of at most {longest:.2f} s leave no room for a {min_shift} s shift of a {window} s window"
            )
        self.clips, self.window = clips, window
        self.min_shift, self.max_shift, self.num_shifted = min_shift, max_shift, num_shifted
        self.max_offset_frames = max_offset_frames
        self.deterministic, self.seed = deterministic, seed

    def __len__(self) -> int:
        return len(self.items)

    def _draw(self, rng: np.random.Generator, length: float, min_shift: float) -> tuple[int, list[float]]:
        fps = self.clips.fps
        room = length - self.window  # window starts lie in [0, room]
        for _ in range(100):
            start_frame = int(rng.integers(0, int(room * fps) + 1))
            s = start_frame / fps
            lo, hi = -s, room - s  # shifts keeping the audio window inside the clip
            shifts = []
            for _ in range(self.num_shifted):
                sides = [(-min(self.max_shift, -lo), -min_shift)] if -lo >= min_shift else []
                if hi >= min_shift:
                    sides.append((min_shift, min(self.max_shift, hi)))
                if not sides:
                    break
                a, b = sides[int(rng.integers(len(sides)))]
                shifts.append(float(rng.uniform(a, b)))
            if len(shifts) == self.num_shifted:
                return start_frame, shifts
        raise RuntimeError("could not place a shifted window; lower min_shift or the window length")

    def __getitem__(self, key: int | Draw) -> dict[str, torch.Tensor]:
        index, epoch, params = draw_key(key)
        rng_key = [self.seed, index] if self.deterministic else [self.seed, epoch, index, 1]
        rng = np.random.default_rng(rng_key)
        clip = self.items[index]
        fps, sr = self.clips.fps, self.clips.sample_rate
        total = self.clips.num_frames(clip)
        start_frame, shifts = self._draw(rng, total / fps, params.get("min_shift", self.min_shift))
        k = self.max_offset_frames
        offset = int(rng.integers(max(-k, -start_frame), min(k, total - self.num_frames - start_frame) + 1))
        a0 = round(start_frame / fps * sr)
        starts = [a0 + round(d * sr) for d in shifts]
        o0 = round((start_frame + offset) / fps * sr)
        lo = min(a0, o0, *starts)  # one read of the audio all the windows lie in
        audio = self.clips.audio_window(clip, lo, max(a0, o0, *starts) + self.num_samples - lo)
        n = self.num_samples
        return {
            "video": self.clips.video_window(clip, start_frame, self.num_frames),
            "audio": audio[a0 - lo : a0 - lo + n],
            "shifted": torch.stack([audio[s - lo : s - lo + n] for s in starts]),
            "shifts": torch.tensor(shifts, dtype=torch.float32),
            "offset_audio": audio[o0 - lo : o0 - lo + n],
            "offset": torch.tensor(offset),
            "index": torch.tensor(clip),
        }


class AugmentedWindows(SyncWindows):
    """:class:`SyncWindows` whose training windows are varied the same way in picture and sound: the picture
    flipped left-right half the time, its brightness and contrast scaled (x0.7-1.3, +-20 levels), every audio
    window scaled by one gain (-10..+6 dB). Drawn from the item's key, so a resumed run sees the same windows.
    With a few minutes of real faces, these are the differences between people and rooms a model must not
    learn from."""

    def __getitem__(self, key: int | Draw) -> dict[str, torch.Tensor]:
        item = super().__getitem__(key)
        index, epoch, _ = draw_key(key)
        rng = np.random.default_rng([self.seed, epoch, index, 2])
        video = item["video"].float()
        if rng.random() < 0.5:
            video = video.flip(2)  # (T, H, W, 3): W
        video = (video - 128.0) * rng.uniform(0.7, 1.3) + 128.0 + rng.uniform(-20.0, 20.0)
        item["video"] = video.round().clamp(0, 255).to(torch.uint8)
        gain = float(10 ** (rng.uniform(-10.0, 6.0) / 20))
        for name in ("audio", "shifted", "offset_audio"):
            item[name] = item[name] * gain
        return item
