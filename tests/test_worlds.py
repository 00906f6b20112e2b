"""The synthetic worlds: determinism, manifest schema, held-out identities, and ground truth that matches the media.

Renders a handful of short clips once per module (a few seconds on 2 cores) and checks the written files
(decoded mp4 audio and frames) against the annotations.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from avlearn.data.manifest import load_annotations, read_manifest
from avlearn.data.synth import synthesize
from avlearn.data.worlds import WorldConfig, actions, common, get_world, instruments, speakers
from avlearn.io import read_audio, read_clip

pytestmark = pytest.mark.timeout(240)

FPS, SR = 25, 16000


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, tuple[Path, list[dict]]]:
    out = tmp_path_factory.mktemp("worlds")
    sets = {
        "instruments": dict(num_clips=4, split="train", config=WorldConfig()),
        "speakers": dict(num_clips=3, split="test", config=WorldConfig()),
        "actions": dict(num_clips=1, split="train", config=WorldConfig(duration=12.0)),
    }
    result = {}
    for world, kw in sets.items():
        synthesize(world, out / world, kw["num_clips"], seed=3, split=kw["split"], config=kw["config"], workers=0)
        manifest = out / world / f"{kw['split']}.jsonl"
        result[world] = (manifest, read_manifest(manifest))
    return result


def _decoded_audio(row: dict) -> np.ndarray:
    wav, sr = read_audio(row["path"], sample_rate=SR)
    assert sr == SR
    return wav[0].numpy()


def _stem(row: dict, k: int) -> np.ndarray:
    return soundfile.read(row["sources"][k]["stem"], dtype="float32")[0]


# ------------------------------------------------------------------------------------------------- generic


@pytest.mark.parametrize("world", ["instruments", "speakers", "actions"])
def test_manifest_schema_and_files(rendered, world):
    manifest, rows = rendered[world]
    assert rows, "no rows written"
    for row in rows:
        assert {"id", "path", "start", "end", "world", "split", "labels", "sources", "annotations"} <= row.keys()
        assert row["world"] == world and Path(row["path"]).is_file() and Path(row["annotations"]).is_file()
        for src in row["sources"]:
            assert src["stem"] is None or Path(src["stem"]).is_file()
    for line in manifest.read_text().splitlines():  # paths are stored relative, so the folder can move
        raw = json.loads(line)
        assert not Path(raw["path"]).is_absolute()


@pytest.mark.parametrize("world", ["instruments", "speakers", "actions"])
def test_mixture_is_the_sum_of_the_stems(rendered, world):
    _, rows = rendered[world]
    row = rows[0]
    mix = _decoded_audio(row)
    stems = [_stem(row, k) for k, s in enumerate(row["sources"]) if s["stem"]]
    stems.append(soundfile.read(row["background_stem"], dtype="float32")[0])
    total = np.sum(stems, axis=0)
    n = min(len(mix), len(total))
    err = mix[:n] - total[:n]
    snr = 10 * np.log10(np.sum(total[:n] ** 2) / np.sum(err**2))
    assert snr > 15, f"decoded mixture differs from the sum of stems (SNR {snr:.1f} dB)"


def test_same_seed_same_manifest_and_audio(tmp_path):
    """Two runs with the same seed, one inline and one with 2 worker processes, give identical outputs."""
    cfg = WorldConfig(duration=1.0)
    synthesize("instruments", tmp_path / "a", 2, seed=7, config=cfg, workers=0)
    synthesize("instruments", tmp_path / "b", 2, seed=7, config=cfg, workers=2)
    assert (tmp_path / "a/train.jsonl").read_text() == (tmp_path / "b/train.jsonl").read_text()
    for name in ("000000.mp4", "000001.mp4"):
        wa, _ = read_audio(tmp_path / "a/train" / name)
        wb, _ = read_audio(tmp_path / "b/train" / name)
        assert torch.equal(wa, wb)
    synthesize("instruments", tmp_path / "c", 2, seed=8, config=cfg, workers=0)
    assert (tmp_path / "a/train.jsonl").read_text() != (tmp_path / "c/train.jsonl").read_text()


def test_render_is_a_pure_function():
    cfg = WorldConfig(duration=1.0, size=96)
    for world in ("instruments", "speakers"):
        a = get_world(world).render(5, 1, "val", cfg)
        b = get_world(world).render(5, 1, "val", cfg)
        assert np.array_equal(a.video, b.video) and np.array_equal(a.mix, b.mix) and a.row == b.row


# ------------------------------------------------------------------------------------------- held-out ids


def test_identities_are_disjoint_across_splits():
    for a, b in [("train", "test"), ("train", "val"), ("val", "test")]:
        assert not set(speakers.voices(a)) & set(speakers.voices(b))
        assert not set(speakers.flite_voices(a)) & set(speakers.flite_voices(b))
        va, vb = speakers.vocabulary(a), speakers.vocabulary(b)
        for key in ("noun", "adj", "verb", "name"):
            assert not set(map(str, va[key])) & set(map(str, vb[key])), key
    for s in ("train", "val", "test"):
        assert speakers.voices(s) and all(speakers.vocabulary(s).values())
    for c in range(len(instruments.CATEGORIES)):
        splits = [instruments.appearance_split(c, v) for v in range(instruments.NUM_VARIANTS)]
        assert sorted(splits) == ["test", "train", "train", "val"]
    for a in range(len(actions.ACTION_NAMES)):
        assert sorted(actions.variant_split(a, v) for v in range(actions.NUM_VARIANTS)) == [
            "test",
            "train",
            "train",
            "val",
        ]


def test_test_split_uses_only_test_identities(rendered):
    _, rows = rendered["speakers"]
    vocab = speakers.vocabulary("test")
    test_words = set(vocab["noun"]) | set(vocab["adj"]) | set(vocab["name"]) | {f for v in vocab["verb"] for f in v}
    for row in rows:
        for src in row["sources"]:
            if src["sounding"]:
                name = src["voice"]["name"]
                assert name in speakers.flite_voices("test") or name.split("+")[1] in speakers.voices("test")
                content = {
                    w
                    for w in src["transcript"].replace(".", " ").split()
                    if w not in {"the", "a", "my", "is", "please", "will", "why", "did", "it"}
                }
                assert content <= test_words


def test_instruments_use_only_their_splits_appearances_and_notes():
    cfg = WorldConfig(duration=1.0, size=48)
    for split in ("train", "test"):
        for i in range(6):
            for src in instruments.render(i, 0, split, cfg).row["sources"]:
                c = instruments.CATEGORY_NAMES.index(src["label"])
                assert instruments.appearance_split(c, src["appearance"]["variant"]) == split
                low = instruments.CATEGORIES[c][2]
                steps = [instruments.SCALE_STEPS.index(n - low) for n in src["notes"]]
                assert all(instruments.note_split(s) == split for s in steps)


# ------------------------------------------------------------------------------------------- instruments


def test_instruments_stem_holds_the_onsets(rendered):
    """At each annotated onset the sounding object's stem starts a note, and the decoded mixture has it there."""
    _, rows = rendered["instruments"]
    checked, rises = 0, []
    for row in rows:
        mix = _decoded_audio(row)
        for k, src in enumerate(row["sources"]):
            if not src["sounding"]:
                assert src["stem"] is None and src["onsets"] == []
                continue
            stem = _stem(row, k)
            assert len(src["onsets"]) >= 2, "a sounding object with fewer than 2 notes in a 2 s clip"
            assert np.abs(stem[: int(src["onsets"][0] * SR)]).max() < 1e-3, "sound before the first onset"
            for onset in src["onsets"]:
                i = int(round(onset * SR))
                before, after = stem[max(0, i - 160) : i], stem[i : i + 320]
                assert np.abs(after).max() > 0.05
                # a note starts here: louder right after the onset than right before it (earlier notes may ring on)
                rises.append(np.sqrt(np.mean(after**2)) > 1.5 * np.sqrt(np.mean(before**2) + 1e-12))
                seg_mix, seg_stem = mix[i : i + 800], stem[i : i + 800]
                # the mixture holds this stem: its projection on the stem is close to 1
                gain = float(seg_mix @ seg_stem) / float(seg_stem @ seg_stem)
                assert 0.6 < gain < 1.4, f"{src['label']} onset {onset}: mixture gain on the stem {gain:.2f}"
                checked += 1
    assert checked >= 4 and np.mean(rises) > 0.9


