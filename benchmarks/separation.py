"""Separation figures for the README: held-out clips, mix-and-separate mixtures, real talking heads, speed.

    python benchmarks/separation.py --checkpoint separate_speakers \
        --pit-checkpoint runs/separation/speakers_pit/version_0/weights/best \
        --manifest data/speakers160/test.jsonl --real ../shared/real/video

1. Test clips in which 2 (3) faces all speak: the full `avlearn separate` pipeline on the mp4 (decode, face
   tracks, mouth crops, windows), each track matched to its true face by box overlap to find its reference
   stem. Rows: the mixture itself, the audio-only PIT model of the same size (whole clip at once, outputs
   assigned to references by the best permutation: an oracle assignment it is given), the visual model,
   and the ideal ratio mask (oracle, mixture phase). Metrics: SI-SDR and its improvement over the mixture,
   BSS-eval SDR/SIR/SAR (order given by the video), STOI, and whether the voice went to the right face
   (the estimate's SI-SDR is highest against its own face's reference).
2. Mix-and-separate mixtures of test tracks from different clips (2 and 3 sources), SI-SDR improvement
   and SDR; for the ``instruments`` world (``--manifest data/instruments/test.jsonl``) this is the only part.
3. Real talking heads (../shared/real/video): every pair side by side, audio summed at equal loudness.
4. Speed: ``avlearn separate`` as a command on a 10 s 1280x720 two-speaker clip (two real heads side by
   side), each stage, beside the ffmpeg CLI's decode of the same file.
5. Held-out real people (``--only people``, ``--people data/real/test.jsonl``): every pair of the people who
   speak alone in a clip of that manifest (the msdwild groups left out), side by side at equal loudness,
   through ``avlearn separate`` with the visual checkpoint and with the audio-only one (``--pit-checkpoint``,
   voices given to faces by ``--sync-checkpoint``); all pairs, then same-gender and mixed pairs
   (``real_people_gender.tsv``). The mixture and the ideal ratio mask on the same clips.
6. One person speaks, the other listens (``--only listeners``): the listener's face must get silence.
7. Sync assignment of the clean stems on the same pairs (``--only assign``): the ceiling of the audio-only
   route's "assigned" column.
8. The AMI meeting (``--only meeting``, ``../shared/real/meeting``): the audio-only separator alone on the
   stretches where two headsets carry speech at once, its outputs matched to the two loudest headsets.

    python benchmarks/separation.py --only people --pit-checkpoint runs/separation/real_pit/version_0/weights/best \
        --sync-checkpoint runs/sync/real_mouths_avsync_mbt/version_0/weights/best --people data/real/test.jsonl
    python benchmarks/separation.py --only meeting --pit-checkpoint runs/separation/real_pit/version_0/weights/best
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from avlearn import progress
from avlearn.audio import STFT
from avlearn.audio.masks import ideal_ratio_mask
from avlearn.data import load_annotations
from avlearn.data.manifest import read_manifest
from avlearn.data.separation import MixTracks, extract_tracks
from avlearn.io import read_audio, read_clip, write_video
from avlearn.metrics.separation import bss_eval, pit_assign, si_sdr, si_sdr_matrix, stoi
from avlearn.models.separation import reads_crops
from avlearn.pipelines.checkpoints import default_checkpoint
from avlearn.pipelines.separate import DEFAULT_CHECKPOINT, load_separator, separate_audio, separate_clip
from avlearn.video.detect import iou

SR = 16000
DEFAULT_SYNC = default_checkpoint("sync")  # what `avlearn separate` gives audio-only voices to faces with
GENDERS = Path(__file__).with_name("real_people_gender.tsv")


def irm(mixture: torch.Tensor, refs: torch.Tensor) -> torch.Tensor:
    stft = STFT(512, 160)
    x, s = stft(mixture), stft(refs)
    return stft.inverse(x.unsqueeze(0) * ideal_ratio_mask(s, x), mixture.shape[-1])


def pit(net, mixture: torch.Tensor, refs: torch.Tensor) -> torch.Tensor:
    """Audio-only estimates in the order of ``refs`` (best permutation by SI-SDR)."""
    column = net.time_stride * net.front_end.stft.hop_length  # samples per bottleneck column
    n = mixture.shape[-1] // column * column  # a whole number of columns
    with torch.no_grad():
        est = net.separate(mixture[None, :n])[0]
    est = torch.nn.functional.pad(est, (0, mixture.shape[-1] - n))
    return pit_assign(est[None], refs[None], si_sdr)[0]


def scores(est: torch.Tensor, refs: torch.Tensor, mixture: torch.Tensor, speech: bool = True) -> dict[str, list]:
    n = min(est.shape[-1], refs.shape[-1], mixture.shape[-1])
    est, refs, mixture = est[:, :n], refs[:, :n], mixture[:n]
    m = si_sdr_matrix(est, refs)
    base = si_sdr(mixture.expand_as(refs), refs)
    # A silent output (a third face beside a two-voice separator) is no voice: SI-SDR would score it 0 dB and
    # BSS-eval is undefined for it. Its measures are left out of the means and counted in "silent"; BSS-eval
    # scores the others (each estimate is projected on its own, so a stand-in changes no other figure).
    silent = est.abs().amax(-1) == 0
    nan = torch.tensor(float("nan"))
    out = {
        "si_sdr": torch.where(silent, nan, m.diagonal()).tolist(),
        "si_sdri": torch.where(silent, nan, m.diagonal() - base).tolist(),
        "assigned": ((m.argmax(1) == torch.arange(len(refs))) & ~silent).tolist(),
    }
    bss = bss_eval(torch.where(silent[:, None], refs.sum(0), est), refs)
    out.update({k: np.where(silent.numpy(), np.nan, v).tolist() for k, v in bss.items()})
    out["silent"] = silent.tolist()
    if speech:
        out["stoi"] = [stoi(e, r, SR) for e, r in zip(est, refs)]
    return out


def merge(table: dict[str, dict[str, list]], name: str, s: dict[str, list]) -> None:
    row = table.setdefault(name, {})
    for k, v in s.items():
        row.setdefault(k, []).extend(v)


def print_table(title: str, table: dict[str, dict[str, list]]) -> None:
    print(f"\n{title}")
    cols = ["si_sdri", "si_sdr", "sdr", "sir", "sar", "stoi", "assigned", "silent"]
    print("| method | n | " + " | ".join(cols) + " |")
    print("|---|---:|" + "---:|" * len(cols))
    for name, row in table.items():
        n = len(row["si_sdr"])
        vals = [f"{np.nanmean(row[c]):.2f}" if c in row else "-" for c in cols]
        print(f"| {name} | {n} | " + " | ".join(vals) + " |")


def test_clips(args, net_pit) -> None:
    rows = read_manifest(args.manifest)
    for num in (2, 3):
        picked = [r for r in rows if r["meta"]["num_faces"] == num and r["meta"]["num_speaking"] == num]
        picked = picked[: args.max_clips]
        table: dict[str, dict[str, list]] = {}
        missed = 0
        t0 = time.perf_counter()
        for row in picked:
            result = separate_clip(row["path"], args.checkpoint)
            ann = load_annotations(row["annotations"])
            truth = ann["boxes"]
            order = []
            for tr in result.tracks:
                ov = [
                    np.mean([iou(tr.boxes[t] * result.scale, truth[t, k]) for t in range(0, len(truth), 5)])
                    for k in range(num)
                ]
                order.append(int(np.argmax(ov)) if max(ov) > 0.3 else -1)
            if sorted(order) != list(range(num)):
                missed += 1
                continue
            sources = sorted(row["sources"], key=lambda s: s["index"])
            refs = torch.stack([read_audio(sources[k]["stem"], SR)[0][0] for k in order])
            n = min(refs.shape[1], result.voices.shape[1])
            refs, mixture = refs[:, :n], result.mixture[:n]
            merge(table, "mixture", scores(mixture.expand(num, n).clone(), refs, mixture))
            if net_pit is not None and num == 2:
                merge(table, "audio-only PIT (oracle assignment)", scores(pit(net_pit, mixture, refs), refs, mixture))
            name = f"avlearn separate ({Path(result.checkpoint).name})"
            merge(table, name, scores(result.voices[:, :n], refs, mixture))
            merge(table, "ideal ratio mask (oracle)", scores(irm(mixture, refs), refs, mixture))
        took = time.perf_counter() - t0
        print_table(
            f"{num}-speaker test clips ({len(picked)} clips, {missed} with a face the tracker missed, skipped; "
            f"{took:.0f} s)",
            table,
        )


def mixtures(args, net_vis, net_pit) -> None:
    tracks = extract_tracks(read_manifest(args.manifest), cache_dir=Path(args.manifest).parent / ".avlearn-cache")
    for num in (2, 3):
        ds = MixTracks(
            tracks, 2.0, num, 0.0, sounding_only=True, deterministic=True, seed=777, length=args.num_mixtures
        )
        if num not in args.num_sources:
            continue
        table: dict[str, dict[str, list]] = {}
        skipped = 0
        for i in progress.bar(range(len(ds)), desc=f"{num} sources", unit="window"):
            item = ds[i]
            refs, mix, crops = item["sources"][:num], item["mixture"], item["crops"][:num]
            if (refs.pow(2).sum(-1) < 1e-6 * mix.pow(2).sum()).any():  # a source silent in this window
                skipped += 1
                continue
            merge(table, "mixture", scores(mix.expand(num, -1).clone(), refs, mix, speech=False))
            if net_pit is not None and num == 2:
                merge(table, "audio-only PIT (oracle assignment)", scores(pit(net_pit, mix, refs), refs, mix, False))
            if net_vis is not None:  # an audio-only --checkpoint has no row of its own here: --pit-checkpoint
                with torch.no_grad():
                    est = net_vis.separate(mix[None], crops[None])[0]
                merge(table, f"visual ({args.tracks} tracks)", scores(est, refs, mix, speech=False))
            merge(table, "ideal ratio mask (oracle)", scores(irm(mix, refs), refs, mix, speech=False))
        print_table(
            f"mix-and-separate: {num} test tracks from different clips, 2 s, equal gain "
            f"({len(ds) - skipped} mixtures; {skipped} with a source silent in its window left out)",
            table,
        )


def side_by_side(paths: list[Path], duration: float, height: int, width: int, out: Path) -> torch.Tensor:
    """Writes the clips side by side (each resized into an equal column), audio summed at equal RMS.
    Returns the references ``(K, S)`` as mixed (looped to ``duration`` when a clip is shorter)."""
    fps, cols = 25, len(paths)
    frames, refs = [], []
    n_frames, n_samples = round(duration * fps), round(duration * SR)
    for p in paths:
        info_clip = read_clip(p, 0, 100.0, fps=fps, size=(height, width // cols), sample_rate=SR)
        v_len = max(1, round(info_clip.valid_duration * fps))
        v = info_clip.video[:, :v_len]
        a = info_clip.audio[0, : round(v_len / fps * SR)]
        reps = int(np.ceil(n_frames / v_len))
        frames.append(v.repeat(1, reps, 1, 1)[:, :n_frames])
        a = a.repeat(reps)[:n_samples]
        refs.append(a / a.pow(2).mean().sqrt() * 0.05)
    refs = torch.stack(refs)
    write_video(out, torch.cat(frames, dim=3), fps, refs.sum(0, keepdim=True), SR)
    return refs


def real_pairs(args) -> None:
    heads = sorted(Path(args.real).glob("talking_head_*.mp4"))
    table: dict[str, dict[str, list]] = {}
    print(f"\nreal talking heads side by side ({len(heads)} clips, every ordered pair)")
    with tempfile.TemporaryDirectory() as tmp:
        for a, b in itertools.permutations(heads, 2):
            out = Path(tmp) / f"{a.stem}+{b.stem}.mp4"
            refs = side_by_side([a, b], 5.0, 360, 720, out)
            result = separate_clip(out, args.checkpoint)
            if len(result.tracks) != 2:
                print(f"  {out.name}: {len(result.tracks)} face tracks, skipped")
                continue
            mixture = result.mixture
            n = min(mixture.shape[0], refs.shape[1])
            s = scores(result.voices[:, :n], refs[:, :n], mixture[:n])
            merge(table, "visual (mouth tracks)", s)
            merge(table, "mixture", scores(mixture[:n].expand(2, n).clone(), refs[:, :n], mixture[:n]))
            print(f"  {out.name}: SI-SDRi {s['si_sdri'][0]:+.1f} / {s['si_sdri'][1]:+.1f} dB, assigned {s['assigned']}")
    print_table("real pairs", table)


def one_voice_clips(manifest: str) -> dict[str, str]:
    """Each person of a real-clip manifest who speaks alone in a clip -> their first such clip."""
    people: dict[str, str] = {}
    for row in read_manifest(manifest):
        meta = row["meta"]
        if len(meta["people"]) == 1 and meta["kind"].startswith("speech") and not meta["group"].startswith("msdwild"):
            people.setdefault(meta["people"][0], row["path"])
    return people


def left_to_right(result) -> list[int]:
    """Indices of the result's tracks from left to right (by their median box centre)."""
    xs = [float(np.median(tr.boxes[:, 0] + tr.boxes[:, 2])) for tr in result.tracks]
    return list(np.argsort(xs))


