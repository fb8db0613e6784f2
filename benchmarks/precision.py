#!/usr/bin/env python3
"""Reduced-precision CPU inference vs fp32, in one run: speed, output SNR, PESQ change.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/precision.py --threads 2
    python benchmarks/precision.py --source pretrained/sslse-tfs-small-sim

Inputs: the embedded mini set's real noisy test files, two joined per input (10 s), batch 1.
bf16 autocast (this CPU has AVX-512 BF16) was kept over int8 dynamic quantisation, which
measured 1.14x (feed-forward layers only: WavLM's attention reads the projection biases
directly, so its q/k/v layers cannot be swapped for quantised ones).
"""
from __future__ import annotations

import argparse
import glob
import os
import sys

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import build, environment, timeit, write_json  # noqa: E402

from speechbrain_sslse.inference import EnhanceSSL  # noqa: E402
from speechbrain_sslse.metrics import MetricError, pesq_wb  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="wavlm_base_ws_log1p", help="benchmark model (random weights)")
    ap.add_argument("--source", help="or an exported model folder (trained weights)")
    ap.add_argument("--precision", default="bf16", choices=("bf16", "fp16"), help="compared with fp32")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    noisy = sorted(glob.glob(os.path.join(ROOT, "tests", "samples", "mini_vbd", "noisy_testset_wav", "*.wav")))
    pairs = [(noisy[i], noisy[(i + 1) % len(noisy)]) for i in range(len(noisy))]
    inputs = [torch.from_numpy(np.concatenate([sf.read(a, dtype="float32")[0], sf.read(b, dtype="float32")[0]]))
              for a, b in pairs]
    cleans = [np.concatenate([sf.read(a.replace("noisy_", "clean_"), dtype="float32")[0],
                              sf.read(b.replace("noisy_", "clean_"), dtype="float32")[0]]) for a, b in pairs]
    models = {}
    for precision in ("fp32", args.precision):
        opts = {"device": "cpu", "precision": precision}
        if args.source:
            models[precision] = EnhanceSSL.from_hparams(args.source, run_opts=opts)
        else:
            enh = build(args.model)
            models[precision] = EnhanceSSL(modules={"enhancer": enh}, hparams={"enhancer": enh}, run_opts=opts)
    times, outs = {}, {}
    for precision, model in models.items():
        times[precision] = timeit(lambda: [model.enhance_batch(x[None]) for x in inputs], args.repeats, "cpu")
        outs[precision] = [model.enhance_batch(x[None])[0].numpy() for x in inputs]
    snrs, dpesq = [], []
    for ref, low, clean in zip(outs["fp32"], outs[args.precision], cleans):
        snrs.append(10 * np.log10(np.sum(ref**2) / np.sum((ref - low) ** 2)))
        try:
            dpesq.append(pesq_wb(clean, low) - pesq_wb(clean, ref))
        except MetricError:
            pass
    speedup = times["fp32"]["median"] / times[args.precision]["median"]
    result = {"environment": environment("cpu"), "model": args.source or args.model, "precision": args.precision,
              "inputs": len(inputs), "seconds_each": round(len(inputs[0]) / 16000, 2),
              "time_s": times, "speedup": speedup, "snr_db_min": float(min(snrs)), "snr_db_mean": float(np.mean(snrs)),
              "pesq_change_mean": float(np.mean(dpesq)) if dpesq else None, "pesq_scored": len(dpesq)}
    # PESQ fails on an output without speech: the mean is over the outputs it scored
    change = "n/a (PESQ scored no output)" if not dpesq else f"{np.mean(dpesq):+.4f} ({len(dpesq)} of {len(inputs)})"
    print(f"# {result['environment']}")
    print("| model | fp32 s | {p} s | speed-up | output SNR vs fp32 (min / mean dB) | PESQ change (mean) |".format(p=args.precision))
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| {result['model']} | {times['fp32']['median']:.3f} | {times[args.precision]['median']:.3f} | {speedup:.2f}x | "
          f"{result['snr_db_min']:.1f} / {result['snr_db_mean']:.1f} | {change} |")
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
