#!/usr/bin/env python3
"""Clean-noisy distance per SSL layer vs learned layer weights (paper Sec. 3.3, Figs. 2-3);
the same as the ``sslse-analyze`` command.

    python recipes/VCTK/analyze.py --source results/<experiment>/999 \
        --manifest results/<experiment>/999/train.json --out analysis/ --pairs 50
    python recipes/VCTK/analyze.py --source microsoft/wavlm-base-plus --compare results/<pf run>/999 \
        --manifest CLEAN_DIR:NOISY_DIR --out analysis_ft/
"""
import sys

from speechbrain_sslse.cli import analyze_main as main

if __name__ == "__main__":
    sys.exit(main())
