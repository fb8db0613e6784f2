"""Data safety and honest scores, one parametrised test per class of input (issue 12):
outputs never touch inputs, no two inputs share an output, scores never flatter, bounded
resampling, clean per-file write failures, argument checks, one-line errors."""
import csv
import json
import math
import os
import shutil
import stat
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import MINI_SET, ROOT, listed_outputs

from speechbrain_sslse import audio, evaluation, metrics
from speechbrain_sslse.cli import analyze_main, enhance_main, evaluate_main
from speechbrain_sslse.errors import ConfigError
from speechbrain_sslse.inference import EnhanceSSL, check_device, check_source, load_model
from speechbrain_sslse.output_plan import OUTPUT_RECORD, PlanError, check_jobs, plan_outputs, record_output

MODEL = os.path.join(ROOT, "pretrained", "sslse-log1p-sim")
NOISY = os.path.join(MINI_SET, "noisy_testset_wav")
CLEAN = os.path.join(MINI_SET, "clean_testset_wav")
SPEECH = sf.read(os.path.join(NOISY, "0015.wav"), dtype="float32")[0][:16000]


@pytest.fixture(scope="module")
def model():
    return EnhanceSSL.from_hparams(MODEL)


def _snapshot(folder):
    return {os.path.relpath(os.path.join(d, f), folder): open(os.path.join(d, f), "rb").read()
            for d, _, files in os.walk(folder) for f in files}


def _run(argv, capsys):
    code = enhance_main(argv + ["--source", MODEL, "-q"])
    return code, capsys.readouterr()


# -- 1. outputs never touch inputs ---------------------------------------------------------
def _same_dir_two_formats(tmp):
    d = tmp / "same"
    d.mkdir()
    sf.write(d / "y.wav", SPEECH, 16000)
    sf.write(d / "y.flac", SPEECH, 16000)
    return [str(d)], str(d)


def _folder(tmp, *names):
    d = tmp / "in"
    d.mkdir()
    for name in names:
        sf.write(d / name, SPEECH, 16000)
    return d


def _file_into_its_own_folder(tmp):
    d = _folder(tmp, "a.wav")
    return [str(d / "a.wav")], str(d)


def _output_is_a_link_to_the_input_folder(tmp):
    d = _folder(tmp, "a.wav")
    os.symlink(d, tmp / "link")
    return [str(d)], str(tmp / "link")


def _glob_into_its_own_folder(tmp):
    d = _folder(tmp, "a.flac", "a.wav")
    return [str(d / "*.flac")], str(d)


def _hard_link_target(tmp):
    d = _folder(tmp, "a.wav")
    (tmp / "out").mkdir()
    os.link(d / "a.wav", tmp / "out" / "a.wav")  # the output name is the input under another path
    return [str(d / "a.wav")], str(tmp / "out")


def _flac_into_its_own_folder_beside_the_users_wav(tmp):
    d = _folder(tmp, "talk.flac", "talk.wav")  # talk.wav is the user's own recording
    return [str(d / "talk.flac")], str(d)


def _users_file_in_the_output_folder(tmp):
    d = _folder(tmp, "x.wav")
    sf.write(tmp / "x.wav", SPEECH[::-1].copy(), 16000)  # unrelated, same name as the output
    return [str(d)], str(tmp)


@pytest.mark.parametrize("case", [_same_dir_two_formats, _file_into_its_own_folder, _output_is_a_link_to_the_input_folder,
                                  _glob_into_its_own_folder, _hard_link_target,
                                  _flac_into_its_own_folder_beside_the_users_wav, _users_file_in_the_output_folder])
def test_outputs_never_touch_inputs(tmp_path, capsys, case):
    inputs, out = case(tmp_path)
    before = _snapshot(tmp_path)
    code, io = _run(inputs + ["-o", out], capsys)
    assert code == 2 and io.err.count("\n") == 1 and "error:" in io.err
    assert _snapshot(tmp_path) == before  # nothing written, nothing replaced


def test_an_output_folder_inside_the_input_folder_is_not_read_back(tmp_path, capsys):
    d = tmp_path / "corpus"
    (d / "spk").mkdir(parents=True)
    for name in ("a", "b"):
        sf.write(d / "spk" / f"{name}.wav", SPEECH, 16000)
    for _ in range(2):  # the second run must not enhance the first run's outputs
        code, io = _run([str(d), "-o", str(d / "enhanced")], capsys)
        assert code == 0 and "enhanced 2 of 2 file(s)" in io.out
    assert sorted(os.listdir(d / "enhanced" / "spk")) == ["a.wav", "b.wav"]


def test_enhance_file_never_writes_over_its_input(model, tmp_path):
    src = tmp_path / "a.wav"
    sf.write(src, SPEECH, 16000, subtype="PCM_16")
    before = src.read_bytes()
    os.symlink(src, tmp_path / "alias.wav")
    for target in (src, tmp_path / "alias.wav", tmp_path / "." / "a.wav"):
        with pytest.raises(audio.AudioError, match="overwrite|same file"):
            model.enhance_file(str(src), str(target))
    assert src.read_bytes() == before


