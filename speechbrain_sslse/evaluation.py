"""Evaluation: enhance a test manifest, score pairs in parallel, summarise with 95 % CIs.

Used by ``recipes/VCTK/evaluate.py`` and the ``sslse-evaluate`` command. Output folder:
``enhanced/`` (when a model is given), ``scores_<system>.csv`` per system (all metrics
per utterance; ``floored`` lists the metrics an estimate could not get and so got their
floor, ``error`` says why, ``pair`` fingerprints the scored (clean, noisy) audio), ``summary.json`` and ``summary.md`` (n, floored, then the
paper's column order: PESQ, CSIG, CBAK, COVL, STOI, + SSNR; below it a second table with
SI-SDR and, when asked for, DNSMOS SIG / BAK / OVRL / P.808). Without clean references
only DNSMOS is scored (one table: n, floored, DNSMOS). No score flatters: a silent, NaN,
missing or too-short estimate counts at the floor, and every row of a table covers the
same utterances.
"""
from __future__ import annotations

import csv
import glob
import hashlib
import io
import json
import math
import multiprocessing as mp
import os
import re
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Iterable

import numpy as np
from scipy import stats

from . import metrics
from .audio import SAMPLE_RATE, AudioError, list_audio, read_audio, resample, same_or_inside, sf_path
from .output_plan import check_jobs, write_text_atomic
from .progress import progress_bar

LABELS = {"pesq": "PESQ", "csig": "CSIG", "cbak": "CBAK", "covl": "COVL", "stoi": "STOI", "ssnr": "SSNR",
          "si_sdr": "SI-SDR", "dnsmos_sig": "DNSMOS SIG", "dnsmos_bak": "DNSMOS BAK",
          "dnsmos_ovrl": "DNSMOS OVRL", "dnsmos_p808": "DNSMOS P.808"}
#: Columns after the paper's: SI-SDR (with a reference), then DNSMOS (when asked for).
EXTRA_METRICS = ("si_sdr", *metrics.DNSMOS_METRICS)
#: Every metric's floor (the value a broken estimate gets).
ALL_FLOORS = {**metrics.FLOORS, "si_sdr": metrics.SI_SDR_FLOOR, **metrics.DNSMOS_FLOORS}
#: Decimals in the tables.
DIGITS = {"ssnr": 2, "si_sdr": 2}
#: The CSV column that fingerprints the (clean, noisy) audio a row was scored on.
PAIR = "pair"


def pair_digest(clean_path: str, noisy_path: str) -> str:
    """A short fingerprint of one (clean, noisy) pair's samples (rate, shape, float32
    values; not the file bytes, so a rewritten header keeps it). Two rows with the same
    digest were scored on the same audio: a per-utterance CSV from an earlier run can then
    be checked before it joins a table (a re-rendered simulated set with the same file
    names but other samples must not). ``unreadable`` when a file cannot be decoded."""
    h = hashlib.sha256()
    for path in (clean_path, noisy_path):
        try:
            wav, rate = read_audio(path)
        except AudioError:
            return "unreadable"
        h.update(f"{rate}:{tuple(wav.shape)}:".encode())
        h.update(np.ascontiguousarray(wav.numpy(), dtype=np.float32).tobytes())
    return h.hexdigest()[:16]


def stamp_pairs(results: dict[str, list[dict]], items: list[tuple[str, str, str]]) -> dict[str, str]:
    """Writes each (id, clean, noisy) item's ``pair_digest`` into the rows of every system
    in ``results`` (scored on those items here); returns {id: digest}."""
    digests = {uid: pair_digest(clean, noisy) for uid, clean, noisy in items}
    for rows in results.values():
        for row in rows:
            row[PAIR] = digests.get(row["id"], "")
    return digests


def other_audio(rows: list[dict], digests: dict[str, str]) -> list[str]:
    """Ids whose row (read from a CSV) carries a pair digest other than this set's: their
    scores were made on other audio and do not compare. Rows without one are not checked."""
    return [r["id"] for r in rows if r.get(PAIR) and r["id"] in digests and r[PAIR] != digests[r["id"]]]


