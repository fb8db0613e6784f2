"""Training-example transforms of the method: random fixed-length crops and random gain."""
from __future__ import annotations

import torch

CROP_SAMPLES = 20480  # 1.28 s at 16 kHz
GAIN_RANGE = (1.0, 2.5)


def random_crop_pair(
    noisy: torch.Tensor, clean: torch.Tensor, crop: int = CROP_SAMPLES, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random ``crop``-sample window of both signals; shorter pairs are tiled
    (repeated end to end) to fill the crop, as in the authors' code."""
    if noisy.shape[-1] != clean.shape[-1]:
        raise ValueError(f"noisy ({noisy.shape[-1]}) and clean ({clean.shape[-1]}) lengths differ")
    n = noisy.shape[-1]
    if n == 0:
        raise ValueError("cannot crop an empty signal")
    if n < crop:
        reps = -(-crop // n)
        return noisy.repeat(reps)[:crop], clean.repeat(reps)[:crop]
    start = int(torch.randint(0, n - crop + 1, (1,), generator=generator))
    return noisy[start : start + crop], clean[start : start + crop]


def random_gain(
    noisy: torch.Tensor, clean: torch.Tensor, low: float = GAIN_RANGE[0], high: float = GAIN_RANGE[1],
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both signals times one gain drawn uniformly from [low, high)."""
    gain = low + (high - low) * float(torch.rand((), generator=generator))
    return noisy * gain, clean * gain
