"""The face front-end on real clips, per source group: faces found, lip landmarks, false faces, speed.

    /work/coord/train.sh out/faces/bench.log .venv/bin/python benchmarks/faces.py --shared ../shared \\
        --speakers data/speakers/test.jsonl --contact out/faces/contact_real.png

Every clip of ``avlearn/data/real_people.tsv`` present under ``--shared`` (its first ``--max-seconds``), read as
``avlearn separate`` reads it (25 fps, short side at most 360 px), goes through the tracker
(:func:`avlearn.video.faces.track_faces`: detection 5 times a second, tracks kept when found in 30% of the
detection frames) and FaceMesh on every frame of every track (:func:`avlearn.video.faces.track_landmarks`);
OpenCV's Haar cascade, the detector before, runs on the same detection frames for comparison. Pairs of
single-person clips side by side (``pairs``) are the two-person test the Haar cascade invented third faces on.

Columns: ``det`` detection frames with every person found (at most as many faces counted as there are
people), ``false`` detection frames with more faces than people, ``tracks+`` clips with more tracks than
people (a voice too many in ``separate``), ``lips`` frames x people with lip landmarks, ``ms/frame`` detection
(amortized) plus landmarks of every track per video frame, one thread; ``ms/detection`` one detection frame,
BlazeFace's two models against the cascade. The synthetic ``speakers`` rows also
compare FaceMesh's inner-lip opening with the opening the renderer drew (Pearson r per face, median) and check
that the mouth corners fall inside the drawn mouth box.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from avlearn.data.manifest import load_annotations, read_manifest
from avlearn.data.real import DEFAULT_SHARED, people_table
from avlearn.io import probe, read_clip
from avlearn.video.detect import FaceDetector, haar_cascade
from avlearn.video.faces import aligned_mouths, detection_step, link_tracks, track_landmarks
from avlearn.video.landmarks import LIPS_INNER, LIPS_OUTER, MOUTH_CORNERS, FaceMesh, lip_features

FPS = 25.0
READ_SIZE = 360


def haar_boxes(cascade, frame: np.ndarray) -> np.ndarray:
    """The detector ``avlearn separate`` ran before BlazeFace: the cascade on a grey copy at most 320 px wide,
    faces from 8% of the short side."""
    import cv2

    h, w = frame.shape[:2]
    scale = min(1.0, 320 / w)
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        gray = cv2.resize(gray, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    side = max(12, round(0.08 * min(gray.shape)))
    found = cascade.detectMultiScale(gray, minSize=(side, side))
    boxes = np.asarray(found, np.float32).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]
    return boxes / scale


def analyse(video: np.ndarray, people: int, detector: FaceDetector, mesh: FaceMesh, cascade) -> dict:
    """One clip through both front-ends: counts for the table, timings, and the tracks."""
    step = detection_step(FPS)
    frames = range(0, len(video), step)
    t0 = time.perf_counter()
    found = [(t, detector(video[t])) for t in frames]
    t_det = time.perf_counter() - t0
    t0 = time.perf_counter()
    haar = [(t, haar_boxes(cascade, video[t])) for t in frames]
    t_haar = time.perf_counter() - t0
    tracks = link_tracks(found, len(video))
    t0 = time.perf_counter()
    tracks = [track_landmarks(video, tr, mesh) for tr in tracks]
    t_lm = time.perf_counter() - t0
    with_lips = np.sum([~np.isnan(tr.points[:, 0, 0]) for tr in tracks], 0) if tracks else np.zeros(len(video))
    return {
        "frames": len(video),
        "det_frames": len(found),
        "det": sum(min(len(b), people) for _, b in found) / people,
        "false": sum(len(b) > people for _, b in found),
        "haar_det": sum(min(len(b), people) for _, b in haar) / people,
        "haar_false": sum(len(b) > people for _, b in haar),
        "tracks_over": int(len(tracks) > people),
        "haar_tracks_over": int(len(link_tracks(haar, len(video))) > people),
        "lips": float(np.minimum(with_lips, people).sum() / people),
        "seconds": t_det + t_lm,
        "det_seconds": t_det,
        "haar_seconds": t_haar,
        "tracks": tracks,
    }


COUNTS = (
    "frames",
    "det_frames",
    "det",
    "false",
    "haar_det",
    "haar_false",
    "tracks_over",
    "haar_tracks_over",
    "lips",
    "seconds",
    "det_seconds",
    "haar_seconds",
)


def add(total: dict, res: dict, people: int) -> None:
    for key in COUNTS:
        total[key] += res[key]
    total["clips"] += 1
    total["people"] += people


def read(path: str | Path, seconds: float) -> np.ndarray:
    """The first ``seconds`` of a clip's frames at 25 fps, short side at most 360 px (as ``separate`` reads)."""
    short = min(probe(path).video.display_size)
    clip = read_clip(path, 0.0, seconds, fps=FPS, size=READ_SIZE if short > READ_SIZE else None, audio=False)
    return clip.video[:, : clip.video_end].permute(1, 2, 3, 0).numpy()


