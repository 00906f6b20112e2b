"""``avlearn sync-offset CLIP``: how far is a clip's audio out of sync with its picture?

The clip is cut into overlapping windows; in each, the sync model scores every candidate offset of whole
video frames (+-15 frames, as SyncNet searches) from one pass of its encoders (the video once, the audio
spanning all candidates once, the 31 alignments through the fusion as one batch), giving a distribution
over offsets per window. The whole-clip estimate multiplies the windows' distributions (sums their log-probabilities),
so confident windows outvote ambiguous ones (silence, a still picture).

Sign: a positive offset means the audio lags the picture (it is heard late, "behind"); negative means it
is heard early ("ahead"). Shifting a clip's audio later by 200 ms should read +200 ms.
"""

from __future__ import annotations

import argparse
import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch

from avlearn import progress
from avlearn.io import ClipRangeError, MissingStreamError, probe, read_clip, read_frames
from avlearn.io.outdir import staged_output
from avlearn.io.write import atomic_path
from avlearn.pipelines.checkpoints import add_device_argument, autocast, default_checkpoint, load_model, resolve_device
from avlearn.pipelines.mouths import clip_mouths
from avlearn.report import REPORT, write_report
from avlearn.video.landmarks import MIN_PRESENCE

DEFAULT_CHECKPOINT = default_checkpoint("sync")
FRAME_CHECKPOINT = default_checkpoint("sync_frames")  # reads the whole picture: scenes without faces
MIN_AGREEMENT = 0.5  # fewer windows than this agreeing with the clip's estimate get a warning


@dataclass
class WindowOffset:
    """One window's estimate: its start (seconds), the most likely offset (ms) and its probability."""

    start: float
    offset_ms: float
    confidence: float


@dataclass
class OffsetResult:
    """How far a clip's audio is out of sync: ``offset_ms`` (positive: the audio lags the picture), its
    ``confidence`` (posterior probability), ``frame_ms`` (the resolution: one video frame), the ``windows``'
    own estimates, and ``agreement``, the share of windows within a frame of ``offset_ms`` (low: the offset
    may lie outside the range searched, or the picture may not show the sound's source). With a model that
    reads mouths every face is scored: ``faces`` holds each face's own estimate (``face`` index left to right,
    median ``box`` in pixels, ``offset_ms``, ``confidence``, ``agreement``, ``mean_confidence``) and ``face`` the
    one reported, the face whose windows are surest of an offset (the one whose mouth goes with the sound).
    ``notes``: how the clip was read when it differs from the checkpoint asked for (no face found: the
    whole-picture model, ``checkpoint`` says which)."""

    path: str
    offset_ms: float
    confidence: float
    frame_ms: float
    windows: list[WindowOffset]
    checkpoint: str
    agreement: float = 1.0
    face: int | None = None
    faces: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def save(self, out: str | Path, report: bool = False) -> Path:
        """Writes ``result.json`` (what ``avlearn sync-offset --json`` prints) into ``out``, atomically and never
        over the clip; an earlier ``result.json`` there is replaced, other files are kept. ``report``: also
        ``report.html`` (:mod:`avlearn.report`). Returns the ``result.json`` path."""
        with staged_output(out, [self.path], ("result.json",), "sync-offset") as folder:
            with atomic_path(Path(folder) / "result.json", [self.path]) as tmp:
                tmp.write_text(json.dumps(asdict(self), indent=1) + "\n")
            if report:
                write_report("sync-offset", folder)
        return Path(out) / "result.json"


def delay(audio: torch.Tensor, samples: int) -> torch.Tensor:
    """``(S,)`` audio heard ``samples`` later (negative: earlier), zero-filled, same length."""
    if samples >= 0:
        return torch.nn.functional.pad(audio, (samples, 0))[: audio.shape[0]]
    return torch.nn.functional.pad(audio[-samples:], (0, -samples))


def _scorer(checkpoint: str | Path, device: torch.device):
    net, doc = load_model(checkpoint, "sync", device)
    return net, doc["preprocessing"]


