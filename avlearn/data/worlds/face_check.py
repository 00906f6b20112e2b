"""Does a real face detector find the synthetic faces? OpenCV's bundled frontal Haar cascade, default settings.

A ground-truth face counts as found in a frame when a detection overlaps its box with IoU >= 0.3 (the Haar
box is a square around brows to chin; the annotated box is the whole face oval, hence the loose threshold).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from avlearn.video.detect import haar_cascade, iou


def face_hit_rate(rows: list[dict[str, Any]], *, min_iou: float = 0.3, every: int = 1) -> dict[str, float]:
    """Runs the Haar cascade on the decoded frames of ``speakers`` manifest rows.

    Args:
        rows: manifest rows (absolute paths, as from ``read_manifest``).
        min_iou: overlap for a detection to count as finding a face.
        every: use every n-th frame.

    Returns:
        ``face_rate`` (faces found / faces shown), ``frame_rate`` (frames where every face was found),
        ``any_rate`` (frames where at least one face was found), ``false_per_frame`` (detections matching
        no face), and the counts ``faces`` and ``frames``.
    """
    import cv2

    from avlearn.data.manifest import load_annotations
    from avlearn.io import read_clip

    cascade = haar_cascade()
    faces = found = frames = all_found = any_found = false = 0
    for row in rows:
        boxes = load_annotations(row["annotations"])["boxes"]  # (T, K, 4)
        clip = read_clip(row["path"], row["start"], row["end"] - row["start"])
        video = clip.video.permute(1, 2, 3, 0).numpy()  # (C, T, H, W) -> (T, H, W, C)
        for f in range(0, min(len(video), len(boxes)), every):
            gray = cv2.cvtColor(video[f], cv2.COLOR_RGB2GRAY)
            dets = [np.array([x, y, x + w, y + h], float) for x, y, w, h in cascade.detectMultiScale(gray)]
            hits = [any(iou(d, gt) >= min_iou for d in dets) for gt in boxes[f]]
            false += sum(not any(iou(d, gt) >= min_iou for gt in boxes[f]) for d in dets)
            faces += len(hits)
            found += sum(hits)
            frames += 1
            all_found += all(hits)
            any_found += any(hits)
    return {
        "face_rate": found / max(faces, 1),
        "frame_rate": all_found / max(frames, 1),
        "any_rate": any_found / max(frames, 1),
        "false_per_frame": false / max(frames, 1),
        "faces": faces,
        "frames": frames,
    }
