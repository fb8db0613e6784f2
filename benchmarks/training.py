#!/usr/bin/env python3
"""Training-step speed per SSL mode at the recipe's 20,480-sample crops.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/training.py --threads 2 --json benchmarks/results/training_cpu.json

One step = forward, L1 loss on log1p, backward, the method's two Adam optimisers (head
1e-4, SSL 1e-5 when it trains), exactly as the recipe's Brain does it. WavLM Base+ WS +
log1p with random weights; frozen runs the encoder without autograd in eval mode, partial
and entire put it in the autograd graph. Same batch for every mode, in one run.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import PeakMemory, build, environment, timeit, write_json  # noqa: E402


def make_step(enhancer, noisy, clean):
    head = torch.optim.Adam(enhancer.head_parameters(), lr=1e-4)
    ssl_params = enhancer.ssl_parameters()
    ssl = torch.optim.Adam(ssl_params, lr=1e-5) if ssl_params else None
    target = enhancer.log_spectrum(clean).detach()

    def step():
        out = enhancer(noisy)
        loss = (out.enhanced - target).abs().mean()
        loss.backward()
        for opt in (head, ssl):
            if opt is not None:
                opt.step()
                opt.zero_grad(set_to_none=True)
        return loss

    return step


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="wavlm_base_ws_log1p")
    ap.add_argument("--modes", default="frozen,partial,entire")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=20480)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    noisy = torch.randn(args.batch, args.crop, device=args.device) * 0.1
    clean = noisy * 0.5
    rows = []
    for mode in args.modes.split(","):
        enhancer = build(args.model, mode=mode).to(args.device).train()
        with PeakMemory(args.device) as mem:
            t = timeit(make_step(enhancer, noisy, clean), args.repeats, args.device, warmup=2)
        row = {"mode": mode, "steps_per_s": 1 / t["median"], "examples_per_s": args.batch / t["median"],
               "time_s": t, "peak_mem_mb": mem.peak / 2**20,
               "trainable_params_m": sum(p.numel() for p in enhancer.parameters() if p.requires_grad) / 1e6}
        rows.append(row)
        print(f"{mode:8s} {row['steps_per_s']:.3f} steps/s  {row['examples_per_s']:.2f} examples/s  "
              f"step {t['median']:.3f}s [{t['min']:.3f}-{t['max']:.3f}]  +{row['peak_mem_mb']:.0f} MB")
        del enhancer
    env = environment(args.device)
    print(f"\n# {env}; batch {args.batch} x {args.crop} samples; median of {args.repeats} after 2 warm-up steps")
    print("| mode | steps/s | examples/s | step s [min-max] | trainable params (M) | peak mem (MB) |")
    print("|---|---:|---:|---|---:|---:|")
    for r in rows:
        t = r["time_s"]
        print(f"| {r['mode']} | {r['steps_per_s']:.3f} | {r['examples_per_s']:.2f} | {t['median']:.3f} "
              f"[{t['min']:.3f}-{t['max']:.3f}] | {r['trainable_params_m']:.2f} | {r['peak_mem_mb']:.0f} |")
    by_mode = {r["mode"]: r for r in rows}
    if "frozen" in by_mode and "entire" in by_mode:
        ratio = by_mode["frozen"]["examples_per_s"] / by_mode["entire"]["examples_per_s"]
        print(f"\nfrozen / entire examples per second: {ratio:.2f}x")
    result = {"environment": env, "batch": args.batch, "crop": args.crop, "model": args.model, "rows": rows}
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
