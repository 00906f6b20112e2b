"""Listen to Look: window labels, the preview's image bank, the selector (it learns where to look), the three
training stages through their recipes, a student on the sync encoders started from a sync checkpoint, and
`avlearn recognize` on the shipped demo clip and on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from avlearn.cli import main
from avlearn.data.preview import window_labels
from avlearn.models import create_model
from avlearn.models.preview import SkimSelector
from avlearn.models.summary import count_macs

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "assets" / "demo" / "actions" / "test"


def test_window_labels_follow_segments_and_default_to_the_whole_clip():
    classes = ["chop", "knock", "background"]
    row = {"labels": ["knock"], "start": 0.0, "end": 6.0,
           "segments": [{"label": "knock", "start": 1.6, "end": 3.2}]}  # fmt: skip
    starts = np.arange(6.0)
    # windows [1,2) overlaps 0.4 s (< half): background; [2,3) inside; [3,4) overlaps 0.2 s
    assert window_labels(row, starts, 1.0, classes).tolist() == [2, 2, 1, 2, 2, 2]
    assert window_labels(row, np.array([1.2]), 1.0, classes).tolist() == [1]  # moved window follows
    trimmed = {"labels": ["chop"], "start": 0.0, "end": 3.0}
    assert window_labels(trimmed, np.arange(3.0), 1.0, classes).tolist() == [0, 0, 0]


def test_image_bank_interpolates_between_previewed_windows():
    net = create_model("listen_to_look_tiny", image_stride=3)
    where = net.preview_windows(8)
    assert where.tolist() == [1, 4, 7]
    sparse = torch.tensor([[[0.0], [3.0], [9.0]]])
    bank = net.image_bank(sparse, where, 8)[0, :, 0]
    assert bank.tolist() == pytest.approx([0, 0, 1, 2, 3, 5, 7, 9])


def test_skimming_computes_the_image_network_only_at_previewed_and_chosen_windows():
    net = create_model("listen_to_look_tiny").eval()
    w, k = 12, 3
    windows, audio = torch.randint(0, 255, (1, w, 4, 32, 32, 3), dtype=torch.uint8), torch.randn(1, w, 8000)
    with torch.inference_mode():
        (indices, probs), macs = count_macs(lambda: net.skim_video(windows, audio, k))
        _, image = count_macs(lambda: net.student.image_features(windows[0, :1]))
        _, audio = count_macs(lambda: net.student.audio_features(audio[0, :1]))
    assert len(set(indices[0].tolist())) == k  # never the same window twice
    assert probs.shape == (1, k, 5) and torch.allclose(probs.sum(-1), torch.ones(1, k))
    previewed = len(net.preview_windows(w))
    overhead = macs - (previewed + k) * image - w * audio  # fusion, classifier, LSTM and attention
    assert 0 < overhead < image


def test_selector_learns_to_look_where_the_audio_says():
    """Eight windows; only one (marked in its audio features) shows the class. Trained with hard Gumbel
    choices and straight-through gradients, the selector's first look lands on it."""
    torch.manual_seed(0)
    w, d = 8, 16
    selector = SkimSelector(embed_dim=d, image_dim=4, audio_dim=4, hidden=32, key_dim=16)
    head = torch.nn.Linear(d, 3)
    opt = torch.optim.Adam([*selector.parameters(), *head.parameters()], lr=1e-2)

    def batch(b: int):
        target = torch.randint(0, w, (b,))
        label = torch.randint(0, 2, (b,))
        audio = torch.randn(b, w, 4) * 0.1
        audio[torch.arange(b), target, 0] += 2.0  # the sound marks the moment
        emb = torch.zeros(b, w, d)
        emb[..., 2] = 1.0  # every other window: "background"
        emb[torch.arange(b), target] = 0.0
        emb[torch.arange(b), target, label] = 1.0
        return audio, emb, label, target

    def run(audio, emb, temperature):
        look = lambda choice: torch.einsum("bw,bwd->bd", choice, emb)  # noqa: E731
        return selector.run(torch.zeros(len(audio), w, 4), audio, emb.mean(1), look, steps=1, temperature=temperature)

    for _ in range(300):
        audio, emb, label, _ = batch(32)
        _, chosen = run(audio, emb, 1.0)
        loss = torch.nn.functional.cross_entropy(head(chosen[:, 0]), label)
        opt.zero_grad()
        loss.backward()
        opt.step()
    audio, emb, _, target = batch(256)
    with torch.no_grad():
        indices, _ = run(audio, emb, 0.0)
    assert (indices[:, 0] == target).float().mean() > 0.9  # chance: 1/8


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from avlearn.data.synth import synthesize
    from avlearn.data.worlds import WorldConfig

    out = tmp_path_factory.mktemp("actions")
    config = WorldConfig(size=32, duration=6.0)
    synthesize("actions", out, 12, seed=0, split="train", config=config, workers=0)
    synthesize("actions", out, 6, seed=1, split="val", config=config, workers=0)
    # keep the val clips whose action the 12 training clips show (the data module refuses unseen labels)
    seen = {json.loads(line)["labels"][0] for line in (out / "train.jsonl").read_text().splitlines()}
    val = [line for line in (out / "val.jsonl").read_text().splitlines() if json.loads(line)["labels"][0] in seen]
    assert val
    (out / "val.jsonl").write_text("\n".join(val) + "\n")
    return out


