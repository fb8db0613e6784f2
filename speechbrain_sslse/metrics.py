"""The one metrics module: PESQ (wide-band), STOI, CSIG / CBAK / COVL, segmental SNR,
SI-SDR, and the no-reference DNSMOS (P.835 SIG / BAK / OVRL, P.808) through ``speechmos``.

PESQ and STOI come from the maintained ``pesq`` and ``pystoi`` packages. The composite
measures (Hu & Loizou 2008) have no maintained package, so they are implemented here from
Loizou's published definitions: 30 ms Hann-type frames with 75 % overlap, LLR (LPC order
16 at 16 kHz) and WSS (25 critical bands) averaged over the best 95 % of frames, segmental
SNR clipped to [-10, 35] dB, the published regression coefficients with wide-band PESQ at
16 kHz (as the common SE evaluation code does), each result clipped to [1, 5].
All functions take 1-D 16 kHz arrays (clean reference first).
"""
from __future__ import annotations

import math

import numpy as np

SAMPLE_RATE = 16000
#: Column order of the paper's tables, plus segmental SNR.
METRICS = ("pesq", "csig", "cbak", "covl", "stoi", "ssnr")
#: Lengths may differ by this many samples: the reference keeps its length and the estimate is
#: cut or zero-padded to it, so samples an estimate lacks count as silence, never as less to score.
LENGTH_TOLERANCE = 320
#: The worst value of each metric. An estimate that cannot be scored (silent, NaN, missing,
#: too short, pystoi's 1e-5 "too short" sentinel) gets these: a broken output is a bad
#: result, never a skipped one (PESQ-WB's MOS-LQO and the composites' clip start at 1,
#: segmental SNR's frame clip at -10 dB).
FLOORS = {"pesq": 1.0, "csig": 1.0, "cbak": 1.0, "covl": 1.0, "stoi": 0.0, "ssnr": -10.0}
#: pystoi returns exactly this when too few frames remain after its silence removal.
STOI_SENTINEL = 1e-5


class MetricError(ValueError):
    """A pair cannot be scored; the message says why."""


class ReferenceError(MetricError):
    """The clean reference itself cannot be used (silent, NaN, wrong rate): no system can
    be scored on that utterance."""


def check_pair(clean, enhanced, sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray]:
    """Validates and returns float64 1-D arrays of the reference's length (the estimate cut or
    zero-padded to it: cutting the reference to a short estimate would drop the speech it
    missed from the score)."""
    if sample_rate != SAMPLE_RATE:
        raise MetricError(f"metrics need {SAMPLE_RATE} Hz audio, got {sample_rate} Hz")
    clean = np.asarray(clean, dtype=np.float64)
    enhanced = np.asarray(enhanced, dtype=np.float64)
    if clean.ndim != 1 or enhanced.ndim != 1:
        raise MetricError(f"metrics need 1-D mono arrays, got shapes {clean.shape} and {enhanced.shape}")
    if abs(len(clean) - len(enhanced)) > LENGTH_TOLERANCE:
        raise MetricError(
            f"length mismatch: reference {len(clean)} vs estimate {len(enhanced)} samples "
            f"(tolerance {LENGTH_TOLERANCE})"
        )
    n = len(clean)
    enhanced = np.pad(enhanced[:n], (0, n - min(n, len(enhanced))))
    if not np.isfinite(clean).all():
        raise ReferenceError("the clean reference contains NaN or Inf samples")
    if n == 0 or not np.any(clean):
        raise ReferenceError("the clean reference is silent (all zeros)")
    if not np.isfinite(enhanced).all():
        raise MetricError("the estimate contains NaN or Inf samples")
    return clean, enhanced


#: An RMS below one 16-bit step (-90.3 dBFS): what a 16-bit file holds as dither at most, all
#: zeros when every sample is below half a step. PESQ, STOI and SI-SDR are level-free and DNSMOS
#: rates such a whisper of noise as a clean background (BAK 4.0 at -97 dBFS), so an estimate that
#: lost everything but a trace would otherwise score like its scaled-up self.
SILENCE_RMS = 2.0 ** -15
SILENT = "the estimate is silent (RMS below one 16-bit step, -90 dBFS)"


