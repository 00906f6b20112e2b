"""Sync models: time-aligned attention bottlenecks, front-ends owned by the encoders, loadable components."""

from __future__ import annotations

import pytest
import torch

from avlearn.models import create_model
from avlearn.models.fusion import MBT
from avlearn.models.weights import CheckpointError, load_component, save_weights

torch.set_num_threads(2)


def _aligned(frames_per_bottleneck: int, shuffle: bool = False) -> MBT:
    torch.manual_seed(0)
    return MBT(("video", "audio"), dim=16, num_layers=1, num_heads=2, fusion_layer=0, num_bottlenecks=1,
               frames_per_bottleneck=frames_per_bottleneck, shuffle_windows=shuffle).eval()  # fmt: skip


def _changed_bottlenecks(model: MBT, frame: int, frames: int = 12) -> list[int]:
    """Which bottleneck outputs move when the audio token of one frame changes (one fused layer)."""
    g = torch.Generator().manual_seed(1)
    video, audio = torch.randn(1, frames, 16, generator=g), torch.randn(1, frames, 16, generator=g)
    moved = audio.clone()
    moved[:, frame] = torch.randn(16, generator=g)
    with torch.no_grad():
        torch.manual_seed(5)
        a = model({"video": video, "audio": audio})["bottlenecks"]
        torch.manual_seed(5)  # the same shuffle for both calls
        b = model({"video": video, "audio": moved})["bottlenecks"]
    return torch.nonzero((a - b).abs().amax(-1)[0] > 1e-6).flatten().tolist()


@pytest.mark.parametrize(("k", "frame", "window"), [(1, 7, 7), (2, 7, 3), (5, 7, 1), (5, 11, 2)])
def test_a_time_aligned_bottleneck_hears_only_its_own_window(k, frame, window):
    assert _changed_bottlenecks(_aligned(k), frame) == [window]


def test_shuffled_windows_send_an_instant_of_sound_to_another_bottleneck():
    windows = [_changed_bottlenecks(_aligned(1, shuffle=True), frame) for frame in range(12)]
    assert all(len(w) == 1 for w in windows)
    assert sum(w[0] != frame for frame, w in enumerate(windows)) >= 6  # a random permutation moves most


def test_time_aligned_readout_uses_the_bottlenecks_and_global_mbt_the_cls_tokens():
    aligned, paper = _aligned(1), MBT(("video", "audio"), 16, 1, 2, 0, 4)
    assert aligned.pooled_features == 3 * 16 and paper.pooled_features == 2 * 16
    out = aligned({"video": torch.randn(2, 6, 16), "audio": torch.randn(2, 6, 16)})
    assert out["bottlenecks"].shape == (2, 6, 16)
    with pytest.raises(ValueError, match="shuffle_windows"):
        MBT(("video", "audio"), 16, 1, 2, 0, 4, shuffle_windows=True)


@pytest.mark.parametrize("fps", [25.0, 30.0, 12.5])
def test_audio_tokens_follow_the_frame_rate(fps):
    net = create_model("avsync_mbt_tiny", fps=fps)
    assert net.encoders["audio"].front_end.hop_length == round(16000 / (fps * 4))
    frames = torch.randint(0, 255, (2, 10, 32, 32, 3), dtype=torch.uint8)
    audio = torch.randn(2, round(10 / fps * 16000))
    vt = net.video_tokens(frames)
    assert vt.shape[1] == 10 and net.audio_tokens(audio, 10).shape[1] == 10
    assert net({"video": frames, "audio": audio}).shape == (2, 1 + 7)  # sync logit, offsets -3..3


def test_offsets_in_one_pass_or_by_search_cover_the_same_candidates():
    torch.manual_seed(0)
    net = create_model("avsync_mbt_tiny").eval()  # offset head over -3..3 frames
    frames = torch.randint(0, 255, (2, 8, 32, 32, 3), dtype=torch.uint8)
    margin = 3 * 640
    audio = torch.randn(2, 8 * 640 + 2 * margin)
    with torch.no_grad():
        head_offsets, head = net.offsets(frames, audio, margin)
        search_offsets, search = net.offsets(frames, audio, margin, max_frames=2)
    assert head.shape == (2, 7) and search.shape == (2, 5)
    torch.testing.assert_close(head_offsets, torch.arange(-3, 4) / 25.0)
    torch.testing.assert_close(head.exp().sum(1), torch.ones(2))


def test_a_component_loads_alone_and_refuses_another_front_end(tmp_path):
    torch.manual_seed(0)
    net = create_model("avsync_mbt_tiny").eval()
    path = save_weights(tmp_path / "sync", net, model_name="avsync_mbt_tiny", task="sync",
                        preprocessing=net.preprocessing, components=net.components())  # fmt: skip
    video, part = load_component(path, "video", fps=25.0, size=32)
    frames = torch.randint(0, 255, (1, 8, 32, 32, 3), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(video.forward_tokens(frames), net.encoders["video"].forward_tokens(frames))
    assert part["model"] == "avsync_video"
    audio, _ = load_component(path, "audio", sample_rate=16000)
    assert audio.front_end.hop_length == 160
    with pytest.raises(CheckpointError, match="fps=25.0 \\(asked 30"):
        load_component(path, "video", fps=30.0)
    with pytest.raises(CheckpointError, match="no 'fusion' component"):
        load_component(path, "fusion")


def test_the_video_front_end_normalizes_as_before_and_leaves_its_input_alone():
    from avlearn.models.frontend import VideoFrontEnd
    from avlearn.video.transforms import normalize_video

    frames = torch.randint(0, 255, (2, 5, 8, 8, 3), dtype=torch.uint8)
    torch.testing.assert_close(VideoFrontEnd()(frames), normalize_video(frames))
    floats = frames.float()
    before = floats.clone()
    VideoFrontEnd()(floats)  # normalizes in place on its own copy
    assert torch.equal(floats, before)
