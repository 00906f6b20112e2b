"""Every container FFmpeg reads gives the right frames and sound, or one clear MediaError.

Files are written here with PyAV's own encoders (no system FFmpeg needed): coded frame indices and
clicks on frames 5, 15, 25, ... (tests/media.py), so a test can tell which frame and which sample a
reader returned, and whether they belong together.
"""

from __future__ import annotations

import shutil
import subprocess
import warnings
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from media import click_onsets, click_track, code_frame, decode_frames, write_coded

from avlearn.io import MediaError, TruncatedMediaError, TruncatedMediaWarning, probe, read_audio, read_clip

FPS = 25
FRAMES = 100  # 4 s
CLICKS = [k / FPS for k in range(5, FRAMES, 10)]
DEMO = Path(__file__).resolve().parents[1] / "assets" / "demo" / "speakers" / "test" / "000001.mp4"  # 25 fps

# name -> (muxer, file suffix, video encoder or None, audio encoder or None, audio rate, encoder options)
CONTAINERS = {
    "webm_vp9_opus": ("webm", "webm", "libvpx-vp9", "libopus", 48000, {"deadline": "realtime", "cpu-used": "8"}),
    "mkv_h264_flac": ("matroska", "mkv", "libx264", "flac", 44100, {"preset": "ultrafast", "crf": "12"}),
    "mov_h264_aac": ("mov", "mov", "libx264", "aac", 44100, {"preset": "ultrafast", "crf": "12", "bf": "2"}),
    "avi_mpeg4_mp3": ("avi", "avi", "mpeg4", "libmp3lame", 44100, {"qscale": "2"}),
    "mpegps_mpeg2_mp2": ("mpeg", "mpg", "mpeg2video", "mp2", 44100, {"qscale": "2"}),
    "mpegts_h264_aac": ("mpegts", "ts", "libx264", "aac", 44100, {"preset": "ultrafast", "crf": "12", "bf": "2"}),
    "raw_h264": ("h264", "h264", "libx264", None, 0, {"preset": "ultrafast", "crf": "12", "bf": "2"}),
    "raw_aac": ("adts", "aac", None, "aac", 44100, {}),
    "raw_mp3": ("mp3", "mp3", None, "libmp3lame", 44100, {}),
}


def _available(*codecs: str | None) -> bool:
    for name in filter(None, codecs):
        try:
            av.codec.Codec(name, "w")
        except Exception:  # noqa: BLE001 - PyAV raises different errors for unknown and decode-only codecs
            return False
    return True


def write_av(
    path: Path,
    muxer: str,
    vcodec: str | None,
    acodec: str | None,
    rate: int,
    options: dict,
    mux_options=None,
    gop: int = 12,
) -> Path:
    """Coded frames at 25 fps (with ``vcodec``) and clicks (with ``acodec``) muxed by ``muxer``."""
    with av.open(str(path), "w", format=muxer, options=mux_options or {}) as out:
        vs = as_ = None
        if vcodec:
            vs = out.add_stream(vcodec, rate=FPS)
            vs.width, vs.height, vs.pix_fmt = 96, 32, "yuv420p"
            vs.options = {**options, "g": str(gop)}
        if acodec:
            as_ = out.add_stream(acodec, rate=rate)
            as_.layout = "mono"
        if vs is not None:
            for k in range(FRAMES):
                frame = av.VideoFrame.from_ndarray(code_frame(k), format="rgb24")
                frame.pts, frame.time_base = k, Fraction(1, FPS)
                out.mux(vs.encode(frame))
            out.mux(vs.encode(None))
        if as_ is not None:
            wav = click_track(CLICKS, FRAMES / FPS, rate, channels=1)
            size = as_.codec_context.frame_size or 1024
            for i in range(0, wav.shape[1], size):
                block = np.ascontiguousarray(wav[:, i : i + size])
                if block.shape[1] < size and as_.codec_context.frame_size:
                    block = np.pad(block, ((0, 0), (0, size - block.shape[1])))
                frame = av.AudioFrame.from_ndarray(block, format="fltp", layout="mono")
                frame.sample_rate, frame.pts = rate, i
                out.mux(as_.encode(frame))
            out.mux(as_.encode(None))
    return path