@torch.no_grad()
def sync_offset(
    path: str | Path,
    checkpoint: str | Path = DEFAULT_CHECKPOINT,
    *,
    hop: float | None = None,
    max_frames: int | None = None,
    shift_audio_ms: float = 0.0,
    batch_size: int = 16,
    device: str | torch.device = "auto",
) -> OffsetResult:
    """Estimates the audio-visual offset of a clip, per window and overall.

    Args:
        path: media file with video and audio.
        checkpoint: a ``sync`` checkpoint (NAME.safetensors + NAME.json).
        hop: seconds between window starts (default: half the model's window).
        max_frames: search offsets of ``-max_frames .. +max_frames`` video frames (default: 15, or the range
            of the model's offset head).
        shift_audio_ms: delay the audio by this much before estimating (to test the tool on a clip known
            to be in sync; negative advances it).
        batch_size: windows scored together.
        device: ``auto`` (a CUDA GPU when there is one), ``cpu``, ``cuda``; a GPU runs in mixed precision.

    Raises:
        MediaError: unreadable file, no audio or no video.
        ClipRangeError: the clip is shorter than one window plus the search margin on both sides.
        CheckpointError: missing checkpoint, or one trained for another task.
        DeviceError: a device this machine does not have.
    """
    device = resolve_device(device)
    net, pre = _scorer(checkpoint, device)
    max_frames_asked = max_frames
    fps, sr, window = pre["fps"], pre["sample_rate"], pre["window"]
    max_frames = max_frames or net.max_offset_frames or 15
    info = probe(path)
    if info.video is None:  # the soundtrack is read first, by a read that would not notice
        raise MissingStreamError(path, "the file has no video stream (sound only); a file with a picture is needed")
    # The search needs max_frames of sound on both sides of a window; a self-test shift needs no more: the
    # delayed sound is zero-filled at one end, as a recording that started late would be.
    margin = max_frames / fps
    need = window + 2 * margin
    if info.duration < need:
        raise ClipRangeError(
            path,
            f"the clip is {info.duration:.2f} s long; sync-offset needs at least {need:.2f} s "
            f"(a {window:.2f} s window plus {margin:.2f} s of audio on each side for the offset search)",
        )
    # The soundtrack is read whole (16 kHz mono: 4 MB a minute), the frames per batch of windows, so memory
    # does not grow with the clip. The video's end comes from the file's header and is confirmed as the
    # frames are read: windows past the last decodable frame are left out.
    sound = read_clip(path, 0.0, info.duration, sample_rate=sr, video=False)
    video_end = info.video.start + info.video.duration if info.video.duration else info.duration
    valid_s = min(info.duration, video_end, sound.audio_end / sr)  # an end: the sound may start late
    audio = delay(sound.audio[0], round(shift_audio_ms / 1000 * sr))
    num_frames, num_samples = round(window * fps), round(window * sr)
    pad = math.ceil(margin * sr)
    padded = torch.nn.functional.pad(audio, (pad, pad))
    hop = hop or window / 2
    first, last = margin, valid_s - margin - window
    starts = [round((first + k * hop) * fps) for k in range(int((last - first) / hop + 1e-9) + 1)]
    batches = [starts[i : i + batch_size] for i in range(0, len(starts), batch_size)]
    score = partial(_score, net, padded, pad, fps, sr, num_samples, max_frames, device)
    frame_ms = 1000 / fps
    faces = []
    if pre.get("crop", "frame") == "mouth":
        found = clip_mouths(path, fps, pre["size"])
        for k, mouths in enumerate(found.mouths):
            # only windows that show the face: lips found on most of their frames (a face that turned away or
            # left the picture leaves crops of whatever is there, which would vote for random offsets)
            seen = torch.as_tensor(found.tracks[k].presence >= MIN_PRESENCE)
            shown = [[f for f in b if f + num_frames <= len(mouths) and seen[f : f + num_frames].float().mean() >= 0.5]
                     for b in batches]  # fmt: skip
            chunks = ((b, torch.stack([mouths[f : f + num_frames] for f in b])) for b in shown if b)
            faces.append(_estimate(*score(progress.bar(chunks, total=len(batches), desc=f"face {k}")), frame_ms))
            faces[-1]["face"] = k
            faces[-1]["box"] = [round(float(v), 1) for v in np.nanmedian(found.tracks[k].boxes, 0)]
        if all(f["windows"] is None for f in faces):  # no face, or none showing its lips for a whole window
            options = {"hop": hop, "max_frames": max_frames_asked, "shift_audio_ms": shift_audio_ms}
            result = sync_offset(path, FRAME_CHECKPOINT, **options, batch_size=batch_size, device=device)
            why = "no face found" if not faces else "no face shows its lips for a whole window"
            result.notes.insert(0, f"{why}: the whole picture was read ({Path(FRAME_CHECKPOINT).name})")
            return result
        # the face whose mouth goes with the sound is the one whose windows are sure of an offset
        best = dict(max(faces, key=lambda f: f["mean_confidence"]))
        for f in faces:
            del f["windows"]
    else:
        frames = _frame_batches(path, batches, num_frames, fps, pre["size"])
        chunks = progress.bar(frames, total=len(batches), desc="sync-offset")
        best = {**_estimate(*score(chunks), frame_ms), "face": None}
    estimate, windows, agreement = best["offset_ms"], best["windows"], best["agreement"]
    if windows is None:  # the decodable part holds no whole window (a stream stops early, a cut-off file)
        raise ClipRangeError(
            path,
            f"no {window:.2f} s window with {margin:.2f} s of sound on each side could be decoded (picture and "
            f"sound overlap for about {max(0.0, valid_s):.2f} s); sync-offset needs {need:.2f} s of both",
        )
    # The product of the windows' distributions is confident whenever there are many windows, even when they
    # disagree (an offset beyond the search range, a clip whose picture does not show its sound): the share of
    # windows that agree with the estimate says which.
    if agreement < MIN_AGREEMENT and len(windows) > 1:
        warnings.warn(
            f"{path}: only {agreement:.0%} of the windows agree with {estimate:+.0f} ms within a frame; the offset "
            f"may lie outside the +-{max_frames * frame_ms:.0f} ms searched (try --max-frames {2 * max_frames}) or "
            "the picture may not show the sound's source",
            stacklevel=3,  # past torch.no_grad's wrapper, to the caller
        )
    return OffsetResult(
        str(path), estimate, best["confidence"], frame_ms, windows, str(checkpoint), agreement, best["face"], faces
    )