def is_silent(wav) -> bool:
    """Whether an estimate counts as silent (``SILENCE_RMS``)."""
    wav = np.asarray(wav, dtype=np.float64)
    return wav.size == 0 or float(np.sqrt(np.mean(wav * wav))) < SILENCE_RMS


# -- maintained packages --------------------------------------------------------
#: P.862 is meant for 8-20 s utterances, and the ``pesq`` package crashes the process
#: (segfault) on signals with more than 50 utterances (from about 115 s of speech on): a pair
#: longer than this is a ``ReferenceError`` (left out for every system, and named).
PESQ_MAX_SECONDS = 60.0


def check_scorable_length(clean, sample_rate: int = SAMPLE_RATE) -> None:
    seconds = len(clean) / sample_rate
    if seconds > PESQ_MAX_SECONDS:
        raise ReferenceError(f"{seconds:.1f} s is longer than PESQ scores ({PESQ_MAX_SECONDS:.0f} s: P.862 is "
                             "meant for 8-20 s utterances and the pesq package crashes on long ones); split it")


def pesq_wb(clean, enhanced, sample_rate: int = SAMPLE_RATE) -> float:
    """Wide-band PESQ (ITU-T P.862.2) from the ``pesq`` package."""
    from pesq import PesqError, pesq

    clean, enhanced = check_pair(clean, enhanced, sample_rate)
    check_scorable_length(clean, sample_rate)
    try:
        return float(pesq(SAMPLE_RATE, clean, enhanced, "wb"))
    except PesqError as err:  # e.g. "No utterances detected"
        raise MetricError(f"PESQ failed: {err}") from None


def stoi(clean, enhanced, sample_rate: int = SAMPLE_RATE) -> float:
    """STOI (Taal et al. 2011, non-extended) from ``pystoi``."""
    from pystoi import stoi as _stoi

    clean, enhanced = check_pair(clean, enhanced, sample_rate)
    try:
        value = float(_stoi(clean, enhanced, SAMPLE_RATE, extended=False))
    except (IndexError, ValueError) as err:  # pystoi on a few hundred samples: an axis error
        raise MetricError(f"too short for STOI ({len(clean)} samples: {err})") from None
    if value == STOI_SENTINEL or not math.isfinite(value):  # a flag, not a score
        raise MetricError("too short for STOI (fewer than 30 frames after silence removal)")
    return value


