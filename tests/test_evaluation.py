"""Evaluate / score commands: Noisy row, per-file errors, outputs, README table."""
import csv
import glob
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from conftest import MINI_SET, RECIPE, ROOT

from speechbrain_sslse import evaluation, metrics
from speechbrain_sslse.cli import evaluate_main

NOISY = os.path.join(MINI_SET, "noisy_testset_wav")
CLEAN = os.path.join(MINI_SET, "clean_testset_wav")


def test_scoring_noisy_as_enhanced_reproduces_the_noisy_row(tmp_path):
    assert evaluate_main(["score", "--enhanced", NOISY, "--clean", CLEAN, "--noisy", NOISY,
                          "--out", str(tmp_path), "--name", "passthrough"]) == 0
    summary = json.load(open(tmp_path / "summary.json"))
    noisy, passthrough = summary["systems"]["Noisy"], summary["systems"]["passthrough"]
    for m in evaluation.metrics.METRICS:
        assert passthrough[m] == noisy[m]
        assert noisy[m]["n"] == 5 and noisy[m]["ci95"] > 0
    rows = list(csv.DictReader(open(tmp_path / "scores_passthrough.csv")))
    assert [r["id"] for r in rows] == ["0015", "0016", "0072", "0398", "0523"]
    # the Noisy row is the noisy files against their own references (not another folder's)
    direct = [metrics.pesq_wb(sf.read(os.path.join(CLEAN, f"{r['id']}.wav"))[0], sf.read(os.path.join(NOISY, f"{r['id']}.wav"))[0])
              for r in rows]
    assert noisy["pesq"]["mean"] == pytest.approx(np.mean(direct), abs=1e-6)
    table = open(tmp_path / "summary.md").read()
    assert table.splitlines()[0] == "| system | n | floored | PESQ | CSIG | CBAK | COVL | STOI | SSNR |"


def test_a_broken_file_is_reported_not_fatal_and_counts_at_the_floor(tmp_path):
    est = tmp_path / "est"
    shutil.copytree(NOISY, est)
    (est / "0016.wav").write_text("not audio")
    shutil.copy(os.path.join(NOISY, "0072.wav"), est / "extra.wav")
    summary = evaluation.score_folders(str(est), CLEAN, str(tmp_path / "out"), "sys", workers=2)
    assert summary["systems"]["sys"]["n_floored"] == 1 and summary["systems"]["sys"]["pesq"]["n"] == 5
    rows = {r["id"]: r for r in csv.DictReader(open(tmp_path / "out" / "scores_sys.csv"))}
    assert "not a readable audio file" in rows["0016"]["error"]
    assert float(rows["0016"]["pesq"]) == evaluation.metrics.FLOORS["pesq"]


def test_parallel_and_serial_scoring_agree():
    jobs = evaluation.match_folders(NOISY, CLEAN)[0][:3]
    assert evaluation.score_pairs(jobs, workers=1) == evaluation.score_pairs(jobs, workers=2)