def shown_by_ffmpeg(path: Path, times: np.ndarray) -> np.ndarray:
    """The frame index on screen at each of ``times`` as plain PyAV decoding times the frames: the
    reference for files whose muxer moved timestamps (FFmpeg's AVI and MPEG-PS muxers leave a gap of a
    frame, which every FFmpeg-based player shows the same way). Raw streams have no times: frames count.
    Times are file time, counted from the file's origin (an MPEG-TS's first timestamp) as FFmpeg's -ss counts."""
    origin = probe(path).origin
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    stamps = np.array([f.time - origin if f.time is not None else k / FPS for k, f in enumerate(frames)])
    codes = decode_frames(np.stack([f.to_ndarray(format="rgb24") for f in frames]).transpose(3, 0, 1, 2))
    return codes[np.clip(np.searchsorted(stamps, times + 1e-4, side="right") - 1, 0, None)]


def heard_by_ffmpeg(path: Path, rate: int) -> np.ndarray:
    """Click times (file time) as plain PyAV decoding places the samples: the reference for containers
    that cannot state an encoder's delay (mp3 in AVI, MPEG-PS, raw AAC play their clicks a little late)."""
    resampler = av.AudioResampler(format="fltp", layout="mono", rate=rate)
    with av.open(str(path)) as container:
        frames = list(container.decode(audio=0))
    chunks = [out.to_ndarray() for f in [*frames, None] for out in resampler.resample(f)]
    return click_onsets(np.concatenate(chunks, axis=1), rate) + frames[0].time - probe(path).origin


@pytest.fixture(scope="module", params=sorted(CONTAINERS))
def media(request, tmp_path_factory):
    muxer, suffix, vcodec, acodec, rate, options = CONTAINERS[request.param]
    if not _available(vcodec, acodec):
        pytest.skip(f"this PyAV build has no {vcodec or ''} {acodec or ''} encoder")
    path = tmp_path_factory.mktemp("containers") / f"{request.param}.{suffix}"
    return write_av(path, muxer, vcodec, acodec, rate, options), vcodec is not None, acodec is not None


def test_probe_gives_every_stream_a_duration(media):
    path, has_video, has_audio = media
    info = probe(path)
    assert not info.truncated and info.duration == pytest.approx(4.0 + (info.video or info.audio).start, abs=0.15)
    for stream in (info.video, info.audio):
        if stream is not None:  # Matroska, raw streams: measured from the packets
            assert stream.duration == pytest.approx(4.0, abs=0.15)
    if has_video:
        assert info.video.fps == pytest.approx(FPS) and info.video.display_size == (32, 96)
    assert (info.video is not None, info.audio is not None) == (has_video, has_audio)


def test_whole_file_reads_every_frame_and_click_in_step(media):
    path, has_video, has_audio = media
    info = probe(path)
    origin = (info.video or info.audio).start  # MPEG-PS starts near 0.5 s
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a complete file reads without a word
        clip = read_clip(
            path, origin, info.duration - origin, fps=FPS, sample_rate=16000, video=has_video, audio=has_audio
        )
    if has_video:
        shown = decode_frames(clip.video[:, clip.video_valid])
        np.testing.assert_array_equal(np.unique(shown), np.arange(FRAMES))  # every frame, in order
        assert (np.diff(shown) >= 0).all() and len(shown) <= FRAMES + 2
    if has_audio:
        onsets = click_onsets(clip.audio[:, clip.audio_valid], 16000)
        assert len(onsets) == len(CLICKS)
        np.testing.assert_allclose(np.diff(onsets), np.diff(CLICKS), atol=2e-3)
    if has_video and has_audio:  # each click is heard while its frame (5, 15, ...) is on screen
        shown_all = decode_frames(clip.video)
        for onset, frame in zip(click_onsets(clip.audio, 16000), range(5, FRAMES, 10)):
            k = int(onset * FPS + 1e-6)
            assert frame in shown_all[max(0, k - 1) : k + 2], (onset, shown_all[max(0, k - 1) : k + 2])