def test_instruments_boxes_cover_rendered_objects(monkeypatch):
    """Pixels that change when objects are drawn lie inside the annotated boxes; masks match boxes."""
    cfg = WorldConfig(duration=0.4)
    clip = instruments.render(2, 0, "train", cfg)
    monkeypatch.setattr(common, "fill_poly", lambda *a, **k: None)  # same clip, objects not drawn
    bare = instruments.render(2, 0, "train", cfg)
    changed = np.abs(clip.video.astype(int) - bare.video.astype(int)).max(-1) > 20  # (T, H, W)
    boxes, masks = clip.arrays["boxes"], clip.arrays["masks"]
    inside = np.zeros_like(changed)
    for f in range(len(changed)):
        for k in range(boxes.shape[1]):
            x0, y0, x1, y1 = boxes[f, k].astype(int)
            inside[f, max(0, y0 - 1) : y1 + 1, max(0, x0 - 1) : x1 + 1] = True
            assert np.array_equal(common.box_of_mask(masks[f, k]), boxes[f, k])
            assert changed[f][masks[f, k]].mean() > 0.7, "a mask covers pixels where nothing was drawn"
    assert changed.sum() > 0 and (changed & ~inside).sum() / changed.sum() < 0.01


def test_instruments_visible_event_at_onsets(rendered):
    """A sounding object flashes on each onset: it is brighter in the decoded frame than 120 ms earlier."""
    _, rows = rendered["instruments"]
    votes = []
    for row in rows:
        ann = load_annotations(row["annotations"])
        clip = read_clip(row["path"], 0.0, row["end"])
        video = clip.video.float().mean(0).numpy()  # (T, H, W)
        for k, src in enumerate(row["sources"]):
            for onset in src["onsets"]:
                f = int(np.ceil(onset * FPS))
                if f - 3 < 0 or f >= len(video) or not ann["masks"][f, k].any() or not ann["masks"][f - 3, k].any():
                    continue
                votes.append(video[f][ann["masks"][f, k]].mean() > video[f - 3][ann["masks"][f - 3, k]].mean())
    assert len(votes) >= 4 and np.mean(votes) > 0.8


