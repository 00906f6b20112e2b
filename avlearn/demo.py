"""``avlearn demo``: probe a clip, read an aligned window, and write what was read so a person can check it.

Writes ``contact_sheet.png`` (the window's frames with their timestamps above the waveform and
spectrogram of the same window, frame instants marked), ``window.wav`` and ``probe.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from avlearn import demo_clip
from avlearn.io import AVClip, probe, read_clip, write_audio
from avlearn.io.outdir import staged_output
from avlearn.io.write import atomic_path

DEFAULT_CLIP = demo_clip("speakers")  # shipped inside the package: found from any folder, installed or not
OUTPUTS = ("probe.json", "window.wav", "contact_sheet.png")  # the names written into --out


def contact_sheet(clip: AVClip, path: Path, *, columns: int = 8, title: str = "") -> Path:
    """Renders a clip's frames and waveform into one PNG (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    video = clip.video.permute(1, 2, 3, 0).numpy()  # (C, T, H, W) -> (T, H, W, C)
    picks = np.linspace(0, len(video) - 1, min(len(video), 2 * columns)).round().astype(int)
    rows = int(np.ceil(len(picks) / columns))
    fig = plt.figure(figsize=(2 * columns, 2.1 * rows + 3.2), dpi=80)
    grid = fig.add_gridspec(rows + 2, columns, height_ratios=[2.1] * rows + [1.6, 1.6])
    for n, k in enumerate(picks):
        ax = fig.add_subplot(grid[n // columns, n % columns])
        ax.imshow(video[k])
        valid = "" if clip.video_valid[k] else " (pad)"
        ax.set_title(f"{float(clip.video_times[k]):.3f}s{valid}", fontsize=8)
        ax.axis("off")
    wav = clip.audio.mean(0).numpy()
    t = clip.start + np.arange(len(wav)) / clip.sample_rate
    ax = fig.add_subplot(grid[rows, :])
    ax.plot(t, wav, lw=0.5, color="k")
    for k in picks:
        ax.axvline(float(clip.video_times[k]), color="tab:red", lw=0.6, alpha=0.6)
    ax.set_xlim(t[0], t[-1])
    ax.set_ylabel("waveform")
    ax = fig.add_subplot(grid[rows + 1, :])
    dither = 1e-6 * np.random.default_rng(0).standard_normal(len(wav))  # log of digital silence is -inf
    ax.specgram(wav + dither, NFFT=512, Fs=clip.sample_rate, noverlap=384, xextent=(t[0], t[-1]), cmap="magma")
    ax.set_ylabel("Hz")
    ax.set_xlabel("seconds (red lines: instants of the frames shown)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("clip", nargs="?", default=str(DEFAULT_CLIP), help="media file (default: a shipped demo clip)")
    parser.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder")
    parser.add_argument("--start", type=float, default=0.0, help="window start (s)")
    parser.add_argument("--duration", type=float, default=2.0, help="window length (s)")
    parser.add_argument("--fps", type=float, default=8.0, help="frames per second to sample")
    parser.add_argument("--size", type=int, default=160, help="shorter side of the frames (pixels)")
    parser.add_argument("--sample-rate", type=int, default=16000, help="audio sample rate")


def run(args: argparse.Namespace) -> int:
    # --out is checked and locked first; the three files move into it together at the end
    with staged_output(args.out, [args.clip], OUTPUTS, "demo") as out:
        info = probe(args.clip)
        clip = read_clip(
            args.clip, args.start, args.duration, fps=args.fps, size=args.size, sample_rate=args.sample_rate
        )
        with atomic_path(out / "probe.json", protect=[args.clip]) as tmp:
            tmp.write_text(json.dumps(info.to_dict(), indent=2))
        write_audio(out / "window.wav", clip.audio, clip.sample_rate, protect=[args.clip])
        title = f"{Path(args.clip).name}: {args.start:.2f}-{args.start + args.duration:.2f} s"
        contact_sheet(clip, out / "contact_sheet.png", title=title)
    sheet = args.out / "contact_sheet.png"
    print(f"{args.clip}: {info.duration:.2f} s; read {tuple(clip.video.shape)} video, {tuple(clip.audio.shape)} audio")
    print(f"wrote {sheet}, {args.out / 'window.wav'}, {args.out / 'probe.json'}")
    return 0
