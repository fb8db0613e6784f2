#!/usr/bin/env python3
"""Evaluate a trained recipe folder or an exported model on a test manifest, or score any
folder of enhanced wavs (same as the ``sslse-evaluate`` command).

    python recipes/VCTK/evaluate.py enhance --model results/smoke/999 \
        --manifest results/smoke/999/test.json --out results/smoke/999/eval
    python recipes/VCTK/evaluate.py score --enhanced other_system/ --clean clean_testset_wav/ \
        --noisy noisy_testset_wav/ --out eval_other
"""
import sys

from speechbrain_sslse.cli import evaluate_main

if __name__ == "__main__":
    sys.exit(evaluate_main())
