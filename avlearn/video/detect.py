"""Face detection: OpenCV's bundled frontal-face Haar cascade, and box overlap.

The cascade's weights ship inside the ``opencv-python-headless`` wheel, so nothing is downloaded at run time.
:class:`FaceDetector` is what the face tracker (:mod:`avlearn.video.faces`) runs; the synthetic world's QA
script (:mod:`avlearn.data.worlds.face_check`) runs the bare cascade at its default settings.
"""

from __future__ import annotations

import numpy as np


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


class FaceDetector:
    """Haar-cascade face detection on RGB frames; returns ``(n, 4)`` boxes ``x0, y0, x1, y1``.

    Detection runs on a grey copy of the frame at most ``detect_width`` pixels wide, which keeps it cheap on
    720p; faces smaller than ``min_face_fraction`` of the frame's short side are not looked for.
    """

    def __init__(self, detect_width: int = 320, min_face_fraction: float = 0.08):
        self.cascade = haar_cascade()
        self.detect_width = detect_width
        self.min_face_fraction = min_face_fraction

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        import cv2

        h, w = frame.shape[:2]
        scale = min(1.0, self.detect_width / w)
        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        if scale < 1.0:
            gray = cv2.resize(gray, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        min_side = max(12, round(self.min_face_fraction * min(gray.shape)))
        found = self.cascade.detectMultiScale(gray, minSize=(min_side, min_side))
        if len(found) == 0:
            return np.zeros((0, 4), np.float32)
        boxes = np.asarray(found, np.float32)
        boxes[:, 2:] += boxes[:, :2]  # x, y, w, h -> x0, y0, x1, y1
        return boxes / scale
