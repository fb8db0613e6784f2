#!/usr/bin/env python3
"""Inference speed against the hardware bound.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/inference.py --threads 2 --json benchmarks/results/inference_cpu.json
    python benchmarks/inference.py --device cuda --precision fp32,bf16

For log1p-only, WavLM Base+ WS + log1p and WavLM Large WS + log1p (random weights), inputs
of 1 / 10 / 60 s, batch 1 and 8, through ``EnhanceSSL.enhance_batch`` (inference mode):
real-time factor, peak extra memory, FLOPs counted with ``torch.utils.flop_counter`` and the
achieved GFLOP/s as a fraction of a square-matmul peak measured in the same run. Cases whose
estimated time exceeds ``--budget`` seconds are listed as skipped, never silently dropped.
The BLSTM masker's FLOPs are computed analytically (the flop counter cannot trace oneDNN's LSTM).
"""
from __future__ import annotations

import argparse
import os
import sys

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import MODELS, PeakMemory, build, environment, matmul_peak, timeit, write_json  # noqa: E402

from speechbrain_sslse.inference import EnhanceSSL  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def masker_flops(masker, batch: int, frames: int) -> int:
    """Matmul FLOPs of the BLSTM masker, computed analytically: the flop counter cannot
    trace oneDNN's fused LSTM kernel."""
    h, lstm = masker.hidden_size, masker.blstm
    flops = 2 * batch * frames * masker.proj.in_features * h + 2 * batch * frames * h * masker.out.out_features
    for layer in range(lstm.num_layers):
        inputs = h if layer == 0 else 2 * h
        flops += 2 * 2 * batch * frames * 4 * h * (inputs + h)  # two directions
    return flops


def count_flops(enhancer, x: torch.Tensor) -> int:
    """FLOPs of one enhancement: SSL encoder and STFT front end counted by
    ``torch.utils.flop_counter``, the masker computed analytically."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        _, noisy, _, _ = enhancer.features(x)
    return counter.get_total_flops() + masker_flops(enhancer.masker, x.shape[0], noisy.shape[1])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--durations", default="1,10,60", help="seconds")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--precision", default="fp32,bf16", help="comma list of fp32, bf16, fp16")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--budget", type=float, default=60.0, help="skip cases estimated to take longer (s per call)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    env = environment(args.device)
    precisions = args.precision.split(",")
    peaks = {p: matmul_peak(args.device, DTYPES[p]) for p in precisions}
    print(f"# {env}\n# matmul peak GFLOP/s: " + ", ".join(f"{p} {v:.1f}" for p, v in peaks.items()))
    rows = []
    for name in args.models.split(","):
        enhancer = build(name)
        for precision in precisions:
            if name == "log1p" and precision != "fp32":
                continue
            model = EnhanceSSL(modules={"enhancer": enhancer}, hparams={"enhancer": enhancer},
                               run_opts={"device": args.device, "precision": precision})
            sec_per_audio_s = None  # measured cost, to estimate the next case
            for seconds in (float(d) for d in args.durations.split(",")):
                for batch in (int(b) for b in args.batches.split(",")):
                    row = {"model": name, "precision": precision, "seconds": seconds, "batch": batch}
                    audio = seconds * batch
                    if sec_per_audio_s is not None and sec_per_audio_s * audio > args.budget:
                        row["skipped"] = f"estimated {sec_per_audio_s * audio:.0f} s per call > budget {args.budget:.0f} s"
                        rows.append(row)
                        print(row)
                        continue
                    x = torch.randn(batch, int(seconds * 16000), device=args.device) * 0.1
                    with PeakMemory(args.device) as mem:
                        t = timeit(lambda: model.enhance_batch(x), args.repeats, args.device)
                    flops = count_flops(enhancer, x)
                    sec_per_audio_s = t["median"] / audio
                    gflops = flops / t["median"] / 1e9
                    row.update(rtf=t["median"] / audio, time_s=t, peak_mem_mb=mem.peak / 2**20, gflop=flops / 1e9,
                               gflops=gflops, fraction_of_peak=gflops / peaks[precision])
                    rows.append(row)
                    print(f"{name:22s} {precision} {seconds:5.0f}s x{batch}: RTF {row['rtf']:.4f}  "
                          f"{t['median']:.3f}s [{t['min']:.3f}-{t['max']:.3f}]  {gflops:.1f} GFLOP/s "
                          f"({100 * row['fraction_of_peak']:.0f}% of peak)  peak +{row['peak_mem_mb']:.0f} MB")
    print("\n| model | precision | input | batch | RTF | median s [min-max] | GFLOP | GFLOP/s | % of matmul peak | peak mem (MB) |")
    print("|---|---|---:|---:|---:|---|---:|---:|---:|---:|")
    for r in rows:
        if "skipped" in r:
            print(f"| {r['model']} | {r['precision']} | {r['seconds']:.0f} s | {r['batch']} | skipped: {r['skipped']} | | | | | |")
            continue
        t = r["time_s"]
        print(f"| {r['model']} | {r['precision']} | {r['seconds']:.0f} s | {r['batch']} | {r['rtf']:.4f} | "
              f"{t['median']:.3f} [{t['min']:.3f}-{t['max']:.3f}] | {r['gflop']:.1f} | {r['gflops']:.1f} | "
              f"{100 * r['fraction_of_peak']:.0f}% | {r['peak_mem_mb']:.0f} |")
    result = {"environment": env, "matmul_peak_gflops": peaks, "repeats": args.repeats, "rows": rows}
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
