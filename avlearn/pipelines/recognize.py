"""``avlearn recognize CLIP``: which action happens in an untrimmed video, and when, by previewing its audio.

The clip is cut into windows (1 s for the shipped model). Listen to Look's selector reads the audio of every
window and a cheap image feature of every few windows (the preview), then chooses K moments one after the
other, looking at each with the image+audio student. Three methods:

- ``skim-teacher`` (default): the clip classifier (the teacher) classifies the K chosen windows; with K = 2
  it matches the dense classifier on the ``actions`` test split at 17% of its multiply-accumulates
  (``benchmarks/preview.py``);
- ``skim``: the paper's IMGAUD-SKIMMING, the student's class probabilities at the K moments;
- ``dense``: the teacher on every window, the expensive baseline.

The video's class probabilities are the mean over the windows classified (``background`` absorbs the mass
of idle windows, so a dense mean is low even when certain). Prints the top actions with the time segments
that support them (the windows classified whose most likely class it is) and writes ``result.json`` with
the same, every window classified, the multiply-accumulates spent (counted as they run, plus the log-mel's
FFTs) and the timings.

A clip without an audio track cannot be previewed: it is recognized densely, with a note. A clip shorter
than one window is refused.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from avlearn import progress
from avlearn.data.preview import clip_input, split_windows
from avlearn.io import ClipRangeError, MissingStreamError, TruncatedMediaError, probe, read_clip
from avlearn.io.outdir import staged_output
from avlearn.io.write import atomic_path
from avlearn.models.summary import count_macs
from avlearn.models.weights import load_weights
from avlearn.pipelines.checkpoints import add_device_argument, autocast, default_checkpoint, resolve_device
from avlearn.report import REPORT, write_report

DEFAULT_CHECKPOINT = default_checkpoint("preview")
METHODS = ("skim", "skim-teacher", "dense")
DEFAULT_METHOD, DEFAULT_STEPS = "skim-teacher", 2
DENSE_BATCH = 16  # teacher clips per forward pass: bounded memory for long videos
READ_WINDOWS = 20  # windows decoded per read: the decoder's memory stays bounded whatever the clip's length


@dataclass
class RecognizeResult:
    """Which action a clip shows, and when (the fields of ``result.json``, whose ``input`` is ``path``).

    ``top``: the most likely actions, each ``{"label", "probability", "segments": [[start, end], ...]}`` (the
    windows classified whose most likely class it is, in seconds); ``moments``: every window looked at with
    its most likely class; ``looked_at`` of ``windows`` windows of ``window`` seconds; ``gmacs``: the
    multiply-accumulates spent (None when not counted).
    """

    path: str
    duration: float
    method: str
    window: float
    windows: int
    looked_at: int
    top: list[dict[str, Any]]
    moments: list[dict[str, Any]]
    gmacs: float | None
    timings: dict[str, float]
    notes: list[str]
    checkpoint: str

    @property
    def label(self) -> str:
        """The most likely action."""
        return self.top[0]["label"]

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> RecognizeResult:
        """From what :func:`recognize` returns (or ``result.json`` holds)."""
        return cls(doc["input"], **{k: v for k, v in doc.items() if k != "input"})

    def to_dict(self) -> dict[str, Any]:
        """The ``result.json`` content."""
        doc = asdict(self)
        return {"input": doc.pop("path"), **doc}

    def save(self, out: str | Path, report: bool = False) -> Path:
        """Writes ``result.json`` into ``out`` (:func:`write_result`), and with ``report`` ``report.html``.
        Returns the ``result.json`` path."""
        return write_result(self.to_dict(), out, report)


def load_recognizer(
    checkpoint: str | Path = DEFAULT_CHECKPOINT, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The Listen to Look model of a ``preview`` checkpoint on ``device`` and its preprocessing (window, fps,
    size, sample_rate, classes, n_mels, steps). Raises CheckpointError for another task's checkpoint."""
    net, info = load_weights(checkpoint, task="preview")
    return net.to(device).eval(), info["preprocessing"]


def _read_frames(path: str | Path, pre: dict[str, Any], num_windows: int) -> torch.Tensor:
    """The frames of the first ``num_windows`` windows, ``(N, size, size, 3)`` uint8 at the model's rate.

    Read ``READ_WINDOWS`` windows at a time: a read holds its stretch's decoded pictures at the stored size
    (gigabytes for minutes of 720p) until it converts them; the converted frames (96 px at 8 fps for the
    shipped model) are about 0.8 GB an hour. A stretch past a cut-off end of the video is black.
    """
    window, fps, size = float(pre["window"]), pre["fps"], pre["size"]
    parts = []
    for w0 in progress.bar(range(0, num_windows, READ_WINDOWS), desc="reading frames", unit="chunk"):
        w1 = min(num_windows, w0 + READ_WINDOWS)
        try:
            clip = read_clip(path, w0 * window, (w1 - w0) * window, fps=fps, size=(size, size), audio=False)
        except TruncatedMediaError:
            if not parts:
                raise
            parts.append(torch.zeros(round((w1 - w0) * window * fps), size, size, 3, dtype=torch.uint8))
            continue
        parts.append(clip.video.permute(1, 2, 3, 0))  # (C, T, H, W) -> (T, H, W, C)
    return torch.cat(parts)


