"""Sound source localization on the `instruments` test split: every method and the baselines in one table.

    .venv/bin/python benchmarks/localize.py \
        --method lvs=runs/localization/instruments_lvs/version_0/weights/best \
        --method ezvsl=runs/localization/instruments_ezvsl/version_0/weights/best \
        --method attention=runs/localization/instruments_attention/version_0/weights/best \
        --method sync_cam=assets/checkpoints/sync_instruments \
        --figure docs/img/localize_instruments.png --real ../shared/real/video --real-figure docs/img/localize_real.png

Each test clip (4 s) is localized frame by frame as `avlearn localize` does (the window centred on each
frame), and every 4th frame whose window lies inside the clip (frames 12, 16, ..., 84; 19 per clip) is
scored against the union of the sounding objects' masks at that frame (avlearn.metrics.localization): maps
upsampled to 224x224 and min-max normalized, binarized at the median (the field's protocol) and at half the
maximum; cIoU@0.5, mean cIoU, AUC; the pointing game (peak inside a sounding object's box). Silent
distractor scenes (a clip with at least one silent object): the fraction of frames whose peak lies on a
sounding object's box, and on a silent one's. Speed: `avlearn localize`'s path (decode at 224x224, model,
maps upsampled to 224x224), writing the mp4 excluded, over the first test clips, in frames per second.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from avlearn import progress
from avlearn.data.cache import decode_clips
from avlearn.data.manifest import load_annotations, read_manifest
from avlearn.io import read_clip
from avlearn.metrics.localization import (
    baseline_maps,
    binarize,
    ciou,
    pointing_hits,
    prepare_maps,
    prepare_masks,
    summarize,
)
from avlearn.pipelines.localize import Localizer, normalize_each, overlay

EVAL_FRAMES = list(range(12, 85, 4))


def ground_truth(rows: list[dict]) -> dict[str, torch.Tensor]:
    """Per evaluated frame: sounding-mask union, sounding-box union, silent-box union (all 224x224), scene flag."""
    masks, boxes, silent_boxes, has_silent = [], [], [], []
    for row in rows:
        ann = load_annotations(row["annotations"])
        sounding = ann["sounding"].astype(bool)
        side = ann["masks"].shape[-1]
        for f in EVAL_FRAMES:
            masks.append(torch.from_numpy(ann["masks"][f][sounding].any(0)))
            for target, keep in ((boxes, sounding), (silent_boxes, ~sounding)):
                m = torch.zeros(side, side, dtype=torch.bool)
                for x0, y0, x1, y1 in ann["boxes"][f][keep]:
                    m[int(y0) : int(np.ceil(y1)), int(x0) : int(np.ceil(x1))] = True
                target.append(m)
            has_silent.append(bool((~sounding).any()))
    return {
        "mask": prepare_masks(torch.stack(masks)),
        "box": prepare_masks(torch.stack(boxes)),
        "silent_box": prepare_masks(torch.stack(silent_boxes)),
        "has_silent": torch.tensor(has_silent),
    }


@torch.no_grad()
def method_maps(loc: Localizer, clips) -> torch.Tensor:
    """Raw maps ``(N_clips · 19, h, w)`` at the evaluated frames."""
    out = []
    for video, audio in progress.bar(zip(clips.video, clips.audio), total=len(clips.video), desc=loc.method):
        out.append(loc.frame_maps(video, audio, at=EVAL_FRAMES))
    return torch.cat(out)


def score(maps224: torch.Tensor, gt: dict[str, torch.Tensor], peaks: bool = True) -> dict[str, float]:
    row = {}
    for rule in ("median", "half_max"):
        s = summarize(ciou(binarize(maps224, rule), gt["mask"]))
        row.update({f"{rule}/{k}": v for k, v in s.items()})
    s = summarize(ciou(binarize(maps224, "half_max"), gt["box"]))  # boxes, as Flickr-SoundNet and VGG-SS annotate
    row.update({f"half_max_box/{k}": v for k, v in s.items()})
    if peaks:
        row["pointing"] = float(pointing_hits(maps224, gt["box"]).float().mean())
        d = gt["has_silent"]
        row["distractor/on_sounding"] = float(pointing_hits(maps224[d], gt["box"][d]).float().mean())
        row["distractor/on_silent"] = float(pointing_hits(maps224[d], gt["silent_box"][d]).float().mean())
    return row


def speed(loc: Localizer, rows: list[dict], num_clips: int) -> float:
    """Frames per second of `avlearn localize`'s path without writing: decode at 224x224, maps at 224x224."""
    frames = 0
    start = time.perf_counter()
    for row in rows[:num_clips]:
        clip = read_clip(
            row["path"], 0.0, row["end"] - row["start"], fps=loc.fps, size=(224, 224), sample_rate=loc.sample_rate
        )
        video = clip.video.permute(1, 2, 3, 0)
        maps = loc.frame_maps(video, clip.audio[0])
        big = torch.nn.functional.interpolate(maps[:, None], size=(224, 224), mode="bilinear")[:, 0]
        normalize_each(big)
        frames += video.shape[0]
    return frames / (time.perf_counter() - start)


