"""Active speaker on real clips: which face is making the sound, frame by frame (`avlearn localize`'s faces path).

    .venv/bin/python benchmarks/active_speaker.py all --checkpoint CKPT      # or one of: threshold pairs car show
    .venv/bin/python benchmarks/active_speaker.py instruments --checkpoint CKPT

Only people never used in training are measured (data/real/test.jsonl, split by person); the threshold is
chosen on the validation people (data/real/val.jsonl), never on the test ones.

- threshold: each validation face with its own sound (speaking) and with another validation person's sound
  (a mouth that does not go with what is heard), every frame scored; the threshold with the best balanced
  accuracy between the two, and the average precision of the scores.
- pairs ("who is speaking"): two talking heads of different held-out people side by side at the same height,
  only one of them heard (the other's own sound dropped), each pair in both layouts and with either heard,
  as long as the shorter clip and at most --max-seconds; written to a temporary folder. Per frame the face
  the faces path chooses (the highest score, if it reaches the threshold and the sound is not silent) is
  right when it is the heard one; "peak" also counts the highest score alone (no threshold). "Turns": the
  same pictures with the left person heard for the first half and the right one for the second (and the
  reverse). --split val measures the validation people instead (how SMOOTH_FRAMES and the mirror were
  chosen); --smooth 1,25,... reports several smoothing widths from the same scores.
- car: MSDWILD's in-car face tracks (one face each, the car's whole sound), labelled speaking / not speaking
  as a whole: every face-frame scored; average precision over the face-frames ranked by score (the
  active-speaker field's mAP, AVA-ActiveSpeaker style, non-interpolated), accuracy at the threshold per frame
  and per track (the track's mean score).
- show: MSDWILD's 3-person talk show with its RTTM; the speakers were matched to the faces by looking at the
  frames of their turns (SHOW_FACES); per-frame accuracy of the chosen face in single-speaker turns.
- instruments: `avlearn localize` (--mode auto, the faces path's checkpoint given) on the instruments test
  clips must take the dense path (no face there), so the dense figures of benchmarks/localize.py stand.
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from avlearn.data.manifest import read_manifest
from avlearn.io import read_clip
from avlearn.io.write import write_video
from avlearn.pipelines.localize import (
    DEFAULT_CHECKPOINT,
    FACE_LANDMARKS,
    SILENCE_DBFS,
    SMOOTH_FRAMES,
    SPEAKING_THRESHOLD,
    ActiveSpeaker,
    Localizer,
    localize,
    speaking_faces,
    window_rms_dbfs,
)
from avlearn.pipelines.mouths import clip_mouths, smooth_scores

SHARED = Path(__file__).resolve().parents[2] / "shared" / "real-av" / "video"
MSDWILD = SHARED / "X-LANCE+MSDWILD"
ONE_VOICE = ("msdwild-car", "msdwild-show")  # groups that are not one person talking to the camera
# The talk show's RTTM speakers, matched by looking at their turns (docs/localization.md): speaker 2 is the man
# on the left (light blue shirt; he talks 5.6-11.3 s while the boys look at him), speaker 0 the boy in the green
# shirt in the middle (0.95-5.6 s and 12.5-24.3 s), speaker 1 the boy in the red shirt on the right (0-0.8 s,
# under speaker 2). A face track is a speaker's when its median centre lies in the speaker's span of the width.
SHOW_FACES = {2: (0.0, 0.44), 0: (0.44, 0.69), 1: (0.69, 1.0)}
FPS, SR = 25.0, 16000


def table(header: list[str], rows: list[list], align: str = "---:") -> None:
    """A markdown table: the first column left-aligned, the others as ``align``."""
    print("| " + " | ".join(header) + " |")
    print("|---|" + "|".join([align] * (len(header) - 1)) + "|")
    for row in rows:
        print("| " + " | ".join(str(x) for x in row) + " |")


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Non-interpolated average precision: the mean, over the positives ranked by score, of the precision at
    each (as sklearn's ``average_precision_score``)."""
    order = np.argsort(-scores, kind="stable")
    hits = labels[order].astype(bool)
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].mean()) if hits.any() else float("nan")


