"""`avlearn localize`'s two paths: with faces in the picture, which face is heard (a sync model that reads mouths
scoring every face), a blob on that face; without, the dense map. peaks.json says which ran and why."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from avlearn.cli import main
from avlearn.data.manifest import load_annotations
from avlearn.pipelines.localize import SMOOTH_FRAMES

ROOT = Path(__file__).resolve().parents[1]
SPEAKERS = ROOT / "assets" / "demo" / "speakers" / "test"
INSTRUMENTS = ROOT / "assets" / "demo" / "instruments" / "test"
FRAME_SYNC = ROOT / "assets" / "checkpoints" / "sync_speakers"  # reads whole frames, not mouths


@pytest.fixture(scope="module")
def two_faces(mouth_checkpoint, tmp_path_factory):
    """The faces path on a drawn two-speaker clip, every frame with a sound given to its best face (threshold
    far below any score)."""
    out = tmp_path_factory.mktemp("faces")
    clip = SPEAKERS / "000001.mp4"
    args = ["localize", str(clip), "--out", str(out), "--speaker-checkpoint", str(mouth_checkpoint)]
    assert main([*args, "--speaking-threshold=-1e9"]) == 0
    return clip, out, json.loads((out / "peaks.json").read_text())


def test_faces_path_names_each_face_and_its_box(two_faces):
    clip, out, doc = two_faces
    assert doc["mode"] == "faces" and doc["method"] == "active_speaker" and doc["mode_reason"] == "2 face(s) found"
    assert len(doc["frames"]) == 100 and doc["width"] == doc["height"] == 224
    ann = load_annotations(clip.with_suffix(".npz"))["boxes"]  # (T, 2, 4) drawn faces at 160 px, left to right
    scale = 224 / 160
    for k, face in enumerate(doc["faces"]):
        x0, y0, x1, y1 = np.median(ann[:, k], 0) * scale
        cx, cy = (face["box"][0] + face["box"][2]) / 2, (face["box"][1] + face["box"][3]) / 2
        assert x0 < cx < x1 and y0 < cy < y1, (k, face["box"])
    frame = doc["frames"][50]
    assert len(frame["scores"]) == len(frame["boxes"]) == 2


def test_faces_path_marks_the_highest_scoring_face_and_draws_on_it(two_faces):
    from avlearn.io import read_clip

    clip, out, doc = two_faces
    for f in doc["frames"]:
        assert not f["silent"] and f["scores"][f["face"]] == max(f["scores"])
        x0, y0, x1, y1 = f["boxes"][f["face"]]
        assert x0 <= f["peak_x"] <= x1 and y0 <= f["peak_y"] <= y1
        assert f["max"] == max(f["scores"])
    # the heat lies on the speaking face: the picture changes inside its box, hardly outside both faces
    drawn = read_clip(out / "heatmap.mp4", 0, 4, fps=25, size=224).video.permute(1, 2, 3, 0).float()
    plain = read_clip(clip, 0, 4, fps=25, size=224).video.permute(1, 2, 3, 0).float()
    diff = (drawn - plain).abs().mean(-1)
    t = 50
    x0, y0, x1, y1 = (round(v) for v in doc["frames"][t]["boxes"][doc["frames"][t]["face"]])
    inside = diff[t, y0:y1, x0:x1].mean()
    outside = diff[t, :20, :].mean()  # the top rows: background above both faces
    assert inside > 20 and outside < inside / 4, (float(inside), float(outside))
    assert (out / "grid.png").stat().st_size > 10_000


def test_no_one_speaks_under_the_threshold(mouth_checkpoint, tmp_path, capsys):
    args = ["localize", str(SPEAKERS / "000001.mp4"), "--out", str(tmp_path), "--speaker-checkpoint"]
    assert main([*args, str(mouth_checkpoint), "--speaking-threshold", "1e9"]) == 0
    assert "no one of them" in capsys.readouterr().out
    doc = json.loads((tmp_path / "peaks.json").read_text())
    assert doc["mode"] == "faces" and doc["threshold"] == 1e9
    assert doc["smooth_frames"] == SMOOTH_FRAMES
    assert all(f["face"] is None and f["peak_x"] is None and len(f["scores"]) == 2 for f in doc["frames"])


def test_speaking_faces_by_hand():
    from avlearn.pipelines.localize import speaking_faces

    scores = torch.tensor([[0.5, -1.0, 2.0, 3.0], [0.1, -2.0, 2.5, 0.0]])
    silent = torch.tensor([False, False, False, True])
    assert speaking_faces(scores, silent, 0.0) == [0, None, 1, None]  # under the threshold; silent
    assert speaking_faces(torch.zeros(0, 3), torch.zeros(3, dtype=torch.bool), 0.0) == [None] * 3


def test_smooth_scores_average_each_face_over_the_frames_around_each_frame():
    from avlearn.pipelines.mouths import smooth_scores

    scores = torch.tensor([[0.0, 3.0, 0.0, 3.0, 9.0], [1.0, 1.0, 1.0, 1.0, 1.0]])
    smooth = smooth_scores(scores, 3)
    # the first and last frames average the two frames there are; faces are not mixed
    assert torch.allclose(smooth[0], torch.tensor([1.5, 1.0, 2.0, 4.0, 6.0]))
    assert torch.allclose(smooth[1], torch.ones(5))
    assert torch.equal(smooth_scores(scores, 1), scores)
    assert smooth_scores(torch.zeros(2, 3, 0), 5).shape == (2, 3, 0)  # several sounds, no frames
    # a one-frame flip of the best face is smoothed away; a lasting change of speaker is kept
    flips = torch.tensor([[1.0] * 5 + [0.0] + [1.0] * 5 + [0.0] * 6, [0.5] * 17])
    assert smooth_scores(flips, 5).argmax(0).tolist()[:11] == [0] * 11
    assert smooth_scores(flips, 5).argmax(0).tolist()[-3:] == [1] * 3


def test_face_blobs_peak_on_the_box_and_are_empty_without_one():
    from avlearn.pipelines.localize import face_blobs

    blobs = face_blobs(torch.tensor([[10.0, 20.0, 30.0, 60.0], [float("nan")] * 4]), 80, 64)
    y, x = divmod(int(blobs[0].argmax()), 64)
    assert (x, y) in ((19, 39), (20, 40), (19, 40), (20, 39)) and blobs[0].max() > 0.99
    assert blobs[0, 0, 63] < 0.01 and blobs[1].abs().sum() == 0


def test_instruments_take_the_dense_path(mouth_checkpoint, tmp_path):
    """No face in the instruments world: --mode auto maps every place, as before, and says why."""
    from avlearn.pipelines.localize import localize

    result = localize(INSTRUMENTS / "000000.mp4", tmp_path, speaker_checkpoint=mouth_checkpoint)
    doc = json.loads((tmp_path / "peaks.json").read_text())
    assert result.mode == doc["mode"] == "dense" and doc["mode_reason"] == "no face found"
    assert doc["method"] == "ezvsl" and "faces" not in doc and "scores" not in doc["frames"][0]
    assert sum(f["peak_x"] is not None for f in doc["frames"]) > 90


def test_a_speaker_checkpoint_that_reads_frames_gives_the_dense_path(tmp_path):
    """The shipped sync_speakers reads whole frames: auto cannot judge faces with it, so it maps places."""
    from avlearn.pipelines.localize import localize

    localize(SPEAKERS / "000001.mp4", tmp_path, speaker_checkpoint=FRAME_SYNC)
    doc = json.loads((tmp_path / "peaks.json").read_text())
    assert doc["mode"] == "dense" and "reads whole frames" in doc["mode_reason"]


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def test_asking_for_faces_without_one_or_with_a_frame_model_is_one_line(mouth_checkpoint, tmp_path, capsys):
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg CLI needed to make the clips")
    clip = tmp_path / "noise.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=128x96:rate=25:duration=2",
         "-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-shortest", str(clip)],
        check=True,
    )  # fmt: skip
    base = ["localize", str(clip), "--out", str(tmp_path / "o"), "--mode", "faces"]
    assert main([*base, "--speaker-checkpoint", str(mouth_checkpoint)]) == 1
    assert "no face found" in _one_line(capsys)
    assert main([*base, "--speaker-checkpoint", str(FRAME_SYNC)]) == 1
    assert "reads whole frames" in _one_line(capsys)
    assert main([*base, "--speaker-checkpoint", str(ROOT / "assets" / "checkpoints" / "localize_instruments")]) == 1
    assert "'localize' checkpoint" in _one_line(capsys)
    wrong = ["--checkpoint", str(ROOT / "assets" / "checkpoints" / "separate_speakers")]  # refused on either path
    faces = ["--mode", "faces", "--speaker-checkpoint", str(mouth_checkpoint)]
    assert main(["localize", str(SPEAKERS / "000001.mp4"), "--out", str(tmp_path / "o"), *faces, *wrong]) == 1
    assert "localize needs a 'localize' or 'sync' one" in _one_line(capsys)
    silent_video = tmp_path / "mute.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(SPEAKERS / "000001.mp4"), "-an", str(silent_video)], check=True)
    assert main(["localize", str(silent_video), "--out", str(tmp_path / "m")]) == 1
    assert "no audio stream" in _one_line(capsys)
    assert not (tmp_path / "o").exists() and not (tmp_path / "m").exists()


def test_faces_path_on_a_webm_whose_faces_outlast_its_frame_count(mouth_checkpoint, tmp_path):
    """A VP9/Opus copy of the clip: the face pass reads one frame more than the clip's frame count (101 for
    100); the result has one entry per frame all the same."""
    from avlearn.pipelines.localize import localize

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg CLI needed to make the clip")
    clip = tmp_path / "x.webm"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(SPEAKERS / "000001.mp4"), "-c:v", "libvpx-vp9", "-deadline", "realtime",
         "-cpu-used", "8", "-c:a", "libopus", str(clip)],
        check=True,
    )  # fmt: skip
    result = localize(clip, tmp_path / "out", speaker_checkpoint=mouth_checkpoint)
    doc = json.loads((tmp_path / "out" / "peaks.json").read_text())
    assert result.mode == "faces" and len(doc["faces"]) == 2 and len(doc["frames"]) == result.frames == 100


def test_a_detection_without_lips_is_not_taken_for_a_face(mouth_checkpoint, tmp_path):
    """BlazeFace takes a drawn instrument for a face in some instruments clips; FaceMesh finds no lips there, so
    --mode auto maps every place, as before."""
    from avlearn.pipelines.localize import localize

    clip = ROOT / "data" / "instruments" / "test" / "000008.mp4"  # one such clip of the generated test split
    if not clip.exists():
        pytest.skip("the instruments world's test split is not generated here")
    result = localize(clip, tmp_path, speaker_checkpoint=mouth_checkpoint)
    doc = json.loads((tmp_path / "peaks.json").read_text())
    assert result.mode == "dense" and "not taken for faces" in doc["mode_reason"], doc["mode_reason"]
