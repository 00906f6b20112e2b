"""Face detection: MediaPipe's BlazeFace (short- and full-range) on every frame given, and box overlap.

Why BlazeFace and not OpenCV's Haar cascade (which this module ran before): on the real clips of
``../shared/real-av`` the cascade finds a second, false face in 14% of GRID detection frames (tracks for a
voice too many from ``separate``) and misses turned, dim and small faces (26% of LRS2 detection frames, 18% of
the in-car face tracks', 64% of the talk show's people), at 19.5 ms a frame; the two BlazeFace models together
find 99.6% of the people in the detection frames of the 73 real clips and no false track, at 3.5 ms
(``benchmarks/faces.py``, ``docs/faces.md``). The short-range model finds close-ups (a face filling the frame,
where the full-range one fails), the full-range model small faces (where the short-range one boxes a head and
shoulders, so its small boxes are dropped); both run and their boxes merge.

Boxes are reported in the geometry of the Haar cascade's square box (forehead to chin), measured on faces both
found: the face tracker's mouth region (:data:`avlearn.video.faces.MOUTH_REGION`) and the separation model
trained on its crops keep meaning the same pixels. The bare cascade stays here for the synthetic world's QA
script (:mod:`avlearn.data.worlds.face_check`).
"""

from __future__ import annotations

import numpy as np

from avlearn.video.landmarks import MESH_ROI_SCALE, BlazeFace, Detections, Roi, box_iou

# BlazeFace box -> Haar box: centre moved up by this fraction of the box width, side times this factor
# (medians over faces both found, the speakers world's and real frontal faces averaged).
_TO_HAAR = {"short": (-0.128, 1.19), "full": (-0.08, 1.11)}
_MERGE_OVERLAP = 0.5  # two boxes whose intersection covers this much of the smaller one are one face
_SMALL_FACE = 0.25  # faces narrower than this fraction of the frame's long side are small


def haar_cascade():
    """OpenCV's ``haarcascade_frontalface_default.xml`` (shipped inside the opencv-python wheel).

    Raises:
        RuntimeError: an OpenCV without ``CascadeClassifier`` (OpenCV 5), or a cascade that does not load.
    """
    import cv2

    if not hasattr(cv2, "CascadeClassifier"):
        raise RuntimeError(
            "this OpenCV has no CascadeClassifier (OpenCV 5 dropped it); install opencv-python-headless<5"
        )
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    if cascade.empty():
        raise RuntimeError("OpenCV's frontal face Haar cascade could not be loaded")
    return cascade


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two ``[x0, y0, x1, y1]`` boxes (0 when both are empty)."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _to_haar(boxes: np.ndarray, model: str) -> np.ndarray:
    shift, factor = _TO_HAAR[model]
    w = boxes[:, 2] - boxes[:, 0]
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2 + shift * w
    half = factor * w / 2
    return np.stack([cx - half, cy - half, cx + half, cy + half], 1).astype(np.float32)


def roi_of_box(box: np.ndarray) -> Roi:
    """The upright FaceMesh input region of a face from its Haar-geometry box (a tracked box, between two
    detections or without keypoints): the full-range BlazeFace box it stands for, times MediaPipe's 1.5."""
    shift, factor = _TO_HAAR["full"]
    w = float(box[2] - box[0]) / factor
    cx, cy = float(box[0] + box[2]) / 2, float(box[1] + box[3]) / 2 - shift * w
    return Roi(cx, cy, MESH_ROI_SCALE * w, 0.0)


def _overlap_of_smaller(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    w = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return w * h / np.maximum(np.minimum(area(box), area(boxes)), 1e-9)


class FaceDetector:
    """Faces in an RGB frame: ``detector(frame) -> (n, 4)`` boxes ``x0, y0, x1, y1`` (Haar-box geometry).

    ``detector.detect(frame)`` also gives each face's score and BlazeFace's six keypoints (eyes, nose tip,
    mouth centre, ears). Without the LiteRT runtime only the short-range model runs (OpenCV cannot read the
    full-range model), so small faces are missed: a note in ``docs/faces.md``.
    """

    def __init__(self, min_score: float = 0.5):
        self.models = [BlazeFace("short", min_score)]
        full = BlazeFace("full", min_score)
        if full.range == "full":
            self.models.append(full)

    def detect(self, frame: np.ndarray) -> Detections:
        boxes, scores, points = [], [], []
        small = _SMALL_FACE * max(frame.shape[:2])
        for model in self.models:
            d = model(frame)
            b = _to_haar(d.boxes, model.range)
            # the short-range model sees a small face at a few pixels and boxes a head and shoulders around it
            # (or nothing): small faces are the full-range model's, when it runs
            keep = (b[:, 2] - b[:, 0] >= small) if model.range == "short" and len(self.models) > 1 else slice(None)
            boxes.append(b[keep])
            scores.append(d.scores[keep])
            points.append(d.keypoints[keep])
        boxes, scores, points = np.concatenate(boxes), np.concatenate(scores), np.concatenate(points)
        kept: list[int] = []
        for i in np.argsort(-scores):
            if not kept or (
                box_iou(boxes[i], boxes[kept]).max() < 0.3
                and _overlap_of_smaller(boxes[i], boxes[kept]).max() < _MERGE_OVERLAP
            ):
                kept.append(int(i))
        kept.sort(key=lambda i: float(boxes[i, 0]))
        return Detections(boxes[kept].reshape(-1, 4), scores[kept], points[kept].reshape(-1, 6, 2))

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        return self.detect(frame).boxes
