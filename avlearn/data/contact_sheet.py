"""Contact sheets of a manifest: per clip, a strip of frames with their ground-truth boxes over the waveform.

Everything is read back from the written files (mp4 through :mod:`avlearn.io`, annotations npz), so the
sheet shows what a dataset will load. Boxes: green = a sounding source, red = a silent one; a white bar
beside a face gives its annotated mouth opening. Under the frames: the waveform, ticks at the annotated
onsets of sounding sources and, for untrimmed clips, the labelled segments as coloured spans.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from avlearn.data.manifest import load_annotations, read_manifest

_GREEN, _RED, _WHITE = (40, 220, 60), (230, 40, 40), (255, 255, 255)
_TILE = 160  # frame tiles are shown this many pixels high (times ``scale``)


def _frame_strip(row: dict, frames: np.ndarray, times: np.ndarray, ann: dict, scale: int) -> np.ndarray:
    from avlearn.io import read_clip

    fps = float(row.get("fps") or 25)
    tiles = []
    sources = row.get("sources") or []
    for t in times:
        clip = read_clip(row["path"], float(t), 1.0 / fps, sample_rate=16000)
        img = clip.video[:, 0].permute(1, 2, 0).numpy().copy()  # (C, T, H, W) -> (H, W, C) of the first frame
        if img.shape[0] != _TILE:  # real clips come in any size: tiles of one height, boxes scaled to match
            zoom = _TILE / img.shape[0]
            img = cv2.resize(img, (round(img.shape[1] * zoom), _TILE), interpolation=cv2.INTER_AREA)
        else:
            zoom = 1.0
        zoom *= scale
        img = cv2.resize(img, (img.shape[1] * scale, img.shape[0] * scale), interpolation=cv2.INTER_NEAREST)
        f = min(int(round((t - row["start"]) * fps)), len(ann.get("boxes", [[]])) - 1)
        for k, box in enumerate(ann["boxes"][f] if "boxes" in ann else []):
            if np.isnan(box).any():
                continue
            sounding = bool(sources[k].get("sounding", True)) if k < len(sources) else True
            if "speaking" in ann:
                sounding = bool(ann["speaking"][f, k])
            x0, y0, x1, y1 = (box * zoom).astype(int)
            cv2.rectangle(img, (x0, y0), (x1 - 1, y1 - 1), _GREEN if sounding else _RED, 1)
            if "mouth_open" in ann:
                h = int((y1 - y0) * float(ann["mouth_open"][f, k]))
                cv2.rectangle(img, (x1 + 1, y1 - h), (x1 + 3, y1), _WHITE, -1)
            label = sources[k].get("label", "") if k < len(sources) else ""
            cv2.putText(img, str(label)[:10], (x0, max(8, y0 - 2)), cv2.FONT_HERSHEY_PLAIN, 0.8, _WHITE, 1)
        active = [s["label"] for s in row.get("segments") or [] if s["start"] <= t < s["end"]]
        caption = f"{t:.2f}s " + (active[0] if active else ("idle" if row.get("segments") is not None else ""))
        cv2.putText(img, caption, (3, img.shape[0] - 4), cv2.FONT_HERSHEY_PLAIN, 0.9, _WHITE, 1)
        tiles.append(img)
    return np.concatenate(tiles, axis=1)


def _wave_strip(row: dict, width: int, height: int = 70) -> np.ndarray:
    from avlearn.io import read_audio

    wav, sr = read_audio(row["path"], sample_rate=16000)
    start, end = row["start"], row["end"]
    x = wav[0, int(start * sr) : int(end * sr)].numpy()
    img = np.full((height, width, 3), 24, np.uint8)
    duration = end - start
    palette = [(70, 70, 160), (70, 140, 70), (150, 90, 40), (120, 60, 130), (40, 120, 140)]
    for i, seg in enumerate(row.get("segments") or []):
        x0, x1 = int((seg["start"] - start) / duration * width), int((seg["end"] - start) / duration * width)
        img[:, max(0, x0) : max(0, x1)] = palette[i % len(palette)]
        cv2.putText(img, seg["label"][:9], (max(0, x0) + 2, 10), cv2.FONT_HERSHEY_PLAIN, 0.7, _WHITE, 1)
    cols = np.array_split(x, width) if len(x) >= width else [x]
    peak = max(float(np.abs(x).max()), 1e-6) if len(x) else 1.0
    mid = height // 2
    for i, c in enumerate(cols):
        if len(c):
            lo, hi = float(c.min()) / peak, float(c.max()) / peak
            cv2.line(img, (i, int(mid - hi * (mid - 4))), (i, int(mid - lo * (mid - 4))), (200, 200, 200), 1)
    for src in row.get("sources") or []:
        if not src.get("sounding", True):
            continue
        for onset in src.get("onsets") or []:
            xi = int(onset / duration * width)
            cv2.line(img, (xi, height - 8), (xi, height - 1), _GREEN, 1)
        for word in src.get("words") or []:
            xi = int(word["start"] / duration * width)
            cv2.line(img, (xi, 0), (xi, 6), (250, 200, 60), 1)
    return img


def write_contact_sheet(
    manifest: str | os.PathLike, out: str | os.PathLike, *, num_clips: int = 4, num_frames: int = 6, scale: int = 1
) -> Path:
    """Writes a PNG with ``num_clips`` rows of ``num_frames`` frames (boxes drawn) over each clip's waveform."""
    rows = read_manifest(manifest)[:num_clips]
    blocks = []
    for row in rows:
        ann = load_annotations(row["annotations"]) if row.get("annotations") else {}
        fps = float(row.get("fps") or 25)
        span = row["end"] - row["start"]
        times = row["start"] + (np.arange(num_frames) + 0.5) * span / num_frames
        segments = row.get("segments") or []
        if segments:  # untrimmed clips: show the middle of (up to) all but two segments, and idle moments
            mids = [(seg["start"] + seg["end"]) / 2 for seg in segments][: num_frames - 2]
            idle = [t for t in times if not any(seg["start"] <= t < seg["end"] for seg in segments)]
            times = np.sort(np.array(mids + idle[: num_frames - len(mids)]))
        times = np.floor(times * fps) / fps
        frames = _frame_strip(row, None, times, ann, scale)
        title = np.zeros((16, frames.shape[1], 3), np.uint8)
        text = f"{Path(row['path']).name}  labels: {', '.join(row.get('labels') or [])}"
        if row.get("transcript"):
            text += f'  "{row["transcript"][:70]}"'
        cv2.putText(title, text, (3, 12), cv2.FONT_HERSHEY_PLAIN, 0.9, _WHITE, 1)
        blocks += [title, frames, _wave_strip(row, frames.shape[1]), np.zeros((6, frames.shape[1], 3), np.uint8)]
    width = max(b.shape[1] for b in blocks)
    sheet = np.concatenate([np.pad(b, ((0, 0), (0, width - b.shape[1]), (0, 0))) for b in blocks], axis=0)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), sheet[..., ::-1])
    return out