def stft_macs(num_frames: int, n_fft: int) -> int:
    """Multiply-accumulates of ``num_frames`` real FFTs of ``n_fft`` points (radix-2: ``2 n log2 n``)."""
    return int(num_frames * 2 * n_fft * math.log2(n_fft))


def _segments(windows: list[int], window: float) -> list[list[float]]:
    """Sorted window indices -> merged ``[start, end]`` seconds."""
    out: list[list[float]] = []
    for w in sorted(windows):
        if out and abs(out[-1][1] - w * window) < 1e-6:
            out[-1][1] = (w + 1) * window
        else:
            out.append([w * window, (w + 1) * window])
    return [[round(a, 3), round(b, 3)] for a, b in out]


def recognize(
    path: str | Path,
    checkpoint: str | Path = DEFAULT_CHECKPOINT,
    *,
    method: str = DEFAULT_METHOD,
    steps: int = DEFAULT_STEPS,
    top: int = 3,
    count: bool = True,
    model: tuple[torch.nn.Module, dict[str, Any]] | None = None,
    device: str | torch.device = "auto",
) -> dict[str, Any]:
    """Recognizes the action in a clip.

    Args:
        path: video file (with audio, for ``skim``).
        checkpoint: ``preview`` checkpoint (ignored when ``model`` is given).
        method: ``"skim-teacher"``, ``"skim"`` or ``"dense"`` (see the module docstring).
        steps: moments to choose (K); at most the number of windows.
        top: classes to report.
        count: count multiply-accumulates as the networks run (slower; off for timing).
        model: an already loaded ``(net, preprocessing)`` (it runs on the device it is on).
        device: ``auto`` (a CUDA GPU when there is one), ``cpu``, ``cuda``; a GPU runs in mixed precision.

    Returns:
        The ``result.json`` content: ``top`` (label, probability, supporting segments), ``moments`` (every
        window looked at with its most likely class), ``gmacs``, ``timings``, ``notes``.

    Raises:
        MediaError: missing/unreadable file, no video stream, or a clip shorter than one window
            (ClipRangeError).
        CheckpointError: not a ``preview`` checkpoint.
        DeviceError: a device this machine does not have.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    t0 = time.perf_counter()
    net, pre = model or load_recognizer(checkpoint, resolve_device(device))
    window = float(pre["window"])
    info = probe(path)
    num_windows, method, notes = _plan(path, info, window, method, steps)
    t1 = time.perf_counter()
    windows, audio = _decode(path, pre, num_windows, method)
    t2 = time.perf_counter()
    indices, probs, macs = _classify(net, windows, audio, method, min(steps, num_windows), count)
    t3 = time.perf_counter()
    top_classes, moments = _summary(pre["classes"], window, indices, probs, top)
    return {
        "input": str(path),
        "duration": round(info.duration, 3),
        "method": method,
        "window": window,
        "windows": num_windows,
        "looked_at": len(moments),
        "top": top_classes,
        "moments": sorted(moments, key=lambda m: m["start"]) if method != "dense" else moments,
        "gmacs": None if macs is None else round(macs / 1e9, 4),
        "timings": {"load": round(t1 - t0, 3), "decode": round(t2 - t1, 3), "model": round(t3 - t2, 3)},
        "notes": notes,
        "checkpoint": str(checkpoint),
    }


def _plan(path: str | Path, info, window: float, method: str, steps: int) -> tuple[int, str, list[str]]:
    """``(windows in the clip, method, notes)``: refuses a clip without picture or shorter than a window and a
    ``steps`` below 1; a clip without sound is recognized densely."""
    if info.video is None:
        raise MissingStreamError(path, "the file has no video stream; recognize needs the picture")
    num_windows = int(info.duration // window)
    if num_windows < 1:
        raise ClipRangeError(path, f"the clip is {info.duration:.2f} s long; recognize needs at least one {window:g} s "
                                   "window")  # fmt: skip
    notes = []
    if info.audio is None and method != "dense":
        method = "dense"
        notes.append("the file has no audio track, so there is nothing to preview: recognized densely (the "
                     "teacher on every window)")  # fmt: skip
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if method != "dense" and num_windows < steps:
        notes.append(f"the clip holds {num_windows} windows: looked at all of them")
    span = num_windows * window
    if span < info.duration - 1e-3:
        notes.append(f"the last {info.duration - span:.2f} s (less than a window) are not looked at")
    return num_windows, method, notes


def _decode(path: str | Path, pre: dict[str, Any], num_windows: int, method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The windows' frames ``(W, T, H, W, 3)`` and audio ``(W, S)`` (zeros for ``dense``, which does not listen)."""
    frames = _read_frames(path, pre, num_windows)
    if method != "dense":
        audio = read_clip(path, 0.0, num_windows * float(pre["window"]), sample_rate=pre["sample_rate"], video=False)
        audio = audio.audio.mean(0)
    else:
        audio = torch.zeros(num_windows)
    return split_windows(frames, audio, num_windows)


