#!/usr/bin/env python3
"""How long scoring takes: N utterances of S seconds, all six metrics, W worker processes.

    python benchmarks/score_speed.py --n 100 --seconds 3 --workers 2

Pairs are 3 s windows of the embedded mini set's real clean/noisy pairs (written to a temp
folder), scored through the same path as ``sslse-evaluate``. Prints a table and JSON.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
import time

import soundfile as sf

from speechbrain_sslse.evaluation import score_pairs

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import write_json  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MINI = os.path.join(ROOT, "tests", "samples", "mini_vbd")


def make_pairs(folder: str, n: int, seconds: float) -> list[tuple[str, str, str]]:
    size = int(seconds * 16000)
    sources = []
    for clean in sorted(glob.glob(os.path.join(MINI, "clean_*", "*.wav"))):
        noisy = clean.replace("clean_", "noisy_")
        c, _ = sf.read(clean, dtype="float32")
        x, _ = sf.read(noisy, dtype="float32")
        for start in range(0, len(c) - size + 1, size // 2):
            sources.append((c[start : start + size], x[start : start + size]))
    jobs = []
    for i in range(n):
        c, x = sources[i % len(sources)]
        cp, xp = os.path.join(folder, f"c{i}.wav"), os.path.join(folder, f"x{i}.wav")
        sf.write(cp, c, 16000)
        sf.write(xp, x, 16000)
        jobs.append((str(i), cp, xp))
    return jobs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        jobs = make_pairs(tmp, args.n, args.seconds)
        score_pairs(jobs[:2], workers=1)  # warm-up (imports, FFT plans)
        t0 = time.perf_counter()
        rows = score_pairs(jobs, workers=args.workers)
        wall = time.perf_counter() - t0
    failed = sum(1 for r in rows if r["error"])
    result = {"utterances": args.n, "seconds_each": args.seconds, "workers": args.workers,
              "cpu_count": os.cpu_count(), "wall_s": round(wall, 2), "per_utt_ms": round(1000 * wall / args.n, 1),
              "failed": failed}
    print("| utterances | seconds each | workers | wall (s) | per utterance (ms) |")
    print("|---:|---:|---:|---:|---:|")
    print(f"| {args.n} | {args.seconds} | {args.workers} | {result['wall_s']} | {result['per_utt_ms']} |")
    print(json.dumps(result))
    write_json(args.json, result)


if __name__ == "__main__":
    main()
