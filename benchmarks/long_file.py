#!/usr/bin/env python3
"""Peak memory and speed of ``EnhanceSSL.enhance_file`` on a long input (default 60 min).

    python benchmarks/long_file.py --source pretrained/sslse-log1p-sim --minutes 60
    python benchmarks/long_file.py --model wavlm_base_ws_log1p --minutes 60 --precision bf16

The file is the embedded mini set's real noisy speech tiled to length (16 kHz PCM16). The
enhancement runs in a child process whose peak resident memory (ru_maxrss) is reported,
so the figure includes Python, torch, the model, the input and the output buffers.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import soundfile as sf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import write_json  # noqa: E402

CHILD = """
import sys, time, torch
from speechbrain_sslse.inference import EnhanceSSL
m = EnhanceSSL.from_hparams(sys.argv[1], run_opts={"precision": sys.argv[4]})
t = time.perf_counter()
y = m.enhance_file(sys.argv[2], sys.argv[3])
print(time.perf_counter() - t, y.shape[-1])
"""


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", help="exported model folder")
    ap.add_argument("--model", help="or a benchmark model name (random weights), see common.MODELS")
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        source = args.source
        if source is None:
            from common import build
            from speechbrain_sslse.model_folder import save_model_folder

            source = save_model_folder(build(args.model or "log1p"), os.path.join(tmp, "model"))
        pieces = [sf.read(p, dtype="int16")[0] for p in sorted(glob.glob(os.path.join(ROOT, "tests", "samples", "mini_vbd", "noisy_*", "*.wav")))]
        one = np.concatenate(pieces)
        n = int(args.minutes * 60 * 16000)
        src, dst = os.path.join(tmp, "long.wav"), os.path.join(tmp, "enhanced.wav")
        sf.write(src, np.resize(one, n), 16000, subtype="PCM_16")
        t0 = time.perf_counter()
        res = subprocess.run([sys.executable, "-c", CHILD, source, src, dst, args.precision], capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if res.returncode != 0:
            sys.exit(res.stderr[-3000:])
        enhance_s, samples = res.stdout.split()[-2:]
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        out_frames = sf.info(dst).frames
    result = {"source": args.source or args.model or "log1p", "minutes": args.minutes, "precision": args.precision,
              "peak_rss_mb": round(peak_mb, 1), "enhance_s": round(float(enhance_s), 1), "process_wall_s": round(wall, 1),
              "rtf": round(float(enhance_s) / (args.minutes * 60), 4), "output_samples_ok": out_frames == n == int(samples)}
    print("| source | minutes | precision | peak RSS (MB) | enhance_file (s) | RTF | output complete |")
    print("|---|---:|---|---:|---:|---:|---|")
    print(f"| {result['source']} | {args.minutes:g} | {args.precision} | {result['peak_rss_mb']} | {result['enhance_s']} | "
          f"{result['rtf']} | {result['output_samples_ok']} |")
    print(json.dumps(result))
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
