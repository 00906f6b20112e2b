"""Audio-visual synchronization models: video and audio encoders that own their front-ends, fused through
attention bottlenecks that carry time.

::

    frames (B,T,H,W,3) uint8 -> avsync_video: VideoFrontEnd -> 3D CNN, time stride 1 -> (B, T, D) --+
                                                                                                 +-> MBT -> sync logit
    audio (B,S) -> avsync_audio: AudioFrontEnd (log-mel) -> 2D CNN, time stride 4 -> (B, T, D) -----+

One token per video frame in each stream: the audio front-end's hop is derived from the video frame rate and the
audio CNN's time stride, so an audio token spans one frame at any fps, and both streams carry the same
sinusoidal time code. The default fusion is :class:`~avlearn.models.fusion.MBT` with time-aligned bottlenecks
(one per frame, in every layer): every cross-modal exchange passes through a bottleneck, and each bottleneck
sees one instant of both streams. ``offsets`` scores every candidate audio offset of a window from one pass of
the encoders; an optional offset head classifies the offset directly, as Synchformer does.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from avlearn.models.frontend import AudioFrontEnd, VideoFrontEnd
from avlearn.models.fusion import MBT, AVClassifier
from avlearn.models.layers import Encoder, global_pool, make_head, sinusoid
from avlearn.models.registry import create_model, register_model

__all__ = ["SyncAudioEncoder", "SyncModel", "SyncSpecStem", "SyncVideoEncoder", "SyncVideoStem", "sinusoid"]


def _conv3d(cin: int, cout: int, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> nn.Sequential:
    pad = tuple(k // 2 for k in kernel)
    return nn.Sequential(nn.Conv3d(cin, cout, kernel, stride, pad, bias=False), nn.BatchNorm3d(cout), nn.ReLU(True))


def _conv2d(cin: int, cout: int, stride: tuple[int, int]) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True))


class SyncVideoStem(Encoder):
    """A 3D CNN with temporal stride 1: ``(B, 3, T, H, W) -> (B, D, T, H/16, W/16)``.

    Args:
        widths: channels of the three 3x3x3 (first 3x5x5) conv layers, each halving H and W.
        dim: output channels ``D`` (a last 1x3x3 conv halves H and W once more).
        num_classes: 0 for a feature extractor.
        frame_tokens: one token per frame (spatial max + mean) instead of one per location: 16x fewer
            tokens for the fusion layers, and the strongest local event of each frame survives pooling.
        changes: also feed the frame-to-frame difference (3 more input channels), so visual events
            (a hop, a flash, a mouth opening) are a linear feature of the input rather than something the
            first layers must learn to compute.
    """

    def __init__(
        self,
        widths: tuple[int, int, int] = (16, 32, 64),
        dim: int = 64,
        num_classes: int = 0,
        frame_tokens: bool = False,
        changes: bool = False,
    ):
        super().__init__()
        self.frame_tokens, self.changes = frame_tokens, changes
        w1, w2, w3 = widths
        self.features = nn.Sequential(
            _conv3d(3 + 3 * changes, w1, (3, 5, 5), (1, 2, 2)),
            _conv3d(w1, w2, (3, 3, 3), (1, 2, 2)),
            _conv3d(w2, w3, (3, 3, 3), (1, 2, 2)),
            _conv3d(w3, dim, (1, 3, 3), (1, 2, 2)),
        )
        self.num_features, self.num_classes = dim, num_classes
        self.head = make_head(dim, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.changes:
            diff = torch.diff(x, dim=2, prepend=x[:, :, :1])  # (B, 3, T, H, W): frame t minus frame t-1
            x = torch.cat([x, diff], dim=1)
        return self.features(x)

    def frame_features(self, x: torch.Tensor) -> torch.Tensor:
        """One feature per frame, ``(B, D, T)``: each frame's map pooled by maximum plus mean (the strongest
        local event survives pooling), without the time code."""
        f = self.forward_features(x)  # (B, D, T, h, w)
        return f.amax(dim=(3, 4)) + f.mean(dim=(3, 4))

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, T, H, W) -> (B, T·h·w, D)`` with time and position encodings added."""
        if self.frame_tokens:
            pooled = self.frame_features(x)  # (B, D, T)
            t, d = pooled.shape[2], pooled.shape[1]
            return pooled.transpose(1, 2) + sinusoid(torch.arange(t, device=pooled.device), d).to(pooled.dtype)
        f = self.forward_features(x)  # (B, D, T, h, w)
        b, d, t, h, w = f.shape
        pos_t = sinusoid(torch.arange(t, device=f.device), d)  # one step per frame, as the audio tokens
        pos_s = sinusoid(torch.arange(h * w, device=f.device) * 7.0 + 1000.0, d)  # away from the time codes
        pos = (pos_t[:, None, :] + pos_s[None, :, :]).reshape(t * h * w, d)
        return f.flatten(2).transpose(1, 2) + pos.to(f.dtype)  # (B, D, T, h, w) -> (B, T·h·w, D)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        pooled = global_pool(features)
        return pooled if pre_logits else self.head(pooled)