SHORT = {
    "visual (mouth tracks, shipped)": "visual",
    "audio-only + sync assignment": "audio+sync",
    "audio-only, oracle assignment": "audio oracle",
    "ideal ratio mask (oracle)": "IRM",
}


def real_people(args) -> None:
    """Every pair of ``--people`` through ``avlearn separate``: a visual ``--checkpoint`` (the
    ``separate_speakers`` row) and the audio-only one, ``--pit-checkpoint`` or an audio-only ``--checkpoint``
    (its voices given to faces by ``--sync-checkpoint``, and by an oracle)."""
    if not reads_crops(load_separator(args.checkpoint)[0]):  # audio-only: no visual row
        args.pit_checkpoint, visual = args.pit_checkpoint or args.checkpoint, False
    else:
        visual = True
    people = one_voice_clips(args.people)
    genders = dict(line.split("\t") for line in GENDERS.read_text().split("\n")[3:] if line)
    tables: dict[str, dict[str, dict[str, list]]] = {"all": {}, "same gender": {}, "mixed gender": {}}
    missed = {"visual": 0, "audio-only": 0}
    pairs = list(itertools.combinations(sorted(people), 2))
    print(
        f"\nheld-out real people side by side ({args.people}: {len(people)} people, {len(pairs)} pairs, "
        f"{args.seconds:.0f} s, equal loudness)"
    )
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for a, b in pairs:
            out = Path(tmp) / f"{a}+{b}.mp4"
            refs = side_by_side([people[a], people[b]], args.seconds, 360, 720, out)
            rows: dict[str, torch.Tensor] = {}
            results = {"visual": separate_clip(out, args.checkpoint)} if visual else {}
            if args.pit_checkpoint:
                results["audio-only"] = separate_clip(out, args.pit_checkpoint, sync_checkpoint=args.sync_checkpoint)
            mixture = next(iter(results.values())).mixture
            n = min(mixture.shape[0], refs.shape[1], *(r.voices.shape[1] for r in results.values()))
            mixture, ref = mixture[:n], refs[:, :n]
            for name, r in results.items():
                if len(r.tracks) != 2:
                    missed[name] += 1
                    continue
                rows[name] = r.voices[left_to_right(r), :n]
            if len(rows) != len(results):
                print(f"  {a}+{b}: a method found other than 2 faces, pair left out")
                continue
            line = []
            table_rows = {"mixture": mixture.expand(2, n).clone()}
            if "visual" in rows:
                table_rows["visual (mouth tracks, shipped)"] = rows["visual"]
            if "audio-only" in rows:
                table_rows["audio-only + sync assignment"] = rows["audio-only"]
                table_rows["audio-only, oracle assignment"] = pit_assign(rows["audio-only"][None], ref[None], si_sdr)[0]
            table_rows["ideal ratio mask (oracle)"] = irm(mixture, ref)
            same = genders.get(a) == genders.get(b)
            for name, est in table_rows.items():
                sc = scores(est, ref, mixture, speech=False)  # STOI left out: 66 pairs in the queue
                merge(tables["all"], name, sc)
                merge(tables["same gender" if same else "mixed gender"], name, sc)
                if name != "mixture":
                    line.append(f"{SHORT[name]} {np.mean(sc['si_sdri']):+.1f} ({sum(sc['assigned'])}/2)")
            print(f"  {a}+{b} ({genders.get(a)}{genders.get(b)}): " + ", ".join(line), flush=True)
    print(
        f"({time.perf_counter() - t0:.0f} s; pairs where the visual / audio-only path found other than 2 faces: "
        f"{missed['visual']} / {missed['audio-only']})"
    )
    for name, table in tables.items():
        if table:
            print_table(f"held-out real people, {name} pairs", table)