def _frame_batches(path, batches: list[list[int]], num_frames: int, fps: float, size: int):
    """``(window first frames, frames (B, T, size, size, 3))`` per batch, read from the file batch by batch;
    windows past the last decodable frame are left out."""
    for b in batches:
        base = b[0]
        frames = read_frames(path, base / fps, (b[-1] + num_frames - base) / fps, fps=fps, size=(size, size))
        b = [f for f in b if f - base + num_frames <= len(frames)]
        if not b:
            return
        yield b, torch.stack([frames[f - base : f - base + num_frames] for f in b])


def _score(net, padded, pad, fps, sr, num_samples, max_frames, device, batches):
    """Scores every candidate offset of each window: ``(offsets (2K+1,) s, summed log-probabilities or None,
    per-window log-probabilities (N, 2K+1), window first frames)``."""
    total, per_window, firsts, offsets = None, [], [], None
    for f0, vids in batches:
        auds = torch.stack([padded[round(f / fps * sr) : round(f / fps * sr) + num_samples + 2 * pad] for f in f0])
        with autocast(device):
            offsets, logp = net.offsets(vids.to(device), auds.to(device), pad, max_frames)
        offsets, logp = offsets.cpu(), logp.float().cpu()
        total = logp.sum(0) if total is None else total + logp.sum(0)
        per_window.append(logp)
        firsts += [f / fps for f in f0[: len(logp)]]
    return offsets, total, per_window, firsts


