#!/usr/bin/env python3
"""Resampling to 16 kHz: peak memory and time for a 2 s stereo input at awkward rates,
torchaudio's sinc resampler (what the project used before) vs ``speechbrain_sslse.audio
.resample`` (libsoxr). Each case runs in its own process so that its peak resident memory
is its own; ``--timeout`` bounds a case (torchaudio's kernel grows with the reduced ratio
of the rates: 44,101 -> 16,000 Hz is 16,000/44,101 in lowest terms).

    python benchmarks/resample.py --json benchmarks/results/resample_cpu.json
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import write_json  # noqa: E402

RATES = (8000, 11127, 22050, 44100, 44101, 48000, 96000)
CASE = r"""
import resource, sys, time, torch
impl, rate, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
torch.set_num_threads(1)
x = torch.randn(2, int(rate * seconds)) * 0.1
if impl == "torchaudio":
    import torchaudio.functional as F
    fn = lambda: F.resample(x, rate, 16000)
else:
    from speechbrain_sslse.audio import resample
    import soxr
    fn = lambda: resample(x, rate, 16000)
    resample(x[:, :rate], rate, 16000)  # warm-up on 1 s (loads libsoxr)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # after imports: only the call counts
t = time.perf_counter(); y = fn(); dt = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(dt, (peak - base) / 1024, peak / 1024, y.shape[-1])
"""


def run_case(impl: str, rate: int, seconds: float, timeout: float) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    try:
        out = subprocess.run([sys.executable, "-c", CASE, impl, str(rate), str(seconds)], capture_output=True,
                             text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"impl": impl, "rate": rate, "status": f"stopped after {timeout:.0f} s"}
    if out.returncode != 0:
        return {"impl": impl, "rate": rate, "status": f"failed: {out.stderr.strip().splitlines()[-1][:120]}"}
    dt, extra, peak, n = out.stdout.split()
    return {"impl": impl, "rate": rate, "status": "ok", "seconds": float(dt), "extra_peak_mb": float(extra),
            "process_peak_mb": float(peak), "out_samples": int(n)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rates", type=int, nargs="+", default=list(RATES))
    ap.add_argument("--impls", nargs="+", default=["torchaudio", "soxr"], choices=["torchaudio", "soxr"])
    ap.add_argument("--timeout", type=float, default=300.0, help="per case")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    rows = []
    print("| rate (Hz) | resampler | time (s) | peak extra memory (MB) | process peak (MB) |")
    print("|---:|---|---:|---:|---:|")
    for rate in args.rates:
        for impl in args.impls:
            r = run_case(impl, rate, args.seconds, args.timeout)
            rows.append(r)
            if r["status"] == "ok":
                print(f"| {rate} | {impl} | {r['seconds']:.3f} | {r['extra_peak_mb']:.0f} | {r['process_peak_mb']:.0f} |",
                      flush=True)
            else:
                print(f"| {rate} | {impl} | {r['status']} | | |", flush=True)
    write_json(args.json, {"seconds_of_audio": args.seconds, "channels": 2, "to_rate": 16000, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
