"""Faces and lips on real frames: MediaPipe's BlazeFace detector and FaceMesh landmarks, run offline.

Why these models: of the face front-ends that run here without a download (``docs/faces.md`` has the
figures), BlazeFace finds turned, small and dim faces that OpenCV's Haar cascade misses and invents no face
in the real clips, and FaceMesh gives 468 points per face with the inner and outer lip contours, a few ms
per face on one core. The three ``.tflite`` files (Apache-2.0, from the ``mediapipe`` 0.10.21 wheel)
ship in ``assets/models``; they run with the ``ai-edge-litert`` runtime when it is installed, else with
OpenCV's DNN module (same outputs to 1e-4, several times slower for FaceMesh; the sparse full-range detector
needs LiteRT, so OpenCV alone falls back to the short-range one).

Conventions: frames are RGB uint8 ``(H, W, 3)``, points are ``(x, y)`` pixels of the frame given.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import warnings
from dataclasses import dataclass
from functools import cache

import numpy as np

# FaceMesh indices (the canonical mesh's topology).
LIPS_OUTER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146)
LIPS_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)
MOUTH_CORNERS = (61, 291)  # the subject's right and left outer corners (image left, right on a frontal face)
EYE_CORNERS = (33, 263)  # outer corners of the subject's right and left eye
INNER_LIP_PAIRS = ((82, 87), (13, 14), (312, 317))  # upper / lower inner lip, left to right
OUTER_LIP_PAIR = (0, 17)
LIP_FEATURES = ("opening", "width", "outer_opening", "aspect")

MIN_PRESENCE = 0.5  # FaceMesh's face-presence probability below which a frame has no landmarks
_MESH_SIZE = 192
MESH_ROI_SCALE = 1.5  # the face box is enlarged this much before FaceMesh sees it (as MediaPipe does)


def model_path(name: str):
    """A face model shipped in ``assets/models``."""
    from avlearn import asset_path

    return asset_path("models", name)


class TFLiteModel:
    """One ``.tflite`` network: ``model(x (1, H, W, C) float32) -> outputs``, in the order of ``names``.

    LiteRT runs it when installed (or ``runtime="litert"``); otherwise OpenCV's DNN importer (NCHW input,
    same numbers; ``runtime="opencv"`` forces it).
    """

    def __init__(self, name: str, names: tuple[str, ...], runtime: str | None = None):
        self.names = names
        path = str(model_path(name))
        self.runtime = runtime or ("litert" if litert_available() else "opencv")
        if self.runtime == "opencv":
            import cv2

            self._net = cv2.dnn.readNetFromTFLite(path)
        else:
            from ai_edge_litert.interpreter import Interpreter

            self._net = Interpreter(model_path=path, num_threads=1)
            with _native_stderr_silenced():  # LiteRT logs "INFO: Created ... XNNPACK delegate" there
                self._net.allocate_tensors()
            self._input = self._net.get_input_details()[0]["index"]
            self._outputs = {d["name"]: d["index"] for d in self._net.get_output_details()}

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        if self.runtime == "litert":
            self._net.set_tensor(self._input, np.ascontiguousarray(x, np.float32))
            self._net.invoke()
            return [self._net.get_tensor(self._outputs[n]).reshape(-1) for n in self.names]
        self._net.setInput(np.ascontiguousarray(x.transpose(0, 3, 1, 2), np.float32))
        return [o.reshape(-1) for o in self._net.forward(list(self.names))]


@contextlib.contextmanager
def _native_stderr_silenced():
    """File descriptor 2 to /dev/null for a native call whose logging is not for a user's terminal."""
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@cache
def litert_available() -> bool:
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        return False
    return True


def _anchors(size: int, strides: tuple[int, ...], per_cell: tuple[int, ...]) -> np.ndarray:
    """SSD anchor centres ``(N, 2)`` in [0, 1], in the order MediaPipe's calculator lays them out."""
    out = []
    for stride, k in zip(strides, per_cell):
        n = size // stride
        ys, xs = np.meshgrid((np.arange(n) + 0.5) / n, (np.arange(n) + 0.5) / n, indexing="ij")
        out.append(np.repeat(np.stack([xs.ravel(), ys.ravel()], 1), k, axis=0))
    return np.concatenate(out).astype(np.float32)


