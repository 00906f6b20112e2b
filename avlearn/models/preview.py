"""Listen to Look (Gao et al., CVPR 2020): recognize actions in untrimmed video by previewing its audio.

One model holds the three networks of the method, trained in three stages (``avlearn.tasks.preview``):

- ``teacher``: a clip classifier (a registered video model, by default :func:`r2plus1d_cpu`) over one window of
  frames; run on every window it is the expensive *dense* baseline.
- ``student`` (IMGAUD2VID): the picture and the sound of a window, each through a cheap network, fused into an
  embedding that is distilled into the teacher's clip embedding; it classifies with the teacher's own linear
  classifier, so a student embedding and a teacher embedding mean the same thing. Either the paper's pair of
  small 2D CNNs (the window's centre frame, its log-mel), or the sync-pretrained encoders (``avsync_video`` on
  a few frames around the centre, ``avsync_audio`` on the waveform), which a sync checkpoint fills
  (``init_from`` of the student stage: :mod:`avlearn.tasks.backbone`). The student owns its front-ends: it
  takes a window's uint8 frames and its waveform, whichever variant it is.
- ``selector`` (IMGAUD-SKIMMING): an LSTM that, starting from a glance at the whole preview, attends over the
  per-window audio features (computed everywhere, cheap) and image features (computed every
  ``image_stride``-th window and interpolated in between, as the paper's feature interpolation) to choose the
  next moment to look at. Looking at a moment means running the student's image network on its frame; the
  prediction averages the student's class probabilities over the K moments looked at.

Classes are the actions plus a last ``background`` class (windows where no action happens), so averaging
over many windows is not swamped by the idle ones.

Shapes: windows ``W`` of a video, each ``T`` uint8 frames ``(T, H, W, 3)`` and ``S`` audio samples; image
features ``(B, W, Ci)``, audio features ``(B, W, Ca)``, embeddings ``(B, W, D)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from avlearn.models.frontend import AudioFrontEnd
from avlearn.models.registry import create_model, register_model
from avlearn.models.sync import SyncAudioEncoder, SyncVideoEncoder
from avlearn.video.transforms import MEAN, STD

SPEC_HOP_S = 0.01  # the CNN student's log-mel hop: 10 ms


def conv_stack(in_channels: int, widths: tuple[int, ...]) -> nn.Sequential:
    """A plain 2D CNN: per width a stride-2 3x3 conv and a 3x3 conv (BN, ReLU), then global average pooling."""
    layers: list[nn.Module] = []
    c = in_channels
    for w in widths:
        for stride, cin in ((2, c), (1, w)):
            layers += [nn.Conv2d(cin, w, 3, stride, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
        c = w
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())


class CentreFrame(nn.Module):
    """The CNN student's picture: a window's uint8 frames ``(N, T, H, W, 3)`` -> its centre frame, normalized,
    ``(N, 3, H, W)``."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        frame = windows[:, windows.shape[1] // 2].permute(0, 3, 1, 2).float()
        return (frame / 255.0 - self.mean) / self.std