# -- Loizou's frame-based measures ------------------------------------------------
def _frames(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """Windowed 30 ms frames with 75 % overlap, as in Loizou's code (the last partial
    frame dropped: num_frames = floor(len / skip - win / skip))."""
    win = round(0.03 * sample_rate)
    skip = win // 4
    count = int(len(x) / skip - win / skip)
    if count <= 0:
        raise MetricError(f"audio too short for 30 ms frames ({len(x)} samples)")
    window = 0.5 * (1 - np.cos(2 * np.pi * np.arange(1, win + 1) / (win + 1)))
    idx = np.arange(win)[None, :] + skip * np.arange(count)[:, None]
    return x[idx] * window


def ssnr_frames(clean, enhanced, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Per-frame segmental SNR in dB, clipped to [-10, 35]."""
    c, e = _frames(clean, sample_rate), _frames(enhanced, sample_rate)
    eps = np.finfo(np.float64).eps
    signal = np.sum(c**2, axis=1)
    noise = np.sum((c - e) ** 2, axis=1)
    return np.clip(10 * np.log10(signal / (noise + eps) + eps), -10, 35)


def ssnr(clean, enhanced, sample_rate: int = SAMPLE_RATE) -> float:
    """Segmental SNR (dB): mean of the clipped per-frame values."""
    clean, enhanced = check_pair(clean, enhanced, sample_rate)
    return float(np.mean(ssnr_frames(clean, enhanced, sample_rate)))


def _lpc(frames: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Autocorrelation (frames, order+1) and LPC polynomials [1, -a] by Loizou's
    Levinson-Durbin recursion, vectorised over frames. Digitally silent frames have no LPC
    model: their polynomials come out NaN (``llr_frames`` says what that counts as)."""
    n = frames.shape[1]
    r = np.stack([np.sum(frames[:, : n - k] * frames[:, k:], axis=1) for k in range(order + 1)], axis=1)
    a = np.zeros((len(frames), order))
    err = r[:, 0].copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        for i in range(order):
            k = (r[:, i + 1] - np.sum(a[:, :i] * r[:, i:0:-1], axis=1)) / err
            past = a[:, :i].copy()
            a[:, i] = k
            a[:, :i] = past - k[:, None] * past[:, ::-1]
            err = (1 - k * k) * err
    return r, np.concatenate([np.ones((len(frames), 1)), -a], axis=1)


#: Reference frames this close to the loudest one (dB) are speech for ``llr_frames``.
LLR_SPEECH_DB = 40.0


def llr_frames(clean, enhanced, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Per-frame log-likelihood ratio of the LPC models. Where the estimate's frame is
    digitally silent under speech (the reference frame within ``LLR_SPEECH_DB`` of its
    loudest) it lost the speech: +inf, the worst distance, sorted last as Loizou's MATLAB
    sorts its NaN. Elsewhere such a frame (a pause gated to zero) and a silent reference
    frame have no LPC model to compare: NaN, left out."""
    order = 10 if sample_rate < 10000 else 16
    c, e = _frames(clean, sample_rate), _frames(enhanced, sample_rate)
    r_clean, a_clean = _lpc(c, order)
    _, a_enh = _lpc(e, order)
    toe = r_clean[:, np.abs(np.arange(order + 1)[:, None] - np.arange(order + 1)[None, :])]
    with np.errstate(divide="ignore", invalid="ignore"):
        num = np.einsum("fi,fij,fj->f", a_enh, toe, a_enh)
        den = np.einsum("fi,fij,fj->f", a_clean, toe, a_clean)
        llr = np.log(num / den)
    energy = r_clean[:, 0]
    speech = energy >= energy.max() * 10 ** (-LLR_SPEECH_DB / 10) if len(energy) else energy > 0
    lost = np.isnan(llr) & np.isfinite(den) & (energy > 0) & speech
    llr[lost] = np.inf
    return llr


_CENT_FREQ = np.array([
    50.0, 120, 190, 260, 330, 400, 470, 540, 617.372, 703.378, 798.717, 904.128, 1020.38,
    1148.30, 1288.72, 1442.54, 1610.70, 1794.16, 1993.93, 2211.08, 2446.71, 2701.97,
    2978.04, 3276.17, 3597.63,
])
_BANDWIDTH = np.array([
    70.0, 70, 70, 70, 70, 70, 70, 77.3724, 86.0056, 95.3398, 105.411, 116.256, 127.914,
    140.423, 153.823, 168.154, 183.457, 199.776, 217.153, 235.631, 255.255, 276.072,
    298.126, 321.465, 346.136,
])


def _critical_filters(sample_rate: int, n_half: int) -> np.ndarray:
    max_freq = sample_rate / 2
    min_factor = math.exp(-30.0 / (2.0 * 2.303))  # -30 dB point of each filter
    j = np.arange(n_half)
    f0 = np.floor(_CENT_FREQ / max_freq * n_half)
    bw = _BANDWIDTH / max_freq * n_half
    norm = np.log(_BANDWIDTH[0]) - np.log(_BANDWIDTH)
    filt = np.exp(-11 * ((j[None, :] - f0[:, None]) / bw[:, None]) ** 2 + norm[:, None])
    return filt * (filt > min_factor)


def _local_peaks(energy: np.ndarray, slope: np.ndarray) -> np.ndarray:
    """Nearest spectral peak of each band (Klatt's weighting), as in Loizou's wss.m."""
    n_crit = energy.shape[0]
    peaks = np.empty(n_crit - 1)
    for i in range(n_crit - 1):
        n = i
        if slope[i] > 0:
            while n < n_crit - 1 and slope[n] > 0:
                n += 1
            peaks[i] = energy[n - 1]
        else:
            while n >= 0 and slope[n] <= 0:
                n -= 1
            peaks[i] = energy[n + 1]
    return peaks


def wss_frames(clean, enhanced, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Per-frame weighted spectral slope distance (Klatt 1982), Kmax 20, Klocmax 1."""
    win = round(0.03 * sample_rate)
    n_fft = 2 ** int(np.ceil(np.log2(2 * win)))
    n_half = n_fft // 2
    filters = _critical_filters(sample_rate, n_half)
    kmax, klocmax = 20.0, 1.0
    spec_c = np.abs(np.fft.fft(_frames(clean, sample_rate), n_fft, axis=1))[:, :n_half] ** 2
    spec_e = np.abs(np.fft.fft(_frames(enhanced, sample_rate), n_fft, axis=1))[:, :n_half] ** 2
    energy_c = 10 * np.log10(np.maximum(spec_c @ filters.T, 1e-10))
    energy_e = 10 * np.log10(np.maximum(spec_e @ filters.T, 1e-10))
    out = np.empty(len(energy_c))
    for t in range(len(energy_c)):
        ec, ee = energy_c[t], energy_e[t]
        sc, se = np.diff(ec), np.diff(ee)
        wc = kmax / (kmax + ec.max() - ec[:-1]) * klocmax / (klocmax + _local_peaks(ec, sc) - ec[:-1])
        we = kmax / (kmax + ee.max() - ee[:-1]) * klocmax / (klocmax + _local_peaks(ee, se) - ee[:-1])
        w = (wc + we) / 2
        out[t] = np.sum(w * (sc - se) ** 2) / np.sum(w)
    return out


def _best_mean(values: np.ndarray, alpha: float = 0.95) -> float:
    """Mean of the lowest ``alpha`` share of the defined (not NaN) frame values; +inf ones
    (frames the estimate lost) sort last, and make the mean +inf once beyond 1 - alpha."""
    values = np.sort(values[~np.isnan(values)])
    if len(values) == 0:
        raise MetricError("no frame with signal in the reference (all frames silent)")
    return float(np.mean(values[: max(1, round(len(values) * alpha))]))


def composite(clean, enhanced, sample_rate: int = SAMPLE_RATE, pesq_value: float | None = None) -> dict[str, float]:
    """CSIG, CBAK, COVL (Hu & Loizou 2008), with their LLR, WSS and segmental SNR terms."""
    clean, enhanced = check_pair(clean, enhanced, sample_rate)
    llr = _best_mean(llr_frames(clean, enhanced, sample_rate))
    wss = _best_mean(wss_frames(clean, enhanced, sample_rate))
    seg = float(np.mean(ssnr_frames(clean, enhanced, sample_rate)))
    p = pesq_wb(clean, enhanced, sample_rate) if pesq_value is None else pesq_value

    def clip(v: float) -> float:
        return float(min(max(v, 1.0), 5.0))

    return {
        "csig": clip(3.093 - 1.029 * llr + 0.603 * p - 0.009 * wss),
        "cbak": clip(1.634 + 0.478 * p - 0.007 * wss + 0.063 * seg),
        "covl": clip(1.594 + 0.805 * p - 0.512 * llr - 0.007 * wss),
        "llr": llr,
        "wss": wss,
        "ssnr": seg,
        "pesq": p,
    }


def all_metrics(clean, enhanced, sample_rate: int = SAMPLE_RATE) -> dict[str, float]:
    """Every reported metric for one pair, keyed as in ``METRICS``."""
    clean, enhanced = check_pair(clean, enhanced, sample_rate)
    scores = composite(clean, enhanced, sample_rate)
    scores["stoi"] = stoi(clean, enhanced, sample_rate)
    return {k: scores[k] for k in METRICS}


def floored_metrics(clean, enhanced, sample_rate: int = SAMPLE_RATE) -> tuple[dict[str, float], dict[str, str]]:
    """Every metric, with ``FLOORS`` for those the estimate cannot get (silent, NaN, wrong
    length, too short, a metric's own failure): (scores, {metric: reason}). A problem of
    the reference raises ``ReferenceError``."""
    clean, enhanced = np.asarray(clean, dtype=np.float64), np.asarray(enhanced, dtype=np.float64)
    try:
        clean, enhanced = check_pair(clean, enhanced, sample_rate)
        check_scorable_length(clean, sample_rate)
    except ReferenceError:
        raise
    except MetricError as err:
        return dict(FLOORS), {m: str(err) for m in METRICS}
    if is_silent(enhanced):
        return dict(FLOORS), {m: SILENT for m in METRICS}
    scores, reasons = {}, {}
    try:
        scores["pesq"] = pesq_wb(clean, enhanced, sample_rate)
        scores.update({k: v for k, v in composite(clean, enhanced, sample_rate, scores["pesq"]).items()
                       if k in ("csig", "cbak", "covl")})
    except MetricError as err:  # the composites need PESQ
        reasons.update({k: str(err) for k in ("pesq", "csig", "cbak", "covl")})
    try:
        scores["ssnr"] = ssnr(clean, enhanced, sample_rate)
    except MetricError as err:
        reasons["ssnr"] = str(err)
    try:
        scores["stoi"] = stoi(clean, enhanced, sample_rate)
    except MetricError as err:
        reasons["stoi"] = str(err)
    for m in METRICS:
        if m not in scores or not math.isfinite(scores[m]):
            reasons.setdefault(m, "not a finite value")
            scores[m] = FLOORS[m]
    return {m: float(scores[m]) for m in METRICS}, reasons



# -- scale-invariant SDR ------------------------------------------------------------
#: SI-SDR is reported clipped to this range (dB). The floor is the value a broken estimate
#: gets (as ``FLOORS``: the worst value, so no broken output scores above a working one);
#: the ceiling keeps an exact copy of the reference (infinite SI-SDR) averageable.
SI_SDR_FLOOR = -50.0
SI_SDR_CEILING = 100.0


def si_sdr(clean, enhanced, sample_rate: int = SAMPLE_RATE) -> float:
    """Scale-invariant SDR in dB (Le Roux et al., "SDR - half-baked or well done?",
    ICASSP 2019): both signals made zero-mean, target = the projection of the estimate on
    the reference, 10 log10(|target|^2 / |estimate - target|^2). Not clipped (+inf for an
    exact scaled copy); an estimate with nothing along the reference (silent, or orthogonal
    to it) is a ``MetricError``."""
    clean, enhanced = check_pair(clean, enhanced, sample_rate)
    s = clean - clean.mean()
    e = enhanced - enhanced.mean()
    ref_energy = float(np.dot(s, s))
    if ref_energy == 0.0:
        raise ReferenceError("the clean reference is constant (no signal after removing its mean)")
    target = (float(np.dot(e, s)) / ref_energy) * s
    residual = e - target
    target_energy, residual_energy = float(np.dot(target, target)), float(np.dot(residual, residual))
    if target_energy == 0.0:
        raise MetricError("the estimate has no component along the reference (silent or orthogonal)")
    if residual_energy == 0.0:
        return math.inf
    return float(10 * math.log10(target_energy / residual_energy))


def floored_si_sdr(clean, enhanced, sample_rate: int = SAMPLE_RATE) -> tuple[float, str | None]:
    """SI-SDR clipped to [``SI_SDR_FLOOR``, ``SI_SDR_CEILING``]; an estimate that cannot be
    scored (silent, NaN, wrong length, orthogonal) gets the floor: (value, reason or None).
    A problem of the reference raises ``ReferenceError``."""
    try:
        value = si_sdr(clean, enhanced, sample_rate)
    except ReferenceError:
        raise
    except MetricError as err:
        return SI_SDR_FLOOR, str(err)
    if is_silent(np.asarray(enhanced)):  # scale-free: a trace of the reference would score as itself
        return SI_SDR_FLOOR, SILENT
    if math.isnan(value):
        return SI_SDR_FLOOR, "not a finite value"
    return float(min(max(value, SI_SDR_FLOOR), SI_SDR_CEILING)), None


# -- DNSMOS (no reference) ------------------------------------------------------------
#: DNSMOS P.835 (signal, background, overall) and P.808 overall, as ``dnsmos`` keys them.
DNSMOS_METRICS = ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808")
#: A broken estimate (unreadable, empty, silent, NaN, shorter than ``DNSMOS_MIN_SAMPLES``,
#: or, with a reference, not of the reference's length) gets the bottom of the MOS scale.
DNSMOS_FLOORS = {m: 1.0 for m in DNSMOS_METRICS}
#: speechmos tiles short clips up to its 9.01 s window; below a quarter second that would
#: score a buzz of repeats, not the estimate.
DNSMOS_MIN_SAMPLES = SAMPLE_RATE // 4
DNSMOS_INSTALL = 'pip install -e ".[dnsmos]"'


class DnsmosUnavailable(ImportError):
    """speechmos or what it imports is not installed; the message says how to install it."""


def load_dnsmos():
    """Imports ``speechmos.dnsmos`` and librosa's feature module (whose numba kernels
    compile on the first import in a fresh environment: 24 s here, once, before any
    scoring starts). Raises ``DnsmosUnavailable`` with the install command when a package
    is missing."""
    try:
        from speechmos import dnsmos as _dnsmos
        import librosa.feature  # noqa: F401  (lazy in librosa; speechmos needs it per call)
    except ImportError as err:
        missing = getattr(err, "name", None) or str(err)
        raise DnsmosUnavailable(
            f"DNSMOS needs speechmos, librosa, onnxruntime and requests (missing: {missing}); "
            f"install them with {DNSMOS_INSTALL}") from None
    return _dnsmos


def dnsmos(wav16k, sample_rate: int = SAMPLE_RATE) -> dict[str, float]:
    """DNSMOS of one 16 kHz mono signal through ``speechmos`` (Microsoft's DNS Challenge
    ONNX models, shipped in its wheel: offline): {dnsmos_sig, dnsmos_bak, dnsmos_ovrl}
    (P.835, non-personalised) and dnsmos_p808, exactly speechmos's values. Samples beyond
    +-1 (float files) are clipped, as a 16-bit file would be (speechmos refuses them).
    An estimate that cannot be scored (empty, silent, NaN, too short) is a ``MetricError``;
    a missing package is ``DnsmosUnavailable``. ONNX Runtime hangs in a process forked
    after it has run here, so call it in one process (``evaluation`` does, after its pool)."""
    if sample_rate != SAMPLE_RATE:
        raise MetricError(f"DNSMOS needs {SAMPLE_RATE} Hz audio, got {sample_rate} Hz")
    wav = np.asarray(wav16k, dtype=np.float64)
    if wav.ndim != 1:
        raise MetricError(f"DNSMOS needs a 1-D mono array, got shape {wav.shape}")
    if not np.isfinite(wav).all():
        raise MetricError("the estimate contains NaN or Inf samples")
    if is_silent(wav):
        raise MetricError(SILENT)
    if len(wav) < DNSMOS_MIN_SAMPLES:
        raise MetricError(f"too short for DNSMOS ({len(wav)} samples < {DNSMOS_MIN_SAMPLES})")
    out = load_dnsmos().run(np.clip(wav, -1.0, 1.0), SAMPLE_RATE)
    scores = {"dnsmos_sig": out["sig_mos"], "dnsmos_bak": out["bak_mos"], "dnsmos_ovrl": out["ovrl_mos"],
              "dnsmos_p808": out["p808_mos"]}
    return {k: float(v) for k, v in scores.items()}


def floored_dnsmos(wav16k, sample_rate: int = SAMPLE_RATE) -> tuple[dict[str, float], str | None]:
    """``dnsmos`` with ``DNSMOS_FLOORS`` for an estimate it cannot score: (scores, reason
    or None). A missing package still raises ``DnsmosUnavailable``."""
    try:
        scores = dnsmos(wav16k, sample_rate)
    except DnsmosUnavailable:
        raise
    except MetricError as err:
        return dict(DNSMOS_FLOORS), str(err)
    if not all(math.isfinite(v) for v in scores.values()):
        return dict(DNSMOS_FLOORS), "not a finite value"
    return scores, None
