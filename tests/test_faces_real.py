"""The face front-end on real faces (``../shared/real-av``, skipped when absent) and on the speakers world's drawn
faces, and the real-clip manifest's people-disjoint splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from avlearn.data.real import EVALUATION_GROUPS, SPLITS, people_table, real_manifest, split_people
from avlearn.io import read_clip
from avlearn.video.detect import FaceDetector
from avlearn.video.faces import aligned_mouths, link_tracks, track_faces, track_landmarks
from avlearn.video.landmarks import (
    LIPS_INNER,
    LIPS_OUTER,
    MOUTH_CORNER_U,
    MOUTH_CORNER_V,
    MOUTH_CORNERS,
    FaceMesh,
    lip_features,
    litert_available,
    mouth_transforms,
    roi_from_points,
)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
REAL_AV = SHARED / "real-av" / "video"
DEMO = ROOT / "assets" / "demo" / "speakers" / "test"
needs_real = pytest.mark.skipif(not REAL_AV.is_dir(), reason="../shared/real-av is not here")

GRID = REAL_AV / "rizkiarm+LipNet/evaluation/samples/GRID"
# one talking head each; the Haar cascade found a second, false face in sbwe5n and lost the face of LRS2 00004
SINGLE = (GRID / "sbwe5n.mpg", REAL_AV / "smeetrs+deep_avsr/audio_only/demo/00004.mp4")
TALK_SHOW = REAL_AV / "X-LANCE+MSDWILD/visualization/RELEASED_dark_labels/00001.mp4"  # three people


def frames(path: Path, seconds: float = 1.0, start: float = 0.0) -> np.ndarray:
    clip = read_clip(path, start, seconds, fps=25.0, size=360 if "RELEASED" in str(path) else None, audio=False)
    return clip.video[:, : clip.video_end].permute(1, 2, 3, 0).numpy()


@pytest.fixture(scope="module")
def detector():
    return FaceDetector()


# -- the manifest and its splits ------------------------------------------------------------------------------


def test_every_person_is_in_exactly_one_split_and_people_of_one_clip_travel_together():
    splits = split_people(seed=0)
    rows = people_table()
    assert {p for r in rows for p in r["people"]} == set(splits)
    assert set(splits.values()) == set(SPLITS)
    for r in rows:
        assert len({splits[p] for p in r["people"]}) == 1, r["file"]
        if r["group"] in EVALUATION_GROUPS:
            assert splits[r["people"][0]] == "test"
    # a person seen in several clips (the MEAD man, a GRID speaker) is in one split with all of them
    by_person = {}
    for r in rows:
        for p in r["people"]:
            by_person.setdefault(p, []).append(r["file"])
    assert len(by_person["mead-m030"]) == 3 and len(by_person["grid-07"]) == 2
    assert split_people(seed=0) == splits  # seeded
    assert split_people(seed=1) != splits
    for split in SPLITS:  # each split holds the in-the-wild groups, not one source only
        groups = {r["group"] for r in rows if splits[r["people"][0]] == split}
        assert {"grid", "voxceleb2", "lrs2"} <= groups, split


@needs_real
def test_the_manifest_covers_every_shared_clip_and_its_rows_hold_their_people():
    listed = (SHARED / "real-av" / "MANIFEST.tsv").read_text().splitlines()[1:]
    files = {"real-av/" + line.split("\t")[0] for line in listed}
    assert files <= {r["file"] for r in people_table()}
    rows = real_manifest(SHARED)
    assert len(rows) == len(people_table())
    train = {p for r in rows if r["split"] == "train" for p in r["meta"]["people"]}
    test = {p for r in rows if r["split"] == "test" for p in r["meta"]["people"]}
    assert train and test and not train & test
    assert all(Path(r["path"]).is_file() and r["end"] > 0 for r in rows)


# -- detection and tracking ---------------------------------------------------------------------------------


@needs_real
@pytest.mark.parametrize("path", SINGLE, ids=lambda p: p.name)
def test_one_talking_head_gives_one_track(path, detector):
    assert len(track_faces(frames(path), 25.0, detector=detector)) == 1


@needs_real
def test_two_heads_side_by_side_give_two_tracks_and_no_third(detector):
    a, b = frames(GRID / "pwij3p.mpg"), frames(GRID / "lwbsza.mpg")  # the cascade found 3 faces here
    n = min(len(a), len(b))
    tracks = track_faces(np.concatenate([a[:n], b[:n]], axis=2), 25.0, detector=detector)
    assert len(tracks) == 2
    assert tracks[0].boxes[:, 2].max() < a.shape[2] <= tracks[1].boxes[:, 0].min()  # one per half, left to right


@needs_real
@pytest.mark.skipif(not litert_available(), reason="small faces need the full-range model, which needs LiteRT")
def test_the_three_people_of_the_talk_show_are_found(detector):
    assert len(track_faces(frames(TALK_SHOW, 1.0, start=2.0), 25.0, detector=detector)) == 3


def test_a_detection_seen_once_makes_no_track():
    face = np.array([[10, 10, 50, 50]], np.float32)
    fluke = np.array([[100, 10, 140, 50]], np.float32)
    detections = [(t, face if t != 10 else np.concatenate([face, fluke])) for t in range(0, 50, 5)]
    tracks = link_tracks(detections, 50)
    assert len(tracks) == 1 and tracks[0].hits == 10


def test_the_speakers_world_faces_are_found_where_the_renderer_drew_them(detector):
    from avlearn.data.manifest import load_annotations, read_manifest

    for row in read_manifest(DEMO.parent / "test.jsonl"):
        video = frames(Path(row["path"]), 2.0)
        truth = load_annotations(row["annotations"])["boxes"][: len(video)]
        tracks = track_faces(video, 25.0, detector=detector)
        assert len(tracks) == row["meta"]["num_faces"]
        for k, tr in enumerate(tracks):  # both sorted left to right
            centre = (tr.boxes[:, :2] + tr.boxes[:, 2:]) / 2
            true_centre = (truth[:, k, :2] + truth[:, k, 2:]) / 2
            assert np.abs(centre - true_centre).max() < 0.25 * (truth[0, k, 2] - truth[0, k, 0])


# -- landmarks, lip geometry and aligned mouths -----------------------------------------------------------


@needs_real
def test_lip_landmarks_land_inside_the_face_and_aligned_crops_put_the_corners_in_place(detector):
    video = frames(GRID / "bbaf2n.mpg", 1.2)
    (track,) = track_faces(video, 25.0, detector=detector)
    track = track_landmarks(video, track)
    assert track.presence.min() > 0.5
    lips = track.points[:, list(LIPS_OUTER + LIPS_INNER)]
    x0, y0, x1, y1 = (track.boxes[:, None, j] for j in range(4))
    assert (
        (lips[..., 0] > x0) & (lips[..., 0] < x1) & (lips[..., 1] > y0 + 0.5 * (y1 - y0)) & (lips[..., 1] < y1)
    ).all()
    size = (32, 48)
    a = mouth_transforms(track.points, size)  # crop pixel -> frame pixel; invert it for the corners
    for k, u in zip(MOUTH_CORNERS, MOUTH_CORNER_U):
        p = track.points[:, k] + 0.5 - a[:, :, 2]
        uv = np.linalg.solve(a[:, :, :2], p[..., None])[..., 0]
        assert np.abs(uv[:, 0] - u * size[1]).max() < 0.12 * size[1]
        assert np.abs(uv[:, 1] - MOUTH_CORNER_V * size[0]).max() < 0.12 * size[0]
    crops = aligned_mouths(torch.from_numpy(video), track, size)
    assert crops.shape == (len(video), *size, 3)
    assert crops.float().mean() > 40  # the picture, not the zero padding outside the frame


def test_facemesh_follows_the_drawn_mouths_opening():
    from avlearn.data.manifest import load_annotations, read_manifest

    row = read_manifest(DEMO.parent / "test.jsonl")[1]  # two faces, both talking
    video = frames(Path(row["path"]), 4.0)
    truth = load_annotations(row["annotations"])["mouth_open"][: len(video)]
    tracks = [track_landmarks(video, tr) for tr in track_faces(video, 25.0)]
    for k, tr in enumerate(tracks):
        opening = lip_features(tr.points)[:, 0]
        assert np.isfinite(opening).mean() > 0.95
        ok = np.isfinite(opening)
        assert np.corrcoef(opening[ok], truth[ok, k])[0, 1] > 0.5


@pytest.mark.skipif(not litert_available(), reason="the LiteRT runtime is not installed")
def test_opencv_runs_facemesh_with_the_same_numbers_as_litert():
    video = frames(DEMO / "000001.mp4", 0.04)
    d = FaceDetector().detect(video[0])
    roi = roi_from_points(d.keypoints[0, 0], d.keypoints[0, 1], d.boxes[0])
    (p1, s1), (p2, s2) = FaceMesh("litert")(video[0], roi), FaceMesh("opencv")(video[0], roi)
    assert np.abs(p1 - p2).max() < 0.01 and abs(s1 - s2) < 1e-3


@needs_real
def test_the_manifests_and_face_annotations_are_written(tmp_path):
    from avlearn.data.manifest import read_manifest
    from avlearn.data.real import face_annotations, main

    assert main(["--shared", str(SHARED), "--out", str(tmp_path)]) == 0
    rows = [r for split in SPLITS for r in read_manifest(tmp_path / f"{split}.jsonl")]
    assert len(rows) == len(people_table()) and {r["split"] for r in rows} == set(SPLITS)
    a = face_annotations(REAL_AV / "smeetrs+deep_avsr/audio_only/demo/00006.mp4")  # 0.9 s, 160x160
    assert a["boxes"].shape[1] == 1 and a["points"].shape[1:] == (1, 468, 2) and a["lips"].shape[1:] == (1, 4)
    assert np.isfinite(a["points"]).all() and 0 < a["points"].min() and a["points"].max() < 160
