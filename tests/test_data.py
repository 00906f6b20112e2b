"""The dataset layer: manifest schema, datasets and clip samplers, missing files, DataLoader workers, adapters."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from avlearn.data import (
    Draw,
    EpochShuffle,
    ManifestDataset,
    ManifestError,
    RandomClipSampler,
    SlidingWindowSampler,
    UniformClipSampler,
    adapters,
    collate,
    read_manifest,
    validate_row,
    write_manifest,
)
from avlearn.io import write_video

pytestmark = pytest.mark.timeout(180)

FPS, SR = 25, 16000


def _clip(path: Path, seconds: float = 2.0, size: int = 32, tone: float = 440.0) -> Path:
    """A tiny mp4: frames whose brightness counts up, and a sine tone."""
    t = int(seconds * FPS)
    video = np.broadcast_to(np.linspace(0, 250, t, dtype=np.uint8)[None, :, None, None], (3, t, size, size)).copy()
    audio = 0.3 * np.sin(2 * np.pi * tone * np.arange(int(seconds * SR)) / SR)[None].astype(np.float32)
    write_video(path, video, FPS, audio, SR)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clips")
    for i in range(3):
        _clip(root / f"clip{i}.mp4")
    rows = [
        {"path": f"clip{i}.mp4", "start": 0.0, "end": 2.0, "label": lab} for i, lab in enumerate(["dog", "cat", "dog"])
    ]
    write_manifest(root / "m.jsonl", [{**r, "path": str(root / r["path"])} for r in rows])
    return root


# ------------------------------------------------------------------------------------------------ manifest


def test_manifest_round_trip_with_relative_paths(tmp_path):
    rows = [
        {
            "path": str(tmp_path / "a.mp4"),
            "start": 0.0,
            "end": 2.0,
            "labels": ["x"],
            "annotations": str(tmp_path / "a.npz"),
            "sources": [{"index": 0, "stem": str(tmp_path / "a.s0.flac")}, {"index": 1, "stem": None}],
        },
        {
            "path": "/elsewhere/b.mp4",
            "start": 1.5,
            "end": 4.0,
            "label": "y",
            "segments": [{"label": "y", "start": 2, "end": 3}],
        },
    ]
    write_manifest(tmp_path / "m.jsonl", rows)
    raw = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert raw[0]["path"] == "a.mp4" and raw[0]["sources"][0]["stem"] == "a.s0.flac"
    assert raw[1]["path"] == "/elsewhere/b.mp4" and raw[1]["labels"] == ["y"]
    back = read_manifest(tmp_path / "m.jsonl")
    assert back[0]["path"] == str(tmp_path / "a.mp4") and back[0]["annotations"] == str(tmp_path / "a.npz")
    assert back[0]["sources"][1]["stem"] is None


@pytest.mark.parametrize(
    "row, message",
    [
        ({"start": 0, "end": 1}, "missing required field 'path'"),
        ({"path": "a.mp4", "start": 2, "end": 1}, "start < end"),
        ({"path": "a.mp4", "start": "0", "end": 1}, "'start' must be a number"),
        ({"path": "a.mp4", "start": 0, "end": 1, "labels": [1]}, "list of strings"),
        ({"path": "a.mp4", "start": 0, "end": 1, "segments": [{"label": "a"}]}, "segments[0]"),
        ({"path": "a.mp4", "start": 0, "end": 1, "fps": "25"}, "'fps' must be"),
    ],
)
def test_manifest_validation_errors(row, message):
    with pytest.raises(ManifestError, match=message.replace("[", r"\[").replace("]", r"\]")):
        validate_row(row)


def test_manifest_error_names_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"path": "a.mp4", "start": 0, "end": 1}\n{"path": "b.mp4", "start": 0}\n')
    with pytest.raises(ManifestError, match=r"bad.jsonl:2: missing required field 'end'"):
        read_manifest(path)
    path.write_text("not json\n")
    with pytest.raises(ManifestError, match="not valid JSON"):
        read_manifest(path)


# ------------------------------------------------------------------------------------------------ samplers


def test_clip_samplers():
    assert UniformClipSampler(1.0, 3).starts(0.0, 5.0) == [0.0, 2.0, 4.0]
    assert UniformClipSampler(1.0).starts(0.0, 5.0) == [2.0]
    assert SlidingWindowSampler(2.0, 1.0).starts(0.0, 5.5) == [0.0, 1.0, 2.0, 3.0, 3.5]
    assert SlidingWindowSampler(2.0, 1.0).starts(0.0, 1.0) == [0.0]
    g = torch.Generator().manual_seed(0)
    draws = [RandomClipSampler(1.0).draw(1.0, 4.0, g) for _ in range(50)]
    assert min(draws) >= 1.0 and max(draws) <= 3.0 and np.std(draws) > 0.3


# ------------------------------------------------------------------------------------------------ datasets


def test_dataset_items_and_labels(clips):
    ds = ManifestDataset(clips / "m.jsonl", clip_sampler=UniformClipSampler(1.0, 2))
    assert len(ds) == 6 and ds.labels == ["cat", "dog"]
    item = ds[3]  # second row, second window
    assert item["video"].shape == (25, 32, 32, 3) and item["video"].dtype == torch.uint8
    assert item["audio"].shape == (SR,) and item["audio"].dtype == torch.float32
    assert item["label"].item() == 0 and item["start"] == pytest.approx(1.0) and item["index"] == 1
    # the window really starts at 1 s: brightness counts up over the clip's 50 frames
    assert abs(float(item["video"][0, ..., 0].float().mean()) - 250 * 25 / 49) < 8
    multi = ManifestDataset(clips / "m.jsonl", multi_label=True, fps=5, size=16)
    assert multi[0]["label"].tolist() == [0.0, 1.0] and multi[0]["video"].shape == (10, 16, 16, 3)


def test_missing_files_are_counted_and_skipped(clips, tmp_path):
    rows = read_manifest(clips / "m.jsonl")
    rows.insert(1, {"path": str(tmp_path / "gone.mp4"), "start": 0.0, "end": 2.0, "labels": ["cat"]})
    (tmp_path / "broken.mp4").write_bytes(b"this is not an mp4 file" * 100)
    rows.append({"path": str(tmp_path / "broken.mp4"), "start": 0.0, "end": 2.0, "labels": ["cat"]})
    with pytest.warns(UserWarning, match="skipped 1 of 5 rows whose file is missing"):
        ds = ManifestDataset(rows, clip_sampler=RandomClipSampler(1.0))
    assert ds.num_missing == 1 and len(ds) == 4
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        items = [ds[i] for i in range(len(ds))]  # the broken file is replaced by the next readable item
    assert ds.num_failed == 1 and any("unreadable" in str(w.message) for w in caught)
    assert all(it["video"].shape == (25, 32, 32, 3) for it in items)


def test_dataloader_with_workers(clips):
    ds = ManifestDataset(clips / "m.jsonl", clip_sampler=SlidingWindowSampler(1.0, 0.5))
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2, collate_fn=collate)
    batches = list(loader)
    assert sum(len(b["index"]) for b in batches) == len(ds) == 9
    assert batches[0]["video"].shape == (3, 25, 32, 32, 3) and batches[0]["audio"].shape == (3, SR)
    assert isinstance(batches[0]["path"], list)


def test_random_windows_are_a_function_of_seed_epoch_and_index(clips):
    """Workers draw each epoch's windows from the sampler's keys, so epochs differ and a rerun repeats them."""
    ds = ManifestDataset(clips / "m.jsonl", clip_sampler=RandomClipSampler(1.0), video=False, seed=4)
    sampler = EpochShuffle(len(ds), seed=4)
    loader = torch.utils.data.DataLoader(
        ds, sampler=sampler, num_workers=2, persistent_workers=True, collate_fn=collate
    )
    starts = []
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        starts.append({int(b["index"][0]): float(b["start"][0]) for b in loader})
    assert starts[0] != starts[1]
    assert all(starts[1][i] == pytest.approx(ds[Draw(i, 1)]["start"]) for i in starts[1])


def test_collate_keeps_ragged_fields_as_lists():
    batch = [
        {"boxes": torch.zeros(5, 2, 4), "x": torch.ones(3), "n": 1},
        {"boxes": torch.zeros(5, 3, 4), "x": torch.ones(3), "n": 2},
    ]
    out = collate(batch)
    assert isinstance(out["boxes"], list) and out["x"].shape == (2, 3) and out["n"].tolist() == [1, 2]


def test_dataset_on_a_synthetic_world(tmp_path):
    """Stems, boxes and masks come out aligned with the window and scaled with the frames."""
    from avlearn.data.synth import synthesize
    from avlearn.data.worlds import WorldConfig

    synthesize("instruments", tmp_path, 1, seed=1, config=WorldConfig(duration=1.0, size=64), workers=0)
    ds = ManifestDataset(
        tmp_path / "train.jsonl",
        clip_sampler=UniformClipSampler(0.4, 1),
        size=32,
        with_sources=True,
        with_annotations=True,
    )
    item = ds[0]
    k = len(read_manifest(tmp_path / "train.jsonl")[0]["sources"])
    assert item["sources"].shape == (k, int(0.4 * SR)) and item["sounding"].shape == (k,)
    assert item["boxes"].shape == (10, k, 4) and item["masks"].shape == (10, k, 32, 32)
    assert float(np.nanmax(item["boxes"].numpy())) <= 32
    mix = item["audio"]
    total = item["sources"].sum(0)
    assert torch.corrcoef(torch.stack([mix, total]))[0, 1] > 0.9


def test_dataset_segments_frame_labels(tmp_path):
    _clip(tmp_path / "long.mp4", seconds=4.0)
    row = {
        "path": str(tmp_path / "long.mp4"),
        "start": 0.0,
        "end": 4.0,
        "segments": [{"label": "jump", "start": 1.0, "end": 2.0}, {"label": "clap", "start": 3.0, "end": 3.5}],
    }
    ds = ManifestDataset([row], clip_sampler=SlidingWindowSampler(2.0, 2.0))
    assert ds.labels == ["clap", "jump"]
    first, second = ds[0], ds[1]
    assert first["frame_label"].tolist() == [-1] * 25 + [1] * 25
    assert second["segments"].tolist() == [[0.0, 1.0, 1.5]]


# ------------------------------------------------------------------------------------------------ adapters


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """One short mp4 reused under every layout."""
    return _clip(tmp_path_factory.mktemp("tiny") / "tiny.mp4", seconds=0.4, size=16)


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(src.read_bytes())


def test_vggsound_adapter(tiny, tmp_path):
    with open(tmp_path / "vggsound.csv", "w", newline="") as f:
        csv.writer(f).writerows(
            [
                ["---g-f_I2yQ", 1, "people marching", "test"],
                ["--0PQM4-hqg", 30, "waterfall burbling", "train"],
                ["--56QUhyDQM", 185, "playing tennis", "train"],
            ]
        )
    _copy(tiny, tmp_path / "video/---g-f_I2yQ_000001.mp4")  # a 10 s cut
    _copy(tiny, tmp_path / "video/--0PQM4-hqg.mp4")  # the whole video: the row keeps the window
    rows, report = adapters.vggsound(tmp_path / "vggsound.csv", tmp_path)
    assert report.found == 2 and report.missing == ["--56QUhyDQM_185"] and "1 missing" in str(report)
    assert rows[0]["start"] == 0.0 and rows[0]["end"] == 10.0 and rows[0]["labels"] == ["people marching"]
    assert rows[1]["start"] == 30.0 and rows[1]["end"] == 40.0 and rows[1]["split"] == "train"
    write_manifest(tmp_path / "m.jsonl", rows)
    assert len(read_manifest(tmp_path / "m.jsonl")) == 2


def test_audioset_adapter(tiny, tmp_path):
    (tmp_path / "segments.csv").write_text(
        "# Segments csv created Sun Mar  5 10:54:31 2017\n# num_ytids=2, num_segs=2, num_pos_labels=3\n"
        "# YTID, start_seconds, end_seconds, positive_labels\n"
        '--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/t/dd00088"\n--ZhevVpy1s, 50.000, 60.000, "/m/012xff"\n'
    )
    (tmp_path / "class_labels_indices.csv").write_text(
        'index,mid,display_name\n0,/m/09x0r,"Speech"\n1,/t/dd00088,"Gush"\n'
    )
    _copy(tiny, tmp_path / "audio/--PJHxphWEs_30_40.mp4")
    rows, report = adapters.audioset(
        tmp_path / "segments.csv", tmp_path, class_labels=tmp_path / "class_labels_indices.csv"
    )
    assert report.found == 1 and report.missing == ["--ZhevVpy1s_50_60"]
    assert rows[0]["labels"] == ["Speech", "Gush"] and rows[0]["end"] == 10.0


def test_kinetics_adapter(tiny, tmp_path):
    _copy(tiny, tmp_path / "train/abseiling/0347ZoDXyP0_000095_000105.mp4")
    _copy(tiny, tmp_path / "train/air drumming/03V2idM7_KY_000003_000013.mp4")
    (tmp_path / "train/air drumming/broken.mp4").write_bytes(b"nope")
    rows, report = adapters.kinetics(tmp_path, split="train")
    assert [r["labels"] for r in rows] == [["abseiling"], ["air drumming"]] and len(report.missing) == 1
    assert rows[0]["meta"] == {"youtube_id": "0347ZoDXyP0", "time_start": 95, "time_end": 105}
    assert rows[0]["end"] == pytest.approx(0.4, abs=0.05)


def test_music_adapter(tiny, tmp_path):
    (tmp_path / "MUSIC_solo_videos.json").write_text(
        json.dumps({"videos": {"accordion": ["-CZ6abc1234", "gone0000000"], "acoustic_guitar violin": ["dUeT0000000"]}})
    )
    _copy(tiny, tmp_path / "solo/accordion/-CZ6abc1234.mp4")
    _copy(tiny, tmp_path / "duet/dUeT0000000.mp4")
    rows, report = adapters.music(tmp_path / "MUSIC_solo_videos.json", tmp_path)
    assert report.missing == ["accordion/gone0000000"]
    assert sorted(tuple(r["labels"]) for r in rows) == [("accordion",), ("acoustic_guitar", "violin")]


def test_avspeech_and_voxceleb2_adapters(tiny, tmp_path):
    (tmp_path / "avspeech_test.csv").write_text(
        "AvWWVOgaMlk,90.000000,93.566667,0.586719,0.311111\nmissing0000,1.0,3.0,0.5,0.5\n"
    )
    _copy(tiny, tmp_path / "clips/AvWWVOgaMlk_90_93.566667.mp4")
    rows, report = adapters.avspeech(tmp_path / "avspeech_test.csv", tmp_path / "clips")
    assert report.found == 1 and rows[0]["sources"][0]["face_center"] == [0.586719, 0.311111]
    assert rows[0]["end"] == pytest.approx(3.566667)
    _copy(tiny, tmp_path / "vox/dev/mp4/id00012/21Uxsk56VDQ/00001.mp4")
    _copy(tiny, tmp_path / "vox/dev/mp4/id00015/0fijmz4vTVU/00002.mp4")
    rows, report = adapters.voxceleb2(tmp_path / "vox")
    assert [r["labels"] for r in rows] == [["id00012"], ["id00015"]] and rows[0]["split"] == "dev"
    assert rows[0]["id"] == "id00012/21Uxsk56VDQ/00001"


def test_adapter_command_line(tiny, tmp_path):
    _copy(tiny, tmp_path / "k/jumping/abc.mp4")
    assert adapters.main(["kinetics", "--root", str(tmp_path / "k"), "--out", str(tmp_path / "k.jsonl")]) == 0
    assert read_manifest(tmp_path / "k.jsonl")[0]["labels"] == ["jumping"]


def test_contact_sheet_of_clips_of_any_size(clips, tmp_path):
    import cv2

    from avlearn.data.contact_sheet import write_contact_sheet

    t = 10
    write_video(tmp_path / "wide.mp4", np.zeros((3, t, 48, 96), np.uint8), FPS, np.zeros((1, 6400), np.float32), SR)
    rows = read_manifest(clips / "m.jsonl")[:1] + [{"path": str(tmp_path / "wide.mp4"), "start": 0.0, "end": 0.4}]
    write_manifest(tmp_path / "m.jsonl", rows)
    sheet = cv2.imread(str(write_contact_sheet(tmp_path / "m.jsonl", tmp_path / "sheet.png", num_frames=3)))
    assert sheet.shape[1] == 3 * 320  # tiles 160 px high: 3 frames of the 2:1 clip set the width
