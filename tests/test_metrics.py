"""The metrics module against independent reference values, its maxima and its errors."""
import json
import os

import numpy as np
import pytest
import soundfile as sf
from conftest import SHARED

from speechbrain_sslse import metrics

REF_DIR = os.path.join(SHARED, "data", "metrics")
REFS = json.load(open(os.path.join(REF_DIR, "reference_scores.json"))) if os.path.isdir(REF_DIR) else {}


@pytest.mark.parametrize("pair", sorted(REFS))
def test_reproduces_reference_implementations(pair):
    clean_name, deg_name = (p.strip() for p in pair.split("|"))
    clean, sr = sf.read(os.path.join(REF_DIR, clean_name))
    deg, _ = sf.read(os.path.join(REF_DIR, deg_name))
    ref = REFS[pair]
    scores = metrics.all_metrics(clean, deg, sr)
    assert scores["pesq"] == pytest.approx(ref["pesq_wb"], abs=1e-6)
    assert scores["stoi"] == pytest.approx(ref["stoi"], abs=1e-6)
    for key in ("csig", "cbak", "covl", "ssnr"):
        assert scores[key] == pytest.approx(ref[key], abs=0.01), key
    comp = metrics.composite(clean, deg, sr)
    assert comp["wss"] == pytest.approx(ref["wss"], abs=0.01)


def test_reference_file_is_present():
    assert len(REFS) == 4


def test_clean_against_itself_gives_the_maxima():
    clean, sr = sf.read(os.path.join(REF_DIR, "arctic_a0010.wav"))
    s = metrics.all_metrics(clean, clean, sr)
    assert s["pesq"] == pytest.approx(4.644, abs=1e-3)
    assert s["stoi"] == pytest.approx(1.0, abs=1e-6)
    assert s["csig"] == s["cbak"] == s["covl"] == 5.0
    assert s["ssnr"] == 35.0
    comp = metrics.composite(clean, clean, sr)
    assert comp["llr"] == pytest.approx(0, abs=1e-9) and comp["wss"] == pytest.approx(0, abs=1e-9)


def test_clear_errors():
    x = np.random.default_rng(0).standard_normal(16000) * 0.1
    with pytest.raises(metrics.MetricError, match="16000 Hz"):
        metrics.pesq_wb(x, x, 8000)
    with pytest.raises(metrics.MetricError, match="length mismatch"):
        metrics.stoi(x, x[:-1000])
    with pytest.raises(metrics.MetricError, match="silent"):
        metrics.ssnr(np.zeros(16000), x)
    bad = x.copy()
    bad[5] = np.nan
    with pytest.raises(metrics.MetricError, match="NaN"):
        metrics.composite(x, bad)
    with pytest.raises(metrics.MetricError, match="PESQ failed"):
        metrics.pesq_wb(x[:3000], x[:3000])
    with pytest.raises(metrics.MetricError, match="1-D"):
        metrics.stoi(np.stack([x, x]), np.stack([x, x]))
    # within tolerance: the longer one is cut
    assert metrics.ssnr(x, x[:-100]) == 35.0


def test_digitally_silent_frames_do_not_break_the_composite():
    clean, sr = sf.read(os.path.join(REF_DIR, "arctic_a0010.wav"))
    deg, _ = sf.read(os.path.join(REF_DIR, "arctic_a0010_aircon_15dB.wav"))
    clean = np.concatenate([np.zeros(8000), clean])
    deg = np.concatenate([np.zeros(8000), deg])
    s = metrics.all_metrics(clean, deg, sr)
    assert all(np.isfinite(v) for v in s.values())
    with pytest.raises(metrics.MetricError, match="silent"):
        metrics.composite(np.zeros(16000), deg[:16000])


def test_a_short_estimate_is_padded_not_the_reference_cut():
    """An estimate 300 samples short of the reference is scored as if those samples were
    silent: the reference keeps its length, so the missed speech counts against it."""
    clean, sr = sf.read(os.path.join(REF_DIR, "arctic_a0010.wav"))
    ref, est = metrics.check_pair(clean, clean[:-300], sr)
    assert len(ref) == len(est) == len(clean)
    assert np.array_equal(ref, clean) and not np.any(est[-300:])
    assert metrics.ssnr(clean, clean[:-300], sr) == metrics.ssnr(clean, np.r_[clean[:-300], np.zeros(300)], sr)
    _, longer = metrics.check_pair(clean, np.r_[clean, np.ones(200)], sr)
    assert np.array_equal(longer, clean)
