"""avlearn.io on real H.264/AAC files written here with known content (coded frame indices, clicks)."""

from __future__ import annotations

import shutil
import subprocess
import warnings
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from media import click_onsets, click_track, decode_frames, write_coded

from avlearn.io import (
    ClipRangeError,
    InvalidMediaError,
    MediaError,
    MediaNotFoundError,
    MissingStreamError,
    OverwriteInputError,
    TruncatedMediaError,
    TruncatedMediaWarning,
    probe,
    read_audio,
    read_clip,
    write_audio,
    write_video,
)

FPS = 30
DURATION = 4.0
CLICK_EVERY = 10  # frames 5, 15, 25, ... have a click starting at their presentation time


def _show_frame(times: np.ndarray, t: float, lead: float = 0.0) -> int:
    """Index of the frame on screen at instant ``t`` (sample and hold), counting a frame presented up to
    ``lead`` seconds later as already on screen (read_clip's allowance for timestamps a muxer shifted)."""
    return int(np.searchsorted(times, t + max(1e-4, lead), side="right") - 1)


@pytest.fixture(scope="module")
def cfr(tmp_path_factory) -> tuple[Path, np.ndarray]:
    times = np.arange(round(DURATION * FPS)) / FPS
    clicks = times[5::CLICK_EVERY]
    path = tmp_path_factory.mktemp("io") / "cfr.mp4"
    write_coded(path, list(times), audio=click_track(list(clicks), DURATION, 44100), sample_rate=44100)
    return path, times


@pytest.fixture(scope="module")
def vfr(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """Variable frame rate (33, 50 and 67 ms intervals), video starting 0.2 s after the audio, 48 kHz."""
    rng = np.random.default_rng(1)
    steps = rng.choice([1 / 30, 1 / 20, 1 / 15], size=90)
    times = np.round(0.2 + np.r_[0, np.cumsum(steps)[:-1]], 3)
    path = tmp_path_factory.mktemp("io") / "vfr.mp4"
    audio = click_track(list(times[3::7]), float(times[-1]) + 0.1, 48000)
    write_coded(path, list(times), audio=audio, sample_rate=48000)
    return path, times


def test_probe_reports_streams(cfr, vfr):
    info = probe(cfr[0])
    assert info.video.width == 96 and info.video.height == 32 and info.video.codec == "h264"
    assert info.video.fps == pytest.approx(FPS, rel=1e-3) and not info.video.variable_fps
    assert info.audio.sample_rate == 44100 and info.audio.channels == 2 and info.audio.codec == "aac"
    assert info.duration == pytest.approx(DURATION, abs=0.05)
    v = probe(vfr[0])
    assert v.video.variable_fps and v.video.start == pytest.approx(0.2, abs=1e-3) and v.audio.start == 0.0


@pytest.mark.parametrize("start", [0.0, 0.37, 1.51, 2.9])
@pytest.mark.parametrize("fps", [None, 30, 12.5, 60])
def test_frames_follow_presentation_time(cfr, start, fps):
    path, times = cfr
    clip = read_clip(path, start, 1.0, fps=fps)
    shown = decode_frames(clip.video)
    if fps is None:
        expected = np.flatnonzero((times >= start - 1e-4) & (times < start + 1.0 - 1e-4))
    else:
        lead = 0.25 * min(1 / fps, 1 / FPS)  # a quarter of the output and of the stored frame interval
        expected = [_show_frame(times, start + k / fps, lead) for k in range(round(fps))]
    np.testing.assert_array_equal(shown, expected)
    assert clip.video_valid.all() and clip.video.dtype == torch.uint8 and clip.video.shape[0] == 3


@pytest.mark.parametrize("sample_rate", [8000, 16000, 22050, 48000])
def test_audio_and_video_align(cfr, sample_rate):
    path, times = cfr
    for start in (0.13, 1.0, 2.47):
        clip = read_clip(path, start, 1.2, fps=FPS, sample_rate=sample_rate)
        assert clip.sample_rate == sample_rate and clip.audio.shape == (1, round(1.2 * sample_rate))
        onsets = click_onsets(clip.audio, sample_rate)
        clicks = times[5::CLICK_EVERY]
        expected = clicks[(clicks >= start) & (clicks < start + 1.2 - 0.002)] - start
        assert len(onsets) == len(expected)
        assert np.abs(onsets - expected).max() < 1e-3  # within 1 ms of audio
        shown = decode_frames(clip.video)
        for onset in onsets:  # the clicked frame appears in the video within one frame of the heard click
            clicked = int(np.argmin(np.abs(times - (start + onset))))
            first_shown = np.flatnonzero(shown == clicked)
            assert first_shown.size and abs(first_shown[0] / FPS - onset) <= 1 / FPS + 1e-6


def test_variable_frame_rate_and_late_video_start(vfr):
    path, times = vfr
    clip = read_clip(path, 0.0, 2.0, fps=25, sample_rate=16000)
    lead = 0.25 * min(1 / 25, 1 / probe(path).video.fps)
    shown = decode_frames(clip.video)
    for k in range(50):
        t = k / 25
        if t < times[0] - 0.05:  # before the video stream starts (more than a frame early): padding
            assert not clip.video_valid[k]
        else:
            either = {max(0, _show_frame(times, t, lead + d)) for d in (-1e-6, 1e-6)}  # a frame exactly `lead` late
            assert clip.video_valid[k] and shown[k] in either
    native = read_clip(path, 1.0, 1.0, fps=None, audio=False)
    inside = np.flatnonzero((times >= 1.0 - 1e-4) & (times < 2.0 - 1e-4))
    np.testing.assert_array_equal(decode_frames(native.video), inside)
    np.testing.assert_allclose(native.video_times.numpy(), times[inside], atol=1e-3)
    # clicks sit on frames 3, 10, 17, ...: each heard onset matches the time of its frame
    onsets = click_onsets(clip.audio, 16000)
    clicks = times[3::7]
    assert np.abs(onsets - clicks[clicks < 2.0 - 0.002]).max() < 1e-3


def test_window_past_end_is_padded_and_marked(cfr):
    path, _ = cfr
    clip = read_clip(path, 3.5, 1.0, fps=FPS, sample_rate=16000)
    assert clip.video.shape[1] == 30 and clip.audio.shape[1] == 16000
    assert clip.video_valid[:15].all() and not clip.video_valid[15:].any()
    assert clip.video[:, 15:].eq(0).all()
    assert clip.audio_valid[:7900].all() and not clip.audio_valid[8100:].any()
    assert clip.audio[:, 8100:].eq(0).all()
    assert clip.valid_duration == pytest.approx(0.5, abs=0.02)


def test_resampling_keeps_pitch_and_stereo(tmp_path):
    sr = 44100
    t = np.arange(2 * sr) / sr
    wav = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 1000 * t)]).astype(np.float32)
    video = np.zeros((3, 50, 32, 32), np.uint8)
    path = write_video(tmp_path / "tone.mp4", video, 25, wav, sr)
    for rate in (8000, 16000, 48000):
        clip = read_clip(path, 0.5, 1.0, sample_rate=rate, mono=False)
        assert clip.audio.shape == (2, rate)
        for ch, f0 in enumerate((440, 1000)):
            spectrum = np.abs(np.fft.rfft(clip.audio[ch].numpy()))
            assert np.argmax(spectrum) == pytest.approx(f0, abs=1)  # 1 Hz bins over a 1 s window
    wav_back, rate = read_audio(path, sample_rate=None, mono=True)
    assert rate == sr and wav_back.shape[0] == 1 and abs(wav_back.shape[1] - 2 * sr) < 2048