def columns(reference: bool = True, dnsmos: bool = False) -> tuple[str, ...]:
    """The metrics of one scoring run, in table order: with a reference the paper's
    metrics and SI-SDR, then DNSMOS when asked for."""
    return (*(metrics.METRICS + ("si_sdr",) if reference else ()), *(metrics.DNSMOS_METRICS if dnsmos else ()))


def _read_16k_mono(path: str, error=metrics.MetricError):
    """The metrics are defined on 16 kHz mono: another rate (VoiceBank-DEMAND's 48 kHz
    originals, an enhancer's 48 kHz output) is resampled, the same way for reference and
    estimate, as the 16 kHz version of that corpus is made; more channels are an error."""
    try:
        wav, rate = read_audio(path)
        wav = resample(wav, rate, SAMPLE_RATE)
    except AudioError as err:
        raise error(str(err)) from None
    if wav.shape[0] != 1:
        raise error(f"{path}: {wav.shape[0]} channels, metrics need mono")
    return wav[0].numpy()


def floored_row(uid: str, reason: str, dnsmos: bool = False, reference: bool = True) -> dict:
    """The row of an estimate that does not exist or cannot be read: every metric floored."""
    cols = columns(reference, dnsmos)
    return {"id": uid, **{m: ALL_FLOORS[m] for m in cols}, "floored": " ".join(cols), "error": reason}


def score_one(job: tuple[str, str | None, str], dnsmos: bool = False) -> dict:
    """Scores one (id, clean path, estimate path); clean ``None``: DNSMOS only. An
    estimate that cannot be scored gets the metrics' floors (``floored`` lists them,
    ``error`` says why); an unusable reference is marked ``reference`` so that every
    system drops that utterance alike. ``dnsmos``: add the DNSMOS columns (``add_dnsmos``)."""
    uid, clean_path, est_path = job
    if clean_path is None:
        row = {"id": uid, "floored": "", "error": ""}
        return add_dnsmos(row, job) if dnsmos else row
    cols = columns(True, False)
    try:
        clean = _read_16k_mono(clean_path, metrics.ReferenceError)
        try:
            est = _read_16k_mono(est_path)
        except metrics.MetricError as err:
            row = floored_row(uid, str(err))
            return add_dnsmos(row, job) if dnsmos else row
        scores, reasons = metrics.floored_metrics(clean, est)
        scores["si_sdr"], why = metrics.floored_si_sdr(clean, est)
        if why:
            reasons["si_sdr"] = why
    except metrics.ReferenceError as err:
        return {"id": uid, **{m: float("nan") for m in columns(True, dnsmos)}, "floored": "",
                "error": f"reference: {err}"}
    row = {"id": uid, **{m: scores[m] for m in cols}, "floored": " ".join(m for m in cols if m in reasons),
           "error": "; ".join(sorted(set(reasons.values())))}
    return add_dnsmos(row, job) if dnsmos else row


def _dnsmos_of(job: tuple[str, str | None, str]) -> tuple[dict[str, float], str | None]:
    """DNSMOS of one job's estimate: (scores, reason it was floored or None). Floored when
    the estimate is unreadable or broken, and, with a reference, when it does not match it
    (e.g. a truncated output): a broken estimate gets every floor."""
    _, clean_path, est_path = job
    try:
        est = _read_16k_mono(est_path)
        if clean_path is not None:
            metrics.check_pair(_read_16k_mono(clean_path, metrics.ReferenceError), est)
    except metrics.ReferenceError:
        raise
    except metrics.MetricError as err:
        return dict(metrics.DNSMOS_FLOORS), str(err)
    return metrics.floored_dnsmos(est)