def test_three_stage_recipes_fit_and_recognize(world, tmp_path, capsys):
    """teacher -> student -> skim through `avlearn fit -c recipes/preview/...` (tiny model, one epoch each), then
    `avlearn recognize` with the exported weights."""
    from avlearn.models.weights import load_weights

    previous = None
    for stage in ("teacher", "student", "skim"):
        run = tmp_path / stage
        args = [
            "fit", "-c", str(ROOT / "recipes" / "preview" / f"actions_{stage}.yaml"),
            "--model.init_args.model", "listen_to_look_tiny",
            "--model.init_args.steps", "2",
            "--data.init_args.train_manifest", str(world / "train.jsonl"),
            "--data.init_args.val_manifest", str(world / "val.jsonl"),
            "--data.init_args.size", "32",
            "--data.init_args.batch_size", "4",
            "--trainer.max_epochs", "1",
            "--trainer.limit_train_batches", "3",
            "--trainer.default_root_dir", str(run),
            "--trainer.logger", "lightning.pytorch.loggers.CSVLogger",
            "--trainer.logger.save_dir", str(run),
            "--trainer.enable_progress_bar", "false",
        ]  # fmt: skip
        if previous is not None:
            args += ["--model.init_args.init_from", str(previous)]
        assert main(args) == 0
        previous = next(run.glob("**/weights/last.safetensors"))
        net, doc = load_weights(previous, task="preview")
        assert doc["preprocessing"]["stage"] == stage and doc["preprocessing"]["classes"][-1] == "background"
        assert "val/acc" in doc["meta"]["metrics"]
    # the student's classifier is the teacher's, frozen
    assert torch.equal(net.student.head.weight, net.teacher.net.fc.weight)
    clip = sorted((world / "val").glob("*.mp4"))[0]
    assert main(["recognize", str(clip), "--out", str(tmp_path / "out"), "--checkpoint", str(previous)]) == 0
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["method"] == "skim-teacher" and result["looked_at"] == 2 and result["windows"] == 6
    assert result["gmacs"] > 0


def test_student_stage_needs_the_teacher():
    from avlearn.tasks.preview import ListenToLookTask

    with pytest.raises(ValueError, match="init_from"):
        ListenToLookTask(stage="student")
    with pytest.raises(ValueError, match="belongs to the student stage"):
        ListenToLookTask(stage="teacher", sync_from="sync")


TINY_VIDEO = {"fps": 8.0, "size": 32, "widths": [4, 8, 16], "dim": 16, "changes": True}  # avsync_mbt_tiny's, 8 fps
TINY_AUDIO = {"fps": 8.0, "sample_rate": 16000, "n_mels": 32, "widths": [4, 8, 16], "dim": 16, "changes": True}


