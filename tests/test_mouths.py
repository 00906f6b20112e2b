"""Sync on mouths: the training faces (real and drawn) as aligned mouth crops with their own sound, the model
that reads them, and sync-offset scoring every face of a clip with it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from avlearn.data.manifest import read_manifest
from avlearn.data.mouths import MouthClips, mouth_box_transforms

DEMO = Path(__file__).resolve().parents[1] / "assets" / "demo" / "speakers"


def test_mouth_box_transforms_put_the_box_where_the_aligned_crops_put_the_corners():
    boxes = np.array([[40.0, 60.0, 60.0, 70.0]])
    a = mouth_box_transforms(boxes, (64, 64))[0]
    left, right = a @ np.array([16.0, 25.6, 1.0]), a @ np.array([48.0, 25.6, 1.0])  # MOUTH_CORNER_U x 64, V x 64
    assert np.allclose(left, [40.0, 65.0]) and np.allclose(right, [60.0, 65.0])


def test_drawn_faces_give_one_piece_per_sounding_face_with_its_own_stem():
    rows = read_manifest(DEMO / "test.jsonl")[:3]
    clips = MouthClips(rows, fps=25, size=32, sample_rate=16000, segment=2.0, max_segments=None)
    sounding = sum(s["sounding"] for r in rows for s in r["sources"])
    assert len(clips.faces) == sounding and len(clips) == 2 * sounding  # 4 s clips, 2 s pieces
    assert clips.video_window(1, 0, 25).shape == (25, 32, 32, 3)
    # piece 1 starts 2 s in: its audio at 0 is the stem at 2 s, and past the clip's sound it is silence
    from avlearn.io import read_audio

    stem, _ = read_audio(rows[0]["sources"][0]["stem"], 16000)
    assert torch.allclose(clips.audio_window(1, 0, 100), stem[0, 32000:32100])
    assert clips.audio_window(1, 32000, 100).abs().sum() == 0
    assert clips.video_window(0, 0, 1).float().std() > 10  # a picture, not the zero padding of a missed box


def test_repeats_and_max_segments():
    rows = read_manifest(DEMO / "test.jsonl")[:1]
    one = MouthClips(rows, fps=25, size=32, sample_rate=16000, segment=1.0, max_segments=2, repeats=3)
    assert len(one) == 2 * 3 * len(one.faces)
    assert one.pieces[0][1] == 0 and one.pieces[1][1] == 75  # spread over the clip: first and last piece


def test_a_row_without_annotations_is_one_line():
    rows = [dict(read_manifest(DEMO / "test.jsonl")[0], annotations=None)]
    with pytest.raises(ValueError, match="no annotations"):
        MouthClips(rows, fps=25, size=32, sample_rate=16000)


def test_the_mouth_model_says_it_reads_mouths_and_keeps_old_arguments():
    from avlearn.models import create_model

    net = create_model("avsync_mbt_tiny", crop="mouth")
    assert net.preprocessing["crop"] == "mouth"
    assert net.components()["video"]["args"]["crop"] == "mouth"
    assert "crop" not in create_model("avsync_mbt_tiny").components()["video"]["args"]  # shipped ones load as before
    with pytest.raises(ValueError, match="crop"):
        create_model("avsync_mbt_tiny", crop="face")


@pytest.mark.filterwarnings("ignore:.*windows agree")
def test_sync_offset_with_a_mouth_model_scores_every_face(mouth_checkpoint, tmp_path):
    from avlearn.pipelines.sync_offset import sync_offset

    clip = DEMO / "test" / "000001.mp4"  # two drawn faces
    result = sync_offset(clip, mouth_checkpoint, max_frames=3)
    assert [f["face"] for f in result.faces] == [0, 1]
    assert result.face in (0, 1)
    best = max(result.faces, key=lambda f: f["mean_confidence"])
    assert result.face == best["face"] and result.offset_ms == best["offset_ms"]
    left, right = (f["box"] for f in result.faces)
    assert left[0] < right[0]  # left to right
    out = result.save(tmp_path / "out")
    assert json.loads(out.read_text())["faces"][0]["face"] == 0


def test_sync_offset_with_a_mouth_model_and_no_face_reads_the_whole_picture(mouth_checkpoint, tmp_path, capsys):
    from avlearn.cli import main
    from avlearn.pipelines.sync_offset import FRAME_CHECKPOINT

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg CLI needed to make the faceless clip")
    import subprocess

    clip = tmp_path / "noise.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=128x96:rate=25:duration=4",
         "-f", "lavfi", "-i", "sine=frequency=440:duration=4", "-shortest", str(clip)],
        check=True,
    )  # fmt: skip
    args = ["sync-offset", str(clip), "--checkpoint", str(mouth_checkpoint), "--json"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["checkpoint"] == str(FRAME_CHECKPOINT) and result["faces"] == [] and result["face"] is None
    assert result["notes"][0].startswith("no face found: the whole picture was read")


def test_the_real_faces_recipe_trains_on_mouths_and_refuses_a_frame_model(tmp_path, capsys):
    """The recipe's data path end to end, on the shipped drawn faces (the real clips are not in the repo)."""
    from avlearn.cli import main
    from avlearn.models.weights import load_weights

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "sync" / "real_mouths_avsync_mbt.yaml"
    args = [
        "fit", "-c", str(recipe),
        "--model.init_args.model", "avsync_mbt_tiny",
        "--model.init_args.model_args", '{"crop": "mouth"}',
        "--data.init_args.train_manifest", str(DEMO / "test.jsonl"),
        "--data.init_args.val_manifest", str(DEMO / "test.jsonl"),
        "--data.init_args.size", "32",
        "--data.init_args.window", "0.32",
        "--data.init_args.batch_size", "4",
        "--data.init_args.mouth_pieces", '{"segment": 2.0, "repeats": 2}',
        "--trainer.max_epochs", "1",
        "--trainer.precision", "32-true",
        "--trainer.default_root_dir", str(tmp_path),
        "--trainer.logger", "lightning.pytorch.loggers.CSVLogger",
        "--trainer.logger.save_dir", str(tmp_path),
        "--trainer.enable_progress_bar", "false",
    ]  # fmt: skip
    assert main(args) == 0
    version = next(tmp_path.glob("lightning_logs/version_*"))
    _, doc = load_weights(version / "weights" / "last", task="sync")
    assert doc["preprocessing"]["crop"] == "mouth" and doc["components"]["video"]["args"]["crop"] == "mouth"
    # whole frames for a model that reads mouths (or the reverse) would misalign nothing but mean nothing: refused
    frame_model = [a if a != '{"crop": "mouth"}' else "{}" for a in args]
    assert main([*frame_model[:-2], "--trainer.default_root_dir", str(tmp_path / "b")]) == 1
    assert "'crop': 'mouth'" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:.*windows agree")