def best_threshold(pos: np.ndarray, neg: np.ndarray) -> tuple[float, float]:
    """The threshold (midway between neighbouring scores) with the best balanced accuracy, and that accuracy."""
    values = np.unique(np.concatenate([pos, neg]))
    cuts = np.concatenate([[values[0] - 1], (values[1:] + values[:-1]) / 2, [values[-1] + 1]])
    pos_s, neg_s = np.sort(pos), np.sort(neg)
    tpr = 1 - np.searchsorted(pos_s, cuts, side="left") / len(pos_s)  # share of pos >= cut
    tnr = np.searchsorted(neg_s, cuts, side="left") / len(neg_s)  # share of neg < cut
    bal = (tpr + tnr) / 2
    k = int(np.argmax(bal))
    return float(cuts[k]), float(bal[k])


def sound(path: Path, seconds: float) -> torch.Tensor:
    """The clip's sound at 16 kHz mono from 0, ``seconds`` long (zero-padded)."""
    audio = read_clip(path, 0.0, seconds, sample_rate=SR, video=False).audio[0]
    return F.pad(audio, (0, max(0, round(seconds * SR) - audio.shape[0])))[: round(seconds * SR)]


def one_voice_people(split: str) -> dict[str, dict]:
    """The first clip of each person of ``split`` who talks alone to the camera (speech, not 'speech?')."""
    people: dict[str, dict] = {}
    for row in read_manifest(f"data/real/{split}.jsonl"):
        meta = row["meta"]
        if meta["group"] in ONE_VOICE or meta["kind"] != "speech" or len(meta["people"]) != 1:
            continue
        people.setdefault(meta["people"][0], row)
    return people


def threshold(speaker: ActiveSpeaker, max_seconds: float) -> dict:
    people = one_voice_people("val")
    names = sorted(people)
    pos, neg = [], []
    mouths = {}
    for name in names:
        path = Path(people[name]["path"])
        found = clip_mouths(path, speaker.fps, speaker.size)
        n = min(found.num_frames, round(max_seconds * FPS))
        mouths[name] = [m[:n] for m in found.mouths]
        print(f"  {name}: {path.name}, {len(found.tracks)} face(s), {n} frames")
    for i, name in enumerate(names):
        if not mouths[name]:
            continue
        n = len(mouths[name][0])
        other = names[(i + 1) % len(names)]
        own = speaker.scores(mouths[name], sound(Path(people[name]["path"]), n / FPS))
        theirs = speaker.scores(mouths[name], sound(Path(people[other]["path"]), n / FPS))
        pos.append(own.flatten().numpy())
        neg.append(theirs.flatten().numpy())
    pos, neg = np.concatenate(pos), np.concatenate(neg)
    cut, bal = best_threshold(pos, neg)
    ap = average_precision(np.concatenate([pos, neg]), np.r_[np.ones(len(pos)), np.zeros(len(neg))])
    print("\n### Threshold on the validation people\n")
    header = ["people", "speaking frames", "not-speaking frames", "mean score, own sound", "mean score, other's"]
    table(
        header + ["AP", "threshold", "balanced accuracy"],
        [
            [
                len(names),
                len(pos),
                len(neg),
                f"{pos.mean():+.2f}",
                f"{neg.mean():+.2f}",
                f"{ap:.3f}",
                f"{cut:+.2f}",
                f"{bal:.3f}",
            ]
        ],
    )
    return {"threshold": cut, "balanced_accuracy": bal, "ap": ap}


