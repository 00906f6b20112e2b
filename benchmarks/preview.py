"""Audio-preview action recognition on the `actions` test split: accuracy and GMACs per video of every method.

    .venv/bin/python benchmarks/preview.py --checkpoint assets/checkpoints/preview_actions \
        --train data/actions20/train.jsonl --test data/actions20/test.jsonl --figure docs/img/preview_actions.png

Every test video (20 s, 20 one-second windows) is decoded as training decodes it (8 fps, 96x96, 16 kHz) and
recognized by:

- dense: the teacher (clip classifier) on every window, class probabilities averaged;
- uniform / random K clips: the teacher on K evenly spaced / random windows (random: mean of 5 draws);
- student uniform / random K: the image+audio student (IMGAUD2VID) at K evenly spaced / random windows;
- student, every window: the student on all windows (and, printed apart, its accuracy per window against the
  windows' labels, background included, as the student stage's val/window_acc);
- skimming K (IMGAUD-SKIMMING): the audio preview, then K looks chosen by the selector;
- skimming K + teacher: the same K moments, classified by the teacher's clip model instead of the student;
- audio only: a linear classifier on the student's audio features, trained on the train split's windows,
  averaged over every window of the video;
- centre frame: a linear classifier on the student's image features of the video's centre frame.

A video's answer is the action (not background) with the highest mean probability. GMACs per video count
every network that runs, as it runs (avlearn.models.summary.count_macs: convolutions, matmuls, LSTM), for
the preview over the whole video too, plus the FFTs of the student's log-mel (2 n log2 n per frame).
Wall-clock per minute of video: `avlearn recognize`'s path (decode from the mp4 + model, no counting) over the
first test videos, for skimming and dense, in the same run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from transfer_probe import probe  # benchmarks/ is on sys.path when this script runs

from avlearn import progress
from avlearn.data.cache import decode_clips
from avlearn.data.manifest import read_manifest
from avlearn.data.preview import clip_input, split_windows, window_labels
from avlearn.models.summary import count_macs
from avlearn.pipelines.recognize import load_recognizer, recognize, stft_macs

LABELS = {
    "uniform clips": "uniform {k} clips (teacher)",
    "random clips": "random {k} clips (teacher)",
    "student uniform": "student at {k} uniform windows",
    "student random": "student at {k} random windows",
    "skimming": "skimming, {k} looks (IMGAUD-SKIMMING)",
    "skimming + teacher": "skimming, {k} looks, then the teacher at them",
}


def features(net, clips, windows: int):
    """Per video: teacher probabilities (W, C), student image/audio features, embeddings and probabilities, and
    the windows' frames and waveform (the student's inputs: its front-ends are its own)."""
    out = []
    for v in progress.bar(range(len(clips.rows)), desc="features", unit="video"):
        video, audio = split_windows(clips.video[v], clips.audio[v], windows)
        with torch.inference_mode():
            teacher = net.teacher(clip_input(video)).softmax(-1)
            image, aud = net.student.image_features(video), net.student.audio_features(audio)
            student = net.classify(net.student.embed(image, aud)).softmax(-1)
        out.append({"teacher": teacher, "image": image, "audio": aud, "student": student, "windows": video,
                    "waveform": audio})  # fmt: skip
    return out


def answer(probs: torch.Tensor) -> int:
    return int(probs.mean(0)[:-1].argmax())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="assets/checkpoints/preview_actions")
    parser.add_argument("--train", default="data/actions20/train.jsonl", help="for the linear probes")
    parser.add_argument("--test", default="data/actions20/test.jsonl")
    parser.add_argument("--steps", type=int, default=None, help="K of the table (default: the checkpoint's)")
    parser.add_argument("--figure", default=None, help="accuracy-vs-GMACs PNG")
    parser.add_argument("--ks", default="1,2,3,5,8", help="comma-separated K of the curves (default 1,2,3,5,8)")
    parser.add_argument("--timing-videos", type=int, default=10, help="0: no wall-clock measurement")
    args = parser.parse_args()
    ks = tuple(int(k) for k in args.ks.split(","))
    torch.set_num_threads(2)

    net, pre = load_recognizer(args.checkpoint)
    classes, k_main = pre["classes"], args.steps or pre["steps"]
    front_end = net.student.audio_front_end
    per = round(pre["window"] * pre["fps"])

    def load(manifest: str):
        rows = read_manifest(manifest)
        clips = decode_clips(rows, fps=pre["fps"], size=pre["size"], sample_rate=pre["sample_rate"],
                             cache_dir=Path(manifest).parent / ".avlearn-cache")  # fmt: skip
        windows = int(clips.duration // pre["window"])
        labels = torch.tensor([classes.index(r["labels"][0]) for r in clips.rows])
        return clips, windows, labels

    test, windows, labels = load(args.test)
    unknown = {r["labels"][0] for r in test.rows} - set(classes)
    if unknown:
        raise SystemExit(f"{args.test}: labels {sorted(unknown)} are not among the checkpoint's classes {classes}")
    t0 = time.perf_counter()
    feats = features(net, test, windows)
    print(f"{len(feats)} test videos, {windows} windows each, features in {time.perf_counter() - t0:.0f} s")

    # costs of one window for each network, counted as they run
    f = feats[0]
    with torch.inference_mode():
        _, c_teacher = count_macs(lambda: net.teacher(clip_input(test.video[0, :per][None])))
        _, c_image = count_macs(lambda: net.student.image_features(f["windows"][:1]))
        _, c_audio = count_macs(lambda: net.student.audio_features(f["waveform"][:1]))
        _, c_fuse = count_macs(lambda: net.classify(net.student.embed(f["image"][:1], f["audio"][:1])))
    c_fft = stft_macs(f["waveform"].shape[-1] // front_end.hop_length + 1, front_end.n_fft)
    print(f"per window GMACs: teacher {c_teacher / 1e9:.4f}, student image {c_image / 1e9:.4f}, audio "
          f"{c_audio / 1e9:.4f} (+ FFT {c_fft / 1e9:.5f}), fusion+classifier {c_fuse / 1e9:.5f}")  # fmt: skip

    starts = np.arange(windows) * pre["window"]
    truth = torch.stack([torch.from_numpy(window_labels(r, starts, pre["window"], classes)) for r in test.rows])
    for name in ("student", "teacher"):
        hits = torch.stack([f[name].argmax(-1) for f in feats]) == truth
        print(f"{name} accuracy per window (window labels, background included): {hits.float().mean():.3f}")

    def acc(answers) -> float:
        return float((torch.tensor(answers) == labels).float().mean())

    def uniform(k: int) -> torch.Tensor:
        return ((torch.arange(k) + 0.5) * windows / k).long()

    rng = np.random.default_rng(0)
    draws = [[torch.from_numpy(rng.choice(windows, k, replace=False)) for _ in feats] for k in ks for _ in range(5)]
    rows: dict[str, dict] = {}

    def add(name: str, k, accuracy: float, macs: float) -> None:
        rows[name] = {"k": k, "acc": accuracy, "gmacs": macs / 1e9}

    add("dense (teacher, every window)", windows, acc([answer(f["teacher"]) for f in feats]), windows * c_teacher)
    student_macs = c_image + c_audio + c_fft + c_fuse
    add("student, every window", windows, acc([answer(f["student"]) for f in feats]), windows * student_macs)
    curves: dict[str, list[tuple[float, float]]] = {"skimming": [], "skimming + teacher": [], "uniform clips": [],
                                                    "random clips": [], "student uniform": [],
                                                    "student random": []}  # fmt: skip
    for i, k in enumerate(ks):
        random_draws = draws[5 * i : 5 * i + 5]
        u = uniform(k)
        results = {
            "uniform clips": (acc([answer(f["teacher"][u]) for f in feats]), k * c_teacher),
            "random clips": (
                np.mean([acc([answer(f["teacher"][d[v]]) for v, f in enumerate(feats)]) for d in random_draws]),
                k * c_teacher,
            ),  # fmt: skip
            "student uniform": (acc([answer(f["student"][u]) for f in feats]), k * student_macs),
            "student random": (
                np.mean([acc([answer(f["student"][d[v]]) for v, f in enumerate(feats)]) for d in random_draws]),
                k * student_macs,
            ),  # fmt: skip
        }
        answers, teacher_answers, macs = [], [], []
        for f in feats:
            with torch.inference_mode():
                (chosen, probs), m = count_macs(lambda: net.skim_video(f["windows"][None], f["waveform"][None], k))  # noqa: B023
            answers.append(answer(probs[0]))
            teacher_answers.append(answer(f["teacher"][chosen[0]]))
            macs.append(m + windows * c_fft)
        results["skimming"] = (acc(answers), float(np.mean(macs)))
        results["skimming + teacher"] = (acc(teacher_answers), float(np.mean(macs)) + k * c_teacher)
        for name, (a, m) in results.items():
            curves[name].append((m / 1e9, a))
            if k == k_main or name.startswith("skimming"):
                add(LABELS[name].format(k=k), k, a, m)

    # linear probes on the student's features (train split windows, window labels)
    train, train_windows, _ = load(args.train)
    tr_img, tr_aud, tr_y = [], [], []
    for v, row in enumerate(train.rows):
        video, audio = split_windows(train.video[v], train.audio[v], train_windows)
        with torch.inference_mode():
            tr_img.append(net.student.image_features(video))
            tr_aud.append(net.student.audio_features(audio))
        starts = np.arange(train_windows) * pre["window"]
        tr_y.append(torch.from_numpy(window_labels(row, starts, pre["window"], classes)))
    tr_y = torch.cat(tr_y)
    n = len(classes)
    te_aud = torch.cat([f["audio"] for f in feats])
    _, audio_probs = probe(torch.cat(tr_aud), tr_y, te_aud, None, n, return_probs=True)
    audio_probs = audio_probs.view(len(feats), windows, n)
    add("audio only (every window)", windows, acc([answer(p) for p in audio_probs]), windows * (c_audio + c_fft))
    centre = windows // 2
    te_img = torch.stack([f["image"][centre] for f in feats])
    _, image_probs = probe(torch.cat(tr_img), tr_y, te_img, None, n, return_probs=True)
    add("centre frame only", 1, acc([answer(p[None]) for p in image_probs]), c_image)

    dense = rows["dense (teacher, every window)"]
    print("\n| method | K | accuracy | GMACs / video | vs. dense |\n|---|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['k']} | {r['acc']:.3f} | {r['gmacs']:.3f} | {r['gmacs'] / dense['gmacs']:.3f} |")
    print("\ncurves (GMACs, accuracy) for K =", ks)
    for name, pts in curves.items():
        print(f"  {name}: " + ", ".join(f"({m:.2f}, {a:.3f})" for m, a in pts))

    # wall-clock per minute of video, recognize()'s path from the mp4
    model = (net, pre)
    for method in ("skim", "skim-teacher", "dense") if args.timing_videos > 0 else ():
        seconds = media = 0.0
        for row in test.rows[: args.timing_videos]:
            t = time.perf_counter()
            result = recognize(row["path"], args.checkpoint, method=method, steps=k_main, count=False, model=model)
            seconds += time.perf_counter() - t
            media += result["duration"]
        print(f"wall-clock {method}: {seconds / media * 60:.2f} s per minute of video "
              f"({args.timing_videos} videos, decode + model, 2 threads)")  # fmt: skip

    if args.figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.5))
        for name, pts in curves.items():
            m, a = zip(*pts)
            ax.plot(m, a, "o-", label=f"{name} (K = {', '.join(map(str, ks))})")
        for name in ("dense (teacher, every window)", "student, every window", "audio only (every window)",
                     "centre frame only"):  # fmt: skip
            ax.plot(rows[name]["gmacs"], rows[name]["acc"], "s", markersize=8, label=name)
        ax.set_xscale("log")
        ax.set_xlabel("GMACs per 20 s video (log scale)")
        ax.set_ylabel("test accuracy (12 actions)")
        ax.set_title(f"actions test split, {len(feats)} videos")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.figure, dpi=120)
        print(f"figure -> {args.figure}")


if __name__ == "__main__":
    main()