def figure(path: Path, methods: dict[str, Localizer], rows: list[dict], picks: list[int], size: int = 224) -> None:
    """Rows: test clips; columns: the frame with sounding (green) and silent (red) boxes, then each method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(picks), 1 + len(methods), figsize=(2.3 * (1 + len(methods)), 2.4 * len(picks)))
    for r, i in enumerate(picks):
        row = rows[i]
        loc0 = next(iter(methods.values()))
        clip = read_clip(
            row["path"], 0.0, row["end"] - row["start"], fps=loc0.fps, size=(size, size), sample_rate=16000
        )
        frames = clip.video.permute(1, 2, 3, 0)
        f = 48
        ann = load_annotations(row["annotations"])
        scale = size / ann["masks"].shape[-1]
        axes[r, 0].imshow(frames[f].numpy())
        for (x0, y0, x1, y1), s in zip(ann["boxes"][f] * scale, ann["sounding"]):
            color = "lime" if s else "red"
            axes[r, 0].add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color=color, lw=1.5))
        axes[r, 0].set_title(f"test {Path(row['path']).stem}, {f / 25:.2f} s", fontsize=8)
        for c, (name, loc) in enumerate(methods.items(), start=1):
            m = loc.frame_maps(frames, clip.audio[0], at=[f])
            big = torch.nn.functional.interpolate(m[:, None], size=(size, size), mode="bilinear")[:, 0]
            axes[r, c].imshow(overlay(frames[f : f + 1], normalize_each(big), torch.zeros(1, dtype=torch.bool))[0])
            y, x = divmod(int(big[0].argmax()), size)
            axes[r, c].plot(x, y, "w+", markersize=10, markeredgewidth=2)
            if r == 0:
                axes[r, c].set_title(name, fontsize=9)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def real_figure(path: Path, loc: Localizer, folder: Path, times: tuple[float, ...] = (1.0, 2.5, 4.0)) -> None:
    """Each real clip in ``folder``: three frames with the map of the default checkpoint."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from avlearn.io import MediaError, probe

    clips = sorted(p for p in folder.iterdir() if p.suffix in (".mp4", ".avi", ".mkv", ".webm"))
    usable = []
    for p in clips:
        try:
            if probe(p).audio is not None:
                usable.append(p)
        except MediaError:
            pass
    fig, axes = plt.subplots(len(usable), len(times), figsize=(3.0 * len(times), 2.4 * len(usable)), squeeze=False)
    for r, p in enumerate(usable):
        clip = read_clip(p, 0.0, min(probe(p).duration, max(times) + 1.0), fps=loc.fps, size=180, sample_rate=16000)
        frames = clip.video.permute(1, 2, 3, 0)
        maps = loc.frame_maps(frames, clip.audio[0])
        h, w = frames.shape[1:3]
        for c, t in enumerate(times):
            k = min(round(t * loc.fps), frames.shape[0] - 1)
            big = torch.nn.functional.interpolate(maps[k : k + 1, None], size=(h, w), mode="bilinear")[:, 0]
            axes[r, c].imshow(overlay(frames[k : k + 1], normalize_each(big), torch.zeros(1, dtype=torch.bool))[0])
            axes[r, c].set_title(f"{p.name} {k / loc.fps:.1f} s", fontsize=8)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", default="data/instruments/test.jsonl")
    parser.add_argument("--method", action="append", required=True, help="NAME=CHECKPOINT (repeat); first = default")
    parser.add_argument("--num-clips", type=int, default=None, help="only the first N test clips (a quick check)")
    parser.add_argument("--speed-clips", type=int, default=20)
    parser.add_argument("--figure", type=Path, default=None)
    parser.add_argument("--real", type=Path, default=None, help="folder of real clips for --real-figure")
    parser.add_argument("--real-figure", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(2)

    methods = {}
    for spec in args.method:
        name, ck = spec.split("=", 1)
        methods[name] = Localizer(ck)
    first = next(iter(methods.values()))
    rows = read_manifest(args.manifest)[: args.num_clips]
    cache = Path(args.manifest).parent / ".avlearn-cache" if args.num_clips is None else None
    clips = decode_clips(rows, fps=first.fps, size=first.size, sample_rate=first.sample_rate, cache_dir=cache)
    gt = ground_truth(clips.rows)
    n = len(gt["mask"])
    print(
        f"{len(clips.rows)} test clips, {n} frames scored ({int(gt['has_silent'].sum())} in silent-distractor scenes)"
    )
    area = gt["mask"].flatten(1).float().mean(1)
    print(f"sounding area: mean {area.mean():.3f} of the frame, median {area.median():.3f}, max {area.max():.3f}")

    table = {}
    for name, loc in methods.items():
        t0 = time.perf_counter()
        table[name] = score(prepare_maps(method_maps(loc, clips)), gt)
        table[name]["fps"] = speed(loc, clips.rows, args.speed_clips)
        print(f"  {name}: scored in {time.perf_counter() - t0:.0f} s", flush=True)
    for kind in ("whole", "centre", "random"):
        table[f"baseline: {kind}"] = score(prepare_maps(baseline_maps(kind, n)), gt, peaks=kind != "whole")
    table["ground-truth mask as map"] = score(prepare_maps(gt["mask"].float()), gt)

    tables = [
        [
            ("median/ciou@0.5", "cIoU@0.5"),
            ("median/mean_ciou", "mean cIoU"),
            ("median/auc", "AUC"),
            ("half_max/ciou@0.5", "cIoU@0.5, half-max"),
            ("half_max/mean_ciou", "mean cIoU, half-max"),
            ("half_max/auc", "AUC, half-max"),
        ],
        [
            ("pointing", "pointing game"),
            ("distractor/on_sounding", "distractor scenes: peak on sounding"),
            ("distractor/on_silent", "peak on silent"),
            ("half_max_box/ciou@0.5", "cIoU@0.5, half-max, boxes"),
            ("half_max_box/mean_ciou", "mean cIoU, half-max, boxes"),
            ("half_max_box/auc", "AUC, half-max, boxes"),
            ("fps", "frames/s"),
        ],
    ]
    for cols in tables:
        print("\n| method | " + " | ".join(c for _, c in cols) + " |")
        print("|---|" + "---:|" * len(cols))
        for name, row in table.items():
            cells = ["-" if k not in row else f"{row[k]:.1f}" if k == "fps" else f"{row[k]:.3f}" for k, _ in cols]
            print(f"| {name} | " + " | ".join(cells) + " |")

    if args.figure:
        picks = [i for i, r in enumerate(clips.rows)]
        kinds = {}
        for i in picks:
            s = tuple(sorted(src["sounding"] for src in clips.rows[i]["sources"]))
            kinds.setdefault(s, i)
        figure(args.figure, methods, clips.rows, sorted(kinds.values())[:5])
        print(f"wrote {args.figure}")
    if args.real and args.real_figure:
        real_figure(args.real_figure, first, args.real)
        print(f"wrote {args.real_figure}")


if __name__ == "__main__":
    main()
