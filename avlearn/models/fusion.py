"""Fusion of token sequences from several modalities: MBT attention bottlenecks, full attention, late concat.

A fusion module takes a dict of token sequences ``{modality: (B, N_m, D)}`` (as scenic's MBT does) and returns a
dict of output tokens; its ``pool(outputs)`` gives one embedding ``(B, D)`` per modality. :class:`AVClassifier`
puts per-modality encoders (anything with ``forward_tokens``) in front of a fusion module and a linear classifier
behind it::

    video (B,3,T,H,W) ──► video encoder ──► (B,Nv,D) ─┐                       ┌─► CLS_video (B,D) ─┐
                                                      ├─► fusion (e.g. MBT) ──┤                    ├─► head
    spec  (B,1,F,T)   ──► spec encoder  ──► (B,Na,D) ─┘                       └─► CLS_spec  (B,D) ─┘
"""

from __future__ import annotations

import torch
from torch import nn

from avlearn.models.layers import Block, sinusoid


class MBT(nn.Module):
    """Multimodal bottleneck transformer (Nagrani et al., "Attention Bottlenecks for Multimodal Fusion", 2021),
    with bottlenecks that can carry time.

    Each modality has its own transformer layers and CLS token. Layers ``< fusion_layer`` see only their own
    modality. From ``fusion_layer`` on, each modality's layer also sees shared bottleneck tokens; the bottleneck
    outputs of all modalities are averaged and passed to the next layer, so all cross-modal exchange goes
    through them. ``fusion_layer=0`` fuses from the first layer, ``fusion_layer=num_layers`` never fuses (late
    fusion: only the classifier combines the modalities).

    Global bottlenecks (``frames_per_bottleneck=0``, the paper): ``num_bottlenecks`` tokens without time, each
    seeing every token; the readout is the CLS tokens.

    Time-aligned bottlenecks (``frames_per_bottleneck=k > 0``): for timing (synchronization) a few time-less
    tokens are the wrong bias, because *when* something happens must cross between modalities. Here time is
    cut into windows of ``k`` frames and each window gets ``num_bottlenecks`` tokens carrying the window's
    sinusoidal time code (the code the streams' tokens carry). A bottleneck attends only to its window's tokens
    of each modality (and its window's other bottlenecks); a modality token attends to its whole modality and to
    the bottlenecks of its own window. The readout is the CLS tokens plus the maximum over all bottlenecks.
    ``shuffle_windows`` is a control: each bottleneck sees its own window of the first modality but a random
    other window of the others (a new permutation every call), so the exchange keeps its content and loses its
    timing; a model that still tells synchrony is not using time.

    With ``num_bottlenecks=0`` the fusion layers instead run full self-attention over the concatenated tokens of
    all modalities (scenic's "vanilla" cross-modal attention; one set of weights per fusion layer).

    Token times: modality ``m``'s ``N_m`` tokens are taken to lie in time order, ``N_m / T`` per frame, ``T``
    being the smallest token count (one token per frame for the sync stems; ``T·h·w`` patch tokens also work).

    Args:
        modalities: names of the modalities, e.g. ``("video", "audio")``.
        dim: token width ``D``.
        num_layers: transformer layers per modality.
        num_heads: attention heads.
        fusion_layer: first layer with cross-modal exchange, in ``[0, num_layers]``.
        num_bottlenecks: bottleneck tokens (per window when time-aligned; 0: full attention from ``fusion_layer``).
        mlp_ratio: MLP hidden width over ``dim``.
        frames_per_bottleneck: window of each time-aligned bottleneck in frames (0: global bottlenecks).
        shuffle_windows: the timing control described above (time-aligned only).

    Raises:
        ValueError: if ``fusion_layer`` is out of range or the time-aligned settings do not fit.
    """

    def __init__(
        self,
        modalities: tuple[str, ...] = ("video", "audio"),
        dim: int = 768,
        num_layers: int = 12,
        num_heads: int = 12,
        fusion_layer: int = 8,
        num_bottlenecks: int = 4,
        mlp_ratio: float = 4.0,
        frames_per_bottleneck: int = 0,
        shuffle_windows: bool = False,
    ):
        super().__init__()
        if not 0 <= fusion_layer <= num_layers:
            raise ValueError(f"fusion_layer={fusion_layer} must be in [0, num_layers={num_layers}]")
        if frames_per_bottleneck < 0 or (frames_per_bottleneck and num_bottlenecks < 1):
            raise ValueError("time-aligned bottlenecks need frames_per_bottleneck > 0 and num_bottlenecks >= 1")
        if shuffle_windows and not frames_per_bottleneck:
            raise ValueError("shuffle_windows is a control of time-aligned bottlenecks (frames_per_bottleneck > 0)")
        self.modalities = tuple(modalities)
        self.num_layers = num_layers
        self.fusion_layer = fusion_layer
        self.num_bottlenecks = num_bottlenecks
        self.frames_per_bottleneck = frames_per_bottleneck
        self.shuffle_windows = shuffle_windows
        self.num_features = dim
        # layers run by each modality alone or with the bottlenecks; with full attention, only those below fusion
        own_layers = num_layers if num_bottlenecks > 0 else fusion_layer
        self.layers = nn.ModuleDict(
            {m: nn.ModuleList(Block(dim, num_heads, mlp_ratio) for _ in range(own_layers)) for m in self.modalities}
        )
        self.joint_layers = nn.ModuleList(
            Block(dim, num_heads, mlp_ratio) for _ in range(num_layers - own_layers)
        )  # full attention, num_bottlenecks == 0
        self.cls_tokens = nn.ParameterDict({m: nn.Parameter(torch.zeros(1, 1, dim)) for m in self.modalities})
        self.fuses = num_bottlenecks > 0 and fusion_layer < num_layers  # late fusion has no use for bottlenecks
        self.bottleneck = nn.Parameter(torch.randn(1, num_bottlenecks, dim) * 0.02) if self.fuses else None
        self.norms = nn.ModuleDict({m: nn.LayerNorm(dim) for m in self.modalities})
        self.time_aligned = self.fuses and frames_per_bottleneck > 0
        self.bottleneck_norm = nn.LayerNorm(dim) if self.time_aligned else None
        # readout: the CLS tokens, plus the max over the bottlenecks when they carry time
        self.pooled_features = dim * (len(self.modalities) + self.time_aligned)
        for p in self.cls_tokens.values():
            nn.init.normal_(p, std=0.02)

    # -- time-aligned bottlenecks --------------------------------------------------------------------
    def _windows(self, lengths: dict[str, int]) -> tuple[int, dict[str, torch.Tensor]]:
        """Number of windows and, per modality, the window of each token ``(N_m,)``."""
        frames = min(lengths.values())
        k = self.frames_per_bottleneck
        num_windows = -(-frames // k)
        windows = {}
        for i, m in enumerate(self.modalities):
            n = lengths[m]
            win = (torch.arange(n) * frames // n).clamp(max=frames - 1) // k  # token -> frame -> window
            if self.shuffle_windows and i > 0:
                win = torch.randperm(num_windows)[win]  # this modality's windows go to other bottlenecks
            windows[m] = win
        return num_windows, windows

    def _mask(self, window: torch.Tensor, num_windows: int, device: torch.device) -> torch.Tensor:
        """Attention mask ``(L, L)`` of ``[CLS, tokens, bottlenecks]`` for one modality (True: may attend)."""
        nb = self.num_bottlenecks
        n, total = window.numel(), 1 + window.numel() + num_windows * nb
        b_win = torch.arange(num_windows).repeat_interleave(nb)  # window of each bottleneck token
        mask = torch.zeros(total, total, dtype=torch.bool)
        mask[: 1 + n, : 1 + n] = True  # CLS and tokens: the whole modality
        mask[0, 1 + n :] = True  # CLS reads every bottleneck
        mask[1 : 1 + n, 1 + n :] = window[:, None] == b_win[None, :]  # a token: its window's bottlenecks
        mask[1 + n :, 1 : 1 + n] = b_win[:, None] == window[None, :]  # a bottleneck: its window's tokens
        mask[1 + n :, 1 + n :] = b_win[:, None] == b_win[None, :]  # and its window's bottlenecks
        return mask.to(device)

    def _initial_bottlenecks(self, b: int, num_windows: int, frames: int, dtype: torch.dtype) -> torch.Tensor:
        if not self.time_aligned:
            return self.bottleneck.expand(b, -1, -1)
        k, d = self.frames_per_bottleneck, self.num_features
        centers = torch.arange(num_windows, device=self.bottleneck.device) * k + (min(k, frames) - 1) / 2
        code = sinusoid(centers, d).repeat_interleave(self.num_bottlenecks, dim=0)  # (W * nb, D)
        tokens = self.bottleneck.repeat(1, num_windows, 1) + code[None]
        return tokens.expand(b, -1, -1).to(dtype)

    def forward(self, tokens: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Fuse the modalities.

        Args:
            tokens: ``{modality: (B, N_m, D)}``, one entry per name in ``modalities``.

        Returns:
            ``{modality: (B, 1 + N_m, D)}``, layer-normed; index 0 is the modality's CLS token. Time-aligned
            bottlenecks add ``"bottlenecks"``: ``(B, W * num_bottlenecks, D)`` in time order, layer-normed.

        Raises:
            ValueError: if the keys are not the model's modalities.
        """
        if set(tokens) != set(self.modalities):
            raise ValueError(f"MBT expects tokens for {self.modalities}, got {tuple(tokens)}")
        first = next(iter(tokens.values()))
        b = first.shape[0]
        x = {
            m: torch.cat([self.cls_tokens[m].expand(b, -1, -1).to(first.dtype), tokens[m]], dim=1)
            for m in self.modalities
        }
        masks = {m: None for m in self.modalities}
        bottleneck = None
        if self.fuses:
            lengths = {m: tokens[m].shape[1] for m in self.modalities}
            num_windows = 1
            if self.time_aligned:
                num_windows, windows = self._windows(lengths)
                masks = {m: self._mask(windows[m], num_windows, first.device) for m in self.modalities}
            bottleneck = self._initial_bottlenecks(b, num_windows, min(lengths.values()), first.dtype)
        for i in range(self.num_layers):
            if i < self.fusion_layer:  # each modality alone
                x = {m: self.layers[m][i](x[m]) for m in self.modalities}
            elif self.num_bottlenecks > 0:  # exchange only through the bottleneck tokens
                outs = {}
                for m in self.modalities:
                    n = x[m].shape[1]
                    y = self.layers[m][i](torch.cat([x[m], bottleneck], dim=1), masks[m])  # (B, N_m + nb, D)
                    x[m], outs[m] = y[:, :n], y[:, n:]
                bottleneck = torch.stack(list(outs.values())).mean(0)  # (B, nb, D), averaged over modalities
            else:  # full attention over the concatenation
                lengths = [x[m].shape[1] for m in self.modalities]
                y = self.joint_layers[i - self.fusion_layer](torch.cat([x[m] for m in self.modalities], dim=1))
                x = dict(zip(self.modalities, torch.split(y, lengths, dim=1)))
        out = {m: self.norms[m](x[m]) for m in self.modalities}
        if self.time_aligned:
            out["bottlenecks"] = self.bottleneck_norm(bottleneck)
        return out

    def pool(self, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-modality CLS embeddings ``{modality: (B, D)}`` (and ``"bottlenecks"``: their max over time)."""
        pooled = {m: outputs[m][:, 0] for m in self.modalities}
        if self.time_aligned:
            pooled["bottlenecks"] = outputs["bottlenecks"].amax(dim=1)
        return pooled


class ConcatFusion(nn.Module):
    """Late fusion: no exchange between the token sequences; each is averaged and the embeddings concatenated.

    Args:
        modalities: names of the modalities.
        dim: token width ``D``.
    """

    def __init__(self, modalities: tuple[str, ...] = ("video", "spec"), dim: int = 768) -> None:
        super().__init__()
        self.modalities = tuple(modalities)
        self.num_features = dim

    def forward(self, tokens: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{m: (B, N_m, D)}`` -> the same tokens (nothing crosses modalities before the head)."""
        if set(tokens) != set(self.modalities):
            raise ValueError(f"ConcatFusion expects tokens for {self.modalities}, got {tuple(tokens)}")
        return tokens

    def pool(self, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Average tokens per modality -> ``{m: (B, D)}``."""
        return {m: t.mean(1) for m, t in outputs.items()}


class AVClassifier(nn.Module):
    """Per-modality encoders -> tokens -> a fusion module -> per-modality embeddings -> one linear classifier.

    The classifier sees the concatenated per-modality embeddings, i.e. it is the sum of one linear head per modality
    (scenic's MBT averages per-modality logits: the same family up to a factor).

    Args:
        encoders: ``{modality: encoder}``; each has ``forward_tokens(x) -> (B, N, D_m)`` and ``num_features``.
        fusion: a fusion module (:class:`MBT`, :class:`ConcatFusion`) over those modalities with width ``D``.
        num_classes: classes (0: :meth:`forward` returns the concatenated embeddings).
    """

    def __init__(self, encoders: dict[str, nn.Module], fusion: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        dim = fusion.num_features
        # encoders narrower or wider than the fusion width get a linear projection
        self.proj = nn.ModuleDict(
            {m: nn.Identity() if e.num_features == dim else nn.Linear(e.num_features, dim) for m, e in encoders.items()}
        )
        self.fusion = fusion
        self.num_classes = num_classes
        self.num_features = dim
        self.head_hidden_size = getattr(fusion, "pooled_features", dim * len(encoders))
        self.head = nn.Linear(self.head_hidden_size, num_classes) if num_classes else nn.Identity()

    def forward_tokens(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{m: input}`` -> ``{m: (B, N_m, D)}`` before fusion."""
        return {m: self.proj[m](self.encoders[m].forward_tokens(x[m])) for m in self.encoders}

    def forward_features(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{m: input}`` -> fused tokens ``{m: (B, N'_m, D)}``."""
        return self.fusion(self.forward_tokens(x))

    def forward_embeddings(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{m: input}`` -> pooled per-modality embeddings ``{m: (B, D)}`` (e.g. for a sync objective)."""
        return self.fusion.pool(self.forward_features(x))

    def forward_head(self, features: dict[str, torch.Tensor], pre_logits: bool = False) -> torch.Tensor:
        """Fused tokens -> logits ``(B, num_classes)`` or the concatenated embeddings ``(B, D * M)``."""
        pooled = self.fusion.pool(features)
        x = torch.cat(list(pooled.values()), dim=-1)  # the modalities' embeddings, then any fusion readout
        return x if pre_logits else self.head(x)

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        """``{"video": (B, C, T, H, W), "spec": (B, 1, F, T)}`` -> ``(B, num_classes)``."""
        return self.forward_head(self.forward_features(x))
