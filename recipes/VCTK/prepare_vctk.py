"""VoiceBank-DEMAND (Valentini-Botinhao 2017) -> SpeechBrain JSON manifests at 16 kHz.

Reads the official layout (``clean_trainset_28spk_wav/``, ``noisy_trainset_28spk_wav/``,
``clean_testset_wav/``, ``noisy_testset_wav/``) at 48 kHz, or the same folders already at
16 kHz. 48 kHz files are resampled once into ``<save_folder>/wav16k/``.

Validation split:
``authors`` = the authors' 5 %: scikit-learn's ``train_test_split(files, test_size=0.05,
random_state=13162)`` over the noisy training files sorted by name (their ``get_filepaths``
returns ``sorted`` paths of one folder), reproduced without scikit-learn
(``speechbrain_sslse.data.authors_split``); both manifests keep its order;
``random`` = a different 5 %, drawn with ``random.Random(seed)`` from the sorted ids;
``speakers`` = speakers p226 + p287 (SpeechBrain / s3prl recipes);
``folder`` = the pre-rendered ``clean_validset_wav`` / ``noisy_validset_wav`` pair written
by ``simulate_vbd.py --valid_fraction`` (speaker- and noise-disjoint from training).
The split used is recorded in ``<save_folder>/prep.json``; a later call that finds the
manifests keeps them, and warns if it was asked for another split.

Usage: python recipes/VCTK/prepare_vctk.py DATA_FOLDER SAVE_FOLDER [--valid_split speakers]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys

import soundfile as sf
from tqdm import tqdm

from speechbrain_sslse.audio import SAMPLE_RATE, AudioError, read_audio, resample, write_audio
from speechbrain_sslse.data import AUTHORS_RANDOM_STATE, authors_split

logger = logging.getLogger(__name__)

SUBSETS = {
    "train": ("clean_trainset_28spk_wav", "noisy_trainset_28spk_wav"),
    "test": ("clean_testset_wav", "noisy_testset_wav"),
    "valid": ("clean_validset_wav", "noisy_validset_wav"),  # simulate_vbd.py --valid_fraction
}
VALID_SPEAKERS = ("p226", "p287")
VALID_SPLITS = ("authors", "random", "speakers", "folder")


class PrepError(ValueError):
    """The data folder cannot be turned into manifests; the message says why."""


def _wavs(folder: str) -> dict[str, str]:
    if not os.path.isdir(folder):
        raise PrepError(f"missing folder {folder}")
    names = {os.path.splitext(f)[0]: os.path.join(folder, f) for f in sorted(os.listdir(folder)) if f.lower().endswith(".wav")}
    if not names:
        raise PrepError(f"no .wav files in {folder}")
    return names


def _to_16k(path: str, out_folder: str) -> tuple[str, int]:
    """Path of a 16 kHz mono copy (the file itself when it already is) and its length.
    Every file is read once, so unreadable, empty or NaN/Inf files are refused here,
    not in the middle of training."""
    try:
        wav, rate = read_audio(path)
    except AudioError as err:
        raise PrepError(str(err)) from None
    if wav.shape[0] != 1:
        raise PrepError(f"{path}: has {wav.shape[0]} channels; VoiceBank-DEMAND files are mono")
    if rate == SAMPLE_RATE:
        return os.path.abspath(path), wav.shape[1]
    target = os.path.join(out_folder, os.path.basename(path))
    if not os.path.exists(target):
        write_audio(target, resample(wav, rate)[0])
    return os.path.abspath(target), sf.info(target).frames


def _pairs(data_folder: str, save_folder: str, subset: str) -> dict[str, dict]:
    clean_dir, noisy_dir = (os.path.join(data_folder, d) for d in SUBSETS[subset])
    clean, noisy = _wavs(clean_dir), _wavs(noisy_dir)
    if set(clean) != set(noisy):
        only_c, only_n = sorted(set(clean) - set(noisy)), sorted(set(noisy) - set(clean))
        raise PrepError(
            f"{subset}: clean and noisy files do not pair up; "
            f"only clean: {only_c[:5]}{'...' if len(only_c) > 5 else ''}, "
            f"only noisy: {only_n[:5]}{'...' if len(only_n) > 5 else ''}"
        )
    entries = {}
    for uid in tqdm(sorted(clean), desc=f"prepare {subset}", disable=None):
        c_path, c_len = _to_16k(clean[uid], os.path.join(save_folder, "wav16k", SUBSETS[subset][0]))
        n_path, n_len = _to_16k(noisy[uid], os.path.join(save_folder, "wav16k", SUBSETS[subset][1]))
        if c_len != n_len:
            raise PrepError(f"{subset}/{uid}: clean has {c_len} samples, noisy {n_len}; pairs must be aligned")
        entries[uid] = {
            "clean_wav": c_path,
            "noisy_wav": n_path,
            "length": c_len / SAMPLE_RATE,
            "spk": uid.split("_")[0],
        }
    return entries


def split_valid(train: dict[str, dict], valid_split: str, valid_ratio: float, seed: int) -> tuple[dict, dict]:
    """(train, valid): the authors' split, a seeded random utterance split or the p226 + p287
    speaker split."""
    if valid_split == "authors":
        # the authors' list: noisy file paths of one folder, sorted (full paths share the
        # folder, so the order is that of the file names)
        order = sorted(train, key=lambda u: os.path.basename(train[u]["noisy_wav"]))
        try:
            train_ids, valid_ids = authors_split(order, valid_ratio, AUTHORS_RANDOM_STATE)
        except ValueError as err:
            raise PrepError(f"authors' split: {err}") from None
        return {u: train[u] for u in train_ids}, {u: train[u] for u in valid_ids}
    if valid_split == "random":
        ids = sorted(train)
        n_valid = max(1, round(valid_ratio * len(ids)))
        valid_ids = set(random.Random(seed).sample(ids, n_valid))
    elif valid_split == "speakers":
        valid_ids = {u for u, e in train.items() if e["spk"] in VALID_SPEAKERS}
        if not valid_ids:
            raise PrepError(f"no utterances of validation speakers {VALID_SPEAKERS} in the train set")
    else:
        raise PrepError(f"valid_split must be one of {VALID_SPLITS}, got {valid_split!r}")
    rest = {u: e for u, e in train.items() if u not in valid_ids}
    if not rest:
        raise PrepError("the validation split left no training utterances")
    return rest, {u: train[u] for u in sorted(valid_ids)}


def prepare_vctk(
    data_folder: str,
    save_folder: str,
    valid_split: str = "authors",
    valid_ratio: float = 0.05,
    seed: int = 999,
    skip_prep: bool = False,
) -> dict[str, str]:
    """Writes train.json / valid.json / test.json into save_folder; returns their paths."""
    paths = {s: os.path.join(save_folder, f"{s}.json") for s in ("train", "valid", "test")}
    record = os.path.join(save_folder, "prep.json")
    split = {"valid_split": valid_split, "valid_ratio": valid_ratio,
             "random_state": AUTHORS_RANDOM_STATE if valid_split == "authors" else seed}
    if valid_split in ("speakers", "folder"):
        split = {"valid_split": valid_split}
    if skip_prep or all(os.path.exists(p) for p in paths.values()):
        if not skip_prep and os.path.exists(record):
            with open(record, encoding="utf-8") as f:
                used = json.load(f)
            if used != split:
                logger.warning("%s: keeping the manifests already there, made with %s (asked: %s); "
                               "delete them to re-split", save_folder, used, split)
        return paths
    if valid_split not in VALID_SPLITS:
        raise PrepError(f"valid_split must be one of {VALID_SPLITS}, got {valid_split!r}")
    if not os.path.isdir(data_folder):
        raise PrepError(f"data folder {data_folder} does not exist")
    os.makedirs(save_folder, exist_ok=True)
    if valid_split == "folder":
        train, valid = _pairs(data_folder, save_folder, "train"), _pairs(data_folder, save_folder, "valid")
    else:
        train, valid = split_valid(_pairs(data_folder, save_folder, "train"), valid_split, valid_ratio, seed)
    sets = {"train": train, "valid": valid, "test": _pairs(data_folder, save_folder, "test")}
    for name, entries in sets.items():
        tmp = paths[name] + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(entries, f, indent=2)
        os.replace(tmp, paths[name])
        logger.info("%s: %d utterances -> %s", name, len(entries), paths[name])
    with open(record, "w", encoding="utf-8") as f:
        json.dump(split, f)
    logger.info("validation split: %s", split)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_folder")
    parser.add_argument("save_folder")
    parser.add_argument("--valid_split", default="authors", choices=list(VALID_SPLITS))
    parser.add_argument("--valid_ratio", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=999)
    args = parser.parse_args(argv)
    try:
        paths = prepare_vctk(args.data_folder, args.save_folder, args.valid_split, args.valid_ratio, args.seed)
    except PrepError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("\n".join(f"{k}: {v}" for k, v in paths.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