def real_clips(shared: Path) -> list[tuple[str, str, int]]:
    """``(path, group, people)`` of the identity table's clips present under ``shared``."""
    return [
        (str(shared / r["file"]), r["group"], len(r["people"]))
        for r in people_table()
        if (shared / r["file"]).is_file()
    ]


def pairs(clips: list[tuple[str, str, int]], seconds: float, count: int) -> list[tuple[np.ndarray, int]]:
    """Two single-person clips of one group and frame size side by side, ``count`` of them."""
    by_group = defaultdict(list)
    for path, group, people in clips:
        if people == 1 and group in ("grid", "voxceleb2", "lrs2"):
            by_group[group].append(path)
    out = []
    for paths in by_group.values():
        for a, b in zip(paths[0::2], paths[1::2]):
            va, vb = read(a, seconds), read(b, seconds)
            n = min(len(va), len(vb))
            if va.shape[1:] == vb.shape[1:] and len(out) < count:
                out.append((np.concatenate([va[:n], vb[:n]], axis=2), 2))
    return out


def draw(video: np.ndarray, tracks: list, frame: int, width: int = 240) -> np.ndarray:
    """One tile of a contact sheet: the frame with face boxes, lip points (inner cyan, outer red), the
    aligned mouth crop of each face below it."""
    import cv2

    scale = width / video.shape[2]
    img = cv2.resize(video[frame], (width, round(video.shape[1] * scale)), interpolation=cv2.INTER_LINEAR)
    for tr in tracks:
        x0, y0, x1, y1 = (tr.boxes[frame] * scale).round().astype(int)
        cv2.rectangle(img, (x0, y0), (x1, y1), (0, 255, 0), 1)
        pts = (tr.points[frame] + 0.5) * scale - 0.5
        if np.isnan(pts[0, 0]):
            continue
        for idx, colour in ((LIPS_OUTER, (255, 40, 40)), (LIPS_INNER, (0, 230, 255))):
            cv2.polylines(img, [pts[list(idx)].round().astype(np.int32)], True, colour, 1, cv2.LINE_AA)
        for k in MOUTH_CORNERS:
            cv2.circle(img, tuple(pts[k].round().astype(int)), 1, (255, 255, 0), -1)
    crops = [aligned_mouths(torch.from_numpy(video), tr)[frame].numpy() for tr in tracks[:3]]
    strip = np.zeros((56, width, 3), np.uint8)
    cw = min(72, width // max(1, len(crops)) - 8)  # 48x32 crops shown at up to 72x48
    for i, crop in enumerate(crops):
        strip[4 : 4 + cw * 2 // 3, 4 + i * (cw + 8) : 4 + i * (cw + 8) + cw] = cv2.resize(crop, (cw, cw * 2 // 3))
    return np.concatenate([img, strip], 0)


def contact_sheet(tiles: list[np.ndarray], path: str | Path, columns: int = 4) -> None:

    height = max(t.shape[0] for t in tiles)
    tiles = [np.pad(t, ((0, height - t.shape[0]), (0, 0), (0, 0))) for t in tiles]
    tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % columns)
    rows = [np.concatenate(tiles[i : i + columns], 1) for i in range(0, len(tiles), columns)]
    sheet = np.concatenate(rows, 0)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    # a palette PNG: small (a few hundred kB for 8 tiles of real footage, ~100 kB of the drawn world)
    Image.fromarray(sheet).quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        path, optimize=True
    )