def listeners(args) -> None:
    """One person speaks, the other listens: pairs of ``--people`` side by side (the speaker on the left in
    every other pair), only the speaker's sound, through ``avlearn separate`` with ``--checkpoint``. A good
    separator gives the speaker's face the whole voice (SI-SDR against it high; the mixture scores about
    +30 dB) and the listener's face silence (its level far below the speaker's)."""
    people = one_voice_clips(args.people)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (a, b) in enumerate(itertools.combinations(sorted(people), 2)):
            pair = [a, b] if i % 2 == 0 else [b, a]
            out = Path(tmp) / f"{pair[0]}+{pair[1]}.mp4"
            refs = side_by_side([people[pair[0]], people[pair[1]]], args.seconds, 360, 720, out)
            clip = read_clip(out, 0, args.seconds, fps=25, sample_rate=SR)
            speaker = 0 if i % 2 == 0 else 1  # the first-named person speaks
            write_video(out, clip.video, 25, refs[speaker : speaker + 1], SR)
            result = separate_clip(out, args.checkpoint)
            if len(result.tracks) != 2:
                continue
            voices = result.voices[left_to_right(result)]
            n = min(voices.shape[1], refs.shape[1])
            talk, listen = voices[speaker, :n], voices[1 - speaker, :n]
            quality = float(si_sdr(talk[None], refs[speaker : speaker + 1, :n])[0])
            level = float(10 * torch.log10(listen.pow(2).sum() / (talk.pow(2).sum() + 1e-12) + 1e-12))
            rows.append((quality, level))
            print(
                f"  {pair[speaker]} speaks, {pair[1 - speaker]} listens: speaker SI-SDR {quality:+.1f} dB, "
                f"listener {level:+.1f} dB",
                flush=True,
            )
    q, lv = np.array(rows).T
    print(
        f"{len(rows)} pairs ({args.checkpoint}): the speaker's voice SI-SDR {q.mean():+.2f} dB (median "
        f"{np.median(q):+.2f}); the listener's output {lv.mean():+.2f} dB relative to the speaker's (median "
        f"{np.median(lv):+.2f}; below -10 dB in {np.mean(lv < -10):.0%})"
    )