# ---------------------------------------------------------------------------------------------- speakers


def test_speakers_mouth_follows_speech(rendered):
    """The annotated mouth opening correlates with the speaker's speech envelope, and the decoded picture shows it."""
    _, rows = rendered["speakers"]
    corrs, visible = [], []
    for row in rows:
        ann = load_annotations(row["annotations"])
        clip = read_clip(row["path"], 0.0, row["end"])
        gray = clip.video.float().mean(0).numpy()
        for k, src in enumerate(row["sources"]):
            opening = ann["mouth_open"][:, k]
            # darkness inside the annotated mouth box in the decoded frames
            dark = []
            for f in range(len(opening)):
                x0, y0, x1, y1 = ann["mouth_boxes"][f, k].astype(int)
                dark.append((gray[f, y0:y1, x0:x1] < 60).mean() if x1 > x0 and y1 > y0 else 0.0)
            if opening.std() > 0.05:
                visible.append(np.corrcoef(opening, dark)[0, 1])
            if not src["sounding"]:
                continue
            stem = _stem(row, k)
            hop = SR // FPS
            env = np.array([np.sqrt(np.mean(stem[f * hop : (f + 1) * hop] ** 2)) for f in range(len(opening))])
            corrs.append(np.corrcoef(opening, env)[0, 1])
            assert src["phonemes"] and src["transcript"]
            assert src["words"] or src["voice"]["name"].startswith("flite:")  # flite reports phones, not words
            starts = [p["start"] for p in src["phonemes"]]
            assert starts == sorted(starts) and all(0 <= s < row["end"] for s in starts)
    assert corrs and min(corrs) > 0.3, f"mouth vs speech envelope correlations {corrs}"
    assert visible and np.mean(visible) > 0.5, f"mouth opening vs dark pixels in the mouth box {visible}"


