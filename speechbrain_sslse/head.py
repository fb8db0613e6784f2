"""The masker head: Linear -> 2-layer BLSTM (directions summed) -> Linear -> sigmoid."""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .features import N_BINS


class BLSTMMasker(nn.Module):
    """Predicts a [0, 1] mask over the 201 log1p bins.

    As in the authors' code: no dropout, Xavier-normal Linear weights with zero bias,
    default LSTM init, forward and backward outputs summed (not concatenated).
    Padded batches are packed so the backward LSTM never reads padding.
    """

    def __init__(self, input_size: int, hidden_size: int = 256, num_layers: int = 2, output_size: int = N_BINS):
        super().__init__()
        self.hidden_size = hidden_size
        self.proj = nn.Linear(input_size, hidden_size)
        self.blstm = nn.LSTM(hidden_size, hidden_size, num_layers, batch_first=True, bidirectional=True)
        self.out = nn.Linear(hidden_size, output_size)
        for lin in (self.proj, self.out):
            nn.init.xavier_normal_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """x: (batch, frames, input_size); lengths: valid frames per item (None = all)."""
        h = self.proj(x)
        with _single_thread_when_inferring_on_cpu(h):
            if lengths is not None and bool((lengths < x.shape[1]).any()):
                packed = pack_padded_sequence(h, lengths.cpu(), batch_first=True, enforce_sorted=False)
                h, _ = pad_packed_sequence(self.blstm(packed)[0], batch_first=True, total_length=x.shape[1])
            else:
                h, _ = self.blstm(h)
        h = h[..., : self.hidden_size] + h[..., self.hidden_size :]
        return torch.sigmoid(self.out(h))


@contextmanager
def _single_thread_when_inferring_on_cpu(x: torch.Tensor):
    """The LSTM recurrence is thousands of tiny matmuls; on CPU, waking OpenMP threads for
    each one costs more than it saves (10 s, batch 1: 0.29 s with 2 threads, 0.07 s with 1;
    benchmarks/inference.py). Inference only: training keeps every thread for backward."""
    if x.device.type != "cpu" or torch.is_grad_enabled() or torch.get_num_threads() == 1:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