def compose(left: Path, right: Path, heard: Path, seconds: float, height: int, out: Path) -> tuple[int, int]:
    """``left`` and ``right`` side by side at ``height`` (aspect kept), the sound of ``heard`` alone; returns the
    left column's width and the whole width."""
    cols = []
    for p in (left, right):
        v = read_clip(p, 0.0, seconds, fps=FPS, video=True, audio=False).video  # (C, T, H, W)
        w = round(v.shape[-1] * height / v.shape[-2] / 2) * 2
        v = F.interpolate(v.permute(1, 0, 2, 3).float(), size=(height, w), mode="bilinear", antialias=True)
        cols.append(v.round().clamp(0, 255).to(torch.uint8))
    t = min(len(c) for c in cols)
    video = torch.cat([c[:t] for c in cols], dim=3).permute(1, 0, 2, 3)  # (C, T, H, W)
    write_video(out, video, FPS, sound(heard, t / FPS)[None], SR)
    return cols[0].shape[-1], video.shape[-1]


def dense_sides(loc: Localizer, clip: Path, seconds: float, split: float) -> list[str]:
    """Per frame, the side (of the column boundary at ``split`` of the width) where the dense map peaks: what
    `avlearn localize` answered on real faces before the faces path."""
    c = read_clip(clip, 0.0, seconds, fps=loc.fps, size=224, sample_rate=loc.sample_rate)
    maps = loc.frame_maps(c.video.permute(1, 2, 3, 0), c.audio[0])  # (T, h, w) over the whole picture
    u = (maps.amax(1).argmax(1).float() + 0.5) / maps.shape[-1]
    return ["left" if x < split else "right" for x in u.tolist()]


