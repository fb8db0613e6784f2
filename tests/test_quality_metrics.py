"""SI-SDR (closed form on synthetic signals, floors) and DNSMOS (speechmos's own values,
floors, the install hint), and ``sslse-evaluate score`` with and without clean references."""
import csv
import json
import math
import os
import shutil
import sys

import numpy as np
import pytest
import soundfile as sf

from conftest import MINI_SET

from speechbrain_sslse import evaluation, metrics
from speechbrain_sslse.cli import evaluate_main

NOISY = os.path.join(MINI_SET, "noisy_testset_wav")
CLEAN = os.path.join(MINI_SET, "clean_testset_wav")
DNSMOS_HEADER = "| system | n | floored | DNSMOS SIG | DNSMOS BAK | DNSMOS OVRL | DNSMOS P.808 |"


def _read(path):
    wav, rate = sf.read(path)
    assert rate == 16000
    return wav


def _orthogonal_pair(rng, n=16000):
    """Zero-mean s and n with <s, n> = 0 exactly (Gram-Schmidt in float64)."""
    s = rng.standard_normal(n)
    s -= s.mean()
    noise = rng.standard_normal(n)
    noise -= noise.mean()
    noise -= np.dot(noise, s) / np.dot(s, s) * s
    return s, noise


# -- SI-SDR --------------------------------------------------------------------------
@pytest.mark.parametrize("target_db", [-20.0, 0.0, 7.5, 30.0])
def test_si_sdr_is_the_exact_db_of_a_known_scaling_plus_orthogonal_noise(target_db):
    s, noise = _orthogonal_pair(np.random.default_rng(1))
    alpha = 0.37  # the estimate's gain on the reference: SI-SDR ignores it
    noise *= math.sqrt(np.dot(alpha * s, alpha * s) / np.dot(noise, noise) / 10 ** (target_db / 10))
    est = alpha * s + noise
    assert metrics.si_sdr(s, est) == pytest.approx(target_db, abs=1e-9)
    # scale- and offset-invariant: any gain, and a DC offset on either side (zero-mean)
    assert metrics.si_sdr(s + 0.2, 5.0 * est - 0.1) == pytest.approx(target_db, abs=1e-9)
    # and the textbook formula (Le Roux et al. 2019) on the raw arrays
    target = np.dot(est, s) / np.dot(s, s) * s
    assert metrics.si_sdr(s, est) == pytest.approx(10 * np.log10(np.sum(target**2) / np.sum((est - target) ** 2)), abs=1e-9)


def test_si_sdr_floors_broken_estimates_and_clips_to_its_range():
    s, noise = _orthogonal_pair(np.random.default_rng(2))
    with pytest.raises(metrics.MetricError, match="no component"):
        metrics.si_sdr(s, np.zeros_like(s))
    for broken in (np.zeros_like(s), np.full_like(s, np.nan), s[:8000]):  # silent, NaN, wrong length
        value, reason = metrics.floored_si_sdr(s, broken)
        assert value == metrics.SI_SDR_FLOOR == -50.0 and reason
    assert metrics.floored_si_sdr(s, noise)[0] == metrics.SI_SDR_FLOOR  # orthogonal (to rounding): the floor
    assert metrics.si_sdr(s, 2 * s) == math.inf
    assert metrics.floored_si_sdr(s, 2 * s) == (metrics.SI_SDR_CEILING, None)
    value, reason = metrics.floored_si_sdr(s, s + 1e3 * noise)  # legal but worse than the floor: clipped to it
    assert value == metrics.SI_SDR_FLOOR and reason is None
    with pytest.raises(metrics.ReferenceError):
        metrics.floored_si_sdr(np.zeros_like(s), s)


# -- DNSMOS ------------------------------------------------------------------------
def test_dnsmos_equals_speechmos_on_the_same_audio():
    import speechmos  # noqa: F401 - in the test extra: a broken install fails, never skips
    from speechmos import dnsmos as speechmos_dnsmos

    short = _read(os.path.join(NOISY, "0398.wav"))  # 5 s: speechmos tiles it to its 9.01 s window
    long = np.concatenate([_read(os.path.join(NOISY, f)) for f in sorted(os.listdir(NOISY))[:3]])  # > 10 s: 2+ hops
    assert len(long) > 10 * 16000
    for wav in (short, long):
        ours = metrics.dnsmos(wav)
        theirs = speechmos_dnsmos.run(wav, 16000)
        assert set(ours) == set(metrics.DNSMOS_METRICS)
        assert ours == {"dnsmos_sig": float(theirs["sig_mos"]), "dnsmos_bak": float(theirs["bak_mos"]),
                        "dnsmos_ovrl": float(theirs["ovrl_mos"]), "dnsmos_p808": float(theirs["p808_mos"])}
        assert all(1.0 <= v <= 5.0 for v in ours.values())
    # float audio beyond +-1 (speechmos refuses it) is scored as its clipped 16-bit rendering
    loud = 4 * short
    assert metrics.dnsmos(loud) == metrics.dnsmos(np.clip(loud, -1, 1))


