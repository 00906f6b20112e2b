"""What users read: API errors that say what is wrong, and one line per error or warning on the command line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import av
import numpy as np
import pytest
from media import click_track, decode_frames, write_coded
from test_containers import CONTAINERS, _available, write_av

from avlearn.cli import main, warnings_as_lines
from avlearn.io import ClipRangeError, MediaNotFoundError, TruncatedMediaWarning, probe, read_audio, read_clip

SYNC = Path(__file__).resolve().parents[1] / "assets" / "checkpoints" / "sync_speakers"


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """4 s of coded frames at 30 fps with clicks, index at the front (so it can be cut with its index intact)."""
    path = tmp_path_factory.mktemp("msg") / "clip.mp4"
    times = [k / 30 for k in range(120)]
    return write_coded(path, times, audio=click_track(times[5::10], 4.0, 16000), sample_rate=16000, faststart=True)


def _cut_inside(src: Path, dst: Path, seconds: float) -> Path:
    """``src`` cut where its frame at ``seconds`` begins: the index announces the whole clip, the data stop."""
    with av.open(str(src)) as container:
        cut = next(p.pos for p in container.demux(video=0) if p.pts is not None and p.pts * p.time_base >= seconds)
    dst.write_bytes(src.read_bytes()[:cut])
    return dst


def _one_line(err: str, command: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"avlearn {command}: error: "), err
    assert "Traceback" not in err
    return lines[0]


# ---- API arguments: a ValueError that says what is allowed ------------------------------------------


@pytest.mark.parametrize("rate", [1, 0, -16000, 999, 16000.5, float("nan")])
def test_sample_rates_ffmpeg_cannot_produce_are_refused_alike(clip, rate):
    with pytest.raises(ValueError, match="at least 1000"):
        read_clip(clip, 0.0, 1.0, sample_rate=rate)
    with pytest.raises(ValueError, match="at least 1000"):  # read_audio agrees with read_clip (0 was 44.1 kHz)
        read_audio(clip, sample_rate=rate)
    assert read_clip(clip, 0.0, 0.5, sample_rate=1000, video=False).audio.shape == (1, 500)


@pytest.mark.parametrize("size", [1.5, 0, -2, (32, 0), (10, 2.5), "96", (1, 2, 3)])
def test_sizes_are_checked_before_reading(clip, size):
    with pytest.raises(ValueError, match="size must be"):
        read_clip(clip, 0.0, 0.2, size=size, audio=False)


def test_whole_number_arguments_of_any_type_work(clip):
    a = read_clip(clip, 0.0, 0.2, size=16.0, sample_rate=8000.0, fps=10)
    b = read_clip(clip, 0.0, 0.2, size=np.int64(16), sample_rate=np.int32(8000), fps=10)
    assert a.video.shape == b.video.shape == (3, 2, 16, 48) and a.sample_rate == b.sample_rate == 8000


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"size": 100000}, "size must be a whole number of pixels from 1 to 8192"),  # was av ArgumentError
        ({"size": (16, 9000)}, "size must be"),
        ({"size": True}, "size must be"),
        ({"fps": 1e6}, "fps must be .* at most 1000"),  # was 7.7 GB of repeated frames
        ({"fps": True}, "fps must be"),  # was taken as 1 fps
        ({"sample_rate": 10**9}, "at most 384000"),  # was a MemoryError
    ],
)
def test_arguments_that_only_allocate_are_refused(clip, kwargs, match):
    with pytest.raises(ValueError, match=match):
        read_clip(clip, 0.0, 0.1, **kwargs)
    if "sample_rate" in kwargs:
        with pytest.raises(ValueError, match=match):
            read_audio(clip, **kwargs)


@pytest.mark.parametrize("start, duration", [(0.0, 1e9), (0.0, 20000.0), (1.0, 1e5)])
def test_a_window_too_large_for_memory_is_refused_before_reading(clip, start, duration):
    """1e9 s failed allocating 186 GiB in numpy; the padding past the end counts, the file's length does not."""
    with pytest.raises(ClipRangeError, match=r"GiB of memory .*read shorter windows") as err:
        read_clip(clip, start, duration, video=duration < 1e5)
    assert len(str(err.value)) < 300 and "\n" not in str(err.value)


@pytest.mark.parametrize("start, duration", [(0.0, None), (None, 1.0), ("0", 1.0), (0.0, True)])
def test_a_window_that_is_not_numbers_is_a_clip_range_error(clip, start, duration):
    with pytest.raises(ClipRangeError, match="must be a"):  # None was a TypeError from a comparison
        read_clip(clip, start, duration)