def _estimate(offsets, total, per_window, firsts, frame_ms: float) -> dict:
    """The clip's estimate from the windows' distributions (their product), with each window's own and the
    share of windows within ``frame_ms`` of it."""
    if total is None:
        return {"offset_ms": 0.0, "confidence": 0.0, "windows": None, "agreement": 0.0, "mean_confidence": 0.0}
    logp = torch.cat(per_window)
    windows = [
        WindowOffset(start, float(offsets[int(lp.argmax())] * 1000), float(lp.max().exp()))
        for start, lp in zip(firsts, logp)
    ]
    posterior = total.log_softmax(0)
    k = int(posterior.argmax())
    estimate = float(offsets[k] * 1000)
    agreement = sum(abs(w.offset_ms - estimate) <= frame_ms + 1e-6 for w in windows) / len(windows)
    return {
        "offset_ms": estimate,
        "confidence": float(posterior[k].exp()),
        "windows": windows,
        "agreement": agreement,
        "mean_confidence": float(logp.max(1).values.exp().mean()),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("clip", help="video file with audio")
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="sync checkpoint (default: shipped)")
    parser.add_argument("--hop", type=float, default=None, help="seconds between windows (default: half a window)")
    parser.add_argument(
        "--max-frames",
        type=int,
        default=None,
        help="search offsets of +- this many video frames (default 15, or the offset head range of the model)",
    )
    parser.add_argument("--shift-audio-ms", type=float, default=0.0, help="delay the audio first (a self-test)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--out", help="also write the result as result.json into this folder")
    parser.add_argument("--report", action="store_true", help=f"also write {REPORT} into --out: the offset per window")
    add_device_argument(parser)


def _describe(ms: float, frame_ms: float) -> str:
    if abs(ms) < frame_ms / 2:
        return "in sync"
    return f"audio {'behind (late)' if ms > 0 else 'ahead (early)'} by {abs(ms):.0f} ms"


def run(args: argparse.Namespace) -> int:
    if args.report and not args.out:
        raise SystemExit(f"avlearn sync-offset: error: --report needs --out DIR, the folder {REPORT} goes into")
    device = resolve_device(args.device)  # before --out is touched
    options = {"hop": args.hop, "max_frames": args.max_frames, "shift_audio_ms": args.shift_audio_ms, "device": device}
    if args.out:  # --out is checked and locked before any work; result.json moves into it at the end
        with staged_output(args.out, [args.clip], ("result.json",), "sync-offset") as tmp:
            result = sync_offset(args.clip, args.checkpoint, **options)
            result.save(tmp)
            if args.report:
                write_report("sync-offset", tmp)
    else:
        result = sync_offset(args.clip, args.checkpoint, **options)
    if args.json:
        print(json.dumps(asdict(result)))
        return 0
    print(f"{'window start (s)':>16} {'offset (ms)':>12} {'confidence':>11}")
    for w in result.windows:
        print(f"{w.start:>16.2f} {w.offset_ms:>+12.0f} {w.confidence:>11.2f}")
    for f in result.faces if len(result.faces) > 1 else []:
        heard = "  <- the face heard" if f["face"] == result.face else ""
        print(
            f"face {f['face']} at x {f['box'][0]:.0f}-{f['box'][2]:.0f}: {f['offset_ms']:+.0f} ms, "
            f"mean window confidence {f['mean_confidence']:.2f}{heard}"
        )
    for note in result.notes:
        print(f"note: {note}")
    print(
        f"{result.path}: {result.offset_ms:+.0f} ms ({_describe(result.offset_ms, result.frame_ms)}), "
        f"confidence {result.confidence:.2f}, {round(result.agreement * len(result.windows))} of "
        f"{len(result.windows)} windows agree within a frame"
        + (f" -> {Path(args.out) / 'result.json'}" if args.out else "")
        + (f", {REPORT}" if args.report else "")
    )
    return 0
