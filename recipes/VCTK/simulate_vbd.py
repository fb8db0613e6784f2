#!/usr/bin/env python3
"""Build a VoiceBank-DEMAND-like training set from clean speech and noise folders (the
command line of ``speechbrain_sslse.simulation``, which documents how it mixes).

    python recipes/VCTK/simulate_vbd.py --speech ../shared/data/speech \
        --noise ../shared/data/noise --out data/sim_vbd
"""
from __future__ import annotations

import argparse
import sys

from speechbrain_sslse import simulation
from speechbrain_sslse.audio import AudioError
from speechbrain_sslse.simulation import simulate


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=simulation.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--speech", nargs="+", required=True, help="clean speech folder(s)")
    ap.add_argument("--noise", nargs="+", required=True, help="noise folder(s)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=999)
    ap.add_argument("--test_fraction", type=float, default=0.15, help="share of speakers held out for test")
    ap.add_argument("--noise_test_fraction", type=float, default=0.3, help="share of noise files held out for test")
    ap.add_argument("--train_mixtures", type=int, default=1, help="mixtures per training utterance")
    ap.add_argument("--train_noise_pairs", nargs="*", default=[], metavar="CLEAN:NOISY",
                    help="paired folders whose noise (noisy - clean) joins the training noises")
    ap.add_argument("--valid_fraction", type=float, default=0.0,
                    help="share of training speakers held out for a validation split (0: none; prepare_vctk then splits utterances)")
    ap.add_argument("--noise_valid_fraction", type=float, default=0.0,
                    help="with --valid_fraction: share of training noises held out for validation")
    ap.add_argument("--max_seconds", type=float, default=12.0, help="truncate longer utterances")
    ap.add_argument("--noise_groups", choices=["file", "folder"], default="file",
                    help="folder: the files of one noise subfolder are one recording (DEMAND channels, pieces) "
                         "and stay on one side of every split")
    ap.add_argument("--speaker_level", choices=["folder", "top"], default="folder",
                    help="a speaker is the folder holding a file, or (top) its first folder below --speech "
                         "(speaker/session/ layouts); LibriSpeech / LibriTTS names give the reader either way")
    args = ap.parse_args(argv)
    try:
        s = simulate(args.speech, args.noise, args.out, args.seed, args.test_fraction, args.noise_test_fraction,
                     args.train_mixtures, args.max_seconds, tuple(args.train_noise_pairs),
                     args.valid_fraction, args.noise_valid_fraction, args.noise_groups, args.speaker_level)
    except (ValueError, AudioError) as err:  # one line, before or instead of a traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"train {len(s['train'])} pairs, valid {len(s['valid'])}, test {len(s['test'])} pairs -> {args.out}")
    for subset in ("train", "valid", "test"):
        print(f"{subset} noises: {s[f'{subset}_noises']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
