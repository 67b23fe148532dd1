"""Run every ensemble member over cells, in batches sized to a memory budget.

``advance`` runs a sequence of days from a given state (zero state when None) and returns the
last day's outputs and the end state: one day from yesterday's state is ``step`` mode, the 365
days up to a date from a zero state are ``window`` mode and also the cold-start spin-up.
``series`` returns every day's outputs (hydroDL's whole-series prediction). The network's
evaluation path is a plain ``nn.LSTM``, so CUDA runs cuDNN; bf16 autocast is optional.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from gsm3_ops import variables
from gsm3_ops.features import denormalise
from gsm3_ops.inference.state import States, state_array, state_tensor, stored_dtype
from gsm3_ops.model.bundle import Bundle
from gsm3_ops.model.network import GSM3Net

# float32 values held per cell and day while a batch runs: the time-major input copy and the
# network's input (n_in each), the input layer's output (H), the LSTM's gate pre-activations
# (4H) and output (H), and the heads (n_out); per cell once: h and c in and out, and copies.
_STATE_FLOATS = 8
# On CPU a one-day step runs about 1.6x faster per core in batches of 1-4 thousand cells than
# in one batch of a whole 256 x 256 tile: the 4H gate activations of a few thousand cells stay
# in cache (LSTMCell, hidden 256, measured on 2 AVX2 cores; docs/inference.md). GPUs are not
# capped: they want the largest batch the budget allows.
CPU_MAX_BATCH_CELLS = 4096
# On CPU a sequence runs in blocks of this many days, the state carried from block to block:
# the same numbers (tested), but each block's activations stay in cache, about 1.15x faster
# than one 365-day pass over a 424-cell batch, and faster than a bare nn.LSTM over the whole
# sequence (measured; docs/inference.md).
CPU_TIME_BLOCK_DAYS = 15


def _cell_of(lstm: torch.nn.LSTM) -> torch.nn.LSTMCell:
    """An ``LSTMCell`` sharing the weights of a one-layer ``lstm``."""
    cell = torch.nn.LSTMCell(lstm.input_size, lstm.hidden_size)
    cell.weight_ih, cell.weight_hh = lstm.weight_ih_l0, lstm.weight_hh_l0
    cell.bias_ih, cell.bias_hh = lstm.bias_ih_l0, lstm.bias_hh_l0
    return cell.eval()


def _cell_step(
    net: GSM3Net, cell: torch.nn.LSTMCell, x: torch.Tensor, state: tuple | None
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """``net`` on one day ``x`` (1, cells, n_in) through ``cell``: the same outputs and state
    layout as ``net(x, state)``."""
    hx = None if state is None else (state[0][0], state[1][0])
    h, c = cell(torch.relu(net.linear_in(x[0])), hx)
    return net.linear_out(h)[None], (h[None], c[None])


def _blocked(
    net: GSM3Net, x: torch.Tensor, state: tuple | None, days: int
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """``net`` over ``x`` (time, cells, n_in) in blocks of ``days`` days, carrying the state."""
    ys = []
    for t0 in range(0, x.shape[0], days):
        y, state = net(x[t0 : t0 + days], state)
        ys.append(y)
    return torch.cat(ys), state


@dataclass
class Engine:
    """A bundle on a device, with how many cells run at once.

    Parameters
    ----------
    bundle
        The ensemble; its networks are moved to ``device``.
    device
        ``cpu`` or ``cuda``.
    batch_cells
        Cells per batch; None picks the largest batch whose activations fit
        ``memory_budget_gb`` (on CPU at most ``CPU_MAX_BATCH_CELLS``).
    memory_budget_gb
        Bytes (in GB) a batch may hold in activations, inputs and states.
    autocast
        ``"bfloat16"`` runs the networks under bf16 autocast; ``"none"`` in float32.
    """

    bundle: Bundle
    device: torch.device
    batch_cells: int | None = None
    memory_budget_gb: float = 1.0
    autocast: str = "none"

    def __post_init__(self) -> None:
        if self.autocast not in ("none", "bfloat16"):
            raise ValueError(f"autocast must be 'none' or 'bfloat16', not {self.autocast!r}")
        for net in self.bundle.members:
            net.to(self.device).eval()
        # On CPU one step runs faster (~1.3x, measured) through ATen's LSTM cell than through
        # oneDNN's sequence kernel; the cells share the members' LSTM weights, so the maths is
        # the same. Longer sequences run in time blocks (CPU_TIME_BLOCK_DAYS). GPUs keep nn.LSTM
        # (cuDNN) over whole sequences.
        self._cells = None
        if self.device.type == "cpu":
            self._cells = [_cell_of(net.lstm.lstm) for net in self.bundle.members]

    def cells_per_batch(self, n_days: int) -> int:
        """Cells per batch for sequences of ``n_days`` days."""
        if self.batch_cells:
            return self.batch_cells
        spec = self.bundle.spec
        h = spec.hidden_size
        per_day = 2 * len(spec.inputs) + 6 * h + spec.n_outputs
        per_cell = 4 * (n_days * per_day + _STATE_FLOATS * h)
        n = max(1, int(self.memory_budget_gb * 1e9) // per_cell)
        return min(n, CPU_MAX_BATCH_CELLS) if self.device.type == "cpu" else n

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast == "none":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def _runs(
        self, x: np.ndarray, state: States | None
    ) -> Iterator[tuple[int, slice, torch.Tensor, torch.Tensor, torch.Tensor]]:
        """For each cell batch and member: (member, cell slice, outputs (days, cells, n_out),
        h, c), all torch tensors on the device, run from ``state`` (zero when None)."""
        n_cells, n_days = x.shape[:2]
        batch = self.cells_per_batch(n_days)
        for lo in range(0, n_cells, batch):
            cells = slice(lo, min(lo + batch, n_cells))
            xb = torch.from_numpy(np.ascontiguousarray(x[cells].transpose(1, 0, 2)))
            xb = xb.to(self.device)
            for m, net in enumerate(self.bundle.members):
                s = None
                if state is not None:
                    # bf16 bits cross to the device at half the bytes and widen there
                    s = tuple(
                        state_tensor(a[m, cells]).to(self.device).float()[None] for a in state
                    )
                with self._autocast():
                    if self._cells is not None and n_days == 1:
                        y, (h, c) = _cell_step(net, self._cells[m], xb, s)
                    elif self._cells is not None:
                        y, (h, c) = _blocked(net, xb, s, CPU_TIME_BLOCK_DAYS)
                    else:
                        y, (h, c) = net(xb, s)
                yield m, cells, y, h, c

    @torch.inference_mode()
    def advance(
        self, x: np.ndarray, state: States | None, state_dtype: str = "float32"
    ) -> tuple[np.ndarray, States]:
        """Run inputs ``x`` (cells, days, n_in) from ``state`` (zero state when None; float32
        or bf16 bits).

        Returns the last day's normalised outputs (member, cells, n_outputs) and the end state
        (h, c), each (member, cells, hidden), in ``state_dtype``'s stored form: float32, or for
        ``bfloat16`` each value rounded to nearest even, as uint16 bits.
        """
        if state_dtype not in ("float32", "bfloat16"):
            raise ValueError(f"state_dtype must be float32 or bfloat16, not {state_dtype!r}")
        n_members, n_cells = len(self.bundle.members), x.shape[0]
        out = np.empty((n_members, n_cells, self.bundle.spec.n_outputs), dtype=np.float32)
        shape = (n_members, n_cells, self.bundle.spec.hidden_size)
        h_out = np.empty(shape, dtype=stored_dtype(state_dtype))
        c_out = np.empty_like(h_out)
        for m, cells, y, h, c in self._runs(x, state):
            out[m, cells] = y[-1].float().cpu().numpy()
            h_out[m, cells] = state_array(h[0], state_dtype)
            c_out[m, cells] = state_array(c[0], state_dtype)
        return out, (h_out, c_out)

    @torch.inference_mode()
    def series(self, x: np.ndarray) -> np.ndarray:
        """Every day's normalised outputs (member, days, cells, n_outputs) from a zero state:
        hydroDL's whole-series prediction."""
        n_cells, n_days = x.shape[:2]
        shape = (len(self.bundle.members), n_days, n_cells, self.bundle.spec.n_outputs)
        out = np.empty(shape, dtype=np.float32)
        for m, cells, y, _, _ in self._runs(x, None):
            out[m, :, cells] = y.float().cpu().numpy()
        return out

    def product(self, outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ensemble mean and spread (m3/m3) of the product target from normalised outputs
        (member, ..., n_outputs); each member is clipped to the product's valid range."""
        spec = self.bundle.spec
        k = spec.output_index(spec.product_target)
        lo, hi = variables.PRODUCT_RANGE
        values = np.clip(denormalise(outputs[..., k], spec.product_target, spec.stats), lo, hi)
        sd = values.std(axis=0, ddof=1) if values.shape[0] > 1 else np.zeros_like(values[0])
        return values.mean(axis=0), sd
