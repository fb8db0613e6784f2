"""Example transforms and splits of the method, as the authors' data loader draws them.

* training: one random 1.28 s crop (short utterances tiled first) and one random gain,
  reproducible from (seed, epoch, example index) (:class:`EpochCrops`);
* validation (``valid_mode: crop``): one random 1.28 s crop per utterance and epoch, no gain,
  reproducible from (seed, epoch, utterance id);
* the validation split: scikit-learn's ``train_test_split(..., test_size=0.05,
  random_state=13162)`` over the sorted noisy training files, without scikit-learn.
"""
from __future__ import annotations

import hashlib
import math
import random
from typing import Sequence, TypeVar

import numpy as np
import torch

CROP_SAMPLES = 20480  # 1.28 s at 16 kHz
GAIN_RANGE = (1.0, 2.5)
AUTHORS_VALID_FRACTION = 0.05
AUTHORS_RANDOM_STATE = 13162

T = TypeVar("T")


def random_crop_pair(
    noisy: torch.Tensor, clean: torch.Tensor, crop: int = CROP_SAMPLES, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random ``crop``-sample window of both signals, drawn as the authors do.

    A signal of at most ``crop`` samples is first tiled to ``crop // n + 1`` copies (so it
    is always longer than the crop); the window then starts at an offset drawn uniformly
    from ``[0, L - crop]``, L the (tiled) length. (The authors' ``torch.randint(0, L - crop)``
    never draws the last offset; keeping it drawable keeps the draws of utterances longer
    than the crop what they were before tiling was fixed: one offset in thousands.)
    """
    if noisy.shape[-1] != clean.shape[-1]:
        raise ValueError(f"noisy ({noisy.shape[-1]}) and clean ({clean.shape[-1]}) lengths differ")
    n = noisy.shape[-1]
    if n == 0:
        raise ValueError("cannot crop an empty signal")
    if n <= crop:
        reps = crop // n + 1
        noisy, clean = noisy.repeat(reps), clean.repeat(reps)
        n *= reps
    start = int(torch.randint(0, n - crop + 1, (1,), generator=generator))
    return noisy[start : start + crop], clean[start : start + crop]


def random_gain(
    noisy: torch.Tensor, clean: torch.Tensor, low: float = GAIN_RANGE[0], high: float = GAIN_RANGE[1],
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both signals times one gain drawn uniformly from [low, high)."""
    gain = low + (high - low) * float(torch.rand((), generator=generator))
    return noisy * gain, clean * gain


def epoch_generator(seed: int, epoch: int, key: str) -> torch.Generator:
    """A torch generator seeded from (seed, epoch, key) alone: the same draw in any process,
    worker count or resumed run, a different one each epoch."""
    digest = hashlib.sha256(f"{seed}/{epoch}/{key}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def validation_crop_pair(
    noisy: torch.Tensor, clean: torch.Tensor, seed: int, epoch: int, key: str, crop: int = CROP_SAMPLES
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validation example as the authors compute the validation loss: one random ``crop``
    window (tiled if shorter, as in training) and no gain. The authors draw a fresh crop
    per utterance each epoch from the global RNG; here the draw is a function of
    (seed, epoch, utterance id), so it is fresh each epoch and reproducible."""
    return random_crop_pair(noisy, clean, crop, generator=epoch_generator(seed, epoch, key))


class EpochCrops(torch.utils.data.Dataset):
    """The static training set as the method draws it: each example one random ``crop`` window
    of a pair (tiled if shorter) times one random gain, ``repeats`` examples per pair and epoch.

    The authors draw both from the global RNG, which a resumed run reseeds: its epochs would
    repeat the crops of the first ones. Here example ``index`` of epoch ``e`` is a function of
    (seed, e, index) alone, as :class:`~speechbrain_sslse.mixing.DynamicMixDataset`'s
    mixtures are: the same after a resume, in any worker, and different for each repeat of a
    pair; DDP ranks sample disjoint indices, so they draw different crops (but for the few
    indices a DistributedSampler repeats to even out the last round). Call :meth:`set_epoch`
    before each epoch (loader workers must not persist across epochs).
    """

    def __init__(self, pairs: Sequence[dict], crop: int = CROP_SAMPLES, gain_range: Sequence[float] = GAIN_RANGE,
                 seed: int = 0, repeats: int = 1) -> None:
        if len(pairs) == 0 or repeats < 1 or crop < 1:
            raise ValueError("EpochCrops needs pairs, repeats >= 1 and crop >= 1")
        self.pairs, self.crop, self.seed, self.repeats = pairs, int(crop), int(seed), int(repeats)
        self.gain_range = (float(gain_range[0]), float(gain_range[1]))
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.pairs) * self.repeats

    def __getitem__(self, index: int) -> dict:
        item = self.pairs[index % len(self.pairs)]  # "id", "noisy_sig", "clean_sig": whole signals
        generator = epoch_generator(self.seed, self.epoch, f"train/{index}")
        noisy, clean = random_crop_pair(item["noisy_sig"], item["clean_sig"], self.crop, generator)
        noisy, clean = random_gain(noisy, clean, *self.gain_range, generator=generator)
        return {"id": item["id"], "noisy_sig": noisy, "clean_sig": clean}


def authors_split(
    items: Sequence[T], test_size: float = AUTHORS_VALID_FRACTION, random_state: int = AUTHORS_RANDOM_STATE
) -> tuple[list[T], list[T]]:
    """(train, valid) exactly as ``sklearn.model_selection.train_test_split(items,
    test_size=test_size, random_state=random_state)`` returns them (shuffle on, no stratify):
    ``ShuffleSplit`` takes ``ceil(test_size * n)`` test items, permutes the indices with
    numpy's legacy ``RandomState(random_state).permutation(n)`` (a stream numpy keeps
    stable), and returns the items at the permutation's tail (train) and head (valid),
    in permutation order. Checked against scikit-learn in tests/test_fidelity.py."""
    n = len(items)
    n_valid = math.ceil(test_size * n)
    if not 0 < n_valid < n:
        raise ValueError(f"a {test_size} validation fraction of {n} items leaves an empty split")
    order = np.random.RandomState(random_state).permutation(n)
    return [items[i] for i in order[n_valid:]], [items[i] for i in order[:n_valid]]


def separate_rank_streams(seed: int, rank: int) -> None:
    """Moves DDP rank ``rank`` > 0 to its own global random stream (torch, numpy, random).

    SpeechBrain seeds every rank with the same seed (so parameters start equal), and what
    still draws from the global stream (dropout, an encoder's own time masking in training)
    would draw the same on every rank. Called after the model is built; rank 0 keeps the
    single-process stream, so a one-GPU run is unchanged. (Training crops and gains, dynamic
    mixing and validation crops draw from ``epoch_generator`` / their own generators and are
    not affected.)"""
    if rank <= 0:
        return
    derived = int.from_bytes(hashlib.sha256(f"{seed}/rank/{rank}".encode()).digest()[:4], "little")
    torch.manual_seed(derived)
    np.random.seed(derived)
    random.seed(derived)