def test_readme_results_table_is_generated_from_summaries():
    # the generator as its users run it: it prints the block it would write between the markers
    res = subprocess.run([sys.executable, os.path.join(RECIPE, "results_table.py")], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert res.returncode == 0, res.stderr[-2000:]
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    block = readme.split("<!-- results:start -->")[1].split("<!-- results:end -->")[0].strip()
    assert res.stdout.strip() and block == res.stdout.strip()


def test_noisy_row_covers_the_same_utterances_as_the_estimates(tmp_path):
    est, clean = tmp_path / "est", tmp_path / "clean"
    est.mkdir()
    clean.mkdir()
    shutil.copy(os.path.join(NOISY, "0398.wav"), est / "0398.wav")
    shutil.copy(os.path.join(CLEAN, "0398.wav"), clean / "0398.wav")
    summary = evaluation.score_folders(str(est), str(clean), str(tmp_path / "out"), "sys", noisy_dir=NOISY, workers=1)
    assert summary["systems"]["Noisy"]["n"] == summary["systems"]["sys"]["n"] == 1
    assert summary["systems"]["Noisy"]["pesq"]["mean"] == summary["systems"]["sys"]["pesq"]["mean"]
    row = open(tmp_path / "out" / "summary.md").read().splitlines()[-1]
    assert "nan" not in row and "±" not in row  # one utterance: a mean, no interval
    (est / "0015.wav").write_bytes(open(os.path.join(NOISY, "0015.wav"), "rb").read())
    shutil.copy(os.path.join(CLEAN, "0015.wav"), clean / "0015.wav")
    other_noisy = tmp_path / "noisy"
    other_noisy.mkdir()
    shutil.copy(os.path.join(NOISY, "0398.wav"), other_noisy / "0398.wav")
    with pytest.raises(ValueError, match="0015"):
        evaluation.score_folders(str(est), str(clean), str(tmp_path / "out2"), "sys", noisy_dir=str(other_noisy), workers=1)


def test_a_reference_without_an_estimate_counts_against_the_system(tmp_path, capsys):
    """A system that failed (or skipped) its hard utterances must not get a better mean:
    the missing estimate is a floored row and the Noisy row still covers every reference."""
    est = tmp_path / "est"
    est.mkdir()
    shutil.copy(os.path.join(NOISY, "0398.wav"), est / "0398.wav")
    shutil.copy(os.path.join(NOISY, "0398.wav"), est / "not_in_clean.wav")
    summary = evaluation.score_folders(str(est), CLEAN, str(tmp_path / "out"), "sys", noisy_dir=NOISY, workers=1)
    n_refs = len(evaluation.audio_by_stem(CLEAN))
    systems = summary["systems"]
    assert n_refs > 1 and systems["Noisy"]["n"] == systems["sys"]["n"] == n_refs
    assert systems["sys"]["n_floored"] == n_refs - 1 and systems["sys"]["pesq"]["mean"] < systems["Noisy"]["pesq"]["mean"]
    out = capsys.readouterr().out
    assert f"{n_refs - 1} reference(s) without an estimate" in out and "1 estimate(s) without a reference" in out


def test_score_command_reports_unmatched_folders_in_one_line(tmp_path, capsys):
    (tmp_path / "est").mkdir()
    assert evaluate_main(["score", "--enhanced", str(tmp_path / "est"), "--clean", CLEAN, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no file names in common") and "\n" not in err
    assert evaluate_main(["score", "--enhanced", str(tmp_path / "nope"), "--clean", CLEAN, "--out", str(tmp_path / "o")]) == 2


def test_pair_digest_follows_the_samples_not_the_file(tmp_path):
    """Same samples in another container: same digest; one sample changed (a re-render
    that differs by one step of 16-bit): another digest; an unreadable file says so."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    clean = (3000 * rng.standard_normal(8000)).astype(np.int16)  # integers: both files hold them exactly
    noisy = clean + (1500 * rng.standard_normal(8000)).astype(np.int16)
    for ext in ("wav", "flac"):
        sf.write(tmp_path / f"c.{ext}", clean, 16000, subtype="PCM_16")
        sf.write(tmp_path / f"n.{ext}", noisy, 16000, subtype="PCM_16")
    wav = evaluation.pair_digest(str(tmp_path / "c.wav"), str(tmp_path / "n.wav"))
    assert evaluation.pair_digest(str(tmp_path / "c.flac"), str(tmp_path / "n.flac")) == wav
    noisy[4000] += 1
    sf.write(tmp_path / "n2.wav", noisy, 16000, subtype="PCM_16")
    assert evaluation.pair_digest(str(tmp_path / "c.wav"), str(tmp_path / "n2.wav")) != wav
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    assert evaluation.pair_digest(str(tmp_path / "c.wav"), str(tmp_path / "bad.wav")) == "unreadable"


def test_score_rows_carry_the_pair_digest_of_what_was_scored(tmp_path):
    assert evaluate_main(["score", "--enhanced", NOISY, "--clean", CLEAN, "--noisy", NOISY,
                          "--out", str(tmp_path), "--name", "passthrough"]) == 0
    for system in ("Noisy", "passthrough"):
        rows = {r["id"]: r for r in csv.DictReader(open(tmp_path / f"scores_{system}.csv"))}
        for uid, row in rows.items():
            expected = evaluation.pair_digest(os.path.join(CLEAN, f"{uid}.wav"), os.path.join(NOISY, f"{uid}.wav"))
            assert row[evaluation.PAIR] == expected


def _resampled_copy(src: str, dst, rate: int, names: list[str]) -> None:
    import soundfile as sf

    from speechbrain_sslse.audio import read_audio, resample

    os.makedirs(dst, exist_ok=True)
    for name in names:
        wav, sr = read_audio(os.path.join(src, name))
        sf.write(os.path.join(dst, name), resample(wav, sr, rate)[0].numpy(), rate, subtype="FLOAT")


def test_a_48k_set_is_scored_at_16k_not_dropped(tmp_path):
    """VoiceBank-DEMAND's originals are 48 kHz: reference and estimate are resampled to the
    metrics' 16 kHz (as the corpus's 16 kHz version is made), not dropped with n = 0."""
    names = ["0015.wav", "0072.wav"]
    _resampled_copy(CLEAN, tmp_path / "clean48", 48000, names)
    _resampled_copy(NOISY, tmp_path / "noisy48", 48000, names)
    at48 = evaluation.score_folders(str(tmp_path / "noisy48"), str(tmp_path / "clean48"), str(tmp_path / "a"), "n48")
    sub, ref = tmp_path / "noisy16", tmp_path / "clean16"
    for folder, source in ((sub, NOISY), (ref, CLEAN)):
        os.makedirs(folder)
        for name in names:
            shutil.copy(os.path.join(source, name), folder / name)
    at16 = evaluation.score_folders(str(sub), str(ref), str(tmp_path / "b"), "n16")
    s48, s16 = at48["systems"]["n48"], at16["systems"]["n16"]
    assert s48["n"] == 2 and s48["n_floored"] == 0
    assert abs(s48["pesq"]["mean"] - s16["pesq"]["mean"]) < 0.05
    assert abs(s48["stoi"]["mean"] - s16["stoi"]["mean"]) < 0.01


def test_no_usable_reference_is_one_error_and_json_is_strict(tmp_path, capsys):
    """Every reference unusable: one error and a failing exit code, never an n = 0 table
    that exits 0. A one-utterance summary has no interval: null in JSON, not NaN."""
    import soundfile as sf

    stereo = tmp_path / "clean"
    os.makedirs(stereo)
    data, rate = sf.read(os.path.join(CLEAN, "0015.wav"))
    sf.write(stereo / "0015.wav", [[x, x] for x in data], rate)
    code = evaluate_main(["score", "--enhanced", NOISY, "--clean", str(stereo), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "no utterance could be scored" in err and err.count("\n") == 1, err
    one, one_ref = tmp_path / "one1", tmp_path / "ref1"
    for folder, source in ((one, NOISY), (one_ref, CLEAN)):
        os.makedirs(folder)
        shutil.copy(os.path.join(source, "0015.wav"), folder / "0015.wav")
    assert evaluate_main(["score", "--enhanced", str(one), "--clean", str(one_ref), "--out", str(tmp_path / "s")]) == 0
    text = open(tmp_path / "s" / "summary.json").read()
    assert "NaN" not in text and json.loads(text)["systems"]["one1"]["pesq"]["ci95"] is None  # named by its folder


def test_enhance_mode_never_overwrites_the_references(tmp_path, capsys):
    """References that sit where the enhanced files would go (<out>/enhanced/<id>.wav) are
    inputs too: refused before anything is written, never scored against themselves."""
    refs, noisy = tmp_path / "out" / "enhanced", tmp_path / "noisy"
    shutil.copytree(CLEAN, refs)
    shutil.copytree(NOISY, noisy)
    before = {p: open(os.path.join(refs, p), "rb").read() for p in os.listdir(refs)}
    code = evaluate_main(["enhance", "--model", os.path.join(ROOT, "pretrained", "sslse-log1p-sim"),
                          "--manifest", f"{refs}:{noisy}", "--out", str(tmp_path / "out"), "--workers", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "would overwrite the input" in err and err.count("\n") == 1, err
    assert {p: open(os.path.join(refs, p), "rb").read() for p in os.listdir(refs)} == before


def _die(job):
    os._exit(1)  # as a segfault inside a metric's C code ends a worker


def test_a_scoring_process_that_dies_is_an_error_not_a_hang(monkeypatch):
    monkeypatch.setattr(evaluation, "score_one", _die)
    jobs = [(f"u{i}", None, "x.wav") for i in range(4)]
    with pytest.raises(ChildProcessError, match="a scoring process died"):
        evaluation.score_pairs(jobs, workers=2)


def test_pairs_too_long_for_pesq_are_left_out_for_every_system_and_too_short_ones_floored():
    rng = np.random.default_rng(0)
    long = 0.1 * rng.standard_normal(int(metrics.PESQ_MAX_SECONDS * 16000) + 16000)
    with pytest.raises(metrics.ReferenceError, match="longer than PESQ scores"):
        metrics.floored_metrics(long, long)  # before the pesq package could crash the process
    short = 0.1 * rng.standard_normal(320)
    scores, reasons = metrics.floored_metrics(short, short)
    assert scores["stoi"] == metrics.FLOORS["stoi"] and "too short" in reasons["stoi"]


def test_scores_say_when_rates_differ_from_what_they_measure(tmp_path, capsys):
    for folder in ("e8k", "c8k"):
        (tmp_path / folder).mkdir()
    for name in sorted(os.listdir(NOISY))[:2]:
        x, _ = sf.read(os.path.join(NOISY, name), dtype="float32")
        c, _ = sf.read(os.path.join(CLEAN, name), dtype="float32")
        sf.write(tmp_path / "e8k" / name, AF.resample(torch.from_numpy(x), 16000, 8000).numpy(), 8000)
        sf.write(tmp_path / "c8k" / name, AF.resample(torch.from_numpy(c), 16000, 8000).numpy(), 8000)
    assert evaluate_main(["score", "--enhanced", str(tmp_path / "e8k"), "--clean", CLEAN, "--out",
                          str(tmp_path / "o1"), "--workers", "1"]) == 0
    assert "2 estimate(s) at a lower rate than their reference" in capsys.readouterr().out
    assert evaluate_main(["score", "--enhanced", str(tmp_path / "e8k"), "--clean", str(tmp_path / "c8k"),
                          "--out", str(tmp_path / "o2"), "--workers", "1"]) == 0
    assert "2 reference(s) below 16000 Hz" in capsys.readouterr().out
    # 16 kHz estimates against 48 kHz references (VoiceBank-DEMAND's originals): scored at 16 kHz, nothing lost
    (tmp_path / "c48k").mkdir()
    for name in sorted(os.listdir(NOISY))[:2]:
        c, _ = sf.read(os.path.join(CLEAN, name), dtype="float32")
        sf.write(tmp_path / "c48k" / name, AF.resample(torch.from_numpy(c), 16000, 48000).numpy(), 48000)
    assert evaluation.rate_notes([(n, str(tmp_path / "c48k" / n), os.path.join(NOISY, n))
                                  for n in sorted(os.listdir(NOISY))[:2]]) == []


def test_floored_estimates_are_said_with_their_reasons(tmp_path, capsys):
    """Stereo estimates against mono references are floored: the run says so and why."""
    (tmp_path / "st").mkdir()
    for name in sorted(os.listdir(NOISY))[:2]:
        x, _ = sf.read(os.path.join(NOISY, name), dtype="float32")
        sf.write(tmp_path / "st" / name, np.stack([x, x], axis=1), 16000)
    assert evaluate_main(["score", "--enhanced", str(tmp_path / "st"), "--clean", CLEAN, "--name", "mine",
                          "--out", str(tmp_path / "o"), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "mine: 5 of 5 utterance(s) at a floor:" in out and "2 channels, metrics need mono (2)" in out, out


def test_a_score_row_is_named_by_its_folder(tmp_path, monkeypatch):
    from speechbrain_sslse.cli import default_system_name

    assert default_system_name("out/my_system/") == "my_system"
    monkeypatch.chdir(tmp_path)
    assert default_system_name(".") == tmp_path.name
    assert default_system_name("data/noisy") == "system"  # the Noisy row's name is reserved


def test_a_reused_out_folder_keeps_another_evaluations_results(tmp_path):
    """--out of an earlier score of another system (or of the same name for another estimate
    folder) is refused before scoring; a rerun of the same thing replaces its own results."""
    est, other = tmp_path / "est", tmp_path / "other"
    for folder in (est, other):
        folder.mkdir()
        shutil.copy(os.path.join(NOISY, "0015.wav"), folder / "0015.wav")
    out = tmp_path / "out"
    evaluation.score_folders(str(est), CLEAN, str(out), "A", workers=1)
    before = (out / "summary.json").read_text()
    with pytest.raises(ValueError, match="holds the results of A"):
        evaluation.score_folders(str(est), CLEAN, str(out), "B", workers=1)
    with pytest.raises(ValueError, match="holds the results of A"):
        evaluation.score_folders(str(other), CLEAN, str(out), "A", workers=1)
    assert (out / "summary.json").read_text() == before and not (out / "scores_B.csv").exists()
    again = evaluation.score_folders(str(est), CLEAN, str(out), "A", workers=1)
    assert again["systems"]["A"]["pesq"]["n"] == 5


def test_results_table_never_replaces_the_readme_block_with_nothing(tmp_path):
    """``--write`` from a root without summaries (a wrong --root) emptied the README's results
    block; markers in the wrong order were a traceback."""
    script = os.path.join(RECIPE, "results_table.py")
    readme = "intro\n<!-- results:start -->\nmy table\n<!-- results:end -->\nrest\n"
    (tmp_path / "README.md").write_text(readme)
    res = subprocess.run([sys.executable, script, "--root", str(tmp_path), "--write"], capture_output=True, text=True)
    assert res.returncode == 2 and "not changed" in res.stderr and "Traceback" not in res.stderr
    assert (tmp_path / "README.md").read_text() == readme
    summary = tmp_path / "pretrained" / "m" / "eval" / "t"
    summary.mkdir(parents=True)
    shipped = sorted(glob.glob(os.path.join(ROOT, "pretrained", "*", "eval", "*", "summary.json")))[0]
    shutil.copy(shipped, summary / "summary.json")
    swapped = "intro\n<!-- results:end -->\nmy table\n<!-- results:start -->\nrest\n"
    (tmp_path / "README.md").write_text(swapped)
    res = subprocess.run([sys.executable, script, "--root", str(tmp_path), "--write"], capture_output=True, text=True)
    assert res.returncode == 2 and "after it" in res.stderr and "Traceback" not in res.stderr
    assert (tmp_path / "README.md").read_text() == swapped
    (tmp_path / "README.md").write_text(readme)
    res = subprocess.run([sys.executable, script, "--root", str(tmp_path), "--write"], capture_output=True, text=True)
    assert res.returncode == 0 and "**m** on `t`" in (tmp_path / "README.md").read_text()


def test_a_committed_summary_with_a_relative_estimate_folder_is_rerun_in_place(tmp_path, monkeypatch):
    """The README's DNSMOS loop reruns into docs/dnsmos_clean/*, whose committed summaries
    record the estimate folder relative to the repository: compared as text with an absolute
    path, a rerun of the very same evaluation was refused as another's."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "est").mkdir()
    shutil.copy(os.path.join(NOISY, "0015.wav"), tmp_path / "est" / "0015.wav")
    evaluation.score_folders("est", CLEAN, "out", "A", workers=1)
    record = json.load(open(tmp_path / "out" / "summary.json"))
    record["estimates"] = "est"  # as committed
    (tmp_path / "out" / "summary.json").write_text(json.dumps(record))
    assert "A" in evaluation.score_folders("est", CLEAN, "out", "A", workers=1)["systems"]
    record["estimates"] = "../est"  # relative to the summary's own folder
    (tmp_path / "out" / "summary.json").write_text(json.dumps(record))
    assert "A" in evaluation.score_folders("est", CLEAN, "out", "A", workers=1)["systems"]
    (tmp_path / "other").mkdir()
    shutil.copy(os.path.join(NOISY, "0015.wav"), tmp_path / "other" / "0015.wav")
    with pytest.raises(ValueError, match="holds the results of A"):
        evaluation.score_folders("other", CLEAN, "out", "A", workers=1)


def test_a_pair_too_long_for_pesq_is_left_out_of_every_row_and_named(tmp_path, capsys):
    """Among usable pairs, one reference longer than PESQ scores is dropped from the Noisy row
    and every system row alike (so the rows still compare) and named in the output."""
    rng = np.random.default_rng(0)
    for folder in ("clean", "noisy", "est"):
        (tmp_path / folder).mkdir()
    for name in sorted(os.listdir(NOISY))[:2]:
        for folder, src in (("clean", CLEAN), ("noisy", NOISY), ("est", NOISY)):
            shutil.copy(os.path.join(src, name), tmp_path / folder / name)
    long = (0.1 * rng.standard_normal(int(metrics.PESQ_MAX_SECONDS * 16000) + 16000)).astype("float32")
    for folder in ("clean", "noisy", "est"):
        sf.write(tmp_path / folder / "long.wav", long, 16000)
    summary = evaluation.score_folders(str(tmp_path / "est"), str(tmp_path / "clean"), str(tmp_path / "out"), "sys",
                                       noisy_dir=str(tmp_path / "noisy"), workers=1)
    assert summary["systems"]["Noisy"]["n"] == summary["systems"]["sys"]["n"] == 2
    assert "long" in summary["dropped_references"]
    assert "not scored for any system long" in capsys.readouterr().out
    assert all(r["id"] != "long" for r in csv.DictReader(open(tmp_path / "out" / "scores_sys.csv")))