def test_speakers_faces_found_by_haar_cascade(rendered):
    from avlearn.data.worlds.face_check import face_hit_rate

    _, rows = rendered["speakers"]
    stats = face_hit_rate(rows, every=2)
    assert stats["face_rate"] >= 0.9, stats


def test_speakers_boxes_cover_faces(monkeypatch):
    cfg = WorldConfig(duration=0.4)
    clip = speakers.render(1, 0, "train", cfg)
    monkeypatch.setattr(common, "fill_ellipse", lambda *a, **k: None)
    monkeypatch.setattr(common, "draw_line", lambda *a, **k: None)
    bare = speakers.render(1, 0, "train", cfg)
    changed = np.abs(clip.video.astype(int) - bare.video.astype(int)).max(-1) > 20
    for f in range(len(changed)):
        for box, mouth in zip(clip.arrays["boxes"][f], clip.arrays["mouth_boxes"][f]):
            x0, y0, x1, y1 = box.astype(int)
            assert changed[f, y0:y1, x0:x1].mean() > 0.8  # the face fills its box
            assert box[0] <= mouth[0] and mouth[2] <= box[2] and box[1] <= mouth[1] and mouth[3] <= box[3]


# ----------------------------------------------------------------------------------------------- actions


def test_actions_segments_and_sounds(rendered):
    _, rows = rendered["actions"]
    row = rows[0]
    assert row["end"] == pytest.approx(12.0)
    segs = row["segments"]
    assert segs and all(s["label"] in actions.ACTION_NAMES for s in segs)
    assert row["labels"] == [segs[0]["label"]] and all(s["label"] == segs[0]["label"] for s in segs)
    assert all(a["end"] <= b["start"] for a, b in zip(segs, segs[1:])), "segments overlap"
    stem = _stem(row, 0)
    inside = np.zeros(len(stem), bool)
    for s in segs:
        inside[int(s["start"] * SR) : int((s["end"] + 1.2) * SR)] = True  # +1.2 s: the last strike's ring
    assert np.abs(stem[~inside]).max() < 1e-4, "action sounds outside the labelled segments"
    onsets = row["sources"][0]["onsets"]
    assert onsets and all(any(s["start"] <= t <= s["end"] for s in segs) for t in onsets)
    ann = load_annotations(row["annotations"])
    assert ann["boxes"].shape == (int(12.0 * FPS), 1, 4) and ann["keypoints"].shape[1] == len(actions.KEYPOINTS)


def test_actions_default_duration_is_untrimmed():
    rng_durations = [actions.render(i, 0, "val", WorldConfig(size=64)).row["meta"]["duration"] for i in range(2)]
    assert all(20 <= d <= 60 for d in rng_durations)


# ------------------------------------------------------------------------------------------- cli + sheet


def test_cli_writes_world_and_contact_sheet(tmp_path):
    from avlearn.cli import main

    code = main(
        [
            "synth",
            "speakers",
            "--out",
            str(tmp_path),
            "--num-clips",
            "1",
            "--duration",
            "1",
            "--workers",
            "0",
            "--split",
            "val",
            "--contact-sheet",
            "--quiet",
        ]
    )
    assert code == 0
    assert (tmp_path / "val.jsonl").is_file() and (tmp_path / "val" / "000000.mp4").is_file()
    import cv2

    sheet = cv2.imread(str(tmp_path / "val_contact.png"))
    assert sheet is not None and sheet.shape[0] > 100 and sheet.shape[1] > 400
    # --start-index extends the manifest instead of replacing it
    assert (
        main(
            [
                "synth",
                "speakers",
                "--out",
                str(tmp_path),
                "--num-clips",
                "1",
                "--duration",
                "1",
                "--workers",
                "0",
                "--split",
                "val",
                "--start-index",
                "1",
                "--quiet",
            ]
        )
        == 0
    )
    assert [r["meta"]["index"] for r in read_manifest(tmp_path / "val.jsonl")] == [0, 1]
    assert main(["synth", "speakers", "--out", str(tmp_path), "--num-clips", "0"]) == 1