def pairs(speaker: ActiveSpeaker, max_seconds: float, height: int, split: str, widths: list[int]) -> dict:
    people = one_voice_people(split)
    names = sorted(people)
    dense = Localizer(DEFAULT_CHECKPOINT, "cpu") if split == "test" else None  # the before figure: test only
    per_person = defaultdict(lambda: np.zeros(4))  # chosen right, peak right, dense right, frames (first width)
    rows, t0 = [], time.perf_counter()
    print(f"\n{len(names)} {split} people: {', '.join(names)}; smoothing widths {widths} frames")
    with tempfile.TemporaryDirectory(prefix="avlearn-asd-") as tmp:
        for a, b in itertools.permutations(names, 2):  # a on the left, b on the right
            pa, pb = Path(people[a]["path"]), Path(people[b]["path"])
            seconds = min(max_seconds, people[a]["end"], people[b]["end"])
            clips = {h: Path(tmp) / f"{a}+{b}_{h}.mp4" for h in (a, b)}
            for h, p in clips.items():
                mid, width = compose(pa, pb, Path(people[h]["path"]), seconds, height, p)
            found = clip_mouths(clips[a], speaker.fps, speaker.size)
            sides = [
                "left" if np.nanmedian((tr.boxes[:, 0] + tr.boxes[:, 2]) / 2) < mid else "right" for tr in found.tracks
            ]
            t = found.num_frames
            own = {h: sound(clips[h], t / FPS) for h in (a, b)}
            half, cut = t // 2, round(t / 2 / FPS * SR)
            # one heard all along (either), and turns: the left one heard for the first half, then the right
            # one (and the reverse); the picture is the same, only the sound differs
            variants = [("one", h, own[h], ["left" if h == a else "right"] * t) for h in (a, b)] + [
                ("turns", f"{x}>{y}", torch.cat([own[x][:cut], own[y][cut:]]), [sx] * half + [sy] * (t - half))
                for x, y, sx, sy in ((a, b, "left", "right"), (b, a, "right", "left"))
            ]
            for kind, h, audio, truth in variants:
                raw = speaker.scores(found.mouths, audio, smooth_frames=1) if found.tracks else None
                if raw is not None:
                    silent = window_rms_dbfs(audio, raw.shape[1], FPS, SR, speaker.num_frames) < SILENCE_DBFS
                row = {"kind": kind, "faces": len(found.tracks), "frames": t, "heard": h}
                for w in widths:
                    if raw is not None:
                        scores = smooth_scores(raw, w)
                        chosen = speaking_faces(scores, silent, speaker.threshold)
                        peak = scores.argmax(0).tolist()
                    else:
                        chosen = peak = [None] * t
                    row[w] = {
                        "chosen": np.mean([c is not None and sides[c] == y for c, y in zip(chosen, truth)]),
                        "peak": np.mean([c is not None and sides[c] == y for c, y in zip(peak, truth)]),
                        "nobody": np.mean([c is None for c in chosen]),
                    }
                rows.append(row)
                first = row[widths[0]]
                if kind == "one" and dense is not None:
                    split_at = mid / width
                    row["dense"] = np.mean([s == truth[0] for s in dense_sides(dense, clips[h], t / FPS, split_at)])
                if kind == "one":
                    per_person[h] += [first["chosen"] * t, first["peak"] * t, row.get("dense", np.nan) * t, t]
                print(
                    f"  {a} | {b}, {kind} {h}: {row['faces']} faces, {t} frames, peak right "
                    + ", ".join(f"{row[w]['peak']:.2f}" for w in widths)
                    + f"; chosen right {first['chosen']:.2f}, no one {first['nobody']:.2f}"
                    + (f", dense peak right {row['dense']:.2f}" if "dense" in row else ""),
                    flush=True,
                )

    def pooled(kind: str, w: int | None, x: str) -> float:
        """A share over a kind's composites, weighted by frames; ``w`` None: the row's own ``x``."""
        of_kind = [r for r in rows if r["kind"] == kind]
        frames = np.array([r["frames"] for r in of_kind], float)
        values = np.array([r[x] if w is None else r[w][x] for r in of_kind])
        return float((values * frames).sum() / frames.sum())

    keys = ("chosen", "peak", "nobody")
    results = {k: {w: {x: pooled(k, w, x) for x in keys} for w in widths} for k in ("one", "turns")}
    before = pooled("one", None, "dense") if dense is not None else None
    print(f"\n### Who is speaking: two {split} people side by side (threshold {speaker.threshold:+.2f})\n")
    print("one: one of them heard all along; turns: the left one for the first half, then the right (and reverse)\n")
    header = ["kind", "smoothing (frames)", "composites", "with 2 faces found", "frames"]
    table(
        header + ["chosen face is the heard one", "peak (highest score)", "no one chosen"],
        [
            [kind, w, sum(r["kind"] == kind for r in rows), sum(r["faces"] == 2 for r in rows if r["kind"] == kind)]
            + [sum(r["frames"] for r in rows if r["kind"] == kind)]
            + [f"{results[kind][w][x]:.3f}" for x in keys]
            for kind in ("one", "turns")
            for w in widths
        ],
    )
    if before is not None:
        print(f"\nbefore: the dense map's peak (localize_instruments) on the heard side in {before:.3f} of the frames")
    print(f"\nper heard person, smoothing {widths[0]}:\n")
    table(
        ["heard person", "frames", "chosen face is theirs", "peak on theirs", "dense peak on theirs"],
        [[name, int(v[3]), *(f"{x / max(1, v[3]):.3f}" for x in v[:3])] for name, v in sorted(per_person.items())],
    )
    print(f"\n({time.perf_counter() - t0:.0f} s)")
    return {"composites": len(rows), "dense": before, **results}


def main_track(found) -> int | None:
    """The face a one-face crop is about: the track with the largest median box."""
    if not found.tracks:
        return None
    areas = [np.nanmedian((t.boxes[:, 2] - t.boxes[:, 0]) * (t.boxes[:, 3] - t.boxes[:, 1])) for t in found.tracks]
    return int(np.argmax(areas))