def test_size_and_rotation(tmp_path):
    path = write_coded(tmp_path / "rot.mp4", [k / 30 for k in range(10)], rotation=90)
    info = probe(path)
    assert info.video.rotation == 270 and info.video.display_size == (96, 32)
    clip = read_clip(path, 0, 0.2, audio=False)
    assert clip.video.shape[2:] == (96, 32)  # upright: tall
    assert read_clip(path, 0, 0.2, audio=False, size=48).video.shape[2:] == (144, 48)
    assert read_clip(path, 0, 0.2, audio=False, size=(20, 10)).video.shape[2:] == (20, 10)
    if shutil.which("ffmpeg"):  # the same picture FFmpeg's own autorotation shows
        raw = subprocess.run(
            ["ffmpeg", "-v", "error", "-i", str(path), "-frames:v", "4", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
            capture_output=True,
            check=True,
        ).stdout
        ref = np.frombuffer(raw, np.uint8).reshape(-1, 96, 32, 3)
        ours = clip.video.permute(1, 2, 3, 0).numpy()[: len(ref)]
        assert np.abs(ref.astype(int) - ours.astype(int)).mean() < 3


def test_writers_are_atomic_and_protect_inputs(tmp_path, cfr):
    wav = np.sin(np.linspace(0, 100, 8000, dtype=np.float32))[None] * 0.5
    for ext in ("wav", "flac"):
        path = write_audio(tmp_path / f"a.{ext}", wav, 8000)
        back, rate = read_audio(path)
        assert rate == 8000 and np.abs(back.numpy() - wav).max() < 1e-3
    with pytest.raises(ValueError, match="wav or .flac"):
        write_audio(tmp_path / "a.mp3", wav, 8000)
    src = tmp_path / "src.mp4"
    shutil.copy(cfr[0], src)
    before = src.read_bytes()
    with pytest.raises(OverwriteInputError):  # an explicit input of the job
        write_video(src, np.zeros((3, 2, 16, 16), np.uint8), 25, protect=[src])
    from avlearn.io.write import reading

    with reading(tmp_path / "a.wav"), pytest.raises(OverwriteInputError):  # a file an avlearn reader has open
        write_audio(tmp_path / "a.wav", wav, 8000)
    assert src.read_bytes() == before
    # a failed write leaves neither a partial output nor a temporary file behind
    with pytest.raises(ValueError):
        write_video(tmp_path / "bad.mp4", np.zeros((3, 2, 16, 16), np.float32), 25)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.flac", "a.wav", "src.mp4"]
    assert (tmp_path / "a.wav").stat().st_mode & 0o044  # readable by others, like any new file (umask)


# ---- bad input: one exception family, a message naming the file and the reason -----------------------


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, cfr):
    d = tmp_path_factory.mktemp("bad")
    (d / "empty.mp4").write_bytes(b"")
    (d / "notes.mp4").write_text("this is a text file, not a video\n" * 20)
    data = cfr[0].read_bytes()
    (d / "cut_no_index.mp4").write_bytes(data[: len(data) // 2])  # moov at the end: index lost
    fast = write_coded(
        d / "fast.mp4",
        [k / 30 for k in range(120)],
        audio=click_track([1.0], DURATION, 44100),
        faststart=True,
    )
    with av.open(str(fast)) as container:  # cut where the frame at 2 s begins: the index survives, data not
        cut = next(p.pos for p in container.demux(video=0) if p.pts is not None and p.pts * p.time_base >= 2.0)
    (d / "cut_indexed.mp4").write_bytes(fast.read_bytes()[:cut])
    write_video(d / "silent.mp4", np.zeros((3, 10, 16, 16), np.uint8), 10)
    write_audio(d / "voice.wav", np.zeros((1, 8000), np.float32), 8000)
    return d


@pytest.mark.parametrize(
    ("name", "kwargs", "error", "words"),
    [
        ("missing.mp4", {}, MediaNotFoundError, "no such file"),
        (".", {}, MediaNotFoundError, "directory"),
        ("empty.mp4", {}, InvalidMediaError, "empty"),
        ("notes.mp4", {}, InvalidMediaError, "not a readable media file"),
        ("cut_no_index.mp4", {}, InvalidMediaError, "cut off"),
        ("silent.mp4", {}, MissingStreamError, "no audio stream"),
        ("voice.wav", {}, MissingStreamError, "no video stream"),
        ("silent.mp4", {"start": 5.0, "audio": False}, ClipRangeError, "past the end"),
        ("silent.mp4", {"duration": 0.0, "audio": False}, ClipRangeError, "positive"),
        ("silent.mp4", {"duration": -1.0, "audio": False}, ClipRangeError, "positive"),
        ("cut_indexed.mp4", {"start": 3.5, "duration": 0.4}, TruncatedMediaError, "could be decoded"),
    ],
)
def test_bad_input_raises_media_error(bad_files, name, kwargs, error, words):
    path = bad_files / name
    args = {"start": 0.0, "duration": 0.5, **kwargs}
    with pytest.raises(error) as info:
        read_clip(path, args.pop("start"), args.pop("duration"), **args)
    assert isinstance(info.value, MediaError)
    assert str(path) in str(info.value) and words in str(info.value)


def test_truncated_file_decodes_what_is_readable_and_warns(bad_files):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clip = read_clip(bad_files / "cut_indexed.mp4", 0.5, 3.0, fps=FPS)
    assert any(issubclass(w.category, TruncatedMediaWarning) for w in caught)
    assert clip.video_valid[0] and not clip.video_valid[-1]
    shown = decode_frames(clip.video[:, clip.video_valid])
    assert 40 <= len(shown) <= 45  # 0.5 s to about 2 s was written before the cut
    np.testing.assert_array_equal(shown, np.arange(15, 15 + len(shown)))


def test_missing_stream_errors_on_read_audio(bad_files):
    with pytest.raises(MissingStreamError):
        read_audio(bad_files / "silent.mp4")
    with pytest.raises(MediaNotFoundError):
        probe(bad_files / "nothing.mp4")


# ---- the real clips of ../shared/real --------------------------------------------------------------


def test_real_clips_probe_and_read(real_dir):
    clips = sorted((real_dir / "video").iterdir())
    assert len(clips) >= 5
    for path in clips:
        info = probe(path)
        assert info.video and info.audio and info.duration > 4
        clip = read_clip(path, 1.0, 2.0, fps=25, size=112, sample_rate=16000)
        assert clip.video.shape[:2] == (3, 50) and min(clip.video.shape[2:]) == 112
        assert clip.audio.shape == (1, 32000) and clip.video_valid.all() and clip.audio_valid.all()
        assert clip.audio.abs().max() > 0.01 and clip.video.float().std() > 5  # real content, not padding
    vfr = probe(real_dir / "video" / "talking_head_m1_vfr.mp4")
    assert vfr.video.variable_fps and vfr.video.fps == pytest.approx(22.1, abs=0.1)
    assert probe(real_dir / "video" / "talking_head_f1.mp4").audio.sample_rate == 16000
    for path in sorted((real_dir / "speech").glob("*.ogg")) + [real_dir / "meeting" / "mixture.wav"]:
        wav, rate = read_audio(path, sample_rate=16000)
        assert (
            rate == 16000
            and wav.shape[0] == 1
            and wav.shape[1] / 16000 == pytest.approx(probe(path).duration, abs=0.05)
        )