# model file, input size, anchor strides, anchors per cell (short range: strides 8 and 16 (x3 layers))
_BLAZEFACE = {
    "full": ("face_detection_full_range_sparse.tflite", 192, (4,), (1,), ("Identity", "Identity_1")),
    "short": ("face_detection_short_range.tflite", 128, (8, 16), (2, 6), ("regressors", "classificators")),
}


@dataclass
class Detections:
    """Faces found in one frame: ``boxes (n, 4)`` x0, y0, x1, y1, ``scores (n,)``, ``keypoints (n, 6, 2)``
    (right eye, left eye, nose tip, mouth centre, right ear, left ear), all in pixels."""

    boxes: np.ndarray
    scores: np.ndarray
    keypoints: np.ndarray


class BlazeFace:
    """MediaPipe's BlazeFace on whole frames (letterboxed to a square).

    ``range="full"`` is the full-range model (faces down to ~5% of the frame, e.g. a 3-person talk show at
    720p); ``"short"`` the selfie model (faces over ~20% of the frame). Without LiteRT only ``"short"`` runs.
    """

    def __init__(self, range: str = "full", min_score: float = 0.5, nms_iou: float = 0.3):
        if range == "full" and not litert_available():
            range = "short"
        file, self.size, strides, per_cell, names = _BLAZEFACE[range]
        self.range = range
        self.model = TFLiteModel(file, names)
        self.anchors = _anchors(self.size, strides, per_cell)
        self.min_score, self.nms_iou = min_score, nms_iou

    def __call__(self, frame: np.ndarray) -> Detections:
        import cv2

        h, w = frame.shape[:2]
        side = max(h, w)
        pad_y, pad_x = (side - h) // 2, (side - w) // 2
        square = cv2.copyMakeBorder(frame, pad_y, side - h - pad_y, pad_x, side - w - pad_x, cv2.BORDER_CONSTANT)
        x = cv2.resize(square, (self.size, self.size), interpolation=cv2.INTER_AREA).astype(np.float32) / 127.5 - 1
        reg, logit = self.model(x[None])
        reg = reg.reshape(len(self.anchors), -1, 2) / self.size  # (N, 8, 2): centre, size, 6 keypoints
        scores = 1 / (1 + np.exp(-np.clip(logit, -80, 80)))
        keep = scores >= self.min_score
        reg, scores, anchors = reg[keep], scores[keep], self.anchors[keep]
        centre = reg[:, 0] + anchors
        half = reg[:, 1] / 2
        boxes = np.concatenate([centre - half, centre + half], 1)
        points = reg[:, 2:] + anchors[:, None]
        boxes, scores, points = _weighted_nms(boxes, scores, points, self.nms_iou)
        offset = np.array([pad_x, pad_y], np.float32)
        boxes = boxes * side - np.tile(offset, 2)
        points = points * side - offset
        return Detections(boxes.astype(np.float32), scores.astype(np.float32), points.astype(np.float32))


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one ``[x0, y0, x1, y1]`` box with each of ``boxes (n, 4)``."""
    w = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = w * h
    area = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area - inter, 1e-9)


def _weighted_nms(boxes, scores, points, iou_threshold):
    """MediaPipe's weighted non-maximum suppression: overlapping candidates are averaged, weighted by score."""
    order = np.argsort(-scores)
    boxes, scores, points = boxes[order], scores[order], points[order]
    out_b, out_s, out_p = [], [], []
    remaining = np.ones(len(scores), bool)
    for i in range(len(scores)):
        if not remaining[i]:
            continue
        group = remaining & (box_iou(boxes[i], boxes) > iou_threshold)
        group[i] = True
        wts = scores[group][:, None]
        out_b.append((boxes[group] * wts).sum(0) / wts.sum())
        out_p.append((points[group] * wts[:, :, None]).sum(0) / wts.sum())
        out_s.append(scores[i])
        remaining &= ~group
    if not out_s:
        return np.zeros((0, 4)), np.zeros(0), np.zeros((0, 6, 2))
    return np.stack(out_b), np.array(out_s), np.stack(out_p)