def car(speaker: ActiveSpeaker) -> dict:
    scores, labels, per_track = [], [], []
    for label, folder in ((1, "speaking_mp4s"), (0, "silence_mp4s")):
        for path in sorted((MSDWILD / "samples" / "demo1" / folder).glob("*.mp4"), key=lambda p: int(p.stem)):
            found = clip_mouths(path, speaker.fps, speaker.size)
            k = main_track(found)
            if k is None:  # no face: every frame scored as not speaking
                s = torch.full((found.num_frames,), -np.inf)
            else:
                s = speaker.scores([found.mouths[k]], sound(path, found.num_frames / FPS))[0]
            scores.append(s.numpy())
            labels.append(np.full(len(s), label))
            per_track.append((folder, path.stem, label, float(s.mean()), len(found.tracks)))
            print(
                f"  {folder}/{path.name}: {len(found.tracks)} face(s), {len(s)} frames, mean score {s.mean():+.2f}",
                flush=True,
            )
    s, y = np.concatenate(scores), np.concatenate(labels)
    ap = average_precision(s, y)
    pred = s >= speaker.threshold
    acc = float((pred == y).mean())
    bal = float((pred[y == 1].mean() + (~pred[y == 0]).mean()) / 2)
    clip_acc = float(np.mean([(m >= speaker.threshold) == lab for _, _, lab, m, _ in per_track]))
    print("\n### MSDWILD in-car face tracks (8 speaking, 17 not speaking)\n")
    header = ["face-frames", "speaking", "mAP (AP over face-frames)", "frame accuracy", "frame balanced accuracy"]
    table(
        header + ["track accuracy"],
        [[len(s), int(y.sum()), f"{ap:.3f}", f"{acc:.3f}", f"{bal:.3f}", f"{clip_acc:.3f}"]],
    )
    return {"map": ap, "frame_accuracy": acc, "balanced": bal, "track_accuracy": clip_acc}


def rttm_turns(path: Path, num_frames: int) -> np.ndarray:
    """``(speakers, T)`` bool: who speaks at each frame (the RTTM's SPEAKER lines)."""
    lines = [line.split() for line in path.read_text().splitlines() if line.startswith("SPEAKER")]
    ids = sorted({int(x[7]) for x in lines})
    active = np.zeros((max(ids) + 1, num_frames), bool)
    for x in lines:
        t0, dur = float(x[3]), float(x[4])
        active[int(x[7]), round(t0 * FPS) : round((t0 + dur) * FPS)] = True
    return active


def show(speaker: ActiveSpeaker) -> dict:
    clip = MSDWILD / "visualization" / "RELEASED_dark_labels" / "00001.mp4"
    found = clip_mouths(clip, speaker.fps, speaker.size)
    width = read_clip(clip, 0.0, 0.04, fps=FPS, audio=False).video.shape[-1]
    whose = []
    for k, tr in enumerate(found.tracks):
        u = float(np.nanmedian((tr.boxes[:, 0] + tr.boxes[:, 2]) / 2)) / width
        whose.append(next(s for s, (lo, hi) in SHOW_FACES.items() if lo <= u < hi))
        print(f"  face {k}: centre at {u:.2f} of the width -> speaker {whose[-1]}, landmarks {found.landmarks[k]:.2f}")
    audio = sound(clip, found.num_frames / FPS)
    scores = speaker.scores(found.mouths, audio)
    t = scores.shape[1]
    silent = window_rms_dbfs(audio, t, FPS, SR, speaker.num_frames) < SILENCE_DBFS
    chosen = speaking_faces(scores, silent, speaker.threshold)
    peak = scores.argmax(0).tolist()
    active = rttm_turns(clip.parent.parent / "rttm_per_file" / "00001.rttm", t)
    single = active.sum(0) == 1
    truth = active.argmax(0)
    table = []
    for s in sorted(set(truth[single].tolist())):
        at = np.flatnonzero(single & (truth == s))
        ok = np.mean([chosen[f] is not None and whose[chosen[f]] == s for f in at])
        okp = np.mean([whose[peak[f]] == s for f in at])
        table.append((s, len(at), ok, okp))
    at = np.flatnonzero(single)
    ok = float(np.mean([chosen[f] is not None and whose[chosen[f]] == truth[f] for f in at]))
    okp = float(np.mean([whose[peak[f]] == truth[f] for f in at]))
    print("\n### MSDWILD talk show (3 people, RTTM), single-speaker frames\n")
    print("| speaker (face) | frames | chosen face right | peak right |\n|---|---:|---:|---:|")
    names = {2: "2 (left, man)", 0: "0 (middle, green shirt)", 1: "1 (right, red shirt)"}
    for s, n, a, b in table:
        print(f"| {names[s]} | {n} | {a:.3f} | {b:.3f} |")
    print(f"| **all** | {len(at)} | {ok:.3f} | {okp:.3f} |")
    return {"frames": len(at), "chosen": ok, "peak": okp}