def test_student_on_the_sync_encoders_starts_from_a_sync_checkpoint(world, tmp_path, capsys):
    """The student stage with ``sync_from``: the student's video and audio branches are the sync checkpoint's
    encoders (kept as loaded by a whole-run freeze), the teacher is the previous stage's, the run records the
    sync weights it started from, and `avlearn recognize` runs the exported model from the mp4 (the student's
    own front-ends: the waveform in, no log-mel outside the model)."""
    from avlearn.data.manifest import read_manifest
    from avlearn.data.preview import class_names
    from avlearn.models.weights import load_weights, save_weights, weights_sha256

    torch.manual_seed(1)
    sync = create_model("avsync_mbt_tiny", fps=8.0)
    with torch.no_grad():
        for p in sync.parameters():
            p.add_(0.5)  # apart from any fresh initialization
    sync_path = save_weights(tmp_path / "sync", sync, model_name="avsync_mbt_tiny", task="sync",
                             components=sync.components())  # fmt: skip
    classes = class_names(read_manifest(world / "train.jsonl"))
    teacher = create_model("listen_to_look_tiny", num_classes=len(classes))
    pre = {"classes": classes, "fps": 8.0, "n_mels": 32, "sample_rate": 16000, "size": 32, "window": 1.0}
    teacher_path = save_weights(tmp_path / "teacher", teacher, model_name="listen_to_look_tiny", task="preview",
                                model_args={"num_classes": len(classes)}, preprocessing=pre)  # fmt: skip
    student_args = {"video": TINY_VIDEO, "audio": TINY_AUDIO, "frames": 3}
    run = tmp_path / "student"
    args = [
        "fit", "-c", str(ROOT / "recipes" / "preview" / "actions_student_sync.yaml"),
        "--model.init_args.model", "listen_to_look_tiny",
        "--model.init_args.model_args", json.dumps(student_args),
        "--model.init_args.init_from", str(teacher_path.with_suffix("")),
        "--model.init_args.sync_from", str(sync_path.with_suffix("")),
        "--model.init_args.freeze_epochs", "5",
        "--data.init_args.train_manifest", str(world / "train.jsonl"),
        "--data.init_args.val_manifest", str(world / "val.jsonl"),
        "--data.init_args.size", "32",
        "--data.init_args.batch_size", "4",
        "--trainer.max_epochs", "1",
        "--trainer.limit_train_batches", "2",
        "--trainer.default_root_dir", str(run),
        "--trainer.logger", "lightning.pytorch.loggers.CSVLogger",
        "--trainer.logger.save_dir", str(run),
        "--trainer.enable_progress_bar", "false",
    ]  # fmt: skip
    assert main(args) == 0
    exported = next(run.glob("**/weights/last.safetensors"))
    net, doc = load_weights(exported, task="preview")
    for name, part in net.backbone.items():
        want = sync.encoders[name].state_dict()
        assert all(torch.equal(v, want[k]) for k, v in part.state_dict().items()), name
    assert sorted(net.backbone) == ["audio", "video"]
    assert all(torch.equal(v, teacher.teacher.state_dict()[k]) for k, v in net.teacher.state_dict().items())
    assert not torch.equal(net.student.fuse[0].weight, teacher.student.fuse[0].weight)  # the new parts learned
    record = doc["meta"]["init_from"]
    assert record["sha256"] == weights_sha256(sync_path) and record["freeze_epochs"] == 5
    assert doc["preprocessing"]["fps"] == 8.0 and doc["preprocessing"]["spec_hop_s"] == 500 / 16000  # 4 hops a frame

    clip = sorted((world / "val").glob("*.mp4"))[0]
    out = tmp_path / "out"
    assert main(["recognize", str(clip), "--out", str(out), "--checkpoint", str(exported), "--method", "skim"]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["looked_at"] == 2 and result["gmacs"] > 0


def test_recognize_demo_clip(tmp_path, capsys):
    """The shipped checkpoint recognizes the demo clip (a `chop` video from the test split, its motion variant
    unseen in training): the audio preview chooses moments inside the labelled segments, and the clip
    classifier there names the action at a fraction of the dense cost."""
    row = json.loads((DEMO.parent / "test.jsonl").read_text().splitlines()[0])
    clip = DEMO / "000000.mp4"
    before = clip.read_bytes()

    def inside(moments: list[dict]) -> int:
        return sum(
            any(s["start"] - 0.5 <= (m["start"] + m["end"]) / 2 <= s["end"] + 0.5 for s in row["segments"])
            for m in moments
        )

    assert main(["recognize", str(clip), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["method"] == "skim-teacher" and result["looked_at"] == 2 and result["windows"] == 20
    assert result["top"][0]["label"] == row["labels"][0] == "chop" and out.startswith("chop")
    assert inside(result["moments"]) == 2, result["moments"]
    assert clip.read_bytes() == before

    assert main(["recognize", str(clip), "--out", str(tmp_path / "skim"), "--method", "skim", "--steps", "5"]) == 0
    skim = json.loads((tmp_path / "skim" / "result.json").read_text())
    assert skim["looked_at"] == 5 and inside(skim["moments"]) >= 4, skim["moments"]
    assert skim["gmacs"] < result["gmacs"]

    assert main(["recognize", str(clip), "--out", str(tmp_path / "dense"), "--method", "dense"]) == 0
    dense = json.loads((tmp_path / "dense" / "result.json").read_text())
    assert dense["top"][0]["label"] == "chop" and dense["gmacs"] > 4 * result["gmacs"]


def test_recognize_bad_input(tmp_path, capsys):
    from avlearn.io import write_video
    from avlearn.models.weights import save_weights

    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, 50, 48, 48), dtype=np.uint8))
    no_audio = write_video(tmp_path / "no_audio.mp4", frames, 25)
    assert main(["recognize", str(no_audio), "--out", str(tmp_path / "a")]) == 0
    assert "no audio track" in capsys.readouterr().out
    result = json.loads((tmp_path / "a" / "result.json").read_text())
    assert result["method"] == "dense" and result["windows"] == 2 and result["notes"]
    capsys.readouterr()

    short = write_video(tmp_path / "short.mp4", frames[:, :15], 25, torch.zeros(1, 9600), 16000)
    assert main(["recognize", str(short), "--out", str(tmp_path / "b")]) == 1
    assert "0.60 s long; recognize needs at least one 1 s window" in capsys.readouterr().err
    assert not (tmp_path / "b" / "result.json").exists()

    # a clip of two windows and K = 5: both are looked at, with a note
    two = write_video(tmp_path / "two.mp4", frames, 25, torch.zeros(1, 32000), 16000)
    assert main(["recognize", str(two), "--out", str(tmp_path / "c"), "--steps", "5"]) == 0
    assert "looked at all of them" in capsys.readouterr().out
    assert json.loads((tmp_path / "c" / "result.json").read_text())["looked_at"] == 2

    assert main(["recognize", str(tmp_path / "missing.mp4"), "--out", str(tmp_path / "d")]) == 1
    assert "no such file" in capsys.readouterr().err

    other = tmp_path / "other"
    save_weights(other, create_model("c3d_tiny"), model_name="c3d_tiny", task="classify")
    assert main(["recognize", str(DEMO / "000000.mp4"), "--out", str(tmp_path / "e"), "--checkpoint", str(other)]) == 1
    assert "a 'classify' model (c3d_tiny), but a 'preview' checkpoint is needed" in capsys.readouterr().err


def test_two_frame_temporal_convs_train_in_float32_under_bf16_autocast():
    """The guard against CPU bf16 conv3d weight gradients that overflow on two-frame inputs: with it, the
    gradient equals the float32 one; three-frame inputs still run in bf16."""
    from avlearn.models.precision import guard_bf16_conv3d

    torch.manual_seed(0)
    conv = torch.nn.Conv3d(8, 8, (3, 1, 1), padding=(1, 0, 0), bias=False)
    x, g = torch.randn(4, 8, 2, 5, 5).relu(), torch.randn(4, 8, 2, 5, 5)
    conv(x).backward(g)
    exact = conv.weight.grad.clone()
    conv.weight.grad = None
    guard_bf16_conv3d(conv)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x)
        assert conv(torch.randn(1, 8, 3, 5, 5)).dtype == torch.bfloat16
    assert y.dtype == torch.float32
    y.backward(g)
    torch.testing.assert_close(conv.weight.grad, exact)