def test_window_inside_the_file(media):
    path, has_video, has_audio = media
    info = probe(path)
    origin = info.video.start if has_video else info.audio.start
    start = origin + 1.5
    clip = read_clip(path, start, 1.0, fps=FPS, size=16, sample_rate=8000, video=has_video, audio=has_audio)
    if has_video:
        assert clip.video.shape[1:] == (25, 16, 48) and clip.video_valid.all()
        np.testing.assert_array_equal(decode_frames(clip.video), shown_by_ffmpeg(path, start + np.arange(25) / FPS))
        if "avi" not in path.name and "mpeg" not in path.name:
            np.testing.assert_array_equal(decode_frames(clip.video), np.arange(37, 62))  # frame k at k / 25 s
    if has_audio:
        assert clip.audio.shape == (1, 8000) and clip.audio_valid.all()
        reference = heard_by_ffmpeg(path, 8000)
        np.testing.assert_allclose(
            click_onsets(clip.audio, 8000) + start, reference[(reference >= start) & (reference < start + 1)], atol=2e-3
        )
        wav, rate = read_audio(path, sample_rate=8000)
        assert rate == 8000 and wav.shape[1] / 8000 == pytest.approx(4.0, abs=0.1)


def test_live_webm_without_duration_or_index(tmp_path):
    """A browser's MediaRecorder writes WebM as a live stream: no duration, no cues. Its packets say how long."""
    muxer, _, vcodec, acodec, rate, options = CONTAINERS["webm_vp9_opus"]
    if not _available(vcodec, acodec):
        pytest.skip("no vp9/opus encoder in this PyAV build")
    path = write_av(tmp_path / "live.webm", muxer, vcodec, acodec, rate, options, {"live": "1"})
    with av.open(str(path)) as container:
        assert container.duration is None  # the file states no length
    info = probe(path)
    assert info.duration == pytest.approx(4.0, abs=0.1) and info.video.duration == pytest.approx(4.0, abs=0.1)
    clip = read_clip(path, 2.0, 1.0, fps=FPS, sample_rate=16000)
    np.testing.assert_array_equal(decode_frames(clip.video), np.arange(50, 75))
    assert clip.audio_valid.all() and len(click_onsets(clip.audio, 16000)) == 2


def test_a_short_video_beside_a_long_soundtrack_is_not_called_cut_off(tmp_path):
    """Video ends at 26 s, sound at 40 s: the probe must read the video's last packets, not only the file's."""
    path = tmp_path / "long_sound.mp4"
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=FPS)
        vs.width, vs.height, vs.pix_fmt, vs.options = 96, 32, "yuv420p", {"preset": "ultrafast"}
        as_ = out.add_stream("aac", rate=8000)
        as_.layout = "mono"
        for k in range(650):  # more packets than the probe's first pass reads for the frame rate
            frame = av.VideoFrame.from_ndarray(code_frame(k), format="rgb24")
            frame.pts, frame.time_base = k, Fraction(1, FPS)
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
        for i in range(0, 40 * 8000, 1024):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 8000, i
            out.mux(as_.encode(frame))
        out.mux(as_.encode(None))
    info = probe(path)
    assert not info.truncated and info.video.duration == pytest.approx(26.0)
    assert info.duration == pytest.approx(40, abs=0.2)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the ffmpeg program writes the cover art")
