#!/usr/bin/env python3
"""Training-step speed per SSL mode at the recipe's 20,480-sample crops, and (with
``--data_folder``) whole training steps fed by dynamic mixing (plain, and with the noise
augmentation of ``hparams/dm_aug_log1p.yaml``, and with the noise and speech augmentation of
``hparams/dm_aug2_log1p.yaml``) vs the static pre-rendered set of the same
folder, through the same DataLoader settings.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/training.py --threads 2 --json benchmarks/results/training_cpu.json
    OMP_WAIT_POLICY=PASSIVE python benchmarks/training.py --modes none --model log1p \
        --data_folder data/sim_vbd_dm --batch 16 --json benchmarks/results/training_data_cpu.json

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


class StaticPairs(torch.utils.data.Dataset):
    """The rendered training pairs of a simulated folder, read whole as the recipe's manifest
    pipeline reads them (read_audio); the recipe's ``EpochCrops`` crops and gains them."""

    def __init__(self, folder: str):
        from speechbrain_sslse.audio import list_audio

        self.noisy = list_audio(os.path.join(folder, "noisy_trainset_28spk_wav"))
        self.clean = [p.replace("noisy_trainset_28spk_wav", "clean_trainset_28spk_wav") for p in self.noisy]

    def __len__(self):
        return len(self.noisy)

    def __getitem__(self, i):
        from speechbrain.dataio.dataio import read_audio

        return {"id": str(i), "noisy_sig": read_audio(self.noisy[i]), "clean_sig": read_audio(self.clean[i])}


def data_pipelines(args) -> list[dict]:
    """Examples per second of whole training steps (loading + step) for both inputs, timed
    in alternating rounds so that a change in machine load hits both alike; plus the
    loading cost per item on its own."""
    import time

    from speechbrain.dataio.batch import PaddedBatch

    from speechbrain_sslse.data import EpochCrops
    from speechbrain_sslse.mixing import DynamicMixDataset

    total = args.batch * (args.steps + 4)
    sets = {
        "static": EpochCrops(StaticPairs(args.data_folder), crop=args.crop),
        "dynamic mixing": DynamicMixDataset.from_simulation(
            os.path.join(args.data_folder, "simulation.json"), items_per_epoch=total, crop=args.crop,
            babble_tracks=24, ssn_tracks=8),
        "dm + noise augmentation": DynamicMixDataset.from_simulation(  # hparams/dm_aug_log1p.yaml
            os.path.join(args.data_folder, "simulation.json"), items_per_epoch=total, crop=args.crop,
            babble_tracks=24, ssn_tracks=8, snr_range=(-5.0, 20.0), noise_speed_range=(0.8, 1.25),
            noise_eq_db=6.0, second_noise_prob=0.3),
        "dm + noise + speech augmentation": DynamicMixDataset.from_simulation(  # hparams/dm_aug2_log1p.yaml
            os.path.join(args.data_folder, "simulation.json"), items_per_epoch=total, crop=args.crop,
            babble_tracks=24, ssn_tracks=8, snr_range=(-5.0, 20.0), noise_speed_range=(0.7, 1.4),
            noise_eq_db=12.0, second_noise_prob=0.3, speech_speed_range=(0.9, 1.1), speech_eq_db=6.0),
    }
    enhancer = build(args.model).train()
    batches, stats = {}, {}
    for name, dataset in sets.items():
        sampler = torch.utils.data.RandomSampler(dataset, replacement=True, num_samples=total)
        loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch, sampler=sampler, num_workers=args.workers,
                                             collate_fn=PaddedBatch, drop_last=True)
        batches[name] = iter(loader)
        first = next(batches[name])  # warm-up: worker start and one step
        make_step(enhancer, first.noisy_sig.data, first.clean_sig.data)()
        start = time.perf_counter()
        for i in range(100):
            dataset[i % len(dataset)]
        stats[name] = {"examples": 0, "seconds": 0.0, "load_ms_per_item": (time.perf_counter() - start) * 10}
    rounds = 4
    for _ in range(rounds):
        for name in sets:
            start = time.perf_counter()
            for _, batch in zip(range(args.steps // rounds), batches[name]):
                make_step(enhancer, batch.noisy_sig.data, batch.clean_sig.data)()
                stats[name]["examples"] += batch.noisy_sig.data.shape[0]
            stats[name]["seconds"] += time.perf_counter() - start
    rows = []
    for name, st in stats.items():
        rows.append({"input": name, "examples_per_s": st["examples"] / st["seconds"], **st})
        print(f"{name:34s} {rows[-1]['examples_per_s']:.2f} examples/s ({st['examples']} examples, "
              f"{st['seconds']:.1f} s, {args.workers} loader worker(s)); loading alone {st['load_ms_per_item']:.2f} ms/item")
    for row in rows[1:]:
        print(f"{row['input']} / static: {row['examples_per_s'] / rows[0]['examples_per_s']:.2f}")
    return rows


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
    ap.add_argument("--data_folder", help="a simulate_vbd.py folder: compare dynamic mixing with its static set")
    ap.add_argument("--steps", type=int, default=40, help="timed steps per input pipeline")
    ap.add_argument("--workers", type=int, default=1, help="DataLoader workers (the dm_log1p recipe uses 1)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.modes == "none" and not args.data_folder:
        ap.error("--modes none measures nothing without --data_folder")
    torch.manual_seed(0)
    noisy = torch.randn(args.batch, args.crop, device=args.device) * 0.1
    clean = noisy * 0.5
    rows = []
    for mode in [m for m in args.modes.split(",") if m != "none"]:
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
    if args.data_folder:
        result["data_pipelines"] = data_pipelines(args)
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
