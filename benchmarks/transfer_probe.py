"""Linear probe on sync-pretrained features vs. the same probe on randomly initialized encoders.

For every clip of the `actions` world (untrimmed, one action label per clip) the video and spectrogram
stems of a sync model encode 1 s windows drawn evenly from the clip's labelled action segments; each stem's
feature map is pooled (mean and max) and the windows averaged into one clip feature. A multinomial
logistic regression (L2, standardized features) is fitted on the train split and scored on the test split,
whose action motion variants are never seen in training. The same is done with the same architecture at
random initialization; the difference in test accuracy is what sync pretraining bought.

Run:  .venv/bin/python benchmarks/transfer_probe.py --checkpoint assets/checkpoints/sync_speakers \
          --train data/actions/train.jsonl --test data/actions/test.jsonl
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from avlearn.data.manifest import read_manifest
from avlearn.io import read_clip
from avlearn.models import create_model
from avlearn.models.weights import load_component, read_weights_info


def windows(row: dict, count: int, length: float) -> list[float]:
    """Start times of ``count`` windows spread evenly over the clip's labelled segments."""
    spans = [(s["start"], s["end"] - length) for s in row.get("segments", []) if s["end"] - s["start"] >= length]
    if not spans:
        return [max(0.0, (row["end"] - row["start"] - length) / 2)]
    total = sum(b - a for a, b in spans)
    starts = []
    for k in range(count):
        u = (k + 0.5) / count * total
        for a, b in spans:
            if u <= b - a:
                starts.append(a + u)
                break
            u -= b - a
    return starts


@torch.no_grad()
def clip_features(encoders: dict, row: dict, pre: dict, count: int) -> torch.Tensor:
    feats = []
    for start in windows(row, count, pre["window"]):
        clip = read_clip(row["path"], start, pre["window"], fps=pre["fps"], size=(pre["size"],) * 2,
                         sample_rate=pre["sample_rate"])  # fmt: skip
        frames = clip.video.permute(1, 2, 3, 0)[None]  # (C, T, H, W) -> (1, T, H, W, C)
        v = encoders["video"].forward_features(frames)  # (1, D, T, h, w), its front-end included
        a = encoders["audio"].forward_features(clip.audio, frames.shape[1])  # (1, D, F', T), front-end included
        feats.append(torch.cat([v.flatten(2).mean(-1), v.flatten(2).amax(-1), a.flatten(2).mean(-1),
                                a.flatten(2).amax(-1)], dim=1)[0])  # fmt: skip
    return torch.stack(feats).mean(0)


def probe(train_x, train_y, test_x, test_y, num_classes: int, weight_decay: float = 1e-3, return_probs: bool = False):
    """Logistic regression (LBFGS) on standardized features: test accuracy (NaN without ``test_y``), and with
    ``return_probs`` also the test class probabilities."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    torch.manual_seed(0)
    layer = torch.nn.Linear(train_x.shape[1], num_classes)
    opt = torch.optim.LBFGS(layer.parameters(), max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(layer(train_x), train_y) + weight_decay * layer.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        logits = layer(test_x)
    accuracy = float("nan") if test_y is None else float((logits.argmax(1) == test_y).float().mean())
    return (accuracy, logits.softmax(1)) if return_probs else accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="assets/checkpoints/sync_speakers")
    parser.add_argument("--train", required=True)
    parser.add_argument("--test", required=True)
    parser.add_argument("--windows", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(2)
    doc = read_weights_info(args.checkpoint)
    doc_model, pre = doc["model"], doc["preprocessing"]
    pretrained, random_init = {}, {}
    torch.manual_seed(0)
    for part in ("video", "audio"):  # each encoder loads on its own, with its front-end
        pretrained[part], spec = load_component(args.checkpoint, part)
        random_init[part] = create_model(spec["model"], **spec["args"]).eval()
    train_rows, test_rows = read_manifest(args.train), read_manifest(args.test)
    classes = sorted({r["labels"][0] for r in train_rows + test_rows})
    results = {}
    for name, encoders in (("sync-pretrained", pretrained), ("random init", random_init)):
        xs = [
            torch.stack([clip_features(encoders, r, pre, args.windows) for r in rows])
            for rows in (train_rows, test_rows)
        ]
        ys = [torch.tensor([classes.index(r["labels"][0]) for r in rows]) for rows in (train_rows, test_rows)]
        results[name] = probe(xs[0], ys[0], xs[1], ys[1], len(classes))
    print(f"actions: {len(train_rows)} train / {len(test_rows)} test clips, {len(classes)} classes, "
          f"{args.windows} windows of {pre['window']} s per clip")  # fmt: skip
    print(f"encoders of {doc_model} ({args.checkpoint})")
    for name, acc in results.items():
        print(f"linear probe, {name:<16} test accuracy {acc:.3f}")
    print(f"difference: {100 * (results['sync-pretrained'] - results['random init']):+.1f} points")


if __name__ == "__main__":
    main()