# -- 2. no two inputs share one output -------------------------------------------------------
def test_two_folders_with_one_name_are_refused_naming_both(tmp_path, capsys):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        sf.write(tmp_path / sub / "x.wav", SPEECH, 16000)
    code, io = _run([str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(tmp_path / "out")], capsys)
    assert code == 2 and str(tmp_path / "a" / "x.wav") in io.err and str(tmp_path / "b" / "x.wav") in io.err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("layout", [("spk1/x.wav", "spk2/x.wav"), ("x.wav", "sub/x.flac"), ("s1/d/x.wav", "s2/d/x.wav")])
def test_a_corpus_with_repeated_names_is_mirrored(tmp_path, capsys, layout):
    corpus = tmp_path / "corpus"
    for rel in layout:
        (corpus / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(corpus / rel, SPEECH, 16000)
    code, io = _run([str(corpus), "-o", str(tmp_path / "out")], capsys)
    written = sorted(os.path.relpath(os.path.join(d, f), tmp_path / "out")
                     for d, _, fs in os.walk(tmp_path / "out") for f in fs if f != OUTPUT_RECORD)
    assert code == 0 and written == sorted(os.path.splitext(r)[0] + ".wav" for r in layout)
    assert f"enhanced {len(layout)} of {len(layout)} file(s)" in io.out  # the count is the files on disk


def test_one_stem_two_extensions_in_one_folder_is_refused(tmp_path):
    for ext in ("wav", "flac"):
        sf.write(tmp_path / f"x.{ext}", SPEECH, 16000)
    with pytest.raises(PlanError, match="both be written"):
        plan_outputs([str(tmp_path)], str(tmp_path / "out"))
    with pytest.raises(PlanError):
        check_jobs([("a.wav", "o/x.wav"), ("b.wav", "o/../o/x.wav")])


# -- 3. scores never flatter -----------------------------------------------------------------
def _estimates(tmp, kind):
    est = tmp / "est"
    est.mkdir()
    ids = sorted(os.path.splitext(f)[0] for f in os.listdir(CLEAN))
    shutil.copy(os.path.join(CLEAN, ids[0] + ".wav"), est / (ids[0] + ".wav"))  # one perfect estimate
    n = sf.info(os.path.join(CLEAN, ids[0] + ".wav")).frames
    for uid in ids[1:]:
        n = sf.info(os.path.join(CLEAN, uid + ".wav")).frames
        if kind == "silent":
            sf.write(est / f"{uid}.wav", np.zeros(n, np.float32), 16000)
        elif kind == "nan":
            sf.write(est / f"{uid}.wav", np.full(n, np.nan, np.float32), 16000, subtype="FLOAT")
        elif kind == "too_short":
            sf.write(est / f"{uid}.wav", SPEECH[:200], 16000)
        elif kind == "unreadable":
            (est / f"{uid}.wav").write_bytes(b"RIFF....garbage")
    return est, len(ids)


@pytest.mark.parametrize("kind", ["silent", "nan", "too_short", "unreadable"])
def test_broken_estimates_count_at_the_floor(tmp_path, kind):
    est, n = _estimates(tmp_path, kind)
    s = evaluation.score_folders(str(est), CLEAN, str(tmp_path / "out"), "sys", noisy_dir=NOISY, workers=1)
    sys_row = s["systems"]["sys"]
    assert sys_row["n"] == s["systems"]["Noisy"]["n"] == n and sys_row["n_floored"] == n - 1
    perfect = metrics.all_metrics(*(sf.read(os.path.join(CLEAN, sorted(os.listdir(CLEAN))[0]))[0],) * 2)
    for m in metrics.METRICS:  # the mean of one perfect score and n-1 floors, not the perfect score
        assert sys_row[m]["mean"] == pytest.approx((perfect[m] + (n - 1) * metrics.FLOORS[m]) / n, abs=1e-6)
    table = open(tmp_path / "out" / "summary.md").read()
    assert f"| sys | {n} | {n - 1} |" in table


def test_stoi_sentinel_is_never_averaged():
    clean = np.zeros(16000)
    clean[:2400] = SPEECH[:2400]  # 0.15 s of speech: too few frames for STOI after silence removal
    with pytest.raises(metrics.MetricError, match="too short for STOI"):
        metrics.stoi(clean, clean)
    scores, reasons = metrics.floored_metrics(clean, clean)
    assert scores["stoi"] == metrics.FLOORS["stoi"] and "stoi" in reasons


def test_a_system_named_noisy_and_two_estimates_with_one_stem_are_errors(tmp_path, capsys):
    est = tmp_path / "est"
    shutil.copytree(NOISY, est)
    assert evaluate_main(["score", "--enhanced", str(est), "--clean", CLEAN, "--noisy", NOISY, "--name", "noisy",
                          "--out", str(tmp_path / "o")]) == 2
    assert "reserved" in capsys.readouterr().err
    sf.write(est / "0015.flac", SPEECH, 16000)
    assert evaluate_main(["score", "--enhanced", str(est), "--clean", CLEAN, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "0015" in err and err.count("\n") == 1


def test_a_failed_enhancement_is_floored_and_rows_cover_the_same_utterances(model, tmp_path):
    noisy = tmp_path / "noisy"
    shutil.copytree(NOISY, noisy)
    (noisy / "0016.wav").write_bytes(b"RIFF broken")
    items = [(os.path.splitext(f)[0], os.path.join(CLEAN, f), str(noisy / f)) for f in sorted(os.listdir(CLEAN))]
    s = evaluation.evaluate_model(model, items, str(tmp_path / "out"), "m", workers=1)
    assert s["systems"]["m"]["n"] == 5 and s["systems"]["m"]["n_floored"] == 1
    # the broken noisy input counts against the Noisy row too: both rows cover all 5, 0016 floored
    assert s["systems"]["Noisy"]["n"] == 5 and s["systems"]["Noisy"]["n_floored"] == 1
    rows = {r["id"]: r for r in csv.DictReader(open(tmp_path / "out" / "scores_Noisy.csv"))}
    assert float(rows["0016"]["pesq"]) == metrics.FLOORS["pesq"]


# -- 4. bounded memory at any rate -------------------------------------------------------------
@pytest.mark.parametrize("rate", [8000, 11127, 22050, 44100, 44101, 48000, 96000])
def test_resampling_any_rate_keeps_the_band_and_removes_what_16k_cannot_hold(rate):
    """(Its speed and memory are measured by benchmarks/resample.py, not timed here.)"""
    t = np.arange(2 * rate) / rate
    above = 9000 if rate > 18000 else None  # a tone 16 kHz cannot hold must not fold back as an alias
    second = np.sin(2 * np.pi * above * t) if above else np.sin(2 * np.pi * 1000 * t)
    x = torch.from_numpy(np.stack([np.sin(2 * np.pi * 440 * t), second]).astype(np.float32))
    y = audio.resample(x, rate, 16000)
    assert y.shape == (2, round(2 * rate * 16000 / rate))
    ref = np.sin(2 * np.pi * 440 * np.arange(y.shape[1]) / 16000)
    assert np.abs(y[0, 400:-400].numpy() - ref[400:-400]).max() < 2e-3
    if above:
        assert np.sqrt(np.mean(y[1, 400:-400].numpy() ** 2)) < 1e-3
    back = audio.resample(y, 16000, rate)
    assert abs(back.shape[1] - x.shape[1]) <= 1


# -- 5. writes fail per file, cleanly ------------------------------------------------------------
def test_a_full_disk_fails_one_file_and_the_run_goes_on(tmp_path, capsys, monkeypatch):
    src = tmp_path / "in"
    shutil.copytree(NOISY, src)
    real_write, calls = sf.write, []

    def full_disk(path, *a, **k):  # the disk fills up after two files
        calls.append(path)
        if len(calls) > 2:
            raise OSError(28, "No space left on device")
        return real_write(path, *a, **k)

    (tmp_path / "out").mkdir()
    monkeypatch.setattr(sf, "write", full_disk)
    code, io = _run([str(src), "-o", str(tmp_path / "out"), "--batch-size", "2"], capsys)
    assert code == 1 and "No space left on device" in io.err and "Traceback" not in io.err
    written = [f for f in os.listdir(tmp_path / "out") if not f.startswith(".")]
    assert f"enhanced {len(written)} of 5 file(s)" in io.out and len(written) == 2
    assert not [f for f in os.listdir(tmp_path / "out") if f.startswith(".tmp")]  # no half-written files


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_honour_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        audio.write_audio(str(tmp_path / "x.wav"), torch.zeros(100))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "x.wav").st_mode) == mode


def test_large_wav_outputs_switch_to_rf64(tmp_path, monkeypatch):
    assert audio.output_format("x.wav", 2**30 + 10)[0] == "RF64"  # 4 GiB of float32 samples
    assert audio.output_format("x.wav", 2**20)[0] == "WAV"
    monkeypatch.setattr(audio, "WAV_MAX_BYTES", 1000)  # a small limit: same code path, small file
    audio.write_audio(str(tmp_path / "big.wav"), torch.zeros(1000))
    assert sf.info(tmp_path / "big.wav").format == "RF64" and sf.read(tmp_path / "big.wav")[0].shape == (1000,)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_named_pipe_in_an_input_folder_is_skipped_not_waited_on(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    sf.write(src / "a.wav", SPEECH, 16000)
    os.mkfifo(src / "pipe.wav")
    result = {}
    worker = threading.Thread(target=lambda: result.update(r=_run([str(src), "-o", str(tmp_path / "out")], capsys)))
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "the CLI blocked on a named pipe"
    code, io = result["r"]
    assert code == 1 and "pipe.wav" in io.err and "not a regular file" in io.err
    assert listed_outputs(tmp_path / "out") == ["a.wav"]


FORMATS = [("flac", "FLAC", None), ("ogg", "OGG", None), ("opus", "OGG", "OPUS"), ("mp3", "MP3", None),
           ("aiff", "AIFF", None), ("aif", "AIFF", None), ("au", "AU", None), ("caf", "CAF", None),
           ("w64", "W64", None), ("rf64", "RF64", None), ("sph", "NIST", None)]


def test_every_listed_extension_has_a_case_below():
    from speechbrain_sslse.audio import AUDIO_EXTENSIONS

    assert sorted(AUDIO_EXTENSIONS) == sorted([".wav"] + [f".{ext}" for ext, _, _ in FORMATS])


@pytest.mark.parametrize("ext,fmt,subtype", FORMATS)
def test_formats_that_work_named_directly_are_found_in_folders(tmp_path, capsys, ext, fmt, subtype):
    """Every extension of ``AUDIO_EXTENSIONS`` is found when a folder is listed."""
    src = tmp_path / "in"
    src.mkdir()
    sf.write(src / f"x.{ext}", SPEECH, 16000, format=fmt, subtype=subtype)  # (the pinned libsndfile writes all)
    code, io = _run([str(src), "-o", str(tmp_path / "out")], capsys)
    assert code == 0 and listed_outputs(tmp_path / "out") == ["x.wav"]


def test_enhance_file_writes_the_format_of_its_extension_or_refuses_first(model, tmp_path, monkeypatch):
    src = tmp_path / "a.wav"
    sf.write(src, SPEECH, 16000)
    model.enhance_file(str(src), str(tmp_path / "out.flac"))
    assert sf.info(tmp_path / "out.flac").format == "FLAC"
    calls = []
    monkeypatch.setattr(model, "enhance_signals", lambda *a, **k: calls.append(1))
    with pytest.raises(audio.AudioError, match="cannot write '.xyz'"):
        model.enhance_file(str(src), str(tmp_path / "out.xyz"))
    assert not calls and not (tmp_path / "out.xyz").exists()  # refused before enhancing


# -- 7. the API checks its arguments ---------------------------------------------------------------
@pytest.mark.parametrize("noisy,lengths,match", [
    (torch.zeros(2, 16000), torch.ones(3), "shape"),
    (torch.zeros(2, 16000), torch.ones(2, 1), "shape"),
    (torch.zeros(2, 16000), torch.tensor([16000.0, 8000.0]), r"\(0, 1\]"),
    (torch.zeros(2, 16000), torch.tensor([1.0, 0.0]), r"\(0, 1\]"),
    (torch.zeros(2, 16000), torch.tensor([1.0, -0.5]), r"\(0, 1\]"),
    (torch.zeros(2, 16000), torch.tensor([1.0, math.nan]), r"\(0, 1\]"),
    (torch.zeros(2, 16000), torch.tensor([16000, 8000]), "float"),
    (torch.zeros(2, 16000, dtype=torch.int16), None, "int16"),
    (torch.full((1, 16000), math.nan), None, "NaN"),
    (torch.zeros(16000), None, "batch, samples"),
    (torch.zeros(1, 0), None, "empty"),
])
def test_enhance_batch_refuses_what_it_cannot_mean(model, noisy, lengths, match):
    with pytest.raises(ValueError, match=match):
        model.enhance_batch(noisy, lengths)


def test_int16_scale_input_warns_that_the_method_is_level_dependent(model):
    x = torch.from_numpy(SPEECH * 32767)[None]
    with pytest.warns(UserWarning, match="far outside"):
        model.enhance_batch(x)


# -- 8. one-line errors everywhere -------------------------------------------------------------
def _model_copy(tmp, ckpt_bytes=None, yaml_text=None):
    dst = tmp / "model"
    shutil.copytree(MODEL, dst, ignore=shutil.ignore_patterns("eval"))
    if ckpt_bytes is not None:
        (dst / "enhancer.ckpt").write_bytes(ckpt_bytes)
    if yaml_text is not None:
        (dst / "hyperparams.yaml").write_text(yaml_text)
    return str(dst)


@pytest.mark.parametrize("args", [
    ["--batch-size", "0"], ["--batch-size", "-1"], ["--device", "cuda"], ["--source", "pretrained/sslse-log1p-simm/"],
    ["--source", "./no/such/folder"], ["--source", "empty_ckpt"], ["--source", "garbage_ckpt"], ["--source", "yaml_typo"],
])
def test_enhance_errors_are_one_line_and_early(tmp_path, capsys, args):
    sources = {"empty_ckpt": lambda: _model_copy(tmp_path, ckpt_bytes=b""),
               "garbage_ckpt": lambda: _model_copy(tmp_path, ckpt_bytes=b"\x00garbage" * 10),
               "yaml_typo": lambda: _model_copy(tmp_path, yaml_text="enhancer: !new:speechbrain_sslse.model.EnhancementModel\n  input: [spectrum\n")}
    if args[0] == "--source":
        source = sources[args[1]]() if args[1] in sources else args[1]
        argv = [NOISY, "-o", str(tmp_path / "out"), "--source", source]
    else:
        argv = [NOISY, "-o", str(tmp_path / "out"), "--source", MODEL] + args
    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    code = enhance_main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "error" in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")


@pytest.mark.parametrize("existing", [True, False])
def test_output_must_be_a_folder(tmp_path, capsys, existing):
    """-o names a folder: an existing file (left untouched) or a new name like out.wav is
    refused at once, before the model is loaded."""
    target = tmp_path / "out.wav"
    if existing:
        target.write_bytes(b"keep me")
    code = enhance_main([NOISY, "-o", str(target), "--source", "./no/such/model"])
    err = capsys.readouterr().err
    assert code == 2 and "not an output folder" in err and err.count("\n") == 1, err
    assert target.read_bytes() == b"keep me" if existing else not target.exists()
    with pytest.raises(PlanError, match="not an output folder"):  # the Python API: same rule
        plan_outputs([NOISY], str(target))
    assert target.read_bytes() == b"keep me" if existing else not target.exists()


def test_rerun_says_it_replaced_earlier_outputs(tmp_path, capsys):
    out = tmp_path / "out"
    assert enhance_main([NOISY, "-o", str(out), "--source", MODEL, "-q"]) == 0
    assert "earlier output(s) there replaced" not in capsys.readouterr().out
    assert enhance_main([NOISY, "-o", str(out), "--source", MODEL, "-q"]) == 0
    assert "5 earlier output(s) there replaced" in capsys.readouterr().out


def test_a_rerun_replaces_only_its_own_unchanged_outputs(tmp_path, capsys):
    """The folder's record lets a rerun replace what the earlier run wrote; an output the
    user has edited since, or a file of theirs put there, is refused before any write."""
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for name in ("a", "b"):
        sf.write(src / f"{name}.wav", SPEECH, 16000)
    assert enhance_main([str(src), "-o", str(out), "--source", MODEL, "-q"]) == 0
    sf.write(out / "b.wav", SPEECH[:8000], 16000)  # the user edits an output: now theirs
    before = _snapshot(out)
    code, io = _run([str(src), "-o", str(out)], capsys)
    assert code == 2 and "that no earlier run of this tool wrote" in io.err and str(out / "b.wav") in io.err
    assert _snapshot(out) == before
    os.remove(out / "b.wav")
    os.symlink(tmp_path / "nowhere.wav", out / "b.wav")  # a dangling link is not an output either
    code, io = _run([str(src), "-o", str(out)], capsys)
    assert code == 2 and str(out / "b.wav") in io.err and os.path.islink(out / "b.wav")
    os.remove(out / "b.wav")
    assert _run([str(src), "-o", str(out)], capsys)[0] == 0  # a.wav is still its own
    # the Python API's file path obeys the same record: a user's file is refused before any work
    (out / "a.wav").write_bytes(b"my own recording")
    model = load_model(MODEL)
    with pytest.raises(PlanError, match="that no earlier run of this tool wrote"):
        model.enhance_files([(str(src / "a.wav"), str(out / "a.wav"))], record_in=str(out))
    assert (out / "a.wav").read_bytes() == b"my own recording"


def test_quiet_hides_every_bar(tmp_path, capsys):
    """-q turns off the bars of enhancing and scoring alike (evaluate's enhance step asks the
    same switch the commands set)."""
    out = tmp_path / "ev"
    code = evaluate_main(["-q", "enhance", "--model", MODEL, "--out", str(out), "--workers", "1",
                          "--manifest", os.path.join(MINI_SET, "clean_testset_wav") + ":" + NOISY])
    err = capsys.readouterr().err
    assert code == 0 and "enhancing" not in err and "it/s" not in err and "file/s" not in err, err
    recorded = json.load(open(out / "summary.json"))  # what the table measured
    assert recorded["model"] == os.path.abspath(MODEL) and recorded["manifest"].endswith(NOISY)
    code = evaluate_main(["score", "--enhanced", str(out / "enhanced"), "--clean",
                          os.path.join(MINI_SET, "clean_testset_wav"), "--out", str(tmp_path / "sc"), "-q"])
    assert code == 0, capsys.readouterr().err  # -q after the sub-command is accepted too


def test_a_recording_left_in_the_output_folder_is_named_not_dropped(tmp_path, capsys):
    """An output folder inside the input folder is not read back as input; a recording of the
    user's that sits there (no run wrote it) is reported as not enhanced instead of vanishing
    from the run, while the run's own earlier outputs there are left out without a word."""
    src = tmp_path / "rec"
    (src / "day2").mkdir(parents=True)
    sf.write(src / "a.wav", SPEECH, 16000)
    sf.write(src / "day2" / "mine.wav", SPEECH, 16000)
    code, io = _run([str(src), "-o", str(src / "day2")], capsys)
    assert code == 1 and "mine.wav" in io.err and "no run wrote it there" in io.err
    assert sf.read(src / "day2" / "mine.wav")[0].shape == SPEECH.shape  # untouched
    os.remove(src / "day2" / "mine.wav")
    code, io = _run([str(src), "-o", str(src / "day2")], capsys)  # only its own a.wav there now
    assert code == 0 and "skipped" not in io.err, io.err


def test_a_glob_at_the_filesystem_root_mirrors_below_the_output_folder():
    from speechbrain_sslse.output_plan import _glob_root

    assert _glob_root(os.sep + "*.wav") == os.sep  # was ".": outputs climbed out with ../..
    assert _glob_root(os.path.join(os.sep, "*", "x.wav")) == os.sep
    assert _glob_root(os.path.join("data", "*.wav")) == "data" and _glob_root("*.wav") == "."


def test_rerun_counts_only_what_it_replaced(tmp_path, capsys):
    """An input that fails on the rerun is not counted as replaced, and its earlier output
    (still on disk) is named as not from this run."""
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for name in ("a", "b"):
        sf.write(src / f"{name}.wav", SPEECH, 16000)
    assert enhance_main([str(src), "-o", str(out), "--source", MODEL, "-q"]) == 0
    capsys.readouterr()
    (src / "b.wav").write_bytes(open(src / "b.wav", "rb").read()[:100])  # now broken
    assert enhance_main([str(src), "-o", str(out), "--source", MODEL, "-q"]) == 1
    io = capsys.readouterr()
    assert "enhanced 1 of 2 file(s)" in io.out and "(1 earlier output(s) there replaced)" in io.out, io.out
    assert f"the output {out / 'b.wav'} there is from an earlier run" in io.err, io.err


@pytest.mark.parametrize("how", ["folder", "glob"])
def test_inputs_below_the_output_folder_are_all_enhanced(tmp_path, capsys, monkeypatch, how):
    """An output folder that holds the input folder (``-o .``) must not hide its inputs:
    only an output folder inside an input folder is left out of the listing."""
    layout = ["top.wav", "spk1/a.wav", "spk2/b.wav"]
    for rel in layout:
        (tmp_path / "data" / "noisy" / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(tmp_path / "data" / "noisy" / rel, SPEECH, 16000)
    monkeypatch.chdir(tmp_path)
    source = "data/noisy" if how == "folder" else "data/noisy/**/*.wav"
    jobs, skipped = plan_outputs([source], "data")
    assert sorted(os.path.relpath(s, "data/noisy") for s, _ in jobs) == sorted(layout) and not skipped
    assert sorted(d for _, d in jobs) == sorted(os.path.join("data", r) for r in layout)
    before = _snapshot(tmp_path / "data" / "noisy")
    assert enhance_main([source, "-o", ".", "--source", MODEL, "-q"]) == 0
    assert "enhanced 3 of 3 file(s)" in capsys.readouterr().out
    assert _snapshot(tmp_path / "data" / "noisy") == before


@pytest.mark.parametrize("how", ["folder", "glob"])
def test_output_folder_equal_to_an_input_folder_is_refused(tmp_path, capsys, how):
    """``sslse-enhance same -o same`` (README): refused before anything is written, even
    when no name collides (a.flac -> a.wav), since the next run would read outputs back."""
    (tmp_path / "sub").mkdir()
    sf.write(tmp_path / "a.flac", SPEECH, 16000)
    sf.write(tmp_path / "sub" / "b.flac", SPEECH, 16000)
    before = _snapshot(tmp_path)
    source = str(tmp_path) if how == "folder" else str(tmp_path / "**" / "*.flac")
    with pytest.raises(PlanError, match="is the input folder"):
        plan_outputs([source], str(tmp_path))
    code = enhance_main([source, "-o", str(tmp_path), "--source", MODEL, "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "is the input folder" in err and err.count("\n") == 1, err
    assert _snapshot(tmp_path) == before


def test_quiet_keeps_warnings_about_the_users_data(tmp_path, capsys):
    """-q silences third parties, never this package's warning about the input's level."""
    loud = tmp_path / "loud.wav"
    sf.write(loud, SPEECH * 20000, 16000, subtype="FLOAT")
    for quiet in ([], ["-q"]):
        with warnings.catch_warnings(record=True) as caught:  # the filters the command sets end here
            assert enhance_main([str(loud), "-o", str(tmp_path / "out"), "--source", MODEL, *quiet]) == 0
        assert any("far outside [-1, 1]" in str(w.message) for w in caught), (quiet, caught)


def test_mistyped_local_folder_is_never_sent_to_the_hub(tmp_path, monkeypatch):
    """"models/sslse-log1p-sm" looks like a hub id, but models/ is a local folder: the
    error comes at once with the near names, from the loader and from from_hparams alike."""
    (tmp_path / "models" / "sslse-log1p-sim").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # a hub attempt would be made, and retried
    for load in (load_model, lambda s: EnhanceSSL.from_hparams(source=s)):
        with pytest.raises(ConfigError) as err:
            load("models/sslse-log1p-sm")
        assert "not sent to the hub" in str(err.value) and "models/sslse-log1p-sim" in str(err.value)
    check_source("owner/sslse-log1p-sm")  # no local owner/ folder: still a plausible hub id


def test_analyze_errors_are_one_line(tmp_path, capsys):
    assert analyze_main(["--source", "x", "--manifest", "y", "--out", str(tmp_path), "--drop-last", "-1"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_load_model_names_the_broken_piece(tmp_path):
    with pytest.raises(Exception) as err:
        load_model(_model_copy(tmp_path, ckpt_bytes=b""))
    assert "cannot load the model" in str(err.value) and "\n" not in str(err.value)


def test_another_models_checkpoint_is_named_as_such(tmp_path):
    """The weights of another model in the folder: the one-line error keeps what torch says
    after its first line (which tensors do not fit), not only "Error(s) in loading"."""
    other = os.path.join(os.path.dirname(MODEL), "sslse-tfs-small-dm", "enhancer.ckpt")
    with pytest.raises(ConfigError) as err:
        load_model(_model_copy(tmp_path, ckpt_bytes=open(other, "rb").read()))
    text = str(err.value)
    assert "cannot load the model" in text and "\n" not in text
    assert "size mismatch" in text or "Unexpected key" in text or "Missing key" in text, text


# -- 6. training reruns keep the folder sound --------------------------------------------------------
def _train(args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    cmd = [sys.executable, os.path.join(ROOT, "recipes", "VCTK", "train.py"), os.path.join(ROOT, "hparams", "smoke.yaml"),
           f"--data_folder={MINI_SET}", "--number_of_epochs=1", "--train_repeats=1", "--batch_size=4"] + args
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("rerun")
    out = root / "exp"
    run = _train([f"--output_folder={out}"], root)
    assert run.returncode == 0, run.stderr[-2000:]
    return root, out


def test_a_rerun_with_another_model_is_refused_before_the_folder_changes(finished_run):
    root, out = finished_run
    before = _snapshot(out)
    run = _train([f"--output_folder={out}", "--input=ssl"], root)
    assert run.returncode == 2 and "input: 'cross' -> 'ssl'" in run.stderr, run.stderr[-1500:]
    assert _snapshot(out) == before
    assert load_model(str(out)) is not None  # still loads for inference


@pytest.mark.parametrize("override,key", [("--batch_size=0", "batch_size"), ("--number_of_epochs=-1", "number_of_epochs"),
                                          ("--lr=0", "lr"), ("--crop_samples=0", "crop_samples"),
                                          ("--dynamic_mixing=True", "dynamic mixing"),  # validation from its pool
                                          ("--dynamic_mixing=True --valid_split=folder", "dynamic mixing"),  # no simulation.json
                                          ("--data_folder=no/such/folder", "data folder no/such/folder does not exist")])
def test_settings_that_cannot_train_are_one_line_errors(tmp_path, override, key):
    run = _train([f"--output_folder={tmp_path / 'x'}", *override.split()], tmp_path)
    assert run.returncode == 2 and run.stderr.strip().startswith(f"error: {key}") and "Traceback" not in run.stderr
    # no run is left behind (the empty save/ folder is SpeechBrain's Checkpointer's, made on loading)
    assert not [f for _, _, files in os.walk(tmp_path / "x") for f in files]


@pytest.mark.parametrize("content", ["", "garbage: [unclosed", "just text"])
def test_an_empty_or_garbage_ckpt_yaml_is_set_aside(finished_run, tmp_path, content):
    root, out = finished_run
    copy = tmp_path / "exp"
    shutil.copytree(out, copy)
    ckpts = [d for d in os.listdir(copy / "save") if d.startswith("CKPT+")]
    (copy / "save" / ckpts[0] / "CKPT.yaml").write_text(content)
    run = _train([f"--output_folder={copy}"], tmp_path)
    assert run.returncode == 2 and "CKPT.yaml is unreadable" in run.stderr and "Traceback" not in run.stderr
    assert os.path.isdir(copy / "save" / (ckpts[0] + ".corrupt"))


def test_a_malformed_manifest_names_its_file(finished_run, tmp_path):
    root, out = finished_run
    copy = tmp_path / "exp"
    shutil.copytree(out, copy)
    (copy / "valid.json").write_text("{not json")
    run = _train([f"--output_folder={copy}", "--skip_prep=True"], tmp_path)
    assert run.returncode == 2 and "valid.json: malformed manifest" in run.stderr


def test_earlier_outputs_among_the_inputs_are_not_enhanced_again(tmp_path):
    """A folder that holds an earlier run's output folder: those outputs (recorded, unchanged)
    are left out; a recording of the user's in that folder, or a changed output, is input."""
    src = tmp_path / "rec"
    (src / "enh").mkdir(parents=True)
    for name in ("a.wav", "enh/a.wav", "enh/mine.wav", "enh/edited.wav"):
        sf.write(src / name, SPEECH, 16000)
    record_output(str(src / "enh"), str(src / "enh" / "a.wav"))
    record_output(str(src / "enh"), str(src / "enh" / "edited.wav"))
    sf.write(src / "enh" / "edited.wav", SPEECH[:8000], 16000)  # changed since: the user's now
    for given in (str(src), str(src / "**" / "*.wav")):
        jobs, skipped = plan_outputs([given], str(tmp_path / "out2"))
        assert sorted(os.path.relpath(s_, src) for s_, _ in jobs) == ["a.wav", "enh/edited.wav", "enh/mine.wav"]
        assert not skipped
    jobs, _ = plan_outputs([str(src / "enh" / "a.wav")], str(tmp_path / "out3"))  # named: enhanced
    assert len(jobs) == 1
    # an output folder given as the input (a second model on the first one's outputs): all of it
    for given in (str(src / "enh"), str(src / "enh" / "*.wav")):
        jobs, skipped = plan_outputs([given], str(tmp_path / "out4"))
        assert len(jobs) == 3 and not skipped


def test_a_folder_that_cannot_be_written_is_refused_before_anything_is_enhanced(tmp_path, monkeypatch, capsys):
    import tempfile

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    class NoEnhancing:
        def enhance_files(self, *args, **kwargs):
            raise AssertionError("enhanced before the folder was checked")

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", denied)
    monkeypatch.setattr("speechbrain_sslse.inference.load_model", lambda *a, **k: NoEnhancing())
    code = enhance_main([NOISY, "-o", str(tmp_path / "out"), "--source", MODEL])
    err = capsys.readouterr().err
    assert code == 2 and "cannot write in the output folder" in err and "Permission denied" in err, err


def test_ctrl_c_is_one_line_and_130(monkeypatch, capsys, tmp_path):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("speechbrain_sslse.output_plan.plan_outputs", interrupt)
    assert enhance_main([NOISY, "-o", str(tmp_path / "o"), "--source", MODEL]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err and err.strip().count("\n") == 0


def test_clear_messages_for_a_wrong_device_a_file_as_out_and_a_numpy_batch(tmp_path, capsys):
    with pytest.raises(ConfigError, match="use cpu, cuda, cuda:N or mps"):
        check_device("gpu")
    (tmp_path / "o").write_text("mine")
    assert evaluate_main(["score", "--enhanced", NOISY, "--clean", CLEAN, "--out", str(tmp_path / "o")]) == 2
    assert "is a file; give a folder" in capsys.readouterr().err and (tmp_path / "o").read_text() == "mine"
    with pytest.raises(ValueError, match="torch.from_numpy"):
        load_model(MODEL).enhance_batch(np.zeros((1, 16000), dtype=np.float32))


def test_text_records_are_replaced_whole_keep_their_mode_and_spare_neighbours(tmp_path, monkeypatch):
    """write_text_atomic (manifests, summaries, README tables, simulation.json): a failed
    write leaves the old file, a file named like a temporary one is never touched, and a
    replaced file keeps its permissions."""
    from speechbrain_sslse.output_plan import write_text_atomic

    target, neighbour = tmp_path / "README.md", tmp_path / "README.md.tmp"
    target.write_text("old")
    os.chmod(target, 0o640)
    neighbour.write_text("a user's file")
    write_text_atomic(str(target), "new")
    assert target.read_text() == "new" and stat.S_IMODE(os.stat(target).st_mode) == 0o640
    assert neighbour.read_text() == "a user's file"

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        write_text_atomic(str(target), "newer")
    assert target.read_text() == "new" and sorted(os.listdir(tmp_path)) == ["README.md", "README.md.tmp"]


def test_a_new_text_record_gets_the_umask_default_mode(tmp_path):
    """A record written for the first time is 0666 less the umask (mkstemp alone makes 0600,
    which would hide a shared experiment's manifests and tables from the group)."""
    from speechbrain_sslse.output_plan import copy_file_atomic, write_text_atomic

    old = os.umask(0o027)
    try:
        write_text_atomic(str(tmp_path / "new.json"), "{}")
        copy_file_atomic(str(tmp_path / "new.json"), str(tmp_path / "copy.json"))
    finally:
        os.umask(old)
    for name in ("new.json", "copy.json"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o640, name


def test_a_socket_among_the_inputs_is_skipped_with_a_message(tmp_path, capsys):
    import socket

    src = tmp_path / "in"
    src.mkdir()
    sf.write(src / "a.wav", SPEECH, 16000)
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(src / "sock.wav"))
        code, io = _run([str(src), "-o", str(tmp_path / "out")], capsys)
    finally:
        server.close()
    assert code == 1 and listed_outputs(tmp_path / "out") == ["a.wav"]  # (1: an input was not enhanced)
    assert "sock.wav" in io.err and "not a regular file" in io.err