def test_cover_art_is_not_a_video_stream(tmp_path):
    """An mp3 or m4a with an attached picture holds a one-frame "video" stream; it is sound only, and whole."""
    song = write_av(tmp_path / "song.mp3", "mp3", None, "libmp3lame", 44100, {})
    cover = tmp_path / "cover.png"
    av.VideoFrame.from_ndarray(code_frame(5), format="rgb24").save(str(cover))
    for suffix, codec in (("mp3", "copy"), ("m4a", "aac")):
        path = tmp_path / f"with_cover.{suffix}"
        subprocess.run(
            ["ffmpeg", "-v", "error", "-i", str(song), "-i", str(cover), "-map", "0", "-map", "1", "-c:a", codec]
            + ["-c:v", "png", "-disposition:v", "attached_pic", str(path)],
            check=True,
        )
        info = probe(path)
        assert info.video is None and not info.truncated and info.duration == pytest.approx(4.0, abs=0.15)
        assert read_clip(path, 1.0, 1.0, video=False, sample_rate=8000).audio_valid.all()


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the ffmpeg program writes this MPEG-PS")
def test_mpeg1_program_stream_reads_from_its_first_frame(tmp_path):
    """In an MPEG-1 program stream as the ffmpeg program writes it (the GRID corpus's format) a seek to the
    start landed on the second keyframe, and the first half second of frames was lost."""
    path = tmp_path / "grid_like.mpg"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(DEMO), "-c:v", "mpeg1video", "-q:v", "2", "-g", "12"]
        + ["-c:a", "mp2", "-f", "mpeg", str(path)],
        check=True,
    )
    with av.open(str(path)) as container:  # the reference: every frame as plain decoding times it
        frames = [(f.time, f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
    start = probe(path).video.start
    assert frames[0][0] == pytest.approx(start)
    for offset in (0.0, 0.1, 0.3):
        clip = read_clip(path, start + offset, 0.4, fps=25, audio=False)
        assert clip.video_valid.all()
        got = clip.video.permute(1, 2, 3, 0).numpy().astype(int)
        want = np.stack([frames[int(offset * 25 + 1e-6) + k][1] for k in range(10)]).astype(int)
        assert np.abs(got - want).mean() < 1.0


# ---- MPEG-TS: a running clock with no zero, and no index to seek by -----------------------------------


@pytest.fixture(scope="module")
def transport_stream(tmp_path_factory) -> Path:
    """Coded frames and clicks in MPEG-TS at the ffmpeg program's default muxing offset (its -muxdelay 0.7
    s starts the clock near 1.4 s; PyAV's own default starts it near 0.06 s, as CONTAINERS tests)."""
    muxer, suffix, vcodec, acodec, rate, options = CONTAINERS["mpegts_h264_aac"]
    if not _available(vcodec, acodec):
        pytest.skip("no h264/aac encoder in this PyAV build")
    path = tmp_path_factory.mktemp("ts") / f"clip.{suffix}"
    # -muxdelay 0.7 as the ffmpeg program sets it; its default GOP of 250: one keyframe in 4 s
    write_av(path, muxer, vcodec, acodec, rate, options, {"max_delay": "700000"}, gop=250)
    with av.open(str(path)) as container:
        assert container.start_time / av.time_base > 1.0  # the muxing offset the old reader took for content
    return path


def test_mpegts_time_counts_from_its_first_picture(transport_stream):
    """The 1.4 s offset was taken for 1.4 s of nothing: probe said 5.4 s, and separate wrote leading silence.
    Now file time 0 is the first picture, and the AAC priming before it is dropped as an mp4 drops it."""
    info = probe(transport_stream)
    assert info.origin > 1.0 and not info.truncated
    assert info.duration == pytest.approx(4.0, abs=0.05)  # the length, not the end time
    assert info.video.start == 0.0 and info.audio.start == 0.0
    wav, _ = read_audio(transport_stream, sample_rate=8000)
    assert wav.shape[1] / 8000 == pytest.approx(4.0, abs=0.05)
    np.testing.assert_allclose(click_onsets(wav, 8000), CLICKS, atol=2e-3)  # each click at its frame's time


def test_mpegts_every_window_reads_its_frames_and_clicks(transport_stream):
    """A seek without an index lands between keyframes: windows at 1.5 s, 2 s, 4 s decoded nothing, and a
    whole read returned 63 of 100 frames. Every frame must come out, wherever the window lies."""
    info = probe(transport_stream)
    v0 = info.video.start
    clicks = heard_by_ffmpeg(transport_stream, 8000)
    for offset in (0.0, 0.52, 1.48, 2.0, 2.72, 3.52):  # whole frame intervals after the first frame
        start = v0 + offset
        length = min(0.5, v0 + 4.0 - start)
        clip = read_clip(transport_stream, start, length, fps=FPS, sample_rate=8000)
        assert clip.video_valid.all() and clip.audio_valid.all(), offset
        first = round(offset * FPS)
        np.testing.assert_array_equal(decode_frames(clip.video), np.arange(first, first + clip.video.shape[1]))
        inside = clicks[(clicks >= start) & (clicks < start + length - 0.01)]
        np.testing.assert_allclose(click_onsets(clip.audio, 8000)[: len(inside)] + start, inside, atol=2e-3)
    whole = read_clip(transport_stream, 0.0, info.duration, fps=FPS, sample_rate=8000)
    np.testing.assert_array_equal(np.unique(decode_frames(whole.video[:, whole.video_valid])), np.arange(FRAMES))
    assert whole.video_valid.sum() == FRAMES and whole.audio_valid.all()
    np.testing.assert_array_equal(decode_frames(whole.video), np.arange(FRAMES))  # frame k at k / 25 s, as mp4
    np.testing.assert_allclose(click_onsets(whole.audio, 8000), CLICKS, atol=2e-3)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the ffmpeg program writes this MPEG-TS")
def test_mpegts_sound_well_before_the_picture_is_kept(transport_stream, tmp_path):
    """Only an encoder's priming (under a quarter second) is dropped before the first picture: sound a second
    ahead is content, and the picture starts late (padded) as in MPEG-PS."""
    path = tmp_path / "late_picture.ts"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(transport_stream), "-itsoffset", "1", "-i", str(transport_stream)]
        + ["-map", "1:v", "-map", "0:a", "-c", "copy", "-f", "mpegts", str(path)],
        check=True,
    )
    info = probe(path)
    assert info.audio.start == 0.0 and info.video.start == pytest.approx(1.0, abs=0.05)
    clip = read_clip(path, 0.0, 2.0, fps=FPS, sample_rate=8000)
    assert clip.audio_valid.all() and not clip.video_valid[:20].any() and clip.video_valid[30:].all()
    heard = heard_by_ffmpeg(path, 8000)  # the priming (23 ms) is sound here: the clicks come that much later
    np.testing.assert_allclose(click_onsets(clip.audio, 8000), heard[heard < 2.0], atol=2e-3)
    assert len(heard[heard < 2.0]) == 5


