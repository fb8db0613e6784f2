#!/usr/bin/env python3
"""Build a VoiceBank-DEMAND-like training set from clean speech and noise folders.

For machines without VoiceBank-DEMAND. Mixes the way that corpus was made: train SNRs
0/5/10/15 dB, test SNRs 2.5/7.5/12.5/17.5 dB, SNR relative to the *active* speech level,
speaker-disjoint and noise-disjoint train/test splits, a fixed seed. Writes the folder
layout that ``prepare_vctk.py`` reads (16 kHz mono PCM16).

    python recipes/VCTK/simulate_vbd.py --speech ../shared/data/speech \
        --noise ../shared/data/noise --out data/sim_vbd

Speakers: LibriSpeech-style names (``<spk>-<chapter>-<utt>``) give the speaker; any other
file belongs to its folder's group (one folder = one "speaker", conservative for
disjointness). Active level: P.56-style (the level c for which the mean power of 10 ms
frames above c - 15.9 dB equals c), a close, simpler stand-in for ITU-T P.56.

Real noise matters more than more speech: ``--train_noise_pairs CLEAN:NOISY`` adds the
noise of real paired recordings (noisy minus clean, e.g. VoiceBank-DEMAND train pairs,
whose noise is real DEMAND) to the *training* noises only. The test split does not
depend on training options: each split draws from its own seeded generator.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys

import numpy as np
from tqdm import tqdm

from speechbrain_sslse.audio import SAMPLE_RATE, AudioError, read_audio, resample, write_audio

AUDIO_EXT = (".wav", ".flac")
TRAIN_SNRS = (0.0, 5.0, 10.0, 15.0)
TEST_SNRS = (2.5, 7.5, 12.5, 17.5)
_LIBRI = re.compile(r"^(\d+)-\d+-\d+$")


def find_audio(root: str) -> list[str]:
    out = []
    for folder, _, files in os.walk(root):
        out += [os.path.join(folder, f) for f in files if f.lower().endswith(AUDIO_EXT)]
    return sorted(out)


def speaker_of(path: str, root: str) -> str:
    stem = os.path.splitext(os.path.basename(path))[0]
    m = _LIBRI.match(stem)
    return f"libri{m.group(1)}" if m else os.path.relpath(os.path.dirname(path), root)


def active_level(x: np.ndarray, rate: int = SAMPLE_RATE, margin_db: float = 15.9) -> float:
    """Active speech power (P.56-style fixed point over 10 ms frame powers)."""
    hop = rate // 100
    n = len(x) // hop
    if n == 0:
        return float(np.mean(x**2))
    power = np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1)
    level = float(np.mean(power))
    for _ in range(50):
        active = power[power >= level * 10 ** (-margin_db / 10)]
        new = float(np.mean(active)) if len(active) else level
        if abs(new - level) <= 1e-6 * max(level, 1e-20):
            break
        level = new
    return level


def load_16k(path: str) -> np.ndarray:
    wav, rate = read_audio(path)
    return resample(wav.mean(0, keepdim=True), rate)[0].numpy().astype(np.float64)


def mix(clean: np.ndarray, noise: np.ndarray, snr_db: float, rng: random.Random) -> tuple[np.ndarray, np.ndarray]:
    """(clean, noisy) with noise scaled to ``snr_db`` below the active speech level;
    both rescaled together if the mixture would clip."""
    if len(noise) < len(clean):
        noise = np.tile(noise, -(-len(clean) // len(noise)))
    start = rng.randrange(0, len(noise) - len(clean) + 1)
    seg = noise[start : start + len(clean)]
    seg_power = max(float(np.mean(seg**2)), 1e-20)
    seg = seg * np.sqrt(active_level(clean) / (seg_power * 10 ** (snr_db / 10)))
    noisy = clean + seg
    peak = max(np.abs(noisy).max(), np.abs(clean).max())
    if peak > 0.99:
        clean, noisy = clean * 0.99 / peak, noisy * 0.99 / peak
    return clean, noisy


def pair_noises(spec: str) -> dict[str, np.ndarray]:
    """Noise of sample-aligned pairs in ``CLEAN:NOISY`` folders (same file names): noisy - clean."""
    clean_dir, sep, noisy_dir = spec.rpartition(":")
    if not sep or not os.path.isdir(clean_dir) or not os.path.isdir(noisy_dir):
        raise ValueError(f"--train_noise_pairs wants CLEAN:NOISY folders, got {spec!r}")
    out = {}
    for noisy_path in find_audio(noisy_dir):
        name = os.path.basename(noisy_path)
        clean_path = os.path.join(clean_dir, name)
        if not os.path.exists(clean_path):
            raise ValueError(f"no clean file for {noisy_path} in {clean_dir}")
        clean, noisy = load_16k(clean_path), load_16k(noisy_path)
        if len(clean) != len(noisy):
            raise ValueError(f"{name}: clean and noisy lengths differ ({len(clean)} vs {len(noisy)}); pairs must be aligned")
        out[f"pair:{name}"] = noisy - clean
    if not out:
        raise ValueError(f"no audio files in {noisy_dir}")
    return out


def split(items: list[str], test_fraction: float, rng: random.Random) -> tuple[list[str], list[str]]:
    items = sorted(items)
    rng.shuffle(items)
    n_test = max(1, round(test_fraction * len(items)))
    return sorted(items[n_test:]), sorted(items[:n_test])


def simulate(
    speech_roots: list[str], noise_roots: list[str], out: str, seed: int = 999, test_fraction: float = 0.15,
    noise_test_fraction: float = 0.3, train_mixtures: int = 1, max_seconds: float = 12.0,
    train_noise_pairs: tuple[str, ...] = (),
) -> dict:
    split_rng = random.Random(seed)
    by_speaker: dict[str, list[str]] = {}
    for root in speech_roots:
        for path in find_audio(root):
            by_speaker.setdefault(f"{os.path.basename(os.path.normpath(root))}/{speaker_of(path, root)}", []).append(path)
    noises = [p for root in noise_roots for p in find_audio(root)]
    if len(by_speaker) < 2 or len(noises) < 2:
        raise ValueError("need at least two speakers and two noise files for disjoint splits")
    train_spk, test_spk = split(list(by_speaker), test_fraction, split_rng)
    train_noise, test_noise = split(noises, noise_test_fraction, split_rng)
    noise_cache = {p: load_16k(p) for p in noises}
    for spec in train_noise_pairs:  # training only: never in the test split
        extra = pair_noises(spec)
        noise_cache.update(extra)
        train_noise = train_noise + sorted(extra)
    spk_index = {s: i for i, s in enumerate(sorted(by_speaker))}
    summary = {"seed": seed, "train": [], "test": []}
    for subset, speakers, noise_set, snrs, reps in (
        ("train", train_spk, train_noise, TRAIN_SNRS, train_mixtures),
        ("test", test_spk, test_noise, TEST_SNRS, 1),
    ):
        dirs = ("clean_trainset_28spk_wav", "noisy_trainset_28spk_wav") if subset == "train" else ("clean_testset_wav", "noisy_testset_wav")
        rng = random.Random(f"{seed}-{subset}")  # the test split ignores training options
        jobs = [(s, p, r) for s in speakers for p in sorted(by_speaker[s]) for r in range(reps)]
        for k, (spk, path, rep) in enumerate(tqdm(jobs, desc=f"simulate {subset}", disable=None)):
            try:
                clean = load_16k(path)[: int(max_seconds * SAMPLE_RATE)]
            except AudioError as err:
                print(f"skipped: {err}", file=sys.stderr)
                continue
            noise_path = rng.choice(noise_set)
            snr = snrs[k % len(snrs)]
            c, n = mix(clean, noise_cache[noise_path], snr, rng)
            uid = f"s{spk_index[spk]:03d}_{k:05d}"
            write_audio(os.path.join(out, dirs[0], uid + ".wav"), c.astype(np.float32), subtype="PCM_16")
            write_audio(os.path.join(out, dirs[1], uid + ".wav"), n.astype(np.float32), subtype="PCM_16")
            summary[subset].append({"id": uid, "speaker": spk, "speech": path, "noise": os.path.basename(noise_path), "snr_db": snr})
    summary["train_noises"] = [os.path.basename(p) for p in train_noise]
    summary["test_noises"] = [os.path.basename(p) for p in test_noise]
    with open(os.path.join(out, "simulation.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--speech", nargs="+", required=True, help="clean speech folder(s)")
    ap.add_argument("--noise", nargs="+", required=True, help="noise folder(s)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=999)
    ap.add_argument("--test_fraction", type=float, default=0.15, help="share of speakers held out for test")
    ap.add_argument("--noise_test_fraction", type=float, default=0.3, help="share of noise files held out for test")
    ap.add_argument("--train_mixtures", type=int, default=1, help="mixtures per training utterance")
    ap.add_argument("--train_noise_pairs", nargs="*", default=[], metavar="CLEAN:NOISY",
                    help="paired folders whose noise (noisy - clean) joins the training noises")
    ap.add_argument("--max_seconds", type=float, default=12.0, help="truncate longer utterances")
    args = ap.parse_args(argv)
    s = simulate(args.speech, args.noise, args.out, args.seed, args.test_fraction, args.noise_test_fraction,
                 args.train_mixtures, args.max_seconds, tuple(args.train_noise_pairs))
    print(f"train {len(s['train'])} pairs, test {len(s['test'])} pairs -> {args.out}")
    print(f"train noises: {s['train_noises']}\ntest noises: {s['test_noises']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