def test_dnsmos_floors_estimates_it_cannot_score():
    good = _read(os.path.join(NOISY, "0398.wav"))
    for broken, why in ((np.zeros(16000), "silent"), (np.full(16000, np.nan), "NaN"),
                        (good[: metrics.DNSMOS_MIN_SAMPLES - 1], "too short"), (np.zeros(0), "silent")):
        with pytest.raises(metrics.MetricError, match=why):  # checked before any package is needed
            metrics.dnsmos(broken)
        scores, reason = metrics.floored_dnsmos(broken)
        assert scores == metrics.DNSMOS_FLOORS == {m: 1.0 for m in metrics.DNSMOS_METRICS} and why in reason


def test_missing_dnsmos_packages_give_one_line_naming_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "speechmos", None)  # as if not installed
    with pytest.raises(metrics.DnsmosUnavailable, match=r'pip install -e "\.\[dnsmos\]"'):
        metrics.dnsmos(_read(os.path.join(NOISY, "0398.wav")))
    assert evaluate_main(["score", "--enhanced", NOISY, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert 'pip install -e ".[dnsmos]"' in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()  # refused before any work
    # with references and without --dnsmos nothing needs speechmos
    assert evaluate_main(["score", "--enhanced", NOISY, "--clean", CLEAN, "--out", str(tmp_path / "ref")]) == 0


# -- sslse-evaluate score ----------------------------------------------------------------
def test_score_without_clean_gives_dnsmos_only_on_a_folder(tmp_path):
    import speechmos  # noqa: F401 - in the test extra: a broken install fails, never skips
    est = tmp_path / "est"
    shutil.copytree(NOISY, est)
    (est / "0016.wav").write_text("not audio")  # a broken estimate counts at the floor
    out = tmp_path / "out"
    assert evaluate_main(["score", "--enhanced", str(est), "--noisy", NOISY, "--name", "passthrough",
                          "--out", str(out), "--workers", "1"]) == 0
    summary = json.load(open(out / "summary.json"))
    assert summary["metrics"] == list(metrics.DNSMOS_METRICS)
    sys_row, noisy_row = summary["systems"]["passthrough"], summary["systems"]["Noisy"]
    assert sys_row["n"] == noisy_row["n"] == 5 and sys_row["n_floored"] == 1 and noisy_row["n_floored"] == 0
    rows = {r["id"]: r for r in csv.DictReader(open(out / "scores_passthrough.csv"))}
    assert list(rows["0015"]) == ["id", *metrics.DNSMOS_METRICS, "floored", "error"]
    assert all(float(rows["0016"][m]) == 1.0 for m in metrics.DNSMOS_METRICS) and rows["0016"]["floored"]
    expected = metrics.dnsmos(_read(os.path.join(NOISY, "0398.wav")))
    assert {m: float(rows["0398"][m]) for m in metrics.DNSMOS_METRICS} == pytest.approx(expected, abs=1e-12)
    noisy_rows = {r["id"]: r for r in csv.DictReader(open(out / "scores_Noisy.csv"))}
    assert all(noisy_rows[u] == rows[u] for u in rows if u != "0016")  # the same files, the same scores
    table = open(out / "summary.md").read().splitlines()
    assert table[0] == DNSMOS_HEADER and len(table) == 4


def test_dnsmos_only_scoring_floors_noisy_files_without_an_estimate(tmp_path, capsys):
    """The noisy files are the utterances: one a system left out counts at the floor."""
    import speechmos  # noqa: F401 - in the test extra: a broken install fails, never skips
    est = tmp_path / "est"
    shutil.copytree(NOISY, est)
    os.remove(est / "0016.wav")
    shutil.copy(est / "0015.wav", est / "extra.wav")  # no noisy file: named, not scored
    out = tmp_path / "out"
    assert evaluate_main(["score", "--enhanced", str(est), "--noisy", NOISY, "--name", "mine",
                          "--out", str(out), "--workers", "1"]) == 0
    said = capsys.readouterr().out
    assert "1 noisy file(s) without an estimate" in said and "0016" in said and "extra" in said
    summary = json.load(open(out / "summary.json"))
    assert summary["systems"]["mine"]["n"] == summary["systems"]["Noisy"]["n"] == 5
    assert summary["systems"]["mine"]["n_floored"] == 1
    row = {r["id"]: r for r in csv.DictReader(open(out / "scores_mine.csv"))}["0016"]
    assert row["floored"].split() == list(metrics.DNSMOS_METRICS)  # no metric this run did not score


def test_two_names_of_one_scores_file_are_refused(tmp_path):
    rows = [{"id": "a", "pesq": 2.0, "floored": "", "error": ""}]
    with pytest.raises(ValueError, match="would both write scores_my_model.csv"):
        evaluation.write_results(str(tmp_path), {"my model": rows, "my_model": rows})


def test_score_with_clean_adds_si_sdr_and_on_request_dnsmos_in_a_second_table(tmp_path):
    est = tmp_path / "est"
    est.mkdir()
    for f in ("0015.wav", "0398.wav"):
        shutil.copy(os.path.join(NOISY, f), est / f)
    assert evaluate_main(["score", "--enhanced", str(est), "--clean", CLEAN, "--noisy", NOISY, "--name", "p",
                          "--out", str(tmp_path / "plain"), "--workers", "1"]) == 0
    summary = json.load(open(tmp_path / "plain" / "summary.json"))
    assert summary["metrics"] == [*metrics.METRICS, "si_sdr"]  # DNSMOS is off by default with references
    for uid in ("0015", "0398"):
        row = next(r for r in csv.DictReader(open(tmp_path / "plain" / "scores_p.csv")) if r["id"] == uid)
        clean, noisy = _read(os.path.join(CLEAN, f"{uid}.wav")), _read(os.path.join(NOISY, f"{uid}.wav"))
        assert float(row["si_sdr"]) == pytest.approx(metrics.si_sdr(clean, noisy), abs=1e-9)
    table = open(tmp_path / "plain" / "summary.md").read().split("\n\n")
    assert table[0].splitlines()[0] == "| system | n | floored | PESQ | CSIG | CBAK | COVL | STOI | SSNR |"
    assert table[1].splitlines()[0] == "| system | SI-SDR |"
    assert [line.split(" |")[0] for line in table[1].splitlines()[2:]] == ["| Noisy", "| p"]

    import speechmos  # noqa: F401 - in the test extra: a broken install fails, never skips
    assert evaluate_main(["score", "--enhanced", str(est), "--clean", CLEAN, "--name", "p", "--dnsmos",
                          "--out", str(tmp_path / "all"), "--workers", "1"]) == 0
    summary = json.load(open(tmp_path / "all" / "summary.json"))
    assert summary["metrics"] == [*metrics.METRICS, "si_sdr", *metrics.DNSMOS_METRICS]
    extra = open(tmp_path / "all" / "summary.md").read().split("\n\n")[1].splitlines()[0]
    assert extra == "| system | SI-SDR | DNSMOS SIG | DNSMOS BAK | DNSMOS OVRL | DNSMOS P.808 |"
    # an estimate of the wrong length is broken: every metric floored, DNSMOS included
    sf.write(est / "0015.wav", _read(os.path.join(NOISY, "0015.wav"))[:16000], 16000)
    summary = evaluation.score_folders(str(est), CLEAN, str(tmp_path / "short"), "p", workers=1, dnsmos=True)
    row = next(r for r in csv.DictReader(open(tmp_path / "short" / "scores_p.csv")) if r["id"] == "0015")
    assert row["floored"].split() == list(evaluation.columns(True, True))
    assert all(float(row[m]) == evaluation.ALL_FLOORS[m] for m in evaluation.columns(True, True))


def test_score_without_clean_and_without_dnsmos_is_a_usage_error(tmp_path, capsys):
    assert evaluate_main(["score", "--enhanced", NOISY, "--no-dnsmos", "--out", str(tmp_path / "o")]) == 2
    assert "nothing to score" in capsys.readouterr().err


def test_parallel_and_serial_dnsmos_scoring_agree():
    import speechmos  # noqa: F401 - in the test extra: a broken install fails, never skips
    jobs = [(u, None, p) for u, _, p in evaluation.match_folders(NOISY, CLEAN)[0][:3]]
    serial = evaluation.score_pairs(jobs, workers=1, dnsmos=True)  # builds ONNX sessions in this process
    assert evaluation.score_pairs(jobs, workers=2, dnsmos=True) == serial  # forked workers build their own


def test_rows_without_the_newer_columns_still_summarise(tmp_path):
    """Rows read back from an older scores CSV (no si_sdr): the table keeps the paper's
    columns, and the SI-SDR table shows that system as not scored, not as a number."""
    old = [{"id": "a", **{m: 2.0 for m in metrics.METRICS}, "floored": "", "error": ""},
           {"id": "b", **{m: 3.0 for m in metrics.METRICS}, "floored": "", "error": ""}]
    new = [dict(r, si_sdr=5.0) for r in old]
    summary = evaluation.write_results(str(tmp_path), {"old": old, "new": new})
    assert summary["metrics"] == list(metrics.METRICS)
    table = open(tmp_path / "summary.md").read()
    assert f"| old | {evaluation.MISSING} |" in table and "| new | 5.00 ± 0.00 |" in table
    assert "si_sdr" not in summary["systems"]["old"] and summary["systems"]["new"]["si_sdr"]["mean"] == 5.0
    assert "si_sdr" not in open(tmp_path / "scores_old.csv").readline()
