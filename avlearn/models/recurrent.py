"""Recurrent video models: a CNN+LSTM (Donahue et al., "Long-term Recurrent Convolutional Networks", CVPR 2015) and
a recurrent convolutional network with ConvGRU cells (Ballas et al., "Delving Deeper into Convolutional Networks
for Learning Video Representations", ICLR 2016).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from avlearn.models.layers import Encoder
from avlearn.models.registry import register_model
from avlearn.models.video_cnn import frame_cnn


class CNNLSTM(Encoder):
    """A per-frame 2D CNN, globally pooled, then an LSTM over the frames.

    Many-to-one: the last step's hidden state is classified, ``(B, num_classes)``. Many-to-many: every step is,
    ``(B, T, num_classes)`` (e.g. per-frame labels).

    Args:
        num_classes: classes (0: no classifier).
        in_channels: video channels.
        widths: channels of the per-frame CNN.
        pool_size: max-pool kernel after each conv but the last.
        hidden_dim: LSTM width.
        num_layers: LSTM layers.
        many_to_many: classify every step instead of the last one.
    """

    def __init__(
        self,
        num_classes: int = 400,
        in_channels: int = 3,
        widths: tuple[int, ...] = (64, 128, 256, 512),
        pool_size: int = 2,
        hidden_dim: int = 512,
        num_layers: int = 1,
        many_to_many: bool = False,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_features = hidden_dim
        self.many_to_many = many_to_many
        self.cnn = frame_cnn(in_channels, widths, pool_size)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.lstm = nn.LSTM(widths[-1], hidden_dim, num_layers=num_layers, batch_first=True)
        self.head = nn.Linear(hidden_dim, num_classes) if num_classes else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> hidden states, one token per frame (B, T, hidden_dim)."""
        b = x.shape[0]
        frames = self.pool(self.cnn(rearrange(x, "b c t h w -> (b t) c h w"))).flatten(1)  # (B*T, D)
        hidden, _ = self.lstm(rearrange(frames, "(b t) d -> b t d", b=b))
        return hidden

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, T, hidden) -> (B, num_classes) many-to-one, (B, T, num_classes) many-to-many."""
        x = features if self.many_to_many else features[:, -1]
        return x if pre_logits else self.head(x)


class ConvGRUCell(nn.Module):
    """A GRU whose gates are 3x3 convolutions over 2D maps, so the hidden state keeps its spatial layout.

    Args:
        in_channels: channels of the input maps.
        hidden_dim: channels of the hidden state.
        kernel_size: gate convolution size.
    """

    def __init__(self, in_channels: int, hidden_dim: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.hidden_dim = hidden_dim
        self.gates = nn.Conv2d(in_channels + hidden_dim, 2 * hidden_dim, kernel_size, padding=kernel_size // 2)
        self.candidate = nn.Conv2d(in_channels + hidden_dim, hidden_dim, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Input (B, C, H, W) and state (B, hidden, H, W) -> new state (B, hidden, H, W)."""
        update, reset = self.gates(torch.cat([x, h], dim=1)).sigmoid().chunk(2, dim=1)
        candidate = self.candidate(torch.cat([x, reset * h], dim=1)).tanh()
        return (1 - update) * h + update * candidate


class RecurrentConvNet(Encoder):
    """A per-frame 2D CNN, then a ConvGRU cell run over the frames with the same weights at every step.

    Args:
        num_classes: classes (0: no classifier).
        in_channels: video channels.
        widths: channels of the per-frame CNN.
        pool_size: max-pool kernel after each conv but the last.
        hidden_dim: ConvGRU channels.
    """

    def __init__(
        self,
        num_classes: int = 400,
        in_channels: int = 3,
        widths: tuple[int, ...] = (64, 128, 256),
        pool_size: int = 2,
        hidden_dim: int = 256,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_features = hidden_dim
        self.cnn = frame_cnn(in_channels, widths, pool_size)
        self.cell = ConvGRUCell(widths[-1], hidden_dim)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(hidden_dim, num_classes) if num_classes else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> hidden state maps after each frame (B, hidden, T, H', W')."""
        b, t = x.shape[0], x.shape[2]
        maps = rearrange(self.cnn(rearrange(x, "b c t h w -> (b t) c h w")), "(b t) d h w -> t b d h w", b=b)
        h = maps.new_zeros(b, self.num_features, *maps.shape[3:])
        states = []
        for step in range(t):
            h = self.cell(maps[step], h)
            states.append(h)
        return torch.stack(states, dim=2)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """The last state (B, hidden, H', W') pooled -> (B, num_classes) or (B, hidden)."""
        x = self.pool(features[:, :, -1]).flatten(1)
        return x if pre_logits else self.head(x)


@register_model(input_size=(3, 16, 112, 112))
def cnn_lstm(num_classes: int = 400) -> CNNLSTM:
    """CNN (64-128-256-512) + LSTM(512), many-to-one."""
    return CNNLSTM(num_classes=num_classes)


@register_model(input_size=(3, 4, 32, 32))
def cnn_lstm_tiny(num_classes: int = 5) -> CNNLSTM:
    """Tiny CNN+LSTM, many-to-one."""
    return CNNLSTM(num_classes=num_classes, widths=(4, 8), hidden_dim=8)


@register_model(input_size=(3, 16, 112, 112))
def cnn_lstm_seq(num_classes: int = 400) -> CNNLSTM:
    """CNN (64-128-256-512) + LSTM(512), many-to-many (one prediction per frame)."""
    return CNNLSTM(num_classes=num_classes, many_to_many=True)


@register_model(input_size=(3, 4, 32, 32))
def cnn_lstm_seq_tiny(num_classes: int = 5) -> CNNLSTM:
    """Tiny CNN+LSTM, many-to-many."""
    return CNNLSTM(num_classes=num_classes, widths=(4, 8), hidden_dim=8, many_to_many=True)


@register_model(input_size=(3, 16, 112, 112))
def conv_gru(num_classes: int = 400) -> RecurrentConvNet:
    """CNN (64-128-256) + ConvGRU(256) over 28x28 maps."""
    return RecurrentConvNet(num_classes=num_classes)


@register_model(input_size=(3, 4, 32, 32))
def conv_gru_tiny(num_classes: int = 5) -> RecurrentConvNet:
    """Tiny recurrent conv net."""
    return RecurrentConvNet(num_classes=num_classes, widths=(4, 8), hidden_dim=8)