@dataclass
class Roi:
    """A square, rotated region of a frame: centre ``(x, y)``, side, angle (radians, counter-clockwise)."""

    cx: float
    cy: float
    side: float
    angle: float

    def affine(self, size: int) -> np.ndarray:
        """``(2, 3)`` matrix mapping frame pixels to the ``size x size`` crop of this region."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        k = size / self.side
        # crop = k * R(-angle) (p - centre) + size / 2
        m = np.array([[c, s], [-s, c]]) * k
        t = np.array([size / 2, size / 2]) - m @ np.array([self.cx, self.cy])
        return np.concatenate([m, t[:, None]], 1)


def roi_from_points(left: np.ndarray, right: np.ndarray, box: np.ndarray, scale: float = MESH_ROI_SCALE) -> Roi:
    """The FaceMesh input region of a face: centred on ``box``, turned so the line from the subject's right
    eye (``left`` in the image) to the left eye is level, ``scale`` times the box's longer side."""
    angle = math.atan2(float(right[1] - left[1]), float(right[0] - left[0]))
    return Roi(
        float(box[0] + box[2]) / 2,
        float(box[1] + box[3]) / 2,
        scale * float(max(box[2] - box[0], box[3] - box[1])),
        angle,
    )


class FaceMesh:
    """MediaPipe's FaceMesh: 468 points of a face from a region of the frame, and a face-presence score."""

    def __init__(self, runtime: str | None = None):
        self.model = TFLiteModel("face_landmark.tflite", ("conv2d_21", "conv2d_31"), runtime)

    def __call__(self, frame: np.ndarray, roi: Roi) -> tuple[np.ndarray, float]:
        """``(points (468, 2) in frame pixels, presence probability)`` of the face in ``roi``."""
        import cv2

        m = roi.affine(_MESH_SIZE)
        crop = cv2.warpAffine(
            frame, m, (_MESH_SIZE, _MESH_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
        )
        raw, logit = self.model(crop[None].astype(np.float32) / 255.0)
        pts = raw.reshape(468, 3)[:, :2]
        inv = cv2.invertAffineTransform(m)
        points = pts @ inv[:, :2].T + inv[:, 2]
        presence = 1 / (1 + math.exp(-float(np.clip(logit[0], -80, 80))))
        return points.astype(np.float32), presence


def roi_from_landmarks(points: np.ndarray) -> Roi:
    """The region FaceMesh should see next frame, from this frame's points (MediaPipe's tracking step)."""
    box = np.concatenate([points.min(0), points.max(0)])
    return roi_from_points(points[EYE_CORNERS[0]], points[EYE_CORNERS[1]], box)


# ------------------------------------------------------------------------------------------- lip geometry
# An aligned mouth crop puts the mouth corners at these fractions of its width and height: scale and turn
# follow the corners, so crops of every face and head pose line the lips up on the same pixels.
MOUTH_CORNER_U = (0.25, 0.75)
MOUTH_CORNER_V = 0.4
_SCALE_WINDOW = 25  # frames over which the corner distance is a median (speech widens the mouth for ~100 ms)
_POSE_WINDOW = 5  # frames over which centre and angle are smoothed (landmark jitter, not head motion)


def _moving(values: np.ndarray, window: int, fn) -> np.ndarray:
    """``fn`` (``np.nanmedian``/``np.nanmean``) over a centred window along axis 0, edges padded."""
    half = window // 2
    padded = np.concatenate([np.repeat(values[:1], half, 0), values, np.repeat(values[-1:], half, 0)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, window, axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN window: no face there, NaN out
        return fn(windows, axis=-1)


def _fill(values: np.ndarray) -> np.ndarray:
    """NaN rows of ``(T, k)`` filled by linear interpolation between found frames (held at the ends)."""
    ok = ~np.isnan(values).any(1)
    if ok.all() or not ok.any():
        return values
    t = np.arange(len(values))
    return np.stack([np.interp(t, t[ok], values[ok, j]) for j in range(values.shape[1])], 1)


def lip_features(points: np.ndarray) -> np.ndarray:
    """Lip geometry per frame, ``(T, 4)`` float32 in the order of :data:`LIP_FEATURES`, NaN without landmarks.

    ``opening``: the inner lips' gap (mean of three upper/lower pairs), ``width``: the corner distance,
    ``outer_opening``: the outer lips' height, each divided by the distance between the outer eye corners
    (median over a second, so the face's size and distance to the camera cancel but speech does not);
    ``aspect``: opening / corner distance.

    Args:
        points: ``(T, 468, 2)`` FaceMesh points (NaN for frames without a face).
    """
    gap = np.mean([np.linalg.norm(points[:, a] - points[:, b], axis=-1) for a, b in INNER_LIP_PAIRS], 0)
    width = np.linalg.norm(points[:, MOUTH_CORNERS[0]] - points[:, MOUTH_CORNERS[1]], axis=-1)
    outer = np.linalg.norm(points[:, OUTER_LIP_PAIR[0]] - points[:, OUTER_LIP_PAIR[1]], axis=-1)
    eyes = np.linalg.norm(points[:, EYE_CORNERS[0]] - points[:, EYE_CORNERS[1]], axis=-1)
    eyes = _moving(eyes[:, None], _SCALE_WINDOW, np.nanmedian)[:, 0]
    return np.stack([gap / eyes, width / eyes, outer / eyes, gap / width], 1).astype(np.float32)


def mouth_transforms(points: np.ndarray, size: tuple[int, int], fallback: np.ndarray | None = None) -> np.ndarray:
    """Per frame, the ``(2, 3)`` matrix taking an aligned mouth crop's pixel ``(u, v, 1)`` to frame pixels.

    The crop (``size`` = height, width) is turned so the mouth corners lie level and scaled so they sit at
    :data:`MOUTH_CORNER_U`, :data:`MOUTH_CORNER_V`; the corner distance is a median over a second and centre
    and angle are smoothed over 5 frames, so the lips' own motion (opening, widening) stays in the pixels.
    Frames without landmarks are interpolated between found ones; a face never found takes the upright
    ``fallback (T, 4)`` mouth boxes (x0, y0, x1, y1), or raises ValueError without them.

    Args:
        points: ``(T, 468, 2)`` FaceMesh points (NaN where not found), in the centre-of-pixel convention.
    """
    h, w = size
    left, right = points[:, MOUTH_CORNERS[0]], points[:, MOUTH_CORNERS[1]]
    if np.isnan(left).all():
        if fallback is None:
            raise ValueError("no frame has landmarks and no fallback boxes were given")
        centre = np.stack([(fallback[:, 0] + fallback[:, 2]) / 2, (fallback[:, 1] + fallback[:, 3]) / 2], 1)
        dist = (fallback[:, 2] - fallback[:, 0]) * (MOUTH_CORNER_U[1] - MOUTH_CORNER_U[0])
        angle = np.zeros(len(points))
        centre[:, 1] -= (0.5 - MOUTH_CORNER_V) * h / w * (fallback[:, 2] - fallback[:, 0])
    else:
        mid, delta = (left + right) / 2 + 0.5, right - left  # + 0.5: pixel centres -> pixel edges (crop_affine)
        dist = _fill(_moving(np.linalg.norm(delta, axis=-1)[:, None], _SCALE_WINDOW, np.nanmedian))[:, 0]
        angle = _fill(_moving(np.arctan2(delta[:, 1], delta[:, 0])[:, None], _POSE_WINDOW, np.nanmedian))[:, 0]
        centre = _fill(_moving(mid, _POSE_WINDOW, np.nanmean))
    k = dist / ((MOUTH_CORNER_U[1] - MOUTH_CORNER_U[0]) * w)  # frame pixels per crop pixel
    c, s = np.cos(angle) * k, np.sin(angle) * k
    u0, v0 = (MOUTH_CORNER_U[0] + MOUTH_CORNER_U[1]) / 2 * w, MOUTH_CORNER_V * h
    out = np.empty((len(points), 2, 3), np.float32)
    out[:, 0, 0], out[:, 0, 1], out[:, 1, 0], out[:, 1, 1] = c, -s, s, c
    out[:, 0, 2] = centre[:, 0] - c * u0 + s * v0
    out[:, 1, 2] = centre[:, 1] - s * u0 - c * v0
    return out