# ---- a file cut off inside its data, its index intact ------------------------------------------------


@pytest.fixture(scope="module")
def cut_indexed(tmp_path_factory) -> Path:
    """A faststart mp4 of 4 s (index first) cut inside: the index promises 4 s, the data stop near 2 s."""
    d = tmp_path_factory.mktemp("cut")
    full = write_coded(
        d / "full.mp4",
        [k / 30 for k in range(120)],
        audio=click_track([0.5, 1.5, 2.5, 3.5], 4.0, 44100),
        faststart=True,
    )
    with av.open(str(full)) as container:  # cut where the frame at 2 s begins: the index survives, data not
        cut = next(p.pos for p in container.demux(video=0) if p.pts is not None and p.pts * p.time_base >= 2.0)
    (d / "cut.mp4").write_bytes(full.read_bytes()[:cut])
    return d / "cut.mp4"


def test_probe_reports_a_cut_file_as_truncated_with_its_readable_duration(cut_indexed):
    info = probe(cut_indexed)
    assert info.truncated and info.announced_duration == pytest.approx(4.0, abs=0.05)
    assert 1.0 < info.duration < 3.0 and info.video.duration < 3.0 and info.audio.duration < 3.0
    assert not info.video.variable_fps and info.video.fps == pytest.approx(30)


def test_reading_a_cut_file_warns_once_and_returns_what_is_there(cut_indexed):
    info = probe(cut_indexed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clip = read_clip(cut_indexed, 0.0, info.duration, fps=30, sample_rate=16000)
    assert [w.category for w in caught] == [TruncatedMediaWarning] and "cut off" in str(caught[0].message)
    shown = decode_frames(clip.video[:, clip.video_valid])
    np.testing.assert_array_equal(shown, np.arange(len(shown)))
    assert len(shown) >= round((info.duration - 0.2) * 30)
    with pytest.raises(TruncatedMediaError, match="cut off"):
        read_clip(cut_indexed, 3.0, 0.5)


# ---- inputs that cannot work: one MediaError naming the file ------------------------------------------


def test_unreadable_inputs_raise_one_media_error(tmp_path):
    junk = tmp_path / "junk.h264"
    junk.write_bytes(bytes(range(256)) * 40)
    for path in (junk, Path("/dev/zero")):
        with pytest.raises(MediaError) as info:
            read_clip(path, 0.0, 1.0)
        assert str(path) in str(info.value)
