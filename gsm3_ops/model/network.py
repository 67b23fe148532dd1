"""hydroDL's LSTM: Linear(n_in, H) + ReLU -> LSTM(H, H) with weight-drop -> Linear(H, n_out).

Tensors are time-major, (time, batch, features), as in hydroDL. Weight-drop (hydroDL's
``drW``) multiplies the input and recurrent weight matrices by one Bernoulli mask per forward
pass while training, scaled by 1 / (1 - p); evaluation uses the plain weights.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

State = tuple[torch.Tensor, torch.Tensor]


class WeightDropLSTM(nn.Module):
    """A one-layer LSTM whose weight matrices are dropped out during training."""

    def __init__(self, input_size: int, hidden_size: int, dropout: float) -> None:
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden_size)
        self.dropout = dropout

    def forward(
        self, x: torch.Tensor, state: State | None = None, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, State]:
        """Run the sequence ``x`` (time, batch, input) from ``state`` (zeros when None)."""
        if not (self.training and self.dropout > 0):
            return self.lstm(x, state)
        return functional_call(self.lstm, self.dropped_weights(generator), (x, state))

    def dropped_weights(self, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """The LSTM's parameters with one fresh weight-drop mask on each weight matrix."""
        keep = 1.0 - self.dropout
        params = {}
        for name, p in self.lstm.named_parameters():
            if name.startswith("weight_"):
                # uniform < keep: on the CPU the same draws and mask as torch.bernoulli
                # (tested), in half the time
                mask = torch.rand(p.shape, generator=generator, device=p.device) < keep
                p = p * mask / keep
            params[name] = p
        return params


class GSM3Net(nn.Module):
    """The GSM3 / hydroDL network with ``n_out`` heads (one per target)."""

    def __init__(self, n_inputs: int, n_outputs: int, hidden_size: int = 256, dropout: float = 0.5):
        super().__init__()
        self.linear_in = nn.Linear(n_inputs, hidden_size)
        self.lstm = WeightDropLSTM(hidden_size, hidden_size, dropout)
        self.linear_out = nn.Linear(hidden_size, n_outputs)

    def forward(
        self, x: torch.Tensor, state: State | None = None, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, State]:
        """Predict (time, batch, n_out) from inputs (time, batch, n_in); return the end state."""
        h, state = self.lstm(torch.relu(self.linear_in(x)), state, generator)
        return self.linear_out(h), state