def instruments(args, speaker: ActiveSpeaker) -> dict:
    """Every test clip through the face pass that ``--mode auto`` starts with (a face found means the faces
    path); the first ``--num-clips`` through `avlearn localize` itself."""
    rows = read_manifest(args.instruments)
    shares = {r["path"]: clip_mouths(r["path"], speaker.fps, speaker.size).landmarks for r in rows}
    detected = {p: max(v) for p, v in shares.items() if v}  # clips with a face track: its best lip share
    with_faces = [p for p, v in detected.items() if v >= FACE_LANDMARKS]
    modes = defaultdict(int)
    with tempfile.TemporaryDirectory(prefix="avlearn-asd-") as tmp:
        for row in rows[: args.num_clips]:
            result = localize(row["path"], Path(tmp) / "out", mode="auto", speaker_checkpoint=args.checkpoint)
            doc = json.loads((Path(tmp) / "out" / "peaks.json").read_text())
            modes[(result.mode, doc["mode_reason"])] += 1
    print("\n### The instruments test clips, `avlearn localize --mode auto`\n")
    print(
        f"face pass: BlazeFace tracks in {len(detected)} of {len(rows)} clips, FaceMesh lips on at most "
        f"{max(detected.values(), default=0):.2f} of a track's frames; faces path in {len(with_faces)} {with_faces}\n"
    )
    table(
        ["path taken (localize run end to end)", "why", "clips"], [[m, why, n] for (m, why), n in sorted(modes.items())]
    )
    return {"with_faces": len(with_faces), "clips": len(rows), **{m: n for (m, _), n in modes.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("all", "threshold", "pairs", "car", "show", "instruments"))
    parser.add_argument("--checkpoint", required=True, help="sync checkpoint that reads mouths")
    parser.add_argument("--threshold", type=float, default=None, help="default: chosen on val (all) or the shipped one")
    parser.add_argument("--max-seconds", type=float, default=6.0, help="pairs: composites at most this long")
    parser.add_argument("--val-seconds", type=float, default=10.0, help="threshold: at most this much of a val clip")
    parser.add_argument("--height", type=int, default=256, help="pairs: the composites' height")
    parser.add_argument("--no-flip", action="store_true", help="score the mouths as they are only (no mirror)")
    parser.add_argument("--split", default="test", choices=("test", "val"), help="pairs: whose composites")
    parser.add_argument(
        "--smooth",
        default=None,
        help="frames each face's score is averaged over (default the shipped SMOOTH_FRAMES); pairs takes a "
        "comma-separated list and reports each, the first in the per-person table",
    )
    parser.add_argument("--instruments", default="data/instruments/test.jsonl")
    parser.add_argument("--num-clips", type=int, default=20, help="instruments: clips run end to end")
    args = parser.parse_args()
    torch.manual_seed(0)
    widths = [int(w) for w in args.smooth.split(",")] if args.smooth else [SMOOTH_FRAMES]
    cut = SPEAKING_THRESHOLD if args.threshold is None else args.threshold
    speaker = ActiveSpeaker(args.checkpoint, "auto", cut, smooth_frames=widths[0], flip_average=not args.no_flip)
    print(f"checkpoint {args.checkpoint}, smoothing {widths[0]} frames, flip average {not args.no_flip}")
    if args.what == "instruments":
        instruments(args, speaker)
        return
    if args.what in ("all", "threshold"):
        chosen = threshold(speaker, args.val_seconds)
        if args.threshold is None:
            speaker.threshold = chosen["threshold"]
    print(f"\nthreshold {speaker.threshold:+.3f}")
    for name, job in (
        ("car", lambda: car(speaker)),
        ("show", lambda: show(speaker)),
        ("pairs", lambda: pairs(speaker, args.max_seconds, args.height, args.split, widths)),
    ):
        if args.what in ("all", name):
            job()


if __name__ == "__main__":
    main()
