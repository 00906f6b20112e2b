"""Face tracks, lip landmarks and mouth crops: detect a few times a second, link detections into tracks, fill in
between; then FaceMesh on every frame of a track, and mouth crops aligned by its lip corners.

The detector is MediaPipe's BlazeFace (short- and full-range, :class:`avlearn.video.detect.FaceDetector`): on
the real clips of ``../shared/real-av`` it finds every person and no false face, where OpenCV's Haar cascade
(the detector before) invented faces and lost turned ones; it also finds every drawn face of the speakers world
(``benchmarks/faces.py``, ``docs/faces.md``).

A track links detections whose boxes overlap from one detection frame to the next and must be found in 30%
of the detection frames (a one-off false detection makes no track); between detections its box is
interpolated (faces move little in 200 ms) and before the first and after the last detection it is held.
Training and inference crop mouths from these same tracks, so the separation model never sees a crop geometry
at test time that it did not see in training. :func:`track_landmarks` adds FaceMesh's 468 points per frame
(lips, eyes, ...), :func:`aligned_mouths` crops turned and scaled by the mouth corners.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F

from avlearn.video.detect import FaceDetector, iou, roi_of_box
from avlearn.video.landmarks import MIN_PRESENCE, FaceMesh, mouth_transforms, roi_from_landmarks

# Where the mouth sits inside a Haar face box (measured on the speakers world: the closed mouth spans
# x 0.32-0.66 and y 0.66-0.83 of the box), widened so an open mouth and small box jitter stay inside.
MOUTH_REGION = (0.2, 0.55, 0.8, 1.0)  # x0, y0, x1, y1 as fractions of the face box
MOUTH_SIZE = (32, 48)  # crop height, width
_CROP_BLOCK = 32  # frames cropped together
# Faces are found and cropped in frames read at most this size on the short side: enough for mouth crops, cheap
# for 720p/1080p. Training annotations and inference read the same way, so their crops mean the same pixels.
FACE_SHORT_SIDE = 360


def face_read_size(short_side: int, limit: int = FACE_SHORT_SIDE) -> tuple[int | None, float]:
    """How to read a clip whose picture's short side is ``short_side`` for the face front-end: ``(size for
    read_clip/read_frames: the short side, or None to keep the stored size; original pixels per read pixel)``."""
    return (limit, short_side / limit) if short_side > limit else (None, 1.0)


@dataclass
class FaceTrack:
    """One face through a clip.

    Attributes:
        boxes: ``(T, 4)`` float ``x0, y0, x1, y1`` in pixels of the frames given, every frame.
        detected: ``(T,)`` bool, frames whose box came from a detection (the rest are interpolated/held).
        hits: how many detection frames found this face.
        points: ``(T, 468, 2)`` FaceMesh points, NaN where not found (None until :func:`track_landmarks`).
        presence: ``(T,)`` FaceMesh's face-presence probability (likewise).
    """

    boxes: np.ndarray
    detected: np.ndarray
    hits: int = 0
    _found: list[tuple[int, np.ndarray]] = field(default_factory=list, repr=False)  # (frame, box) detections
    points: np.ndarray | None = None
    presence: np.ndarray | None = None


def track_faces(
    video: np.ndarray,
    fps: float,
    detections_per_second: float = 5.0,
    detector: FaceDetector | None = None,
    min_hits: float = 0.3,
    link_iou: float = 0.3,
) -> list[FaceTrack]:
    """Face tracks through ``video (T, H, W, 3)`` uint8, sorted left to right.

    Args:
        video: frames, RGB.
        fps: their frame rate.
        detections_per_second: how often the detector runs.
        detector: a FaceDetector (one is built if None).
        min_hits: a track must be found in at least this fraction of detection frames (drops flukes).
        link_iou: the box overlap that links a detection to a track's last box.
    """
    detector = detector or FaceDetector()
    step = detection_step(fps, detections_per_second)
    detections = [(t, detector(video[t])) for t in range(0, video.shape[0], step)]
    return link_tracks(detections, video.shape[0], min_hits, link_iou)


def detection_step(fps: float, detections_per_second: float = 5.0) -> int:
    """Frames between two detection frames (``track_faces`` detects on frames 0, step, 2 step, ...)."""
    return max(1, round(fps / detections_per_second))


def link_tracks(
    detections: list[tuple[int, np.ndarray]], num_frames: int, min_hits: float = 0.3, link_iou: float = 0.3
) -> list[FaceTrack]:
    """Face tracks from per-frame detections, sorted left to right.

    Separate from detection so a long clip can be detected chunk by chunk (keeping only these few boxes,
    not its frames) and linked once its length is known.

    Args:
        detections: ``(frame index, (n, 4) boxes)`` of each detection frame, in frame order; frames at or
            past ``num_frames`` are ignored.
        num_frames: frames in the clip; every track gets a box for each.
        min_hits: a track must be found in at least this fraction of detection frames (drops flukes).
        link_iou: the box overlap that links a detection to a track's last box.
    """
    t_total = num_frames
    detections = [(t, boxes) for t, boxes in detections if t < t_total]
    tracks: list[FaceTrack] = []
    for t, boxes in detections:
        free = list(range(len(boxes)))
        # greedy linking, best overlaps first
        pairs = sorted(
            ((_link_score(tr._found[-1][1], boxes[i], link_iou), k, i) for k, tr in enumerate(tracks) for i in free),
            reverse=True,
        )
        used_tracks: set[int] = set()
        for score, k, i in pairs:
            if score < link_iou or k in used_tracks or i not in free:
                continue
            tracks[k]._found.append((t, boxes[i]))
            used_tracks.add(k)
            free.remove(i)
        for i in free:
            tracks.append(FaceTrack(np.zeros((0, 4)), np.zeros(0, bool), _found=[(t, boxes[i])]))
    kept = []
    for tr in tracks:
        tr.hits = len(tr._found)
        if tr.hits < max(1, min_hits * len(detections)):
            continue
        times = np.array([p[0] for p in tr._found], np.float64)
        pts = np.stack([p[1] for p in tr._found]).astype(np.float64)
        grid = np.arange(t_total)
        tr.boxes = np.stack([np.interp(grid, times, pts[:, j]) for j in range(4)], axis=1).astype(np.float32)
        tr.detected = np.isin(grid, times.astype(int))
        kept.append(tr)
    kept.sort(key=lambda tr: float(tr.boxes[:, 0].mean() + tr.boxes[:, 2].mean()))
    return kept


def _link_score(last: np.ndarray, box: np.ndarray, link_iou: float) -> float:
    """How well ``box`` continues a track whose last box is ``last``: their IoU, or ``link_iou`` (just enough)
    for a box of about the same size whose centre moved less than 3/4 of its width (a head turning or leaning
    in 200 ms moves its box off the old one, and a face must not become two tracks for it)."""
    score = iou(last, box)
    if score >= link_iou:
        return score
    w_last, w_box = last[2] - last[0], box[2] - box[0]
    shift = np.hypot((last[0] + last[2] - box[0] - box[2]) / 2, (last[1] + last[3] - box[1] - box[3]) / 2)
    same_size = max(w_last, w_box) <= 1.5 * min(w_last, w_box)
    return link_iou if same_size and shift < 0.75 * min(w_last, w_box) else score


def mouth_boxes(face_boxes: np.ndarray) -> np.ndarray:
    """``(..., 4)`` face boxes -> the mouth region (``MOUTH_REGION``) of each, same layout."""
    x0, y0, x1, y1 = (face_boxes[..., j] for j in range(4))
    w, h = x1 - x0, y1 - y0
    rx0, ry0, rx1, ry1 = MOUTH_REGION
    return np.stack([x0 + rx0 * w, y0 + ry0 * h, x0 + rx1 * w, y0 + ry1 * h], axis=-1)


def crop_boxes(video: torch.Tensor, boxes: np.ndarray, size: tuple[int, int] = MOUTH_SIZE) -> torch.Tensor:
    """Crops ``boxes (T, 4)`` (pixels) out of ``video (T, H, W, 3)`` uint8 and resizes them (bilinear):
    ``(T, h, w, 3)`` uint8. Boxes may reach past the frame (zero-padded)."""
    b = torch.as_tensor(boxes, dtype=torch.float32)
    ys = (torch.arange(size[0]) + 0.5) / size[0]  # output pixel centres, as fractions of the box
    xs = (torch.arange(size[1]) + 0.5) / size[1]
    gx = b[:, 0, None] + xs[None] * (b[:, 2] - b[:, 0])[:, None]  # (T, w) frame pixels (pixel-edge units)
    gy = b[:, 1, None] + ys[None] * (b[:, 3] - b[:, 1])[:, None]  # (T, h)
    return _sample(video, torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1))


def track_landmarks(video: np.ndarray, track: FaceTrack, mesh: FaceMesh | None = None) -> FaceTrack:
    """``track`` with FaceMesh points on every frame of ``video (T, H, W, 3)`` uint8 RGB.

    As MediaPipe tracks: each frame's region comes from the previous frame's points (so it follows the head's
    turn), or from the track's box where there are none or they drifted off it; points whose face-presence
    probability is under :data:`avlearn.video.landmarks.MIN_PRESENCE` (a profile, a hand over the mouth) are NaN.
    """
    mesh = mesh or FaceMesh()
    t_total = video.shape[0]
    points = np.full((t_total, 468, 2), np.nan, np.float32)
    presence = np.zeros(t_total, np.float32)
    prev = None
    for t in range(t_total):
        box_roi = roi_of_box(track.boxes[t])
        rois = [box_roi]
        if prev is not None:
            roi = roi_from_landmarks(prev)
            if abs(roi.cx - box_roi.cx) < 0.5 * box_roi.side and abs(roi.cy - box_roi.cy) < 0.5 * box_roi.side:
                rois.insert(0, roi)
        for roi in rois:
            pts, p = mesh(video[t], roi)
            if p >= MIN_PRESENCE:
                break
        presence[t] = p
        prev = pts if p >= MIN_PRESENCE else None
        if prev is not None:
            points[t] = pts
    return replace(track, points=points, presence=presence)


def aligned_mouths(video: torch.Tensor, track: FaceTrack, size: tuple[int, int] = MOUTH_SIZE) -> torch.Tensor:
    """Mouth crops of ``track`` aligned by its landmarks (:func:`track_landmarks` first): ``(T, h, w, 3)``
    uint8, mouth corners at fixed places (:func:`avlearn.video.landmarks.mouth_transforms`); frames without
    points are interpolated, a track without any takes the upright mouth region of its boxes."""
    if track.points is None:
        raise ValueError("the track has no landmarks: run track_landmarks first")
    return crop_affine(video, mouth_transforms(track.points, size, fallback=mouth_boxes(track.boxes)), size)


def crop_affine(video: torch.Tensor, transforms: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """Crops of ``video (T, H, W, 3)`` uint8 through ``transforms (T, 2, 3)`` (crop pixel ``(u, v, 1)`` ->
    frame pixel, pixel-edge units as :func:`crop_boxes`): ``(T, h, w, 3)`` uint8, bilinear, zero outside."""
    a = torch.as_tensor(transforms, dtype=torch.float32)
    vs, us = torch.meshgrid(torch.arange(size[0]) + 0.5, torch.arange(size[1]) + 0.5, indexing="ij")
    uv1 = torch.stack([us, vs, torch.ones_like(us)], -1)  # (h, w, 3)
    return _sample(video, torch.einsum("tij,hwj->thwi", a, uv1))


def _sample(video: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """``video (T, H, W, 3)`` uint8 sampled at frame positions ``xy (T, h, w, 2)`` (x, y in pixel-edge units):
    ``(T, h, w, 3)`` uint8, bilinear, zero outside the frame (``grid_sample``, ``align_corners=False``).

    A few frames at a time, each block cut to the rectangle its positions reach (and the pixel beyond, which
    bilinear reads) before it is turned to float: a mouth or a face is a small part of the frame. The
    positions are an affine image of the crop's pixel grid, so the corners of the grid bound them."""
    t, h_img, w_img, _ = video.shape
    out = torch.zeros(t, *xy.shape[1:3], 3, dtype=torch.uint8)
    for i in range(0, t, _CROP_BLOCK):
        pos = xy[i : i + _CROP_BLOCK]
        corners = pos[:, [0, -1]][:, :, [0, -1]].reshape(-1, 2)
        if not torch.isfinite(corners).all():
            x0, y0, x1, y1 = 0, 0, w_img, h_img
        else:
            lo, hi = corners.amin(0), corners.amax(0)
            x0, y0 = (max(0, int(v) - 2) for v in lo.floor().tolist())
            x1, y1 = min(w_img, int(hi[0].ceil()) + 2), min(h_img, int(hi[1].ceil()) + 2)
            if x1 <= x0 or y1 <= y0:  # the block's crops lie wholly outside the frame: zeros
                continue
        frames = video[i : i + _CROP_BLOCK, y0:y1, x0:x1].permute(0, 3, 1, 2).float()  # (T, 3, h', w')
        grid = (pos - torch.tensor([x0, y0])) / torch.tensor([x1 - x0, y1 - y0]) * 2 - 1
        crop = F.grid_sample(frames, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        out[i : i + _CROP_BLOCK] = crop.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    return out
