#!/usr/bin/env python3
"""VoiceBank-DEMAND, or your own CLEAN_DIR:NOISY_DIR pairs -> SpeechBrain JSON manifests at
16 kHz (the command line of ``speechbrain_sslse.data_prep``, which documents the splits).

    python recipes/VCTK/prepare_vctk.py DATA_FOLDER SAVE_FOLDER [--valid_split speakers]
    python recipes/VCTK/prepare_vctk.py CLEAN_DIR:NOISY_DIR SAVE_FOLDER [--test_pairs CLEAN_DIR:NOISY_DIR]
"""
from __future__ import annotations

import argparse
import sys

from speechbrain_sslse import data_prep
from speechbrain_sslse.data_prep import VALID_SPLITS, PrepError, prepare_vctk


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=data_prep.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_folder", help="VoiceBank-DEMAND folder, or your own pairs as CLEAN_DIR:NOISY_DIR")
    parser.add_argument("save_folder")
    parser.add_argument("--valid_split", default="authors", choices=list(VALID_SPLITS))
    parser.add_argument("--valid_ratio", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=999)
    parser.add_argument("--test_pairs", metavar="CLEAN_DIR:NOISY_DIR", help="test pairs (files with matching names)")
    args = parser.parse_args(argv)
    try:
        paths = prepare_vctk(args.data_folder, args.save_folder, args.valid_split, args.valid_ratio, args.seed,
                             test_pairs=args.test_pairs)
    except PrepError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("\n".join(f"{k}: {v}" for k, v in paths.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