def test_windows_where_the_face_is_gone_are_left_out(mouth_checkpoint, tmp_path):
    """A face that leaves the picture: its track's box is held, but windows without its lips do not vote."""
    from avlearn.pipelines.sync_offset import sync_offset

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg CLI needed")
    import subprocess

    clip = tmp_path / "gone.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(DEMO / "test" / "000001.mp4"), "-vf",
         "drawbox=x=0:y=0:w=iw:h=ih:color=black:t=fill:enable='gte(t,2)'", "-c:a", "copy", str(clip)],
        check=True,
    )  # fmt: skip
    whole = sync_offset(DEMO / "test" / "000001.mp4", mouth_checkpoint, max_frames=3, hop=0.16)
    gone = sync_offset(clip, mouth_checkpoint, max_frames=3, hop=0.16)
    assert max(w.start for w in whole.windows) > 2.5
    assert gone.windows and max(w.start for w in gone.windows) + 0.32 <= 2.0 + 0.32 * 0.5 + 1e-6


def test_several_sounds_score_as_each_alone(mouth_checkpoint):
    from avlearn.pipelines.checkpoints import load_model
    from avlearn.pipelines.mouths import speaking_scores

    net, doc = load_model(mouth_checkpoint, "sync", torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    mouths = [torch.randint(0, 255, (30, 64, 64, 3), dtype=torch.uint8, generator=g) for _ in range(2)]
    sounds = torch.randn(3, 16000 * 2, generator=g) * 0.05
    together = speaking_scores(net, mouths, sounds, doc["preprocessing"]["window"], hop_frames=4)
    assert together.shape == (3, 2, 30)
    for j, sound in enumerate(sounds):
        alone = speaking_scores(net, mouths, sound, doc["preprocessing"]["window"], hop_frames=4)
        torch.testing.assert_close(together[j], alone)


def test_flip_average_is_the_mean_of_both_views_and_blind_to_a_mirror(mouth_checkpoint):
    from avlearn.pipelines.checkpoints import load_model
    from avlearn.pipelines.mouths import speaking_scores

    net, doc = load_model(mouth_checkpoint, "sync", torch.device("cpu"))
    window = doc["preprocessing"]["window"]
    g = torch.Generator().manual_seed(2)
    mouths = [torch.randint(0, 255, (30, 64, 64, 3), dtype=torch.uint8, generator=g) for _ in range(2)]
    mirrored = [m.flip(2) for m in mouths]
    sound = torch.randn(16000 * 2, generator=g) * 0.05

    def scores(faces, **kw):
        return speaking_scores(net, faces, sound, window, hop_frames=3, tolerance_frames=0, **kw)

    both = scores(mouths, flip_average=True)
    torch.testing.assert_close(both, (scores(mouths) + scores(mirrored)) / 2, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(both, scores(mirrored, flip_average=True), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(scores(mouths), scores(mirrored))  # a random model is not mirror-blind itself