class SyncClipFeatures(nn.Module):
    """The sync video encoder on the ``frames`` frames around a window's centre (a short clip, so the motion of
    the moment is seen, not only a pose): ``(N, T, H, W, 3)`` uint8 -> ``(N, D)``, the maximum plus the mean of
    its feature map over time and space (how the sync model pools a frame)."""

    def __init__(self, frames: int = 3, **video: Any) -> None:
        super().__init__()
        self.encoder = SyncVideoEncoder(**video)
        self.frames, self.num_features = frames, self.encoder.num_features

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        t = windows.shape[1]
        t0 = max(0, min(t - self.frames, t // 2 - self.frames // 2))
        f = self.encoder.forward_features(windows[:, t0 : t0 + self.frames])  # (N, D, t, h, w)
        return f.amax(dim=(2, 3, 4)) + f.mean(dim=(2, 3, 4))


class SyncSoundFeatures(nn.Module):
    """The sync audio encoder (its own log-mel front-end) on a window's waveform: ``(N, S)`` -> ``(N, D)``, the
    maximum plus the mean over its tokens (one per video frame)."""

    def __init__(self, **audio: Any) -> None:
        super().__init__()
        self.encoder = SyncAudioEncoder(**audio)
        self.num_features = self.encoder.num_features

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        f = self.encoder.frame_features(audio)  # (N, D, T)
        return f.amax(-1) + f.mean(-1)


class ImageAudioStudent(nn.Module):
    """IMGAUD2VID: a window's frames and waveform -> an embedding in the teacher's space.

    Each branch is the paper's small 2D CNN (the centre frame; a 10 ms log-mel of ``n_mels`` bands) unless
    the sync encoder's arguments are given (``video``: ``avsync_video`` on ``frames`` frames around the centre;
    ``audio``: ``avsync_audio``); those are the parts a sync checkpoint fills (:attr:`backbone`).

    Args:
        embed_dim: width of the teacher's clip embedding.
        num_classes: classes of the teacher's classifier (copied in by the distillation stage).
        image_widths: channels of the image CNN's stages.
        audio_widths: channels of the audio CNN's stages.
        sample_rate: audio rate of the CNN's log-mel.
        n_mels: mel bands of the CNN's log-mel.
        video: ``avsync_video`` arguments (as a sync checkpoint lists its ``video`` component), or None.
        audio: ``avsync_audio`` arguments, or None.
        frames: frames the sync video encoder sees per window.
    """

    def __init__(self, embed_dim: int, num_classes: int, image_widths: tuple[int, ...] = (16, 32, 64, 128),
                 audio_widths: tuple[int, ...] = (16, 32, 64, 128), sample_rate: int = 16000, n_mels: int = 64,
                 video: dict[str, Any] | None = None, audio: dict[str, Any] | None = None,
                 frames: int = 3) -> None:  # fmt: skip
        super().__init__()
        if video is None:
            self.image_front, self.image = CentreFrame(), conv_stack(3, tuple(image_widths))
            self.image_dim = image_widths[-1]
        else:
            self.image_front, self.image = nn.Identity(), SyncClipFeatures(frames, **video)
            self.image_dim = self.image.num_features
        if audio is None:  # log-mel frames of 10 ms: a "token" per hop
            self.audio_front = AudioFrontEnd(sample_rate, n_mels, token_rate=1 / SPEC_HOP_S, hops_per_token=1)
            self.audio = conv_stack(1, tuple(audio_widths))
            self.audio_dim = audio_widths[-1]
        else:
            self.audio_front, self.audio = nn.Identity(), SyncSoundFeatures(**audio)
            self.audio_dim = self.audio.num_features
        self.fuse = nn.Sequential(
            nn.Linear(self.image_dim + self.audio_dim, 2 * embed_dim), nn.ReLU(inplace=True),
            nn.Linear(2 * embed_dim, embed_dim), nn.ReLU(inplace=True),
        )  # fmt: skip
        self.head = nn.Linear(embed_dim, num_classes)

    @property
    def backbone(self) -> dict[str, nn.Module]:
        """The sync encoders among the branches (what ``init_from`` fills), by component name."""
        parts = {"video": self.image, "audio": self.audio}
        return {k: m.encoder for k, m in parts.items() if isinstance(m, (SyncClipFeatures, SyncSoundFeatures))}

    @property
    def audio_front_end(self) -> AudioFrontEnd:
        """The log-mel front-end of the audio branch (its hop and FFT size count the preview's FFTs)."""
        return self.audio.encoder.front_end if isinstance(self.audio, SyncSoundFeatures) else self.audio_front

    @property
    def preprocessing(self) -> dict[str, Any]:
        """What the front-ends take: the audio's rate and log-mel, and for a sync video branch its fps and size."""
        pre = dict(self.audio_front_end.preprocessing)
        if isinstance(self.image, SyncClipFeatures):
            pre.update(self.image.encoder.preprocessing)
        return pre

    def image_features(self, windows: torch.Tensor) -> torch.Tensor:
        """A window's uint8 frames ``(N, T, H, W, 3)`` -> ``(N, Ci)``."""
        return self.image(self.image_front(windows))

    def audio_features(self, audio: torch.Tensor) -> torch.Tensor:
        """A window's waveform ``(N, S)`` -> ``(N, Ca)``."""
        return self.audio(self.audio_front(audio))

    def embed(self, image: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Image and audio features ``(..., Ci)``, ``(..., Ca)`` -> embedding ``(..., D)`` (ReLU'd like the
        teacher's pooled features)."""
        return self.fuse(torch.cat([image, audio], dim=-1))


class SkimSelector(nn.Module):
    """IMGAUD-SKIMMING's recurrent selector.

    Each step feeds the embedding of the moment just looked at into an LSTM cell; from its state, an image
    query and an audio query attend over keys of the image and audio feature banks, a modality gate mixes the
    two attentions, and the next moment is the most attended window not looked at yet.

    Args:
        embed_dim: student embedding width (the LSTM input).
        image_dim: image feature width.
        audio_dim: audio feature width.
        hidden: LSTM width.
        key_dim: query/key width.
    """

    def __init__(self, embed_dim: int, image_dim: int, audio_dim: int, hidden: int = 256, key_dim: int = 128) -> None:
        super().__init__()
        self.rnn = nn.LSTMCell(embed_dim, hidden)
        self.image_key = nn.Linear(image_dim, key_dim)
        self.audio_key = nn.Linear(audio_dim, key_dim)
        self.image_query = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, key_dim))
        self.audio_query = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, key_dim))
        self.gate = nn.Linear(hidden, 2)
        self.hidden, self.key_dim = hidden, key_dim

    def run(
        self,
        image_bank: torch.Tensor,
        audio_bank: torch.Tensor,
        start: torch.Tensor,
        look: Callable[[torch.Tensor], torch.Tensor],
        steps: int,
        temperature: float = 0.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Chooses ``steps`` moments. (A plain method, not ``forward``: ``look`` runs the student inside the loop,
        and the summary tool attributes a module call's MACs to that module.)

        Args:
            image_bank: ``(B, W, Ci)`` image features of every window (interpolated between computed ones).
            audio_bank: ``(B, W, Ca)`` audio features of every window.
            start: ``(B, D)`` the first LSTM input (the student's embedding of the averaged banks).
            look: called with a ``(B, W)`` one-hot choice per step, returns the embedding of the chosen moment
                ``(B, D)``; in training the choice carries straight-through gradients.
            steps: moments to choose (``K``), at most ``W``.
            temperature: > 0 samples the choice with Gumbel noise at this temperature (training); 0 takes the
                most attended window.

        Returns:
            ``indices (B, K)`` of the chosen windows and their embeddings ``(B, K, D)``.
        """
        b, w, _ = audio_bank.shape
        if not 0 < steps <= w:
            raise ValueError(f"steps must be in 1..{w} (windows of the video), got {steps}")
        keys_i = self.image_key(image_bank)  # (B, W, k)
        keys_a = self.audio_key(audio_bank)
        state = None
        taken = torch.zeros(b, w, dtype=torch.bool, device=audio_bank.device)
        x, indices, embeddings = start, [], []
        for _ in range(steps):
            h, c = self.rnn(x, state)
            state = (h, c)
            scale = self.key_dim**-0.5
            att_i = torch.einsum("bk,bwk->bw", self.image_query(h), keys_i) * scale
            att_a = torch.einsum("bk,bwk->bw", self.audio_query(h), keys_a) * scale
            gate = self.gate(h).softmax(-1)
            p = gate[:, :1] * att_i.masked_fill(taken, -1e4).softmax(-1) + gate[:, 1:] * att_a.masked_fill(
                taken, -1e4
            ).softmax(-1)
            logp = p.clamp_min(1e-9).log().masked_fill(taken, -1e9)
            if temperature > 0:
                gumbel = -torch.empty_like(logp).exponential_().log()
                soft = ((logp + gumbel) / temperature).softmax(-1)
                index = soft.argmax(-1)
                choice = F.one_hot(index, w).to(soft) - soft.detach() + soft  # straight-through
            else:
                index = logp.argmax(-1)
                choice = F.one_hot(index, w).to(p)
            x = look(choice)
            taken = taken | F.one_hot(index, w).bool()
            indices.append(index)
            embeddings.append(x)
        return torch.stack(indices, 1), torch.stack(embeddings, 1)


class ListenToLook(nn.Module):
    """Teacher, student and selector of Listen to Look (see the module docstring).

    Args:
        num_classes: classes, the last of them ``background``.
        teacher: registered video model name of the teacher.
        teacher_args: its builder's arguments besides ``num_classes``.
        image_widths: student image CNN widths.
        audio_widths: student audio CNN widths.
        hidden: selector LSTM width.
        image_stride: the preview computes image features of every ``image_stride``-th window.
        student: the rest of :class:`ImageAudioStudent`'s arguments (``n_mels``; ``video``, ``audio`` and
            ``frames`` for a student on the sync encoders).
    """

    def __init__(self, num_classes: int = 13, teacher: str = "r2plus1d_cpu", teacher_args: dict[str, Any] | None = None,
                 image_widths: tuple[int, ...] = (16, 32, 64, 128), audio_widths: tuple[int, ...] = (16, 32, 64, 128),
                 hidden: int = 256, image_stride: int = 4, **student: Any) -> None:  # fmt: skip
        super().__init__()
        self.teacher = create_model(teacher, num_classes=num_classes, **(teacher_args or {}))
        dim = self.teacher.head_hidden_size
        self.student = ImageAudioStudent(dim, num_classes, image_widths, audio_widths, **student)
        self.selector = SkimSelector(dim, self.student.image_dim, self.student.audio_dim, hidden)
        self.num_classes, self.image_stride = num_classes, image_stride

    @property
    def backbone(self) -> dict[str, nn.Module]:
        """The student's sync encoders, which a sync checkpoint fills (none for the CNN student)."""
        return self.student.backbone

    @property
    def preprocessing(self) -> dict[str, Any]:
        """What the student's front-ends take (the data must be decoded so)."""
        return self.student.preprocessing

    # -- the teacher ---------------------------------------------------------------------------------------
    def teacher_embed(self, clips: torch.Tensor) -> torch.Tensor:
        """Normalized clips ``(B, 3, T, H, W)`` -> clip embeddings ``(B, D)``."""
        return self.teacher.forward_head(self.teacher.forward_features(clips), pre_logits=True)

    def classify(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Embeddings ``(..., D)`` (teacher's or student's) -> logits ``(..., num_classes)`` with the teacher's
        classifier (the student's copy of it, which distillation keeps frozen)."""
        return self.student.head(embeddings)

    # -- the preview -----------------------------------------------------------------------------------------
    def preview_windows(self, num_windows: int) -> torch.Tensor:
        """Indices of the windows whose image features the preview computes: every ``image_stride``-th, from
        the middle of the first stride, so the bank's samples are centred."""
        first = min(self.image_stride // 2, num_windows - 1)
        return torch.arange(first, num_windows, self.image_stride)

    def image_bank(self, sparse: torch.Tensor, where: torch.Tensor, num_windows: int) -> torch.Tensor:
        """Image features at windows ``where`` ``(B, n, Ci)`` -> every window ``(B, W, Ci)`` by linear
        interpolation (held constant beyond the ends)."""
        t = torch.arange(num_windows, dtype=torch.float32, device=sparse.device)
        pos = where.to(sparse.device, torch.float32)
        if len(pos) == 1:
            return sparse.expand(-1, num_windows, -1)
        j = torch.searchsorted(pos, t).clamp(1, len(pos) - 1)
        w = ((t - pos[j - 1]) / (pos[j] - pos[j - 1])).clamp(0, 1)[None, :, None]
        return sparse[:, j - 1] * (1 - w) + sparse[:, j] * w

    def skim(
        self,
        image_bank: torch.Tensor,
        audio_bank: torch.Tensor,
        look: Callable[[torch.Tensor], torch.Tensor],
        steps: int,
        temperature: float = 0.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Selector over the banks; returns the chosen window indices ``(B, K)`` and the class probabilities at
        them ``(B, K, num_classes)`` (their mean over K is the video's prediction)."""
        start = self.student.embed(image_bank.mean(1), audio_bank.mean(1))
        indices, embeddings = self.selector.run(image_bank, audio_bank, start, look, steps, temperature)
        return indices, self.classify(embeddings).softmax(-1)

    def preview(self, windows: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The audio preview: audio features of every window and image features of every
        ``image_stride``-th one, interpolated.

        Args:
            windows: ``(B, W, T, H, W, 3)`` uint8 frames of the windows (only the preview's are read).
            audio: ``(B, W, S)`` waveform of every window.

        Returns:
            Image bank ``(B, W, Ci)`` and audio bank ``(B, W, Ca)``.
        """
        b, w = audio.shape[:2]
        sound = self.student.audio_features(audio.flatten(0, 1)).view(b, w, -1)
        where = self.preview_windows(w)
        sparse = self.student.image_features(windows[:, where].flatten(0, 1)).view(b, len(where), -1)
        return self.image_bank(sparse, where, w), sound

    def skim_video(self, windows: torch.Tensor, audio: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """IMGAUD-SKIMMING at inference: the preview, then ``steps`` looks, each running the student's image
        network on one chosen window. Returns indices ``(B, K)`` and class probabilities ``(B, K, C)``."""
        image_bank, audio_bank = self.preview(windows, audio)
        rows = torch.arange(audio.shape[0], device=audio.device)

        def look(choice: torch.Tensor) -> torch.Tensor:
            index = choice.argmax(-1)
            return self.student.embed(self.student.image_features(windows[rows, index]), audio_bank[rows, index])

        return self.skim(image_bank, audio_bank, look, steps)

    def forward(self, x: dict[str, torch.Tensor], steps: int = 5) -> torch.Tensor:
        """The whole method on a batch of videos (for the registry and the summary tool): ``x["video"]``
        ``(B, W, T, H, W, 3)`` uint8 and ``x["audio"]`` ``(B, W, S)`` -> video class probabilities ``(B, C)``."""
        return self.skim_video(x["video"], x["audio"], steps)[1].mean(1)


@register_model(input_size={"video": (20, 8, 96, 96, 3), "audio": (20, 16000)}, interface="preview")
def listen_to_look(num_classes: int = 13, image_stride: int = 4, **student: Any) -> ListenToLook:
    """Listen to Look: r2plus1d_cpu teacher, image+audio student (16-128 CNNs, or the sync encoders given their
    arguments ``video``/``audio``), LSTM selector; forward = 5 looks."""
    return ListenToLook(num_classes=num_classes, image_stride=image_stride, **student)


@register_model(input_size={"video": (6, 4, 32, 32, 3), "audio": (6, 8000)}, interface="preview")
def listen_to_look_tiny(num_classes: int = 5, image_stride: int = 2, **student: Any) -> ListenToLook:
    """Listen to Look with a tiny teacher, 4-8-wide student CNNs (or tiny sync encoders) and a 32-wide selector,
    for tests."""
    return ListenToLook(num_classes, "r2plus1d_cpu_tiny", None, (4, 8), (4, 8), 32, image_stride, **student)
