"""The real clips of ``../shared/real-av`` and ``../shared/real/video`` as a manifest, with who is on screen and
splits that hold out whole people.

A figure on a person the model trained on says nothing about a new user's video, so the unit of a split is
a person, never a clip or a window: ``real_people.tsv`` (beside this module) names the people of every clip,
decided by looking at their frames (some appear in several clips: one GRID speaker twice, one VoxCeleb2-style
interviewee twice, the MEAD man in three EAMM clips, the four people of the MSDWILD car in 25 face tracks).
It holds ids and file names only; the media stay in the shared folder and are read from there.

Splits (:func:`split_people`, seeded): people who share a clip travel together; the clips with ground truth
for evaluation (the MSDWILD car conversation with its speaking / not-speaking tracks, whose sound holds all
four voices; the 3-person talk show with its RTTM; ``../shared/real/video``, the README's real clips) are
all test; every other source group is shuffled by the seed and dealt out per group, ``test`` and ``val``
fractions of its people rounded (at least one each when the group has three people or more; a group of two
gives one to test), the rest train, so each split has GRID, VoxCeleb2-style, LRS2 and long talking heads.

    python -m avlearn.data.real --shared ../shared --out data/real   # data/real/{train,val,test}.jsonl
    python -m avlearn.data.real --shared ../shared --out data/real --annotate   # + faces and lips per frame

``--annotate`` runs the face front-end once over every clip (:func:`face_annotations`) and stores what it
found in ``OUT/annotations/*.npz`` (each row's ``annotations``), so training reads tracks and lip landmarks
instead of detecting them again.
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path
from typing import Any

import numpy as np

from avlearn.data.manifest import save_annotations, write_manifest

PEOPLE_FILE = Path(__file__).with_name("real_people.tsv")
SPLITS = ("train", "val", "test")
EVALUATION_GROUPS = ("msdwild-car", "msdwild-show", "real-video")  # always test: they carry ground truth
DEFAULT_SHARED = Path(__file__).resolve().parents[3] / "shared"
# ../shared/real/video's talking heads (the README of that folder): licence of the repositories they came from
# Clips whose sound is out of sync with their picture as recorded (seconds; positive: the sound is late).
# uncrop_Obama: ../shared/real-av/README.md finds about +6 frames by a lip/energy check, and the peak of the
# cross-correlation of the FaceMesh lip opening with the sound's energy is at +240 ms (r = 0.50, the highest of
# the long clips). Sync training takes its sound that much later, so it learns in-sync pairs.
OWN_OFFSETS_S = {"real-av/video/tanshuai0219+EDTalk/test_data/uncrop_Obama.mp4": 0.24}
_REAL_VIDEO_SOURCE = {
    "talking_head_m1_vfr.mp4": ("OpenTalker/video-retalking", "Apache-2.0 (repo); footage origin not stated"),
    "talking_head_m2.mp4": ("OpenTalker/video-retalking", "Apache-2.0 (repo); footage origin not stated"),
    "talking_head_f1.mp4": ("OpenTalker/SadTalker", "Apache-2.0 (repo); footage origin not stated"),
}


def people_table() -> list[dict[str, Any]]:
    """Rows of ``real_people.tsv``: ``file`` (relative to the shared folder), ``group``, ``people`` (a tuple,
    left to right on screen)."""
    with open(PEOPLE_FILE, newline="") as f:
        lines = [line for line in f if not line.startswith("#")]
    return [
        {"file": r["file"], "group": r["group"], "people": tuple(r["people"].split(","))}
        for r in csv.DictReader(lines, delimiter="\t")
    ]


def _units(rows: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """People who share a clip, joined (union-find), each unit sorted, in order of first appearance."""
    parent: dict[str, str] = {}

    def root(p: str) -> str:
        while parent.setdefault(p, p) != p:
            p = parent[p]
        return p

    for r in rows:
        for p in r["people"][1:]:
            parent[root(p)] = root(r["people"][0])
    units: dict[str, list[str]] = {}
    for r in rows:
        for p in r["people"]:
            units.setdefault(root(p), [])
            if p not in units[root(p)]:
                units[root(p)].append(p)
    return [tuple(sorted(u)) for u in units.values()]


def split_people(seed: int = 0, val: float = 0.15, test: float = 0.15) -> dict[str, str]:
    """``{person: split}``: every person in exactly one of train / val / test (see the module docstring)."""
    rows = people_table()
    out: dict[str, str] = {}
    for group in sorted({r["group"] for r in rows}):
        units = _units([r for r in rows if r["group"] == group])
        if group in EVALUATION_GROUPS:
            out.update({p: "test" for u in units for p in u})
            continue
        random.Random(f"{seed}:{group}").shuffle(units)
        n = len(units)
        n_test = max(1, round(test * n)) if n >= 2 else 0
        n_val = max(1, round(val * n)) if n >= 3 else 0
        for i, unit in enumerate(units):
            split = "test" if i < n_test else "val" if i < n_test + n_val else "train"
            out.update({p: split for p in unit})
    return out


def _real_av_info(shared: Path) -> dict[str, dict[str, str]]:
    path = shared / "real-av" / "MANIFEST.tsv"
    with open(path, newline="") as f:
        return {"real-av/" + r["file"]: r for r in csv.DictReader(f, delimiter="\t")}


def real_manifest(shared: str | Path = DEFAULT_SHARED, seed: int = 0) -> list[dict[str, Any]]:
    """Manifest rows (:mod:`avlearn.data.manifest`) of the real clips present under ``shared``, whole clips,
    with ``split`` from :func:`split_people` and ``meta`` = group, people, kind, source, licence.

    Raises:
        FileNotFoundError: ``shared`` holds neither ``real-av`` nor ``real/video``.
    """
    from avlearn.io import probe

    shared = Path(shared).resolve()  # the manifest stores paths relative to itself, not to where this ran
    if not (shared / "real-av").is_dir() and not (shared / "real" / "video").is_dir():
        raise FileNotFoundError(f"{shared}: no real-av/ or real/video/ folder there (the shared real clips)")
    info = _real_av_info(shared) if (shared / "real-av" / "MANIFEST.tsv").is_file() else {}
    splits = split_people(seed)
    rows = []
    for r in people_table():
        path = shared / r["file"]
        if not path.is_file():
            continue
        if r["file"] in info:
            m = info[r["file"]]
            duration, kind, source, licence = float(m["duration_s"]), m["kind"], m["source"], m["repo_licence"]
        else:
            duration, kind = probe(path).duration, "speech"
            source, licence = _REAL_VIDEO_SOURCE[path.name]
        people = r["people"]
        rows.append(
            {
                "path": str(path),
                "start": 0.0,
                "end": round(duration, 3),
                "id": r["file"],
                "split": splits[people[0]],
                "meta": {
                    "group": r["group"],
                    "people": list(people),
                    "kind": kind,
                    "source": source,
                    "licence": licence,
                    **({"av_offset_s": OWN_OFFSETS_S[r["file"]]} if r["file"] in OWN_OFFSETS_S else {}),
                },
            }
        )
    return rows


def face_annotations(path: str | Path, fps: float = 25.0, max_short_side: int | None = None) -> dict[str, np.ndarray]:
    """Faces and lips of every frame of a clip (at ``fps``), in the clip's own pixels, for ``save_annotations``.

    The clip is read as ``avlearn separate`` reads it (short side at most ``max_short_side``, default
    :data:`avlearn.video.faces.FACE_SHORT_SIDE`) and goes through
    :func:`avlearn.video.faces.track_faces` and :func:`avlearn.video.faces.track_landmarks`. Arrays, ``K``
    tracks left to right: ``boxes (T, K, 4)`` face boxes, ``points (T, K, 468, 2)`` FaceMesh points (float16,
    NaN where not found), ``presence (T, K)``, ``lips (T, K, 4)`` :func:`avlearn.video.landmarks.lip_features`,
    ``fps``.
    """
    from avlearn.io import probe, read_clip
    from avlearn.video.faces import FACE_SHORT_SIDE, face_read_size, track_faces, track_landmarks
    from avlearn.video.landmarks import lip_features

    info = probe(path)
    size, scale = face_read_size(min(info.video.display_size), max_short_side or FACE_SHORT_SIDE)
    clip = read_clip(path, 0.0, info.duration, fps=fps, size=size, audio=False)
    video = clip.video[:, : clip.video_end].permute(1, 2, 3, 0).numpy()
    tracks = [track_landmarks(video, tr) for tr in track_faces(video, fps)]
    t, k = len(video), len(tracks)
    return {
        "boxes": np.stack([tr.boxes * scale for tr in tracks], 1) if k else np.zeros((t, 0, 4), np.float32),
        "points": (np.stack([tr.points for tr in tracks], 1) * scale if k else np.zeros((t, 0, 468, 2))).astype(
            np.float16
        ),
        "presence": np.stack([tr.presence for tr in tracks], 1) if k else np.zeros((t, 0), np.float32),
        "lips": np.stack([lip_features(tr.points) for tr in tracks], 1) if k else np.zeros((t, 0, 4), np.float32),
        "fps": np.array(fps),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Manifests of the shared real clips, split by person.")
    parser.add_argument("--shared", default=str(DEFAULT_SHARED), help="the folder holding real-av/ and real/")
    parser.add_argument("--out", required=True, help="folder for train.jsonl, val.jsonl, test.jsonl")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--annotate", action="store_true", help="store faces and lip landmarks per frame too")
    args = parser.parse_args(argv)
    rows = real_manifest(args.shared, args.seed)
    if args.annotate:
        for row in rows:
            name = row["id"].replace("/", "+").rsplit(".", 1)[0] + ".npz"
            row["annotations"] = str(
                save_annotations(Path(args.out).resolve() / "annotations" / name, face_annotations(row["path"]))
            )
    for split in SPLITS:
        part = [r for r in rows if r["split"] == split]
        write_manifest(Path(args.out) / f"{split}.jsonl", part)
        people = sorted({p for r in part for p in r["meta"]["people"]})
        minutes = sum(r["end"] - r["start"] for r in part) / 60
        print(f"{split}: {len(part)} clips, {minutes:.1f} min, {len(people)} people")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