def assignment_ceiling(args) -> None:
    """Sync assignment with the clean voices in place of separated ones: every pair of ``real_people``, each
    true stem scored against each face (``voice_scores``, as ``avlearn separate`` does) and the Hungarian
    assignment checked against the side the stem came from. This is the ceiling of the audio-only route's
    "assigned" column: what the sync model gives when separation is perfect."""
    from avlearn.pipelines.checkpoints import load_model
    from avlearn.pipelines.mouths import clip_mouths, voice_scores
    from avlearn.pipelines.separate import assign_voices

    sync, doc = load_model(args.sync_checkpoint, "sync", torch.device("cpu"))
    sp = doc["preprocessing"]
    people = one_voice_clips(args.people)
    right, total, margins = 0, 0, []
    with tempfile.TemporaryDirectory() as tmp:
        for a, b in itertools.combinations(sorted(people), 2):
            out = Path(tmp) / f"{a}+{b}.mp4"
            refs = side_by_side([people[a], people[b]], args.seconds, 360, 720, out)
            faces = clip_mouths(out, float(sp["fps"]), int(sp["size"]))
            if len(faces.tracks) != 2:
                print(f"  {a}+{b}: {len(faces.tracks)} faces, left out")
                continue
            mouths = [faces.mouths[k] for k in left_to_right(faces)]
            scores = voice_scores(sync, mouths, refs, sp["window"])  # as avlearn separate assigns
            order = assign_voices(scores)
            ok = sum(v == k for k, v in enumerate(order))
            right, total = right + ok, total + 2
            margins.append(float(scores[0, 0] + scores[1, 1] - scores[0, 1] - scores[1, 0]))
            print(f"  {a}+{b}: {ok}/2, margin {margins[-1]:+.2f}", flush=True)
    print(f"clean voices, sync assignment: {right}/{total} voices on their own face ({right / max(total, 1):.1%})")


