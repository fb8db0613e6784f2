"""Evaluation: enhance a test manifest, score pairs in parallel, summarise with 95 % CIs.

Used by ``recipes/VCTK/evaluate.py`` and the ``sslse-evaluate`` command. Output folder:
``enhanced/`` (when a model is given), ``scores_<system>.csv`` per system (all metrics
per utterance, an ``error`` column for files that could not be scored), ``summary.json``
and ``summary.md`` (paper column order: PESQ, CSIG, CBAK, COVL, STOI, + SSNR).
"""
from __future__ import annotations

import csv
import json
import math
import multiprocessing as mp
import os
import re
from typing import Iterable

import numpy as np
from scipy import stats
from tqdm import tqdm

from . import metrics
from .audio import SAMPLE_RATE, AudioError, read_audio

LABELS = {"pesq": "PESQ", "csig": "CSIG", "cbak": "CBAK", "covl": "COVL", "stoi": "STOI", "ssnr": "SSNR"}


def _read_16k_mono(path: str):
    wav, rate = read_audio(path)
    if rate != SAMPLE_RATE:
        raise metrics.MetricError(f"{path}: sample rate {rate} Hz, metrics need {SAMPLE_RATE} Hz")
    if wav.shape[0] != 1:
        raise metrics.MetricError(f"{path}: {wav.shape[0]} channels, metrics need mono")
    return wav[0].numpy()


def score_one(job: tuple[str, str, str]) -> dict:
    """Scores one (id, clean path, estimate path); failures become an ``error`` entry."""
    uid, clean_path, est_path = job
    row = {"id": uid, **{m: float("nan") for m in metrics.METRICS}, "error": ""}
    try:
        row.update(metrics.all_metrics(_read_16k_mono(clean_path), _read_16k_mono(est_path)))
    except (metrics.MetricError, AudioError) as err:
        row["error"] = str(err)
    return row


def _init_worker() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"


def score_pairs(jobs: list[tuple[str, str, str]], workers: int = 2, desc: str = "scoring") -> list[dict]:
    """Scores pairs in ``workers`` processes with a progress bar; keeps the input order."""
    if workers <= 1 or len(jobs) < 2:
        return [score_one(j) for j in tqdm(jobs, desc=desc, disable=None)]
    with mp.get_context("fork").Pool(workers, initializer=_init_worker) as pool:
        return list(tqdm(pool.imap(score_one, jobs, chunksize=2), total=len(jobs), desc=desc, disable=None))