def add_dnsmos(row: dict, job: tuple[str, str | None, str]) -> dict:
    """``row`` (from ``score_one`` without DNSMOS) with the DNSMOS columns of ``job``. Runs
    in the calling process: ONNX Runtime hangs in a process forked after it has run, so
    ``score_pairs`` scores DNSMOS in its own process after the worker pool."""
    cols = columns(job[1] is not None, True)
    if row["error"].startswith("reference:"):
        return {**{m: float("nan") for m in cols}, **row}
    values, why = _dnsmos_of(job)
    floored = set(row["floored"].split()) | (set(metrics.DNSMOS_METRICS) if why else set())
    error = row["error"]
    if why and why not in error:
        error = "; ".join(sorted([error, why])) if error else why
    return {"id": row["id"], **{m: row[m] if m in row else values[m] for m in cols},
            "floored": " ".join(m for m in cols if m in floored), "error": error}


def _init_worker() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"


def score_pairs(jobs: list[tuple[str, str | None, str]], workers: int = 2, desc: str = "scoring",
                dnsmos: bool = False) -> list[dict]:
    """Scores pairs in ``workers`` processes with a progress bar; keeps the input order.
    ``dnsmos``: add the DNSMOS columns, in this process after the pool (ONNX Runtime
    uses both cores by itself; ``metrics.DnsmosUnavailable`` before any work when its
    packages are missing)."""
    if dnsmos:
        metrics.load_dnsmos()
    if workers <= 1 or len(jobs) < 2:
        rows = [score_one(j) for j in progress_bar(jobs, desc=desc)]
    else:
        # an executor, not a Pool: a worker that dies (a crash inside a metric's C code) is
        # an error here instead of a pool that waits for it forever
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"), initializer=_init_worker) as pool:
            try:
                rows = list(progress_bar(pool.map(score_one, jobs, chunksize=2), total=len(jobs), desc=desc))
            except BrokenProcessPool:
                raise ChildProcessError(f"{desc}: a scoring process died (a crash inside a metric's C code); "
                                   "rerun with --workers 1 to find the file") from None
    if dnsmos:
        rows = [add_dnsmos(r, j) for r, j in progress_bar(list(zip(rows, jobs)), desc=f"{desc}: DNSMOS")]
    return rows


def common_columns(results: dict[str, list[dict]]) -> tuple[str, ...]:
    """The metrics every row of every system has, in table order (rows read back from
    an older CSV may lack the newer ones: such a system shows "—" there, see
    ``markdown_table``)."""
    rows = [r for rs in results.values() for r in rs]
    return tuple(m for m in (*metrics.METRICS, *EXTRA_METRICS) if rows and all(m in r for r in rows))


