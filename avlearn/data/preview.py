"""Windows of untrimmed videos for audio-preview action recognition (Listen to Look).

A video of ``D`` seconds is cut into ``W = floor(D / window)`` windows, each given as its uint8 frames and its
waveform (the student's front-ends, log-mel included, are the model's). A window's label is the clip's action
when at least half of it lies inside one of the manifest's labelled ``segments`` (a row without segments is
one segment from start to end, as a trimmed clip), else ``background`` (the last class).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from avlearn.data.clips import Draw, draw_key
from avlearn.video.transforms import normalize_video


def class_names(rows: list[dict[str, Any]]) -> list[str]:
    """Sorted action labels of the rows, then ``"background"``."""
    return sorted({label for r in rows for label in r["labels"]}) + ["background"]


def window_labels(row: dict[str, Any], starts: np.ndarray, window: float, classes: list[str]) -> np.ndarray:
    """Class index of the windows starting at ``starts`` (seconds from the row's start)."""
    segments = row.get("segments") or [{"label": row["labels"][0], "start": 0.0, "end": row["end"] - row["start"]}]
    labels = np.full(len(starts), len(classes) - 1, np.int64)
    for seg in segments:
        overlap = np.minimum(starts + window, seg["end"]) - np.maximum(starts, seg["start"])
        labels[overlap >= window / 2] = classes.index(seg["label"])
    return labels


class PreviewWindows(torch.utils.data.Dataset):
    """One window of one clip per sample, for the teacher and the student.

    Samples: ``video`` ``(T, H, W, 3)`` uint8 (the window's frames), ``audio`` ``(S,)``, ``label``. In training
    (``jitter > 0``) the window's start moves by up to ``jitter`` seconds and the frames are mirrored at
    random (the held-out motion variants include mirrored ones), drawn from ``(seed, epoch, index)``; its
    label follows the moved window.

    Args:
        clips: :class:`~avlearn.data.clips.LazyClips` or the decoded cache (each clip gives
            ``floor(length / window)`` windows).
        classes: class names, ``background`` last.
        window: seconds per window.
        jitter: maximal start shift in seconds (0 for validation).
        seed: base seed of the random draws.
    """

    def __init__(self, clips, classes: list[str], window: float = 1.0, jitter: float = 0.0,
                 seed: int = 0) -> None:  # fmt: skip
        self.clips, self.classes, self.window, self.jitter, self.seed = clips, classes, window, jitter, seed
        self.num_frames = round(window * clips.fps)
        self.num_samples = round(window * clips.sample_rate)
        self.items = [(c, k) for c in range(len(clips)) for k in range(clips.num_frames(c) // self.num_frames)]
        if not self.items:
            raise ValueError(f"clips of {clips.duration:.2f} s hold no {window} s window")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: int | Draw) -> dict[str, torch.Tensor]:
        index, epoch, _ = draw_key(key)
        clip, k = self.items[index]
        fps, sr = self.clips.fps, self.clips.sample_rate
        f0, flip = k * self.num_frames, False
        if self.jitter > 0:
            rng = np.random.default_rng([self.seed, epoch, index])
            room = self.clips.num_frames(clip) - self.num_frames
            f0 = int(np.clip(f0 + rng.integers(-round(self.jitter * fps), round(self.jitter * fps) + 1), 0, room))
            flip = bool(rng.integers(2))
        video = self.clips.video_window(clip, f0, self.num_frames)
        a0 = round(f0 / fps * sr)
        label = window_labels(self.clips.rows[clip], np.array([f0 / fps]), self.window, self.classes)[0]
        return {
            "video": video.flip(2) if flip else video,
            "audio": self.clips.audio_window(clip, a0, self.num_samples),
            "label": torch.tensor(label),
        }


class PreviewVideos(torch.utils.data.Dataset):
    """Whole videos, for the selector and for video-level validation.

    Samples: ``video`` ``(W * T, H, W, 3)`` uint8 (the frames of every window), ``audio`` ``(W * S,)``,
    ``label`` (the video's action), ``window_labels`` ``(W,)``; ``W`` is the number of windows the shortest
    clip holds. ``flip`` mirrors a random half of the videos (training), drawn from ``(seed, epoch, index)``.
    """

    def __init__(self, clips, classes: list[str], window: float = 1.0, flip: bool = False,
                 seed: int = 0) -> None:  # fmt: skip
        self.clips, self.classes, self.window, self.flip, self.seed = clips, classes, window, flip, seed
        self.per_clip = int(clips.duration // window)
        if self.per_clip < 1:
            raise ValueError(f"clips of {clips.duration:.2f} s hold no {window} s window")
        self.num_frames = round(window * clips.fps) * self.per_clip
        self.num_samples = round(window * clips.sample_rate) * self.per_clip

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, key: int | Draw) -> dict[str, torch.Tensor]:
        index, epoch, _ = draw_key(key)
        row = self.clips.rows[index]
        video = self.clips.video_window(index, 0, self.num_frames)
        if self.flip and np.random.default_rng([self.seed, epoch, index]).integers(2):
            video = video.flip(2)
        starts = np.arange(self.per_clip) * self.window
        return {
            "video": video,
            "audio": self.clips.audio_window(index, 0, self.num_samples),
            "label": torch.tensor(self.classes.index(row["labels"][0])),
            "window_labels": torch.from_numpy(window_labels(row, starts, self.window, self.classes)),
        }


def clip_input(video: torch.Tensor) -> torch.Tensor:
    """Windows of uint8 frames ``(B, T, H, W, 3)`` -> the teacher's normalized clips ``(B, 3, T, H, W)``."""
    return normalize_video(video)


def split_windows(frames: torch.Tensor, audio: torch.Tensor, num_windows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One video's frames ``(N, H, W, 3)`` and audio ``(S,)`` -> ``num_windows`` equal windows, frames
    ``(num_windows, N // num_windows, H, W, 3)`` and audio ``(num_windows, S // num_windows)`` (a remainder
    shorter than a window is dropped)."""
    t, s = frames.shape[0] // num_windows, audio.shape[-1] // num_windows
    return frames[: t * num_windows].unflatten(0, (num_windows, t)), audio[: s * num_windows].view(num_windows, s)
