"""Sound source localization: where in the picture does the sound of a window come from?

::

    frames (B,T,H,W,3) ─► VideoFrontEnd ─► 3D CNN, temporal stride 1 ──► v (B, D, T, H/4, W/4) ─┐ cosine over
                                          (+ frame differences)                                ├─ (D, T) at each
    audio  (B,S)       ─► AudioFrontEnd ─► SyncSpecStem, mean over F ──► a (B, D, T) ───────────┘ location ─► map

The model owns its front-ends (frame rate, frame size, normalization; log-mel whose hop puts the spectrogram
CNN's time stride worth of hops in one video frame, at any fps), so training and ``avlearn localize`` both
call :meth:`AVLocalizer.embed` on decoded frames and waveforms.

Both embeddings keep time: the visual embedding of a location is its ``(D, T)`` sequence of per-frame
features, the audio embedding is the ``(D, T)`` sequence of the window's sound. Their cosine similarity is a
correlation over time, so a location scores high when *its* visual events happen at the audio's onsets.
That is what tells a sounding object from a silent one that looks and moves the same way, and it is why a
single still frame (as in LVS or EZ-VSL on Flickr images) cannot solve the ``instruments`` world.

Because the similarity is a sum over frames, maps for every frame of a long clip (each from the window
centred on it) come from one pass of the CNNs and box filters over time (:func:`sliding_similarity`).

:func:`sync_cam` gives the other kind of map: class activation of a trained sync classifier
(``avsync_tconv``) over its spatial features, as Owens & Efros (2018) localize with their sync network.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from avlearn.models.frontend import AudioFrontEnd, VideoFrontEnd
from avlearn.models.layers import Encoder
from avlearn.models.registry import register_model
from avlearn.models.sync import SyncAudioEncoder, SyncSpecStem, SyncVideoEncoder, SyncVideoStem, encoder_args
from avlearn.video.transforms import resize_video

_FRAME_BLOCK = 32  # frames normalized and resized together by front_end_inputs


def _conv3d(cin: int, cout: int, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> nn.Sequential:
    pad = tuple(k // 2 for k in kernel)
    return nn.Sequential(nn.Conv3d(cin, cout, kernel, stride, pad, bias=False), nn.BatchNorm3d(cout), nn.ReLU(True))


class AVLocalizer(Encoder):
    """Audio-visual localizer with time-resolved embeddings (see the module docstring).

    ``forward({"video", "spec"})`` returns the cosine similarity of the window's audio to each location,
    ``(B, h·w)``; :meth:`forward_features` the embeddings ``{"video": (B, D, T, h, w), "spec": (B, D, T)}``.

    Args:
        widths: channels of the video CNN's three layers (the first two halve H and W).
        spec_widths: channels of the spectrogram CNN (:class:`~avlearn.models.sync.SyncSpecStem`).
        dim: embedding channels ``D`` per frame.
        fps: video frame rate (the audio front-end gives one step of ``D`` features per frame).
        size: frame side in pixels; frames of another size are resized to it.
        sample_rate: audio rate in Hz.
        n_mels: mel bands.
    """

    def __init__(
        self,
        widths: tuple[int, int, int] = (16, 32, 64),
        spec_widths: tuple[int, int, int] = (16, 32, 64),
        dim: int = 32,
        fps: float = 25.0,
        size: int = 64,
        sample_rate: int = 16000,
        n_mels: int = 64,
    ):
        super().__init__()
        w1, w2, w3 = widths
        # frame differences as input: a visual event is then a local linear feature (as in the sync stems)
        self.video = nn.Sequential(
            _conv3d(6, w1, (3, 5, 5), (1, 2, 2)),
            _conv3d(w1, w2, (3, 3, 3), (1, 2, 2)),
            _conv3d(w2, w3, (3, 3, 3), (1, 1, 1)),
            nn.Conv3d(w3, dim, 1),
        )
        self.spec = SyncSpecStem(spec_widths, dim, changes=True)
        self.spec_proj = nn.Conv1d(dim, dim, 1)  # signed features after the stem's ReLU
        self.num_features, self.num_classes = dim, 0
        self._head_hidden_size = 2 * dim
        self.stride = 4
        self.video_front_end = VideoFrontEnd(fps, size)
        self.audio_front_end = AudioFrontEnd(sample_rate, n_mels, token_rate=fps, hops_per_token=self.spec.time_stride)

    @property
    def preprocessing(self) -> dict[str, Any]:
        """The front-ends' settings (``fps``, ``size``, ``sample_rate``, ``n_mels``, ``n_fft``, ``spec_hop_s``)."""
        return {**self.video_front_end.preprocessing, **self.audio_front_end.preprocessing}

    def inputs(self, frames: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoded media -> the CNNs' inputs (:func:`front_end_inputs` with this model's front-ends)."""
        return front_end_inputs(self.video_front_end, self.audio_front_end, frames, audio)

    def embed(self, frames: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 frames ``(B, T, H, W, 3)`` at ``fps`` and audio ``(B, S)`` at ``sample_rate``, starting together
        -> embeddings ``v (B, D, T', h, w)``, ``a (B, D, T')`` (``T' = T`` unless the audio ends earlier)."""
        video, spec = self.inputs(frames, audio)
        out = self.forward_features({"video": video, "spec": spec})
        return out["video"], out["spec"]

    def video_features(self, video: torch.Tensor) -> torch.Tensor:
        """``(B, 3, T, H, W)`` normalized frames -> ``(B, D, T, H/4, W/4)``."""
        diff = torch.diff(video, dim=2, prepend=video[:, :, :1])  # frame t minus frame t-1
        return self.video(torch.cat([video, diff], dim=1))

    def audio_features(self, spec: torch.Tensor) -> torch.Tensor:
        """``(B, 1, F, Ta)`` log-mel from the audio front-end -> ``(B, D, T)``, one step per video frame."""
        return self.spec_proj(self.spec.forward_features(spec).mean(2))

    def forward_features(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        v, a = self.video_features(x["video"]), self.audio_features(x["spec"])
        t = min(v.shape[2], a.shape[2])
        return {"video": v[:, :, :t], "spec": a[:, :, :t]}

    def forward_head(self, features: dict[str, torch.Tensor], pre_logits: bool = False) -> torch.Tensor:
        v, a = features["video"], features["spec"]
        if pre_logits:
            return torch.cat([v.mean(dim=(2, 3, 4)), a.mean(2)], dim=1)  # (B, 2D)
        return similarity(v, a).flatten(1)  # (B, h, w) -> (B, h·w)

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class SyncLocalizer(AVLocalizer):
    """:class:`AVLocalizer` on the sync encoders: the first ``video_layers`` layers of ``avsync_video`` and all of
    ``avsync_audio``, each followed by new layers to the embedding. With 2 layers (stride 4, a 16x16 map of
    64 px frames) the new part is the third layer of :func:`avloc` (3x3x3, stride 1) and its 1x1 projection, so
    ``avloc_sync`` is ``avloc`` with its first two layers and its audio CNN from the sync model; with 3 the map
    is 8x8 and only a 1x1 projection is new. ``backbone`` names the parts a sync checkpoint fills (``init_from``).

    Args:
        video: ``avsync_video`` arguments, as the sync checkpoint lists them (its front-end: ``fps``, ``size``).
        audio: ``avsync_audio`` arguments (``fps``, ``sample_rate``, ``n_mels``).
        dim: embedding channels per frame.
        video_layers: layers of the sync video encoder kept (2 or 3).
    """

    def __init__(self, video: dict[str, Any], audio: dict[str, Any], dim: int = 32, video_layers: int = 2):
        Encoder.__init__(self)
        if video_layers not in (2, 3):
            raise ValueError(f"video_layers must be 2 or 3, got {video_layers}")
        self.video_encoder = SyncVideoEncoder(**video)
        self.video_encoder.features = self.video_encoder.features[:video_layers]  # its config names the whole one
        width = self.video_encoder.features[-1][0].out_channels
        new = [_conv3d(width, 2 * width, (3, 3, 3), (1, 1, 1))] if video_layers == 2 else []
        self.video_proj = nn.Sequential(*new, nn.Conv3d(2 * width if new else width, dim, 1))
        self.audio_encoder = SyncAudioEncoder(**audio)
        self.spec_proj = nn.Conv1d(self.audio_encoder.num_features, dim, 1)
        self.num_features, self.num_classes = dim, 0
        self._head_hidden_size = 2 * dim
        self.stride = 2**video_layers

    @property
    def video_front_end(self) -> VideoFrontEnd:  # the encoders' own, not registered twice
        return self.video_encoder.front_end

    @property
    def audio_front_end(self) -> AudioFrontEnd:
        return self.audio_encoder.front_end

    @property
    def backbone(self) -> dict[str, nn.Module]:
        return {"video": self.video_encoder, "audio": self.audio_encoder}

    def video_features(self, video: torch.Tensor) -> torch.Tensor:
        """``(B, 3, T, H, W)`` normalized frames -> ``(B, D, T, H/stride, W/stride)``."""
        return self.video_proj(SyncVideoStem.forward_features(self.video_encoder, video))

    def audio_features(self, spec: torch.Tensor) -> torch.Tensor:
        """``(B, 1, F, Ta)`` log-mel from the audio front-end -> ``(B, D, T)``, one step per video frame."""
        return self.spec_proj(SyncSpecStem.forward_features(self.audio_encoder, spec).mean(2))


def front_end_inputs(
    video_front_end: VideoFrontEnd, audio_front_end: AudioFrontEnd, frames: torch.Tensor, audio: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 frames ``(B, T, H, W, 3)`` of any size and audio ``(B, S)`` that starts with them -> normalized
    video ``(B, 3, T, size, size)`` and log-mel ``(B, 1, n_mels, hops)``, the hops of the ``T`` frames (fewer
    if the audio ends earlier). Frames are normalized and resized a block at a time: a long stretch of large
    frames never exists whole in float."""
    size, step = video_front_end.size, _FRAME_BLOCK
    blocks = [resize_video(video_front_end(frames[:, t : t + step]), size) for t in range(0, frames.shape[1], step)]
    video = torch.cat(blocks, dim=2)
    spec = audio_front_end(audio)[..., : frames.shape[1] * audio_front_end.hops_per_token]
    return video, spec


def similarity(v: torch.Tensor, a: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Cosine similarity over ``(D, T)`` of each location's sequence to the audio's: ``(B, h, w)``.

    Args:
        v: ``(B, D, T, h, w)`` visual embeddings.
        a: ``(B, D, T)`` audio embeddings of the same clips.
    """
    vn = F.normalize(v.flatten(1, 2), dim=1, eps=eps)  # (B, D·T, h, w)
    an = F.normalize(a.flatten(1), dim=1, eps=eps)  # (B, D·T)
    return torch.einsum("bkhw,bk->bhw", vn, an)


def pair_similarity(v: torch.Tensor, a: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Every video against every audio of a batch: ``(B_v, B_a, h, w)`` cosine maps (for contrastive losses)."""
    vn = F.normalize(v.flatten(1, 2), dim=1, eps=eps)
    an = F.normalize(a.flatten(1), dim=1, eps=eps)
    return torch.einsum("ikhw,jk->ijhw", vn, an)


def _box_sum(x: torch.Tensor, width: int) -> torch.Tensor:
    """Sum over the ``width`` steps centred on each step of the last axis (zero outside), same length."""
    left = width // 2
    c = F.pad(x, (left + 1, width - left - 1)).cumsum(-1)
    return c[..., width:] - c[..., :-width]


def sliding_similarity(v: torch.Tensor, a: torch.Tensor, num_frames: int, eps: float = 1e-6) -> torch.Tensor:
    """Per-frame maps, each the :func:`similarity` of the ``num_frames`` window centred on that frame.

    Equal to cutting every window and calling :func:`similarity` (tested), at the cost of three box filters.

    Args:
        v: ``(D, T, h, w)`` visual embeddings of a whole clip.
        a: ``(D, T)`` audio embeddings of the same frames.
        num_frames: window length in frames (the training window).

    Returns:
        ``(T, h, w)`` cosine maps.
    """
    dot = torch.einsum("dthw,dt->hwt", v, a)  # (h, w, T)
    v2 = v.square().sum(0).permute(1, 2, 0)  # (h, w, T)
    a2 = a.square().sum(0)  # (T,)
    num = _box_sum(dot, num_frames)
    den = (_box_sum(v2, num_frames) * _box_sum(a2, num_frames)).clamp_min(eps * eps).sqrt()
    return (num / den).permute(2, 0, 1)


@torch.no_grad()
def sync_features(net: nn.Module, video: torch.Tensor, spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Spatial features of a sync model's encoders (:class:`~avlearn.models.sync.SyncModel`), for :func:`sync_cam`.

    Both encoders have temporal stride 1 (a token per frame), so the features of a long stretch can be computed
    once and sliced into windows. The inputs have been through the encoders' own front-ends already (frames
    resized block by block), so the CNNs run without them.

    Args:
        net: a sync model.
        video: ``(B, 3, T, H, W)`` normalized frames (its video front-end's output).
        spec: ``(B, 1, F, Ta)`` log-mel (its audio front-end's output), ``Ta / T`` the audio CNN's time stride.

    Returns:
        Video features ``(B, D, T, h, w)`` and audio features ``(B, D, T)``, before time encodings.
    """
    from avlearn.models.sync import SyncSpecStem, SyncVideoStem

    f = SyncVideoStem.forward_features(net.encoders["video"], video)
    a = SyncSpecStem.forward_features(net.encoders["audio"], spec).mean(2)  # (B, D, F', T) -> (B, D, T)
    return f, a


@torch.no_grad()
def sync_cam(net: nn.Module, f: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Class activation map of a sync model: ``(B, h, w)`` sync logits per location (Owens & Efros 2018).

    The model pools each frame's feature map into one token (spatial max + mean) before the fusion (time-aligned
    attention bottlenecks, or convolutions over time). Here each location in turn stands in for the maximum (its
    features + the frame's mean), and the map is the sync logit the model gives that token sequence: high where
    the local events are the ones that go with the sound.

    Args:
        net: a sync model.
        f: ``(B, D, T, h, w)`` video features of a window (:func:`sync_features`).
        a: ``(B, D, T)`` audio features of the same window.
    """
    from avlearn.models.sync import sinusoid

    b, d, t, h, w = f.shape
    pos = sinusoid(torch.arange(t, device=f.device), d).to(f.dtype)  # (T, D), as the encoders add them
    tokens = f + f.mean(dim=(3, 4), keepdim=True)  # each location as the frame's max
    tokens = tokens.permute(0, 3, 4, 2, 1).reshape(b * h * w, t, d) + pos  # (B, D, T, h, w) -> (B·h·w, T, D)
    audio = net.proj["audio"](a.transpose(1, 2) + pos).repeat_interleave(h * w, dim=0)
    return net.score(net.proj["video"](tokens), audio).reshape(b, h, w)


LOCALIZER_INPUT = {"video": (3, 25, 64, 64), "spec": (1, 64, 100)}  # 1 s: 25 frames, 64 mel x 100 hops of 10 ms


@register_model(input_size=LOCALIZER_INPUT)
def avloc(dim: int = 32, **front_end: Any) -> AVLocalizer:
    """Sound source localizer: 3D CNN (16-32-64, stride 4, frame differences) and log-mel CNN, time-resolved
    embeddings of width 32 per frame, cosine maps. ``front_end``: ``fps`` (25), ``size`` (64), ``sample_rate``
    (16000), ``n_mels`` (64)."""
    return AVLocalizer((16, 32, 64), (16, 32, 64), dim, **front_end)


@register_model(input_size=LOCALIZER_INPUT)
def avloc_sync(
    dim: int = 32, video_layers: int = 2, video: dict[str, Any] | None = None, audio: dict[str, Any] | None = None
) -> SyncLocalizer:
    """Sound source localizer on the sync encoders: ``avloc`` whose first two video layers and audio CNN come
    from ``avsync_video``/``avsync_audio`` (``video_layers=3``: three, 8x8 maps); starts from a sync checkpoint
    with ``init_from``. ``video``/``audio``: the encoders' arguments, as the sync checkpoint lists them."""
    defaults = encoder_args()
    return SyncLocalizer(video or defaults["video"], audio or defaults["audio"], dim, video_layers)


@register_model(input_size={"video": (3, 8, 32, 32), "spec": (1, 32, 32)})
def avloc_sync_tiny(dim: int = 8, video_layers: int = 2) -> SyncLocalizer:
    """Tiny avloc_sync on the tiny sync encoders, for tests."""
    tiny = encoder_args(tiny=True)
    return SyncLocalizer(tiny["video"], tiny["audio"], dim, video_layers)


@register_model(input_size={"video": (3, 8, 32, 32), "spec": (1, 32, 32)})
def avloc_tiny(dim: int = 8, **front_end: Any) -> AVLocalizer:
    """Tiny sound source localizer for tests."""
    return AVLocalizer((4, 8, 8), (4, 8, 8), dim, **front_end)
