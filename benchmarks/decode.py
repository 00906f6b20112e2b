"""Random-window decode speed: avlearn.io.read_clip vs. the ffmpeg CLI vs. decoding from the file start.

From a 60 s 640x360 30 fps H.264 + AAC 44.1 kHz stereo file, reads 100 random 1 s windows as 16 frames at
112x112 plus 16 kHz mono audio, three ways, on the same windows in the same run:

- avlearn: ``read_clip`` (seek to the keyframe before the window, decode only the window, scale and
  resample in FFmpeg);
- ffmpeg CLI: one ``ffmpeg -ss START -i FILE -t 1`` process per window, fps/scale filters and resampling
  in ffmpeg, raw frames and samples on pipes;
- from start: a PyAV reader that decodes from the beginning of the file up to the window (what a
  reader without seeking does).

Then the cost of a 10 s window from a 1-minute and from a 60-minute file (the same content repeated),
with each reader process's peak memory.

Run:  .venv/bin/python benchmarks/decode.py   (needs the ffmpeg program: make system-deps)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter

from avlearn.io import probe, read_clip

SIZE, FPS_OUT, SR_OUT = 112, 16, 16000


def make_source(path: Path, seconds: int, gop: int | None) -> Path:
    """A 640x360 30 fps H.264 + AAC 44.1 kHz stereo file of moving test pattern and tones."""
    if path.exists():
        return path
    keyint = ["-g", str(gop)] if gop else []
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size=640x360:rate=30:duration={seconds}",
         "-f", "lavfi", "-i", f"aevalsrc=sin(440*2*PI*t)*0.3|sin(660*2*PI*t)*0.3:s=44100:d={seconds}",
         "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", *keyint,
         "-c:a", "aac", "-b:a", "128k", "-shortest", str(path)],
        check=True,
    )  # fmt: skip
    return path


def read_ffmpeg_cli(path: Path, start: float, duration: float) -> tuple[np.ndarray, np.ndarray]:
    with tempfile.NamedTemporaryFile(suffix=".f32") as audio_file:
        proc = subprocess.run(
            ["ffmpeg", "-v", "error", "-ss", f"{start:.6f}", "-i", str(path), "-t", f"{duration:.6f}",
             "-map", "0:v:0", "-vf", f"fps={FPS_OUT},scale={SIZE}:{SIZE}", "-f", "rawvideo", "-pix_fmt", "rgb24",
             "pipe:1",
             "-map", "0:a:0", "-t", f"{duration:.6f}", "-ac", "1", "-ar", str(SR_OUT), "-f", "f32le", "-y",
             audio_file.name],
            capture_output=True,
            check=True,
        )  # fmt: skip
        audio = np.fromfile(audio_file.name, np.float32)
    video = np.frombuffer(proc.stdout, np.uint8).reshape(-1, SIZE, SIZE, 3)
    return video, audio


def read_from_start(path: Path, start: float, duration: float) -> tuple[np.ndarray, np.ndarray]:
    """Decodes from t = 0 up to the window end, keeping the frames and samples inside the window."""
    end = start + duration
    targets = start + np.arange(round(duration * FPS_OUT)) / FPS_OUT
    frames, k = [], 0
    reformatter = VideoReformatter()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        prev = None
        for frame in container.decode(stream):
            while prev is not None and k < len(targets) and targets[k] < frame.time:
                frames.append(
                    reformatter.reformat(
                        prev, width=SIZE, height=SIZE, format="rgb24", interpolation=Interpolation.BILINEAR
                    ).to_ndarray()
                )
                k += 1
            prev = frame
            if frame.time >= end:
                break
        container.seek(0)
        resampler = av.AudioResampler(format="fltp", layout="mono", rate=SR_OUT)
        chunks = []
        for frame in container.decode(container.streams.audio[0]):
            chunks.extend(out.to_ndarray() for out in resampler.resample(frame))
            if frame.time > end:
                break
    audio = np.concatenate(chunks, axis=1)[0, round(start * SR_OUT) : round(end * SR_OUT)]
    return np.stack(frames), audio


def read_avlearn(path: Path, start: float, duration: float):
    clip = read_clip(path, start, duration, fps=FPS_OUT, size=(SIZE, SIZE), sample_rate=SR_OUT)
    return clip.video.permute(1, 2, 3, 0), clip.audio[0]  # (C, T, H, W) -> (T, H, W, C) like the others


def time_reader(reader, path: Path, starts: np.ndarray, duration: float) -> float:
    reader(path, float(starts[0]), duration)  # warm up caches and imports
    t0 = time.perf_counter()
    for s in starts:
        video, audio = reader(path, float(s), duration)
        assert len(video) == round(duration * FPS_OUT), (reader.__name__, len(video))
        assert abs(len(audio) - round(duration * SR_OUT)) <= 1, (reader.__name__, len(audio))
    return len(starts) / (time.perf_counter() - t0)


def window_cost_child(path: str, starts: list[float], duration: float) -> None:
    """Runs in a fresh process: times the windows and reports peak memory."""
    import resource

    read_avlearn(Path(path), starts[0], duration)
    t0 = time.perf_counter()
    for s in starts:
        read_avlearn(Path(path), s, duration)
    seconds = (time.perf_counter() - t0) / len(starts)
    print(json.dumps({"seconds": seconds, "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def long_file_section(work: Path, short: Path, rng: np.random.Generator) -> None:
    listing = work / "concat.txt"
    listing.write_text("".join(f"file '{short.resolve()}'\n" for _ in range(60)))
    long = work / "hour.mp4"
    if not long.exists():
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", str(long)],
            check=True,
        )
    print(f"\n10 s windows: 1-minute vs. 60-minute file ({probe(long).duration / 60:.1f} min, same content)")
    print(f"{'file':<12} {'s/window':>9} {'peak RSS MB':>12}")
    for name, path, length in (("1 minute", short, 60.0), ("60 minutes", long, probe(long).duration)):
        starts = [float(s) for s in rng.uniform(0, length - 10.0, size=5)]
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(path), json.dumps(starts)], capture_output=True, text=True
        )
        if out.returncode:
            raise RuntimeError(out.stderr)
        res = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{name:<12} {res['seconds']:>9.3f} {res['max_rss_mb']:>12.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=100)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "avlearn-bench-decode")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return window_cost_child(args.child[0], json.loads(args.child[1]), 10.0)
    if not shutil.which("ffmpeg"):
        sys.exit("benchmarks/decode.py needs the ffmpeg program (make system-deps)")
    args.work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    starts = rng.uniform(0, 59.0, size=args.windows)
    print(f"{args.windows} random 1 s windows -> {FPS_OUT} frames {SIZE}x{SIZE} + {SR_OUT} Hz mono; "
          f"{os.cpu_count()} cores; PyAV {av.__version__}")  # fmt: skip
    for label, gop in (("x264 default GOP (250 frames)", None), ("1 s GOP (30 frames)", 30)):
        src = make_source(args.work / f"src_gop{gop or 'default'}.mp4", 60, gop)
        rates = {
            "avlearn read_clip": time_reader(read_avlearn, src, starts, 1.0),
            "ffmpeg CLI per window": time_reader(read_ffmpeg_cli, src, starts, 1.0),
            "decode from start": time_reader(read_from_start, src, starts, 1.0),
        }
        base = rates["avlearn read_clip"]
        print(f"\n{label}: {src.name}")
        print(f"{'reader':<24} {'clips/s':>8} {'avlearn is':>11}")
        for name, rate in rates.items():
            print(f"{name:<24} {rate:>8.1f} {base / rate:>10.2f}x")
    long_file_section(args.work, args.work / "src_gopdefault.mp4", rng)


if __name__ == "__main__":
    main()