def meeting(args) -> None:
    """The audio-only separator on the AMI meeting's overlapped speech (see the module docstring)."""
    folder = Path(args.meeting)
    mix = read_audio(folder / "mixture.wav", SR)[0][0]
    heads = torch.stack([read_audio(folder / f"source{k}.wav", SR)[0][0] for k in range(4)])
    n = min(mix.shape[0], heads.shape[1])
    mix, heads = mix[:n], heads[:, :n]
    hop = SR // 10
    rms = heads[:, : n // hop * hop].reshape(4, -1, hop).pow(2).mean(-1).sqrt()  # (4, frames of 0.1 s)
    active = rms > 0.1 * rms.quantile(0.95, dim=1, keepdim=True)  # within 20 dB of each headset's loud frames
    overlap = (active.sum(0) >= 2).tolist() + [False]
    net = load_separator(args.pit_checkpoint)[0]
    table: dict[str, dict[str, list]] = {}
    start, segments = None, 0
    for f, on in enumerate(overlap):
        if on and start is None:
            start = f
        if not on and start is not None:
            if f - start >= 10:  # at least 1 s of overlap
                s0, s1 = start * hop, f * hop
                two = rms[:, start:f].pow(2).sum(1).topk(2).indices
                ref, seg = heads[two, s0:s1], mix[s0:s1]
                est = pit_assign(separate_audio(net, seg)[None], ref[None], si_sdr)[0]
                merge(table, "mixture", scores(seg.expand(2, -1).clone(), ref, seg))
                merge(table, "audio-only PIT (outputs matched to the headsets)", scores(est, ref, seg))
                merge(table, "ideal ratio mask (oracle, two headsets)", scores(irm(seg, ref), ref, seg))
                segments += 1
            start = None
    print_table(
        f"AMI meeting ES2004a, {segments} overlapped stretches of >= 1 s, far mixture vs the two loudest headsets",
        table,
    )


def speed(args) -> None:
    """``avlearn separate`` on a 10 s 1280x720 two-speaker clip as a user runs it: a new process each time
    (imports and model loading included), each stage from its ``result.json``, beside the ffmpeg CLI
    decoding the same file and scaling it to 360p on one thread (what the pipeline's decode must approach)."""
    heads = sorted(Path(args.real).glob("talking_head_*.mp4"))
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "two_heads_720p.mp4"
        side_by_side([heads[0], heads[-1]], 10.0, 720, 1280, clip)
        runs = []
        for r in range(args.repeats):
            out = Path(tmp) / f"out{r}"
            cmd = [sys.executable, "-m", "avlearn.cli", "separate", str(clip), "--out", str(out)]
            cmd += ["--checkpoint", args.checkpoint]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            runs.append((time.perf_counter() - t0, json.loads((out / "result.json").read_text())["timings"]))
        ffmpeg = ["ffmpeg", "-v", "error", "-threads", "1", "-i", str(clip), "-vf", "scale=-2:360", "-f", "null", "-"]
        t0 = time.perf_counter()
        subprocess.run(ffmpeg, check=True)
        ffmpeg_s = time.perf_counter() - t0
    wall, parts = min(runs, key=lambda x: x[0])
    print(f"\nspeed: `avlearn separate` on a 10 s 1280x720 two-speaker clip ({args.checkpoint})")
    print(
        f"  {wall:.2f} s wall as a command, start-up included: real-time factor {wall / 10:.2f} (best of {len(runs)})"
    )
    print("  stages: " + ", ".join(f"{k} {v:.2f} s" for k, v in parts.items()))
    print(f"  start-up (imports, checkpoint) and the rest: {wall - sum(parts.values()):.2f} s")
    ratio = parts["decode_s"] / ffmpeg_s
    print(f"  ffmpeg CLI decoding it to 360p on one thread: {ffmpeg_s:.2f} s (decode_s is {ratio:.2f}x that)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="what `avlearn separate` runs")
    p.add_argument("--pit-checkpoint", default=None)
    p.add_argument("--manifest", default="data/speakers160/test.jsonl")
    p.add_argument("--max-clips", type=int, default=200)
    p.add_argument("--num-mixtures", type=int, default=200)
    p.add_argument("--real", default=None, help="folder of real talking heads (../shared/real/video)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--only",
        choices=["clips", "mixtures", "real", "speed", "people", "listeners", "assign", "meeting"],
        default=None,
    )
    p.add_argument("--people", default="data/real/test.jsonl", help="real-clip manifest whose people are paired")
    p.add_argument("--seconds", type=float, default=5.0, help="length of each real pair")
    p.add_argument(
        "--sync-checkpoint", default=str(DEFAULT_SYNC), help="mouth sync model that assigns audio-only voices"
    )
    p.add_argument("--meeting", default="../shared/real/meeting")
    p.add_argument("--num-sources", type=int, nargs="+", default=[2, 3], help="mixture sizes to evaluate")
    args = p.parse_args()
    args.tracks = "mouth" if "speakers" in Path(args.manifest).parent.name else "object"
    torch.manual_seed(0)
    net_pit = (
        load_separator(args.pit_checkpoint)[0]
        if args.pit_checkpoint and args.only not in ("people", "listeners", "assign", "meeting")
        else None
    )
    if args.only in (None, "clips") and args.tracks == "mouth":
        test_clips(args, net_pit)
    if args.only in (None, "mixtures"):
        net = load_separator(args.checkpoint)[0]
        mixtures(args, net if reads_crops(net) else None, net_pit)
    if args.real and args.only in (None, "real"):
        real_pairs(args)
    if args.real and args.only in (None, "speed"):
        speed(args)
    if args.only == "people":
        real_people(args)
    if args.only == "listeners":
        listeners(args)
    if args.only == "assign":
        assignment_ceiling(args)
    if args.only == "meeting":
        meeting(args)


if __name__ == "__main__":
    main()