def summarize(rows: Iterable[dict], cols: Iterable[str] | None = None) -> dict:
    """Per metric (``cols``; default: those every row has): mean, 95 % confidence
    half-width (Student t) and n, over every row (floored values included);
    ``n_floored``: utterances with at least one floor."""
    rows = list(rows)
    cols = (common_columns({"": rows}) or metrics.METRICS) if cols is None else tuple(cols)
    out = {"n": len(rows), "n_floored": sum(1 for r in rows if r["floored"])}
    for m in cols:
        vals = np.array([r[m] for r in rows], dtype=float)
        n = len(vals)
        mean = float(vals.mean()) if n else float("nan")
        ci = float(stats.t.ppf(0.975, n - 1) * vals.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
        out[m] = {"mean": mean, "ci95": ci, "n": n}
    return out


def _cell(stat: dict, digits: int) -> str:
    """``mean ± ci``; one utterance has no interval (``null`` in JSON), so the mean stands alone."""
    if stat["ci95"] is None or not math.isfinite(stat["ci95"]):
        return f"{stat['mean']:.{digits}f}"
    return f"{stat['mean']:.{digits}f} ± {stat['ci95']:.{digits}f}"


def _table(systems: dict[str, dict], cols: tuple[str, ...], counts: bool) -> list[str]:
    head = "| system | " + ("n | floored | " if counts else "") + " | ".join(LABELS[m] for m in cols) + " |"
    lines = [head, "|---|" + ("---:|---:|" if counts else "") + "---:|" * len(cols)]
    for name, s in systems.items():
        cells = [_cell(s[m], DIGITS.get(m, 3)) if m in s else MISSING for m in cols]
        n = f"{s['n']} | {s.get('n_floored', s.get('n_failed', 0))} | " if counts else ""
        lines.append(f"| {name} | {n}" + " | ".join(cells) + " |")
    return lines


#: Table cell of a metric a system was not scored with.
MISSING = "—"


def markdown_table(systems: dict[str, dict]) -> str:
    """One row per system: n utterances, how many had a floored metric, then the paper's
    metrics (PESQ ... SSNR). The metrics beyond the paper's (SI-SDR, DNSMOS), where every
    system has them, follow in a second table with the same rows, so that neither gets
    too wide to read; without reference metrics (DNSMOS only) there is one table. A
    system scored elsewhere without one of those (an older CSV) shows ``MISSING`` there
    rather than taking the column away from the others."""
    main = tuple(m for m in metrics.METRICS if systems and all(m in s for s in systems.values()))
    extra = tuple(m for m in EXTRA_METRICS if any(m in s for s in systems.values()))
    if not main:
        return "\n".join(_table(systems, extra, counts=True))
    lines = _table(systems, main, counts=True)
    if extra:
        lines += [""] + _table(systems, extra, counts=False)
    return "\n".join(lines)


NOISY = "Noisy"


def check_system_name(name: str) -> None:
    """A system may not pose as the unprocessed input."""
    if name.strip().lower() == NOISY.lower():
        raise ValueError(f"system name {name!r} is reserved for the unprocessed input's row; choose another --name")


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def score_files(names: Iterable[str]) -> tuple[dict[str, str], tuple[str, str, str] | None]:
    """({``scores_<name>.csv``: system}, the first clash or None) for the systems of one
    table. A clash (first name, second name, file): "my model" and "my_model" share a file,
    and the first one's scores would be lost. write_results refuses it; benchmarks/peers.py
    asks before its work."""
    files: dict[str, str] = {}
    for name in names:
        clash = files.setdefault(f"scores_{_slug(name)}.csv", name)
        if clash != name:
            return files, (clash, name, f"scores_{_slug(name)}.csv")
    return files, None


def _finite_or_null(value):
    """``value`` with every NaN or infinity replaced by ``None``: the JSON standard has no
    NaN, and other languages' parsers reject the token (a one-utterance interval is NaN)."""
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def check_results_folder(out_dir: str, systems: Iterable[str] | None = None, meta: dict | None = None) -> None:
    """``ValueError`` (before any work) when ``out_dir`` is a file or holds a summary.json
    that no evaluation wrote (an analysis's record, a file of the user's): the tables would
    replace it. With ``systems`` (and ``meta``): also when it holds the results of other
    systems, or of the same name for another model or estimate folder: a rerun replaces its
    own results only, another evaluation's are never lost by a reused --out."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"{out_dir}: is a file; give a folder for the tables")
    record = os.path.join(out_dir, "summary.json")
    if not os.path.exists(record):
        return
    try:
        with open(record, encoding="utf-8") as f:
            earlier = json.load(f)
        ours = isinstance(earlier.get("systems"), dict)
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours:
        raise ValueError(f"{record} was not written by an evaluation (no score tables); it would be "
                         "overwritten: choose another --out")
    if systems is None:
        return
    theirs = sorted(set(earlier["systems"]) - {NOISY})
    source = next((f"{earlier[k]}" for k in ("model", "estimates")
                   if k in (meta or {}) and earlier.get(k) is not None
                   and not _same_place(str(earlier[k]), str(meta[k]), out_dir)), None)
    if theirs != sorted(set(systems) - {NOISY}) or source:
        raise ValueError(f"{out_dir} holds the results of {', '.join(theirs) or 'another run'}"
                         f"{f' ({source})' if source else ''}; this run would replace them: choose another "
                         "--out (or delete that folder first)")


def _same_place(recorded: str, given: str, out_dir: str) -> bool:
    """Whether a model or estimate folder recorded in a summary is ``given``: the same text, or
    the same folder once resolved. A relative record (a summary committed with the repository)
    is read from the working folder or from the summary's own folder, so a rerun in another
    checkout is still the same evaluation."""
    if recorded == given:
        return True
    bases = [""] if os.path.isabs(recorded) else [os.getcwd(), os.path.abspath(out_dir)]
    return any(os.path.realpath(os.path.join(b, recorded)) == os.path.realpath(given) for b in bases)


def write_results(out_dir: str, results: dict[str, list[dict]], meta: dict | None = None) -> dict:
    """Writes per-system CSVs, summary.json and summary.md; returns the summary. Every
    system covers the same utterances: one whose reference is unusable is dropped from all
    of them (and listed); any other mismatch is an error."""
    check_results_folder(out_dir)
    bad_refs = {r["id"]: r["error"] for rows in results.values() for r in rows if r["error"].startswith("reference:")}
    results = {name: [r for r in rows if r["id"] not in bad_refs] for name, rows in results.items()}
    if bad_refs and not any(results.values()):
        first = next(iter(bad_refs.values()))
        raise ValueError(f"no utterance could be scored: all {len(bad_refs)} references are unusable ({first})")
    cols = common_columns(results) or metrics.METRICS  # the metrics every system has
    ids = {name: sorted(r["id"] for r in rows) for name, rows in results.items()}
    first = next(iter(ids.values()), [])
    for name, got in ids.items():
        if got != first:
            raise ValueError(f"system {name!r} covers other utterances than {next(iter(ids))!r}; rows would not compare")
    files, clash = score_files(results)
    if clash:
        raise ValueError(f"systems {clash[0]!r} and {clash[1]!r} would both write {clash[2]}; rename one")
    os.makedirs(out_dir, exist_ok=True)
    stale = sorted(set(glob.glob(os.path.join(glob.escape(out_dir), "scores_*.csv"))) - {os.path.join(out_dir, f) for f in files})
    if stale:  # a user's files are never deleted: said, so no table is read from them by mistake
        print(f"{out_dir}: {len(stale)} scores_*.csv of systems not in this run stay there (not in this "
              f"summary): {_names([os.path.basename(f) for f in stale])}")
    systems = {}
    for name, rows in results.items():
        own = common_columns({name: rows}) or cols  # a system may have more (SI-SDR, DNSMOS)
        pair = [PAIR] if any(r.get(PAIR) for r in rows) else []
        table = io.StringIO(newline="")
        writer = csv.DictWriter(table, fieldnames=["id", *own, "floored", "error", *pair], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: r["id"]))
        # (a file name that is not UTF-8 is written with its odd bytes as \x.. escapes, not a crash)
        write_text_atomic(os.path.join(out_dir, f"scores_{_slug(name)}.csv"), table.getvalue(), "backslashreplace")
        systems[name] = summarize(rows, own)
    floors = {m: ALL_FLOORS[m] for m in ALL_FLOORS if any(m in s for s in systems.values())}
    summary = {"metrics": list(cols), "systems": systems, "floors": floors,
               "dropped_references": bad_refs, **(meta or {})}
    # strict JSON: no NaN tokens
    write_text_atomic(os.path.join(out_dir, "summary.json"), json.dumps(_finite_or_null(summary), indent=1))
    write_text_atomic(os.path.join(out_dir, "summary.md"), markdown_table(systems) + "\n", "backslashreplace")
    for uid, reason in sorted(bad_refs.items()):
        print(f"not scored for any system {uid}: {reason}")
    for name, rows in results.items():
        for r in rows:
            if r["floored"]:
                print(f"floored ({name}) {r['id']} [{r['floored']}]: {r['error']}")
    return summary


def read_manifest(path: str) -> list[tuple[str, str, str]]:
    """(id, clean, noisy) from a SpeechBrain JSON manifest written by prepare_vctk, or from
    ``CLEAN_DIR:NOISY_DIR`` (two folders matched by relative path). A malformed manifest
    is a ``ValueError`` naming the file."""
    if ":" in path and all(os.path.isdir(p) for p in path.split(":", 1)):
        clean_dir, noisy_dir = path.split(":", 1)
        jobs, only_noisy, only_clean = match_folders(noisy_dir, clean_dir)
        if not jobs:
            raise ValueError(f"no file names in common between {clean_dir} and {noisy_dir}")
        for names, where, other in ((only_noisy, noisy_dir, clean_dir), (only_clean, clean_dir, noisy_dir)):
            if names:  # a pair needs both files: said, not dropped silently
                print(f"{len(names)} file(s) of {where} without a twin in {other}, left out: {_names(names)}")
        return jobs
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        pairs = [(uid, e["clean_wav"], e["noisy_wav"]) for uid, e in sorted(data.items())]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{path}: not a manifest of clean_wav/noisy_wav entries or CLEAN_DIR:NOISY_DIR "
                         f"({type(err).__name__}: {err})") from None
    if not pairs:
        raise ValueError(f"{path}: an empty manifest (no clean_wav/noisy_wav entries)")
    return pairs


def audio_by_stem(folder: str, exclude: Iterable[str] = ()) -> dict[str, str]:
    """{path relative to ``folder`` without extension: file}; two files with one stem
    (``x.wav``, ``x.flac``) are an error, since either could be the estimate. An ``exclude``
    folder below ``folder`` (the estimates, enhanced into ``noisy/enhanced``) is left out:
    its files are no references or noisy inputs."""
    if not os.path.isdir(folder):
        raise ValueError(f"{folder}: no such folder")
    hidden = [e for e in exclude if same_or_inside(e, folder) and os.path.realpath(e) != os.path.realpath(folder)]
    out: dict[str, str] = {}
    for path in list_audio(folder, exclude=hidden):
        key = os.path.splitext(os.path.relpath(path, folder))[0]
        if key in out:
            raise ValueError(f"{out[key]} and {path} share the name {key!r}; keep one of them")
        out[key] = path
    return out


def match_folders(estimate_dir: str, clean_dir: str, exclude: Iterable[str] = ()
                  ) -> tuple[list[tuple[str, str, str]], list[str], list[str]]:
    """Pairs estimates with references by relative path without extension (folders are
    searched recursively; an estimate folder inside the reference folder, or an ``exclude``
    folder inside either, is not read as references); returns (jobs, names only in
    ``estimate_dir``, names only in ``clean_dir``)."""
    clean = audio_by_stem(clean_dir, [estimate_dir, *exclude])
    est = audio_by_stem(estimate_dir, exclude)
    jobs = [(k, clean[k], est[k]) for k in sorted(set(clean) & set(est))]
    return jobs, sorted(set(est) - set(clean)), sorted(set(clean) - set(est))


def floored_missing(ids: list[str], jobs: list[tuple], estimate_dir: str, dnsmos: bool = False,
                    reference: bool = True) -> list[dict]:
    """Floored rows for the ``ids`` without an estimate among ``jobs`` (a failed or skipped
    enhancement): a system that leaves out its hard utterances must not score higher.
    ``reference`` false: DNSMOS-only rows."""
    got = {job[0] for job in jobs}
    return [floored_row(uid, f"no estimate in {estimate_dir}", dnsmos, reference) for uid in ids if uid not in got]


def _names(names: list[str]) -> str:
    return ", ".join(names[:10]) + (" ..." if len(names) > 10 else "")


def floor_note(name: str, rows: list[dict]) -> str | None:
    """One line on a system's floored utterances and their commonest reasons: a table with
    floors (e.g. every estimate stereo) is not read as a bad but working system."""
    reasons: dict[str, int] = {}
    for r in rows:
        if r.get("floored") and r.get("error"):
            head, _, rest = r["error"].partition(": ")
            why = rest if rest and (os.sep in head or os.path.splitext(head)[1]) else r["error"]
            reasons[why] = reasons.get(why, 0) + 1
    if not reasons:
        return None
    top = sorted(reasons.items(), key=lambda kv: -kv[1])[:3]
    return (f"{name}: {sum(reasons.values())} of {len(rows)} utterance(s) at a floor: "
            + "; ".join(f"{why} ({count})" for why, count in top))


def rate_notes(jobs: list[tuple]) -> list[str]:
    """What the scores do not show about the files' rates (all are scored at 16 kHz): an
    estimate at a lower rate than its reference has an empty top band, and a narrow-band
    set is scored with wide-band PESQ (neither is an error: both are said)."""
    import soundfile as sf

    def rate(path):
        try:
            return sf.info(sf_path(path)).samplerate
        except Exception:  # unreadable: scored (and floored or dropped) with its reason
            return None

    lower, narrow = [], []
    for uid, clean, est in jobs:
        r_est, r_ref = rate(est), rate(clean) if clean else None
        if r_est and r_ref and r_est < min(r_ref, SAMPLE_RATE):  # scored at 16 kHz: a 16 kHz estimate loses nothing
            lower.append(f"{uid} ({r_est} < {r_ref} Hz)")
        if r_ref and r_ref < SAMPLE_RATE:
            narrow.append(uid)
    notes = []
    if lower:
        notes.append(f"{len(lower)} estimate(s) at a lower rate than their reference, scored after resampling "
                     f"(nothing in their top band): {_names(lower)}")
    if narrow:
        notes.append(f"{len(narrow)} reference(s) below {SAMPLE_RATE} Hz: wide-band PESQ and the other metrics "
                     f"run on them upsampled, so their scores do not compare with 16 kHz sets: {_names(narrow)}")
    return notes


def score_folders(estimate_dir: str, clean_dir: str | None, out_dir: str, name: str = "system",
                  noisy_dir: str | None = None, workers: int = 2, dnsmos: bool | None = None) -> dict:
    """``score`` mode: any folder of enhanced files against clean references by name.
    The utterances are the references: one without an estimate is floored (``no estimate
    in``), one estimate without a reference is named and left out; the Noisy row covers the
    references. ``clean_dir`` ``None``: no reference, DNSMOS only (every audio file of the folder).
    ``dnsmos``: add the DNSMOS columns; default (``None``): only without references."""
    check_system_name(name)
    check_results_folder(out_dir, [name], {"estimates": os.path.abspath(estimate_dir)})
    reference = clean_dir is not None
    dnsmos = (not reference) if dnsmos is None else dnsmos
    if not reference and not dnsmos:
        raise ValueError("nothing to score: without clean references only DNSMOS can be scored")
    if dnsmos:
        metrics.load_dnsmos()  # a missing package is one error before any work
    missing: list[str] = []
    if reference:
        jobs, extra, missing = match_folders(estimate_dir, clean_dir)
        if not jobs:
            raise ValueError(f"no file names in common between {estimate_dir} and {clean_dir}")
        itself = [est for _, clean, est in jobs if os.path.samefile(clean, est)]
        if itself:  # --enhanced given the clean folder (or links to it): perfect scores, measuring nothing
            raise ValueError(f"{len(itself)} estimate(s) are the clean reference itself (the same file), e.g. "
                             f"{itself[0]}: --enhanced must hold the system's outputs, not the references")
        if extra:
            print(f"{len(extra)} estimate(s) without a reference in {clean_dir}, not scored: {_names(extra)}")
        if missing:
            print(f"{len(missing)} reference(s) without an estimate in {estimate_dir}, counted at every "
                  f"metric's floor: {_names(missing)}")
    else:
        estimates = audio_by_stem(estimate_dir)
        if noisy_dir:  # the noisy files are the utterances (as the references are above)
            noisy = audio_by_stem(noisy_dir, [estimate_dir])  # not the estimates enhanced into noisy/enhanced
            missing = sorted(set(noisy) - set(estimates))
            extra = sorted(set(estimates) - set(noisy))
            if extra:
                print(f"{len(extra)} estimate(s) without a noisy file in {noisy_dir}, not scored: {_names(extra)}")
            if missing:
                print(f"{len(missing)} noisy file(s) without an estimate in {estimate_dir}, counted at every "
                      f"metric's floor: {_names(missing)}")
            estimates = {k: v for k, v in estimates.items() if k in noisy}
        jobs = [(k, None, path) for k, path in sorted(estimates.items())]
        if not jobs:
            raise ValueError(f"{estimate_dir}: no audio files to score")
    results = {}
    if noisy_dir:
        ids = {uid for uid, _, _ in jobs} | set(missing)
        if reference:
            noisy_jobs = [job for job in match_folders(noisy_dir, clean_dir, [estimate_dir])[0] if job[0] in ids]
        else:
            noisy_jobs = [(k, None, path) for k, path in sorted(audio_by_stem(noisy_dir, [estimate_dir]).items())
                          if k in ids]
        no_noisy = sorted(ids - {uid for uid, _, _ in noisy_jobs})
        if no_noisy:
            raise ValueError(f"no noisy file in {noisy_dir} for {no_noisy[:5]}: the Noisy row would cover other utterances")
        results[NOISY] = score_pairs(noisy_jobs, workers, "scoring noisy", dnsmos)
    for note in rate_notes(jobs):
        print(note)
    results[name] = score_pairs(jobs, workers, f"scoring {name}", dnsmos)
    results[name] += floored_missing(missing, jobs, estimate_dir, dnsmos, reference)
    for system, rows in results.items():
        note = floor_note(system, rows)
        if note:
            print(note)
    if noisy_dir and reference:  # (id, clean, noisy): what the rows were scored on
        stamp_pairs(results, noisy_jobs)
    return write_results(out_dir, results, {"estimates": os.path.abspath(estimate_dir)})


def evaluate_model(enhancer, items: list[tuple[str, str, str]], out_dir: str, name: str = "model",
                   workers: int = 2, dnsmos: bool = False, meta: dict | None = None) -> dict:
    """Enhances every noisy file of ``items`` ((id, clean, noisy), e.g. from
    ``read_manifest``) with an ``EnhanceSSL`` through its ``enhance_files``, then scores
    it and the Noisy input on the same utterances; a failed enhancement is floored.
    ``dnsmos``: add the DNSMOS columns; ``meta``: recorded in summary.json (which model, which
    manifest), so a table built from it can say what it measured."""
    check_system_name(name)
    check_results_folder(out_dir, [name], meta)
    if dnsmos:
        metrics.load_dnsmos()  # before the enhancement, not after it
    enhanced_dir = os.path.join(out_dir, "enhanced")
    target = {uid: os.path.join(enhanced_dir, f"{uid}.wav") for uid, _, _ in items}
    jobs = [(noisy, target[uid]) for uid, _, noisy in items]
    check_jobs(jobs, protected=[clean for _, clean, _ in items])  # the references are inputs too
    report = enhancer.enhance_files(jobs, record_in=enhanced_dir)  # replaces only its own earlier outputs
    failed = dict(report.failed)
    rows = score_pairs([(u, c, target[u]) for u, c, n in items if n not in failed], workers, f"scoring {name}", dnsmos)
    rows += [floored_row(u, f"enhancement failed: {failed[n]}", dnsmos) for u, _, n in items if n in failed]
    results = {NOISY: score_pairs([(u, c, n) for u, c, n in items], workers, "scoring noisy", dnsmos), name: rows}
    stamp_pairs(results, items)
    return write_results(out_dir, results, meta)