class SyncSpecStem(Encoder):
    """A 2D CNN over a log-mel spectrogram: ``(B, 1, F, Ta) -> (B, D, F/16, Ta/4)``; tokens average frequency.

    Args:
        widths: channels of the three conv layers.
        dim: output channels ``D``.
        num_classes: 0 for a feature extractor.
        changes: also feed the rise of the log-mel energy from one hop to the next (spectral flux), the onsets.
    """

    def __init__(
        self, widths: tuple[int, int, int] = (16, 32, 64), dim: int = 64, num_classes: int = 0, changes: bool = False
    ):
        super().__init__()
        self.changes = changes
        w1, w2, w3 = widths
        self.features = nn.Sequential(
            _conv2d(1 + changes, w1, (2, 1)),
            _conv2d(w1, w2, (2, 2)),
            _conv2d(w2, w3, (2, 2)),
            _conv2d(w3, dim, (2, 1)),
        )
        self.num_features, self.num_classes = dim, num_classes
        self.head = make_head(dim, num_classes)

    @property
    def time_stride(self) -> int:
        """Spectrogram hops per output step: the product of the convolutions' time strides."""
        stride = 1
        for m in self.features.modules():
            if isinstance(m, nn.Conv2d):
                stride *= m.stride[1]
        return stride

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.changes:
            flux = torch.relu(torch.diff(x, dim=-1, prepend=x[..., :1]))  # (B, 1, F, Ta)
            x = torch.cat([x, flux], dim=1)
        return self.features(x)

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, F, Ta) -> (B, Ta/4, D)``: one token per 40 ms, with the time encoding of the video."""
        f = self.forward_features(x).mean(2)  # (B, D, F', T') -> (B, D, T')
        pos = sinusoid(torch.arange(f.shape[-1], device=f.device), f.shape[1])
        return f.transpose(1, 2) + pos.to(f.dtype)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        pooled = global_pool(features)
        return pooled if pre_logits else self.head(pooled)


class TemporalConvFusion(nn.Module):
    """Early fusion in time (Owens & Efros 2018 fuse by concatenating the streams' features at each time
    step): per-frame video and audio tokens are concatenated frame by frame and mixed by 1D convolutions over
    time, so "does this sound go with this picture at this instant" is a local pattern from the first layer.

    Takes ``{"video": (B, T, D), "audio": (B, T', D)}`` (one token per frame each) and returns the fused
    sequence ``(B, min(T, T'), 2D)`` under both keys; ``pool`` takes the maximum over time.

    Args:
        modalities: the two modality names.
        dim: token width ``D`` of each modality.
        num_layers: 1D conv layers (kernel 3).
    """

    def __init__(self, modalities: tuple[str, str] = ("video", "audio"), dim: int = 64, num_layers: int = 3):
        super().__init__()
        self.modalities = tuple(modalities)
        self.num_features = dim  # per modality, as AVClassifier expects
        layers = []
        for _ in range(num_layers):
            layers += [nn.Conv1d(2 * dim, 2 * dim, 3, padding=1), nn.GELU()]
        self.mix = nn.Sequential(*layers)

    def forward(self, tokens: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        a, b = (tokens[m] for m in self.modalities)
        t = min(a.shape[1], b.shape[1])
        x = torch.cat([a[:, :t], b[:, :t]], dim=-1).transpose(1, 2)  # (B, T, 2D) -> (B, 2D, T)
        fused = self.mix(x).transpose(1, 2)  # (B, T, 2D)
        return {m: fused for m in self.modalities}

    def pool(self, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Max over time of the fused sequence, split back into one ``(B, D)`` half per modality."""
        pooled = outputs[self.modalities[0]].amax(dim=1)  # (B, 2D)
        return dict(zip(self.modalities, pooled.chunk(2, dim=-1)))


class SyncVideoEncoder(SyncVideoStem):
    """:class:`SyncVideoStem` behind its front-end: uint8 frames ``(B, T, H, W, 3)`` at ``fps`` -> one token per
    frame ``(B, T, D)``. Registered as ``avsync_video``; its arguments are its whole description.

    Args:
        fps: frame rate it takes (the pipelines decode at it).
        size: frame side in pixels.
        widths, dim, changes: see :class:`SyncVideoStem`.
        crop: what the frames show: ``"frame"`` the whole picture, ``"mouth"`` a face's aligned mouth crops
            (:func:`avlearn.video.faces.aligned_mouths`, ``size`` square); the pipelines cut what it says.
    """

    def __init__(
        self,
        fps: float = 25.0,
        size: int = 64,
        widths: tuple[int, int, int] = (16, 32, 64),
        dim: int = 64,
        changes: bool = True,
        crop: str = "frame",
    ):
        super().__init__(tuple(widths), dim, frame_tokens=True, changes=changes)
        if crop not in ("frame", "mouth"):
            raise ValueError(f"crop must be 'frame' or 'mouth', got {crop!r}")
        self.config = {"fps": fps, "size": size, "widths": list(widths), "dim": dim, "changes": changes}
        if crop != "frame":  # checkpoints from before crops existed keep their exact arguments
            self.config["crop"] = crop
        self.crop = crop
        self.front_end = VideoFrontEnd(fps, size)

    def forward_features(self, frames: torch.Tensor) -> torch.Tensor:
        return super().forward_features(self.front_end(frames))

    @property
    def preprocessing(self) -> dict[str, Any]:
        return {**self.front_end.preprocessing, "crop": self.crop}


class SyncAudioEncoder(SyncSpecStem):
    """:class:`SyncSpecStem` behind a log-mel front-end: waveform ``(B, S)`` -> one token per video frame
    ``(B, T, D)``. The front-end's hop is ``sample_rate / (fps * time stride)``, the stride read from the CNN.
    Registered as ``avsync_audio``.

    Args:
        fps: token rate (the video frame rate of the model it serves).
        sample_rate: audio rate.
        n_mels: mel bands.
        widths, dim, changes: see :class:`SyncSpecStem`.
    """

    def __init__(
        self,
        fps: float = 25.0,
        sample_rate: int = 16000,
        n_mels: int = 64,
        widths: tuple[int, int, int] = (16, 32, 64),
        dim: int = 64,
        changes: bool = True,
    ):
        super().__init__(tuple(widths), dim, changes=changes)
        self.config = {
            "fps": fps,
            "sample_rate": sample_rate,
            "n_mels": n_mels,
            "widths": list(widths),
            "dim": dim,
            "changes": changes,
        }
        self.front_end = AudioFrontEnd(sample_rate, n_mels, token_rate=fps, hops_per_token=self.time_stride)

    def forward_features(self, audio: torch.Tensor, num_tokens: int | None = None) -> torch.Tensor:
        """``(B, S)`` -> ``(B, D, F', num_tokens)``; by default as many tokens as whole frames the audio spans."""
        if num_tokens is None:
            num_tokens = int(audio.shape[-1] / self.front_end.sample_rate * self.front_end.token_rate + 1e-6)
        return super().forward_features(self.front_end(audio, num_tokens))

    def frame_features(self, audio: torch.Tensor, num_tokens: int | None = None) -> torch.Tensor:
        """``(B, S)`` -> ``(B, D, num_tokens)``: one feature per video frame (frequency averaged), no time code."""
        return self.forward_features(audio, num_tokens).mean(2)  # (B, D, F', T) -> (B, D, T)

    def forward_tokens(self, audio: torch.Tensor, num_tokens: int | None = None) -> torch.Tensor:
        """``(B, S)`` -> ``(B, num_tokens, D)``, with the time code of the video's tokens."""
        f = self.frame_features(audio, num_tokens)
        return f.transpose(1, 2) + sinusoid(torch.arange(f.shape[-1], device=f.device), f.shape[1]).to(f.dtype)

    def candidate_tokens(self, audio: torch.Tensor, num_tokens: int, num_candidates: int) -> torch.Tensor:
        """Tokens of ``num_candidates`` audio windows, each starting one token after the last, from one pass of
        the CNN over the audio that spans them all: ``(B, S)`` -> ``(B, num_candidates, num_tokens, D)``. Each
        window carries the time code of a window of its own (tokens ``0..num_tokens-1``), as in training."""
        f = self.frame_features(audio, num_tokens + num_candidates - 1)  # (B, D, N)
        windows = f.unfold(-1, num_tokens, 1).permute(0, 2, 3, 1)  # (B, D, C, T) -> (B, C, T, D)
        return windows + sinusoid(torch.arange(num_tokens, device=f.device), f.shape[1]).to(f.dtype)

    @property
    def preprocessing(self) -> dict[str, Any]:
        return self.front_end.preprocessing


@register_model(input_size=(25, 64, 64, 3))
def avsync_video(**kwargs: Any) -> SyncVideoEncoder:
    """Sync video encoder: uint8 frames at 25 fps, 64x64 -> a token per frame (3D CNN 16-32-64, D=64)."""
    return SyncVideoEncoder(**kwargs)


@register_model(input_size=(16000,))
def avsync_audio(**kwargs: Any) -> SyncAudioEncoder:
    """Sync audio encoder: 16 kHz waveform -> 64-band log-mel -> a token per 25 fps frame (CNN 16-32-64, D=64)."""
    return SyncAudioEncoder(**kwargs)


@register_model(input_size=(8, 32, 32, 3))
def avsync_video_tiny(**kwargs: Any) -> SyncVideoEncoder:
    """Tiny sync video encoder: 32x32 frames, CNN 4-8-16, D=16 (the encoder of `avsync_mbt_tiny`)."""
    return SyncVideoEncoder(**{"size": 32, "widths": (4, 8, 16), "dim": 16, **kwargs})


@register_model(input_size=(5120,))
def avsync_audio_tiny(**kwargs: Any) -> SyncAudioEncoder:
    """Tiny sync audio encoder: 32-band log-mel, CNN 4-8-16, D=16 (the encoder of `avsync_mbt_tiny`)."""
    return SyncAudioEncoder(**{"n_mels": 32, "widths": (4, 8, 16), "dim": 16, **kwargs})


def encoder_args(tiny: bool = False) -> dict[str, dict[str, Any]]:
    """The arguments of ``avsync_video``/``avsync_audio`` (``_tiny``) as a sync checkpoint lists its components:
    what a task model built on the sync encoders takes by default, so the checkpoint's encoders fit it."""
    suffix = "_tiny" if tiny else ""
    return {m: dict(create_model(f"avsync_{m}{suffix}").config) for m in ("video", "audio")}


class SyncModel(AVClassifier):
    """Sync encoders + a fusion module + two heads reading the same fused embedding: ``head`` (one logit: is
    this audio the one that goes with these frames, now?) and ``offset_head`` (``2K+1`` logits over audio
    offsets of ``-K..K`` whole frames, as Synchformer classifies them; absent when ``max_offset_frames=0``).

    Offset class ``k`` (index ``k + K``) means the audio window starts ``k`` frames later in the recording than
    the audio that goes with the picture.

    Args:
        video: ``(registered name, arguments)`` of the video encoder.
        audio: ``(registered name, arguments)`` of the audio encoder.
        fusion: a fusion module over ``("video", "audio")``.
        max_offset_frames: ``K`` of the offset head (0: none).
    """

    def __init__(self, video: tuple[str, dict], audio: tuple[str, dict], fusion: nn.Module, max_offset_frames: int):
        encoders = {"video": create_model(video[0], **video[1]), "audio": create_model(audio[0], **audio[1])}
        super().__init__(encoders, fusion, num_classes=1)
        if encoders["video"].preprocessing["fps"] != encoders["audio"].config["fps"]:
            raise ValueError("the audio encoder's token rate must be the video encoder's fps")
        self.component_names = {"video": video[0], "audio": audio[0]}
        self.max_offset_frames = max_offset_frames
        self.offset_head = nn.Linear(self.head_hidden_size, 2 * max_offset_frames + 1) if max_offset_frames else None

    @property
    def preprocessing(self) -> dict[str, Any]:
        """The front-ends' settings: what decoding must give the model."""
        return {**self.encoders["video"].preprocessing, **self.encoders["audio"].preprocessing}

    def components(self) -> dict[str, dict[str, Any]]:
        """The parts a checkpoint lists: ``{"video"|"audio": {"model", "args", "prefix"}}``."""
        return {
            m: {"model": self.component_names[m], "args": dict(self.encoders[m].config), "prefix": f"encoders.{m}."}
            for m in ("video", "audio")
        }

    def video_tokens(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, T, H, W, 3)`` -> ``(B, T, D)``."""
        return self.proj["video"](self.encoders["video"].forward_tokens(frames))

    def audio_tokens(self, audio: torch.Tensor, num_frames: int) -> torch.Tensor:
        """``(B, S)`` covering at least ``num_frames`` frames -> ``(B, num_frames, D)``."""
        return self.proj["audio"](self.encoders["audio"].forward_tokens(audio, num_frames))

    def embed(self, video_tokens: torch.Tensor, audio_tokens: torch.Tensor) -> torch.Tensor:
        """Fused embedding ``(B, head_hidden_size)`` of token pairs."""
        return self.forward_head(self.fusion({"video": video_tokens, "audio": audio_tokens}), pre_logits=True)

    def score(self, video_tokens: torch.Tensor, audio_tokens: torch.Tensor) -> torch.Tensor:
        """Sync logits ``(B,)``."""
        return self.head(self.embed(video_tokens, audio_tokens)).squeeze(-1)

    def offsets(
        self,
        frames: torch.Tensor,
        audio: torch.Tensor,
        audio_start: int,
        max_frames: int | None = None,
        use_offset_head: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Distribution over audio offsets ``-K..K`` frames for video windows, from one pass of the encoders.

        The video is encoded once and the audio spanning every candidate once; the fusion and the sync head
        then score all ``2K+1`` candidate alignments as one batch (SyncNet's search, without running the
        encoders per candidate). ``use_offset_head`` instead classifies the offset of the audio the file aligns
        with the picture through the offset head (one fusion pass; ``K`` is then the head's).

        Args:
            frames: uint8 ``(B, T, H, W, 3)`` video windows.
            audio: ``(B, S_ext)`` audio around each window, with ``K`` frames of margin on both sides.
            audio_start: index in ``audio`` of the sample the file aligns with the windows' first frame.
            max_frames: ``K`` (default: the offset head's, or 15).
            use_offset_head: classify with the offset head.

        Returns:
            ``(offsets (2K+1,) seconds, log-probabilities (B, 2K+1))``: offset ``d`` means the audio that goes
            with the picture lies ``d`` seconds later in the file (the audio lags the picture by ``d``).

        Raises:
            ValueError: if the audio does not cover every candidate.
        """
        front = self.encoders["audio"].front_end
        fps = front.token_rate
        k_max = self.max_offset_frames if use_offset_head else (max_frames or self.max_offset_frames or 15)
        b, t = frames.shape[:2]
        vt = self.video_tokens(frames)
        steps = torch.arange(-k_max, k_max + 1)
        if use_offset_head:
            if self.offset_head is None:
                raise ValueError("this model has no offset head")
            at = self.audio_tokens(audio[:, audio_start : audio_start + front.num_samples(t)], t)
            # class k: this audio window starts k frames after the audio that goes with the picture, which
            # therefore lies -k frames away in the file
            logits = self.offset_head(self.embed(vt, at)).float().flip(1)
            return steps.float() / fps, logits.log_softmax(dim=1)
        first = audio_start - front.num_samples(k_max)
        count = 2 * k_max + 1
        span = front.num_samples(t + count - 1)
        if first < 0 or first + span > audio.shape[1]:
            raise ValueError(f"audio does not cover offsets of +-{k_max} frames; pass {k_max} frames of margin")
        at = self.proj["audio"](self.encoders["audio"].candidate_tokens(audio[:, first : first + span], t, count))
        vt = vt[:, None].expand(-1, count, -1, -1).reshape(b * count, t, -1)
        logits = self.score(vt, at.reshape(b * count, t, -1)).float().view(b, count)
        return steps.float() / fps, logits.log_softmax(dim=1)

    def forward_head(self, features: dict[str, torch.Tensor], pre_logits: bool = False) -> torch.Tensor:
        """Fused tokens -> logits ``(B, 1 + 2K + 1)``: the sync logit, then the offset head's (``(B, 1)`` without
        one); or the fused embedding with ``pre_logits``. ``forward`` takes ``{"video": uint8 (B, T, H, W, 3),
        "audio": (B, S)}``."""
        x = super().forward_head(features, pre_logits=True)
        if pre_logits:
            return x
        return torch.cat([self.head(x)] + ([self.offset_head(x)] if self.offset_head is not None else []), dim=1)


def _sync_model(
    fusion: nn.Module,
    width: int,
    widths: tuple[int, int, int],
    changes: bool,
    fps: float,
    size: int,
    sample_rate: int,
    n_mels: int,
    max_offset_frames: int,
    crop: str = "frame",
) -> SyncModel:
    video = ("avsync_video", {"fps": fps, "size": size, "widths": list(widths), "dim": width, "changes": changes})
    if crop != "frame":
        video[1]["crop"] = crop
    audio = (
        "avsync_audio",
        {
            "fps": fps,
            "sample_rate": sample_rate,
            "n_mels": n_mels,
            "widths": list(widths),
            "dim": width,
            "changes": changes,
        },
    )
    return SyncModel(video, audio, fusion, max_offset_frames)


SYNC_INPUT = {"video": (25, 64, 64, 3), "audio": (16000,)}  # 1 s at 25 fps, 64x64 frames, 16 kHz
SYNC_INPUT_TINY = {"video": (8, 32, 32, 3), "audio": (5120,)}  # 8 frames at 25 fps = 0.32 s


@register_model(input_size=SYNC_INPUT)
def avsync_mbt(
    fusion_layer: int = 0,
    num_bottlenecks: int = 1,
    frames_per_bottleneck: int = 1,
    shuffle_windows: bool = False,
    max_offset_frames: int = 15,
    changes: bool = True,
    fps: float = 25.0,
    size: int = 64,
    sample_rate: int = 16000,
    n_mels: int = 64,
    crop: str = "frame",
) -> SyncModel:
    """Sync model (the default): CNN encoders, 4 MBT layers with a time-aligned bottleneck per frame, 2 heads.

    D=64, fused from the first layer, sync and offset heads; ``frames_per_bottleneck=0, num_bottlenecks=4`` is
    the paper's global MBT. ``crop="mouth"``: the video encoder takes a face's aligned mouth crops (real faces)."""
    fusion = MBT(
        ("video", "audio"),
        64,
        4,
        4,
        fusion_layer,
        num_bottlenecks,
        frames_per_bottleneck=frames_per_bottleneck,
        shuffle_windows=shuffle_windows,
    )
    return _sync_model(fusion, 64, (16, 32, 64), changes, fps, size, sample_rate, n_mels, max_offset_frames, crop)


@register_model(input_size=SYNC_INPUT_TINY)
def avsync_mbt_tiny(
    fusion_layer: int = 1,
    num_bottlenecks: int = 1,
    frames_per_bottleneck: int = 1,
    shuffle_windows: bool = False,
    max_offset_frames: int = 3,
    changes: bool = True,
    fps: float = 25.0,
    size: int = 32,
    sample_rate: int = 16000,
    n_mels: int = 32,
    crop: str = "frame",
) -> SyncModel:
    """Tiny time-aligned MBT sync model for tests: D=16, 2 layers."""
    fusion = MBT(
        ("video", "audio"),
        16,
        2,
        2,
        fusion_layer,
        num_bottlenecks,
        frames_per_bottleneck=frames_per_bottleneck,
        shuffle_windows=shuffle_windows,
    )
    return _sync_model(fusion, 16, (4, 8, 16), changes, fps, size, sample_rate, n_mels, max_offset_frames, crop)


@register_model(input_size=SYNC_INPUT)
def avsync_tconv(
    max_offset_frames: int = 15,
    changes: bool = True,
    fps: float = 25.0,
    size: int = 64,
    sample_rate: int = 16000,
    n_mels: int = 64,
    crop: str = "frame",
) -> SyncModel:
    """Sync model with early fusion in time: per-frame tokens concatenated, 3 1D convs, max over time (no MBT).

    Owens & Efros-style fusion, the same encoders as ``avsync_mbt``."""
    fusion = TemporalConvFusion(("video", "audio"), 64)
    return _sync_model(fusion, 64, (16, 32, 64), changes, fps, size, sample_rate, n_mels, max_offset_frames, crop)


@register_model(input_size=SYNC_INPUT_TINY)
def avsync_tconv_tiny(max_offset_frames: int = 3, changes: bool = True) -> SyncModel:
    """Tiny early-fusion-in-time sync model."""
    fusion = TemporalConvFusion(("video", "audio"), 16, num_layers=2)
    return _sync_model(fusion, 16, (4, 8, 16), changes, 25.0, 32, 16000, 32, max_offset_frames)


@register_model(input_size=SYNC_INPUT)
def avsync_xattn(fusion_layer: int = 2, max_offset_frames: int = 15, changes: bool = True) -> SyncModel:
    """Sync model with full cross-modal attention from layer 2 (same encoders and width as avsync_mbt)."""
    fusion = MBT(("video", "audio"), 64, 4, 4, fusion_layer, 0)
    return _sync_model(fusion, 64, (16, 32, 64), changes, 25.0, 64, 16000, 64, max_offset_frames)


@register_model(input_size=SYNC_INPUT)
def avsync_late(max_offset_frames: int = 15, changes: bool = True) -> SyncModel:
    """Sync model with late fusion: 4 layers per modality, CLS tokens meet only in the heads."""
    fusion = MBT(("video", "audio"), 64, 4, 4, 4, 4)
    return _sync_model(fusion, 64, (16, 32, 64), changes, 25.0, 64, 16000, 64, max_offset_frames)


@register_model(input_size=SYNC_INPUT_TINY)
def avsync_xattn_tiny(fusion_layer: int = 1, max_offset_frames: int = 3) -> SyncModel:
    """Tiny sync model with full cross-modal attention."""
    fusion = MBT(("video", "audio"), 16, 2, 2, fusion_layer, 0)
    return _sync_model(fusion, 16, (4, 8, 16), True, 25.0, 32, 16000, 32, max_offset_frames)


@register_model(input_size=SYNC_INPUT_TINY)
def avsync_late_tiny(max_offset_frames: int = 3) -> SyncModel:
    """Tiny sync model with late fusion."""
    fusion = MBT(("video", "audio"), 16, 2, 2, 2, 4)
    return _sync_model(fusion, 16, (4, 8, 16), True, 25.0, 32, 16000, 32, max_offset_frames)
