"""Listen to Look (Gao et al., CVPR 2020): recognize actions in untrimmed video by previewing its audio.

One model holds the three networks of the method, trained in three stages (``avlearn.tasks.preview``):

- ``teacher``: a clip classifier (a registered video model, by default :func:`r2plus1d_cpu`) over one window of
  frames; run on every window it is the expensive *dense* baseline.
- ``student`` (IMGAUD2VID): one frame and the audio of its window, each through a small CNN, fused into an
  embedding that is distilled into the teacher's clip embedding; it classifies with the teacher's own linear
  classifier, so a student embedding and a teacher embedding mean the same thing.
- ``selector`` (IMGAUD-SKIMMING): an LSTM that, starting from a glance at the whole preview, attends over the
  per-window audio features (computed everywhere, cheap) and image features (computed every
  ``image_stride``-th window and interpolated in between, as the paper's feature interpolation) to choose the
  next moment to look at. Looking at a moment means running the student's image network on its frame; the
  prediction averages the student's class probabilities over the K moments looked at.

Classes are the actions plus a last ``background`` class (windows where no action happens), so averaging
over many windows is not swamped by the idle ones.

Shapes: windows ``W`` of a video; image features ``(B, W, Ci)``, audio features ``(B, W, Ca)``, embeddings
``(B, W, D)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from avlearn.models.registry import create_model, register_model


def conv_stack(in_channels: int, widths: tuple[int, ...]) -> nn.Sequential:
    """A plain 2D CNN: per width a stride-2 3x3 conv and a 3x3 conv (BN, ReLU), then global average pooling."""
    layers: list[nn.Module] = []
    c = in_channels
    for w in widths:
        for stride, cin in ((2, c), (1, w)):
            layers += [nn.Conv2d(cin, w, 3, stride, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
        c = w
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())


class ImageAudioStudent(nn.Module):
    """IMGAUD2VID: a frame and its window's log-mel spectrogram -> an embedding in the teacher's space.

    Args:
        embed_dim: width of the teacher's clip embedding.
        num_classes: classes of the teacher's classifier (copied in by the distillation stage).
        image_widths: channels of the image CNN's stages.
        audio_widths: channels of the audio CNN's stages.
    """

    def __init__(self, embed_dim: int, num_classes: int, image_widths: tuple[int, ...] = (16, 32, 64, 128),
                 audio_widths: tuple[int, ...] = (16, 32, 64, 128)) -> None:  # fmt: skip
        super().__init__()
        self.image = conv_stack(3, tuple(image_widths))
        self.audio = conv_stack(1, tuple(audio_widths))
        self.image_dim, self.audio_dim = image_widths[-1], audio_widths[-1]
        self.fuse = nn.Sequential(
            nn.Linear(self.image_dim + self.audio_dim, 2 * embed_dim), nn.ReLU(inplace=True),
            nn.Linear(2 * embed_dim, embed_dim), nn.ReLU(inplace=True),
        )  # fmt: skip
        self.head = nn.Linear(embed_dim, num_classes)

    def image_features(self, frames: torch.Tensor) -> torch.Tensor:
        """Normalized frames ``(B, 3, H, W)`` -> ``(B, Ci)``."""
        return self.image(frames)

    def audio_features(self, spec: torch.Tensor) -> torch.Tensor:
        """Log-mel ``(B, 1, F, T)`` -> ``(B, Ca)``."""
        return self.audio(spec)

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
    """

    def __init__(self, num_classes: int = 13, teacher: str = "r2plus1d_cpu", teacher_args: dict[str, Any] | None = None,
                 image_widths: tuple[int, ...] = (16, 32, 64, 128), audio_widths: tuple[int, ...] = (16, 32, 64, 128),
                 hidden: int = 256, image_stride: int = 4) -> None:  # fmt: skip
        super().__init__()
        self.teacher = create_model(teacher, num_classes=num_classes, **(teacher_args or {}))
        dim = self.teacher.head_hidden_size
        self.student = ImageAudioStudent(dim, num_classes, image_widths, audio_widths)
        self.selector = SkimSelector(dim, self.student.image_dim, self.student.audio_dim, hidden)
        self.num_classes, self.image_stride = num_classes, image_stride

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

    def preview(self, frames: torch.Tensor, spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The audio preview: audio features of every window and image features of every
        ``image_stride``-th one, interpolated.

        Args:
            frames: ``(B, W, 3, H, W)`` normalized centre frames of the windows (only the preview's are read).
            spec: ``(B, W, 1, F, T)`` log-mel of every window.

        Returns:
            Image bank ``(B, W, Ci)`` and audio bank ``(B, W, Ca)``.
        """
        b, w = spec.shape[:2]
        audio = self.student.audio_features(spec.flatten(0, 1)).view(b, w, -1)
        where = self.preview_windows(w)
        sparse = self.student.image_features(frames[:, where].flatten(0, 1)).view(b, len(where), -1)
        return self.image_bank(sparse, where, w), audio

    def skim_video(self, frames: torch.Tensor, spec: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """IMGAUD-SKIMMING at inference: the preview, then ``steps`` looks, each running the student's image
        network on one chosen frame. Returns indices ``(B, K)`` and class probabilities ``(B, K, C)``."""
        image_bank, audio_bank = self.preview(frames, spec)
        rows = torch.arange(spec.shape[0], device=spec.device)

        def look(choice: torch.Tensor) -> torch.Tensor:
            index = choice.argmax(-1)
            return self.student.embed(self.student.image_features(frames[rows, index]), audio_bank[rows, index])

        return self.skim(image_bank, audio_bank, look, steps)

    def forward(self, x: dict[str, torch.Tensor], steps: int = 5) -> torch.Tensor:
        """The whole method on a batch of videos (for the registry and the summary tool): ``x["frames"]``
        ``(B, W, 3, H, W)`` and ``x["spec"]`` ``(B, W, 1, F, T)`` -> video class probabilities ``(B, C)``."""
        return self.skim_video(x["frames"], x["spec"], steps)[1].mean(1)


@register_model(input_size={"frames": (20, 3, 96, 96), "spec": (20, 1, 64, 101)}, interface="preview")
def listen_to_look(num_classes: int = 13, image_stride: int = 4) -> ListenToLook:
    """Listen to Look: r2plus1d_cpu teacher, image+audio student (16-128 CNNs), LSTM selector; forward = 5 looks."""
    return ListenToLook(num_classes=num_classes, image_stride=image_stride)


@register_model(input_size={"frames": (6, 3, 32, 32), "spec": (6, 1, 32, 48)}, interface="preview")
def listen_to_look_tiny(num_classes: int = 5, image_stride: int = 2) -> ListenToLook:
    """Listen to Look with a tiny teacher, 4-8-wide student CNNs and a 32-wide selector, for tests."""
    return ListenToLook(num_classes, "r2plus1d_cpu_tiny", None, (4, 8), (4, 8), 32, image_stride)