def _classify(
    net: torch.nn.Module,
    windows: torch.Tensor,
    audio: torch.Tensor,
    method: str,
    k: int,
    count: bool,
) -> tuple[torch.Tensor, torch.Tensor, int | None]:
    """``(indices of the windows classified, their class probabilities, multiply-accumulates or None)``: the
    skim chooses ``k`` windows (the log-mel's FFTs counted too), or the teacher classifies all (``dense``)."""
    num_windows = windows.shape[0]
    front_end = net.student.audio_front_end  # the FFTs of the student's log-mel, which count_macs does not see
    device = next(net.parameters()).device

    def run() -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode(), autocast(device):
            if method == "dense":
                logits = torch.cat([net.teacher(clip_input(windows[i : i + DENSE_BATCH].to(device))).float()
                                    for i in range(0, num_windows, DENSE_BATCH)])  # fmt: skip
                return torch.arange(num_windows), logits.softmax(-1).cpu()
            indices, probs = net.skim_video(windows.to(device)[None], audio.to(device)[None], k)
            indices = indices[0].cpu()
            if method == "skim-teacher":  # the clip classifier looks where the skim chose
                return indices, net.teacher(clip_input(windows[indices].to(device))).float().softmax(-1).cpu()
            return indices, probs[0].float().cpu()

    if not count:
        return *run(), None
    (indices, probs), macs = count_macs(run)
    if method != "dense":
        macs += stft_macs(num_windows * (audio.shape[-1] // front_end.hop_length + 1), front_end.n_fft)
    return indices, probs, macs


def _summary(
    classes: list[str], window: float, indices: torch.Tensor, probs: torch.Tensor, top: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The ``top`` actions (mean probability over the windows classified, and the segments whose most likely
    class each is; background is not an answer) and every window classified with its most likely class."""
    mean = probs.mean(0)
    order = mean[:-1].argsort(descending=True)[:top].tolist()
    moment_class = probs.argmax(-1).tolist()
    moments = [
        {"start": round(i * window, 3), "end": round((i + 1) * window, 3), "label": classes[c],
         "probability": round(float(probs[j, c]), 4)}
        for j, (i, c) in enumerate(zip(indices.tolist(), moment_class))
    ]  # fmt: skip
    top_classes = [
        {
            "label": classes[c],
            "probability": round(float(mean[c]), 4),
            "segments": _segments([i for i, m in zip(indices.tolist(), moment_class) if m == c], window),
        }
        for c in order
    ]
    return top_classes, moments


def write_result(result: dict[str, Any], out: str | Path, report: bool = False) -> Path:
    """Writes ``result.json`` into ``out`` as a whole (never over the input; an earlier run's results there
    are replaced, other files kept: :func:`avlearn.io.staged_output`), and with ``report`` ``report.html``."""
    with staged_output(out, [result["input"]], ("result.json",), "recognize") as folder:
        with atomic_path(Path(folder) / "result.json", [result["input"]]) as tmp:
            tmp.write_text(json.dumps(result, indent=2) + "\n")
        if report:
            write_report("recognize", folder)
    return Path(out) / "result.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("clip", help="video file (with audio for the preview)")
    parser.add_argument("--out", default="out/recognize", help="folder for result.json (default out/recognize)")
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="preview checkpoint")
    parser.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD,
                        help="skim-teacher (default): the clip classifier at the K moments the audio preview "
                        "chose; skim: the image+audio student at them; dense: the clip classifier on every "
                        "window")  # fmt: skip
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"moments to choose (default {DEFAULT_STEPS})")
    parser.add_argument("--top", type=int, default=3, help="classes to print (default 3)")
    parser.add_argument("--report", action="store_true", help=f"also write {REPORT}: the actions on a timeline")
    add_device_argument(parser)


def run(args: argparse.Namespace) -> int:
    if args.steps < 1:
        raise SystemExit(f"avlearn recognize: error: --steps {args.steps}: must be at least 1; pass --steps 2")
    device = resolve_device(args.device)  # before --out is touched
    # --out is checked and locked before any work; the result moves into it as a whole at the end
    with staged_output(args.out, [args.clip], ("result.json",), "recognize") as tmp:
        result = recognize(
            args.clip, args.checkpoint, method=args.method, steps=args.steps, top=args.top, device=device
        )
        write_result(result, tmp)
        if args.report:
            write_report("recognize", tmp)
    target = Path(args.out) / "result.json"
    for note in result["notes"]:
        print(f"note: {note}")
    width = max(len(t["label"]) for t in result["top"])
    for t in result["top"]:
        where = ", ".join(f"{a:g}-{b:g} s" for a, b in t["segments"]) or "-"
        print(f"{t['label']:<{width}}  {t['probability']:.3f}  {where}")
    looked = f"looked at {result['looked_at']} of {result['windows']} windows" if result["method"] != "dense" else (
        f"dense: all {result['windows']} windows")  # fmt: skip
    print(f"{looked}, {result['gmacs']:.2f} GMACs, {sum(result['timings'].values()):.2f} s -> {target}")
    if args.report:
        print(f"report -> {Path(args.out) / REPORT}")
    return 0