def test_a_start_far_past_the_end_is_said_briefly(clip):
    with pytest.raises(ClipRangeError, match=r"start 1e\+300s is past the end") as err:
        read_clip(clip, 1e300, 1.0)
    assert len(str(err.value)) < 200  # three decimals of 1e300 printed 300 digits


@pytest.mark.parametrize("fps", [None, 30])
def test_windows_in_the_last_frame_interval_or_shorter_than_one_return_that_frame(clip, fps):
    """(3.99, 2) and (0, 1e-9) said "no frame could be decoded", as if the file were damaged."""
    last = read_clip(clip, 3.99, 2.0, fps=fps)
    assert bool(last.video_valid[0]) and decode_frames(last.video[:, :1]).tolist() == [119]
    assert not last.video_valid[1:].any() and last.audio_valid[: 16000 // 200].all()
    tiny = read_clip(clip, 0.0, 1e-9, fps=fps)
    assert tiny.video.shape[1] == 1 and bool(tiny.video_valid[0]) and decode_frames(tiny.video).tolist() == [0]


# ---- probe: not-files, cut files, several files --------------------------------------------------------


def test_probe_names_pipes_and_devices(tmp_path):
    fifo = tmp_path / "stream.mp4"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero")):
        with pytest.raises(MediaNotFoundError, match="not a regular file") as info:
            probe(path)
        assert "empty" not in str(info.value)


def test_a_name_too_long_for_the_file_system_is_named_as_such(tmp_path):
    with pytest.raises(MediaNotFoundError, match="name is too long"):
        probe(tmp_path / ("x" * 300 + ".mp4"))  # pathlib's exists() raised ENAMETOOLONG


def test_probe_cli_reports_every_file_and_a_cut_one(clip, tmp_path, capsys):
    cut = _cut_inside(clip, tmp_path / "cut.mp4", 2.0)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    assert main(["probe", str(tmp_path / "missing.mp4"), str(clip), str(empty), str(cut)]) == 1
    out, err = capsys.readouterr()
    assert f"{clip}: " in out and f"{cut}: " in out  # files after a bad one are still described
    assert "(variable)" not in out and "cut off" in out and "announces 4.000 s" in out
    errors = err.splitlines()
    assert sum(line.startswith("avlearn probe: error: ") for line in errors) == 2
    assert "missing.mp4" in errors[0] and "empty.mp4" in errors[1] and "Traceback" not in err
    assert main(["probe", "--json", str(cut)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["truncated"] and info["duration"] < 2.5 and not info["video"]["variable_fps"]


# ---- warnings: one formatted line on the command line, no "-inf" times --------------------------------


def test_a_file_cut_after_its_first_frame_warns_once_without_inf(clip, tmp_path):
    cut = _cut_inside(clip, tmp_path / "first.mp4", 0.02)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read_clip(cut, 0.0, 0.5, fps=30, audio=False)
    texts = [str(w.message) for w in caught]
    assert len(texts) == 1 and issubclass(caught[0].category, TruncatedMediaWarning), texts
    assert "inf" not in texts[0] and "cut off" in texts[0]


def test_cli_prints_warnings_as_one_line(capsys):
    with warnings_as_lines("separate"):
        warnings.warn("first line\n  second line", UserWarning, stacklevel=1)
        warnings.warn("first line second line", UserWarning, stacklevel=1)  # the same news from elsewhere
    err = capsys.readouterr().err
    assert err == "avlearn separate: warning: first line second line\n"
    assert warnings.showwarning is not None and "warnings_as_lines" not in repr(warnings.showwarning)


def test_warning_of_a_command_is_one_line(clip, tmp_path, capsys):
    cut = _cut_inside(clip, tmp_path / "cut.mp4", 2.0)
    assert main(["demo", str(cut), "--out", str(tmp_path / "out"), "--start", "1.0", "--duration", "2.0"]) == 0
    err = capsys.readouterr().err
    warned = [line for line in err.splitlines() if line.strip()]
    assert warned and all(line.startswith("avlearn demo: warning: ") for line in warned), err
    assert "warnings.warn" not in err and ".py:" not in err


# ---- errors of the inference commands ------------------------------------------------------------------


def test_stream_errors_give_no_python_advice(clip, tmp_path, capsys):
    from avlearn.io import write_audio, write_video

    silent = write_video(tmp_path / "silent.mp4", np.zeros((3, 75, 32, 32), np.uint8), 25)
    voice = write_audio(tmp_path / "voice.wav", np.zeros((1, 64000), np.float32), 16000)
    cases = [("sync-offset", silent, "no audio stream"), ("sync-offset", voice, "no video stream")]
    for command, path, words in [*cases, ("demo", voice, "no video stream")]:
        assert main([command, str(path), "--out", str(tmp_path / "out")][: 4 if command == "demo" else 2]) == 1
        line = _one_line(capsys.readouterr().err, command)
        assert words in line and "=False" not in line and "read_audio" not in line


def test_sync_offset_on_a_file_cut_inside(clip, tmp_path, capsys):
    """2 s of a 4 s clip are readable: too short for the default ±15 frame search (one line, it crashed with
    total None), enough for ±3 frames (a result from the readable part and one warning line)."""
    cut = _cut_inside(clip, tmp_path / "cut.mp4", 2.0)
    assert main(["sync-offset", str(cut)]) == 1
    assert str(cut) in _one_line(capsys.readouterr().err, "sync-offset")
    assert main(["sync-offset", str(cut), "--max-frames", "3", "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["windows"] and "Traceback" not in err and err.strip()
    assert [line for line in err.splitlines() if line.strip()] == [
        line for line in err.splitlines() if line.startswith("avlearn sync-offset: warning: ") and "cut off" in line
    ]


def test_sync_offset_when_the_sound_stops_early_is_one_line(tmp_path, capsys):
    """The picture runs 4 s, the sound 0.6 s: no window can be scored (this crashed with total None)."""
    times = [k / 30 for k in range(120)]
    path = write_coded(tmp_path / "short_sound.mp4", times, audio=click_track([0.1], 0.6, 16000), sample_rate=16000)
    assert main(["sync-offset", str(path), "--max-frames", "3"]) == 1
    assert "could be decoded" in _one_line(capsys.readouterr().err, "sync-offset")


@pytest.fixture(scope="module")
def media_with_sound(tmp_path_factory) -> list[Path]:
    """Coded clips muxed as webm (vp9/opus) and mkv (h264/flac), the containers that crashed every command."""
    out = []
    for name in ("webm_vp9_opus", "mkv_h264_flac"):
        muxer, suffix, vcodec, acodec, rate, options = CONTAINERS[name]
        if _available(vcodec, acodec):
            folder = tmp_path_factory.mktemp("matroska")
            out.append(write_av(folder / f"{name}.{suffix}", muxer, vcodec, acodec, rate, options))
    if not out:
        pytest.skip("no vp9/opus or h264/flac encoder in this PyAV build")
    return out


def test_sync_offset_reads_matroska_and_webm(media_with_sound, capsys):
    for path in media_with_sound:
        assert main(["sync-offset", str(path), "--max-frames", "3", "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["windows"] and np.isfinite(result["offset_ms"])


# ---- checkpoints: the file the user named, and what inference takes -----------------------------------


@pytest.mark.parametrize("name", ["model.ckpt", "model.pt", "folder"])
def test_checkpoint_that_is_not_exported_weights(clip, tmp_path, capsys, name):
    given = tmp_path / name
    given.mkdir() if name == "folder" else given.write_bytes(b"\x80\x04not really a pickle")
    assert main(["sync-offset", str(clip), "--checkpoint", str(given)]) == 1
    line = _one_line(capsys.readouterr().err, "sync-offset")
    assert line.startswith(f"avlearn sync-offset: error: {given}:") and "weights/" in line
    assert ".safetensors` not found" not in line and f"{given.with_suffix('')}.safetensors" not in line.split(":")[2]
    assert "weights_only=False" not in line


def test_checkpoint_lacking_preprocessing_keys_names_them(clip, tmp_path, capsys):
    ck = tmp_path / "ck"
    shutil.copy(SYNC.with_suffix(".safetensors"), ck.with_suffix(".safetensors"))
    doc = json.loads(SYNC.with_suffix(".json").read_text())
    del doc["preprocessing"]["n_mels"], doc["preprocessing"]["window"]
    ck.with_suffix(".json").write_text(json.dumps(doc))
    assert main(["sync-offset", str(clip), "--checkpoint", str(ck)]) == 1
    line = _one_line(capsys.readouterr().err, "sync-offset")
    assert "n_mels, window" in line and "KeyError" not in line


def test_pool_workers_ended_by_sigterm_print_nothing():
    """QA: `avlearn synth --workers 2` printed a Terminated traceback per worker at its end: the pool ends its
    forked workers with SIGTERM, and they had inherited the command's SIGTERM-as-interrupt handler."""
    script = (
        "import multiprocessing as mp\n"
        "from avlearn.cli import interrupts_as_lines\n"
        "with interrupts_as_lines('t') as status:\n"
        "    with mp.get_context('fork').Pool(2) as pool:\n"
        "        print(pool.map(abs, [-1, -2, -3, -4]))\n"
        "print('status', status[0])\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["[1,", "2,", "3,", "4]", "status", "0"]
    assert "Traceback" not in done.stderr and "Terminated" not in done.stderr