def speakers_check(rows: list[dict], seconds: float, detector, mesh, cascade) -> tuple[dict, list]:
    """The speakers world: the table's counts plus renderer agreement (opening r, corners in the mouth box)."""
    total: dict = defaultdict(float)
    rs, inside, tiles = [], [], []
    for row in rows:
        video = read(row["path"], seconds)
        people = row["meta"]["num_faces"]
        res = analyse(video, people, detector, mesh, cascade)
        ann = load_annotations(row["annotations"])
        add(total, res, people)
        n = len(video)
        for tr in res["tracks"]:
            centre = (tr.boxes[:n, 0] + tr.boxes[:n, 2]) / 2
            k = int(
                np.argmin(
                    [
                        abs(np.median(centre - (ann["boxes"][:n, j, 0] + ann["boxes"][:n, j, 2]) / 2))
                        for j in range(people)
                    ]
                )
            )
            opening = lip_features(tr.points)[:, 0]
            ok = ~np.isnan(opening)
            if ok.sum() > 10 and np.std(ann["mouth_open"][:n, k][ok]) > 0.02:
                rs.append(np.corrcoef(opening[ok], ann["mouth_open"][:n, k][ok])[0, 1])
            mb = ann["mouth_boxes"][:n, k]
            for c in MOUTH_CORNERS:
                p = tr.points[:, c]
                pad = 0.15 * (mb[:, 2] - mb[:, 0])
                inside += list(
                    (
                        (p[:, 0] > mb[:, 0] - pad)
                        & (p[:, 0] < mb[:, 2] + pad)
                        & (p[:, 1] > mb[:, 1] - pad)
                        & (p[:, 1] < mb[:, 3] + pad)
                    )[ok]
                )
        if len(tiles) < 8:
            tiles.append(draw(video, res["tracks"], n // 2))
    total["r"] = float(np.median(rs)) if rs else float("nan")
    total["inside"] = float(np.mean(inside)) if inside else float("nan")
    return total, tiles


def line(name: str, t: dict) -> str:
    det_frames, frames = max(t["det_frames"], 1), max(t["frames"], 1)
    return (
        f"| {name} | {int(t['clips'])} | {int(t['people'])} | {int(t['frames'])} "
        f"| {100 * t['det'] / det_frames:.1f} / {100 * t['haar_det'] / det_frames:.1f} "
        f"| {100 * t['false'] / det_frames:.1f} / {100 * t['haar_false'] / det_frames:.1f} "
        f"| {int(t['tracks_over'])} / {int(t['haar_tracks_over'])} "
        f"| {100 * t['lips'] / frames:.1f} | {1000 * t['seconds'] / frames:.1f} "
        f"| {1000 * t['det_seconds'] / det_frames:.1f} / {1000 * t['haar_seconds'] / det_frames:.1f} |"
    )


HEADER = (
    "| group | clips | people | frames | det % (BlazeFace / Haar) | false % (BlazeFace / Haar) "
    "| tracks+ (BlazeFace / Haar) | lips % | ms/frame | ms/detection (BlazeFace / Haar) |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=str(DEFAULT_SHARED), help="folder holding real-av/ and real/")
    parser.add_argument("--max-seconds", type=float, default=20.0, help="read at most this much of each clip")
    parser.add_argument("--pairs", type=int, default=12, help="side-by-side pairs of single-person clips")
    parser.add_argument("--speakers", help="a speakers-world manifest (e.g. data/speakers/test.jsonl)")
    parser.add_argument("--speakers-clips", type=int, default=40)
    parser.add_argument("--contact", help="write a contact sheet of the real clips here (keep it out of the repo)")
    parser.add_argument("--speakers-contact", help="write a contact sheet of the speakers clips here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    import cv2

    cv2.setNumThreads(1)
    detector, mesh, cascade = FaceDetector(), FaceMesh(), haar_cascade()
    print(f"runtime: {mesh.model.runtime}; detectors: {', '.join(m.range for m in detector.models)}")
    clips = real_clips(Path(args.shared))
    groups: dict[str, dict] = defaultdict(lambda: defaultdict(float))
    tiles = []
    for path, group, people in clips:
        video = read(path, args.max_seconds)
        res = analyse(video, people, detector, mesh, cascade)
        add(groups[group], res, people)
        if args.contact and sum(g == group for g, _ in tiles) < 2:
            tiles.append((group, draw(video, res["tracks"], len(video) // 2)))
    for video, people in pairs(clips, min(args.max_seconds, 5.0), args.pairs):
        res = analyse(video, people, detector, mesh, cascade)
        add(groups["pairs (side by side)"], res, people)
        if args.contact and sum(g == "pairs" for g, _ in tiles) < 2:
            tiles.append(("pairs", draw(video, res["tracks"], len(video) // 2)))
    print(HEADER)
    for name in sorted(groups):
        print(line(name, groups[name]))
    all_real = defaultdict(float)
    for name, t in groups.items():
        if not name.startswith("pairs"):
            for k, v in t.items():
                all_real[k] += v
    print(line("**all real clips**", all_real))
    if args.speakers:
        rows = read_manifest(args.speakers)[: args.speakers_clips]
        total, speaker_tiles = speakers_check(rows, args.max_seconds, detector, mesh, cascade)
        print(line("speakers (synthetic)", total))
        print(
            f"speakers: FaceMesh inner-lip opening vs the renderer's, Pearson r per face (median) {total['r']:.2f}; "
            f"mouth corners inside the drawn mouth box (+15%) {100 * total['inside']:.1f}%"
        )
        if args.speakers_contact:
            contact_sheet(speaker_tiles, args.speakers_contact)
    if args.contact:
        contact_sheet([t for _, t in tiles], args.contact)


if __name__ == "__main__":
    main()