def summarize(rows: Iterable[dict]) -> dict:
    """Per metric: mean, 95 % confidence half-width (Student t), and n scored."""
    rows = list(rows)
    out = {"n": len(rows), "n_failed": sum(1 for r in rows if r["error"])}
    for m in metrics.METRICS:
        vals = np.array([r[m] for r in rows if not r["error"] and math.isfinite(r[m])], dtype=float)
        n = len(vals)
        mean = float(vals.mean()) if n else float("nan")
        ci = float(stats.t.ppf(0.975, n - 1) * vals.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
        out[m] = {"mean": mean, "ci95": ci, "n": n}
    return out


def _cell(stat: dict, digits: int) -> str:
    """``mean ± ci``; one utterance has no interval, so the mean stands alone."""
    if not math.isfinite(stat["ci95"]):
        return f"{stat['mean']:.{digits}f}"
    return f"{stat['mean']:.{digits}f} ± {stat['ci95']:.{digits}f}"


def markdown_table(systems: dict[str, dict]) -> str:
    head = "| system | " + " | ".join(LABELS[m] for m in metrics.METRICS) + " |"
    lines = [head, "|---|" + "---:|" * len(metrics.METRICS)]
    for name, s in systems.items():
        cells = [_cell(s[m], 2 if m == "ssnr" else 3) for m in metrics.METRICS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def write_results(out_dir: str, results: dict[str, list[dict]], meta: dict | None = None) -> dict:
    """Writes per-system CSVs, summary.json and summary.md; returns the summary."""
    os.makedirs(out_dir, exist_ok=True)
    systems = {}
    for name, rows in results.items():
        with open(os.path.join(out_dir, f"scores_{_slug(name)}.csv"), "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["id", *metrics.METRICS, "error"])
            writer.writeheader()
            writer.writerows(rows)
        systems[name] = summarize(rows)
    summary = {"metrics": list(metrics.METRICS), "systems": systems, **(meta or {})}
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    with open(os.path.join(out_dir, "summary.md"), "w") as f:
        f.write(markdown_table(systems) + "\n")
    failed = {n: [r for r in rows if r["error"]] for n, rows in results.items()}
    for name, rows in failed.items():
        for r in rows:
            print(f"not scored ({name}) {r['id']}: {r['error']}")
    return summary


def read_manifest(path: str) -> list[tuple[str, str, str]]:
    """(id, clean, noisy) from a SpeechBrain JSON manifest written by prepare_vctk, or from
    ``CLEAN_DIR:NOISY_DIR`` (two folders matched by file name)."""
    if ":" in path and all(os.path.isdir(p) for p in path.split(":", 1)):
        clean_dir, noisy_dir = path.split(":", 1)
        return match_folders(noisy_dir, clean_dir)[0]
    with open(path) as f:
        data = json.load(f)
    return [(uid, e["clean_wav"], e["noisy_wav"]) for uid, e in sorted(data.items())]


def match_folders(estimate_dir: str, clean_dir: str) -> tuple[list[tuple[str, str, str]], list[str]]:
    """Pairs estimates with references by file name; returns (jobs, unmatched names)."""
    clean = {os.path.splitext(f)[0]: os.path.join(clean_dir, f) for f in os.listdir(clean_dir)
             if f.lower().endswith((".wav", ".flac"))}
    est = {os.path.splitext(f)[0]: os.path.join(estimate_dir, f) for f in os.listdir(estimate_dir)
           if f.lower().endswith((".wav", ".flac"))}
    jobs = [(k, clean[k], est[k]) for k in sorted(set(clean) & set(est))]
    return jobs, sorted(set(clean) ^ set(est))


def score_folders(estimate_dir: str, clean_dir: str, out_dir: str, name: str = "system",
                  noisy_dir: str | None = None, workers: int = 2) -> dict:
    """``score`` mode: any folder of enhanced wavs against clean references by file name."""
    jobs, unmatched = match_folders(estimate_dir, clean_dir)
    if not jobs:
        raise ValueError(f"no file names in common between {estimate_dir} and {clean_dir}")
    for u in unmatched:
        print(f"unmatched (only in one folder): {u}")
    results = {}
    if noisy_dir:  # the Noisy row covers the same utterances as the estimates, no others
        ids = {uid for uid, _, _ in jobs}
        noisy_jobs = [job for job in match_folders(noisy_dir, clean_dir)[0] if job[0] in ids]
        missing = sorted(ids - {uid for uid, _, _ in noisy_jobs})
        if missing:
            raise ValueError(f"no noisy file in {noisy_dir} for {missing[:5]}: the Noisy row would cover other utterances")
        results["Noisy"] = score_pairs(noisy_jobs, workers, "scoring noisy")
    results[name] = score_pairs(jobs, workers, f"scoring {name}")
    return write_results(out_dir, results, {"estimates": os.path.abspath(estimate_dir)})


def evaluate_model(enhancer, manifest: str, out_dir: str, name: str = "model", workers: int = 2) -> dict:
    """Enhances every noisy file of ``manifest`` with an ``EnhanceSSL`` (one by one, whole
    utterances), then scores it and the ``Noisy`` input the same way."""
    items = read_manifest(manifest)
    enhanced_dir = os.path.join(out_dir, "enhanced")
    os.makedirs(enhanced_dir, exist_ok=True)
    jobs, errors = [], []
    for uid, clean, noisy in tqdm(items, desc="enhancing", disable=None):
        target = os.path.join(enhanced_dir, f"{uid}.wav")
        try:
            enhancer.enhance_file(noisy, target)
            jobs.append((uid, clean, target))
        except (AudioError, ValueError) as err:
            errors.append({"id": uid, **{m: float("nan") for m in metrics.METRICS}, "error": f"enhancement failed: {err}"})
    results = {
        "Noisy": score_pairs([(u, c, n) for u, c, n in items], workers, "scoring noisy"),
        name: score_pairs(jobs, workers, f"scoring {name}") + errors,
    }
    return write_results(out_dir, results, {"manifest": os.path.abspath(manifest)})
