"""Inputs a corpus in the wild holds: linked folders and files, estimates enhanced into the
noisy or clean folder, names that are not UTF-8 or differ only in case, files cut short,
writes interrupted, test pairs that are training pairs, reused output folders: each gets a
correct result or one clear error; none is dropped, counted twice or overwritten unsaid."""
import json
import os

import numpy as np
import soundfile as sf
from conftest import MINI_SET

from speechbrain_sslse import evaluation
from speechbrain_sslse.audio import list_audio
from speechbrain_sslse.output_plan import plan_outputs

NOISY = os.path.join(MINI_SET, "noisy_testset_wav")
CLEAN = os.path.join(MINI_SET, "clean_testset_wav")
SPEECH = sf.read(os.path.join(NOISY, "0015.wav"), dtype="float32")[0][:16000]


def test_a_linked_speaker_folder_is_searched(tmp_path):
    (tmp_path / "corpus").mkdir()
    (tmp_path / "disk2" / "spk2").mkdir(parents=True)
    sf.write(tmp_path / "corpus" / "a.wav", SPEECH, 16000)
    sf.write(tmp_path / "disk2" / "spk2" / "b.wav", SPEECH, 16000)
    os.symlink(tmp_path / "disk2" / "spk2", tmp_path / "corpus" / "spk2")
    jobs, skipped = plan_outputs([str(tmp_path / "corpus")], str(tmp_path / "out"))
    assert sorted(os.path.relpath(d, tmp_path / "out") for _, d in jobs) == ["a.wav", os.path.join("spk2", "b.wav")]
    assert skipped == []


def test_a_link_loop_ends(tmp_path):
    (tmp_path / "corpus" / "a").mkdir(parents=True)
    sf.write(tmp_path / "corpus" / "a" / "x.wav", SPEECH, 16000)
    os.symlink("..", tmp_path / "corpus" / "a" / "up")
    os.symlink(tmp_path / "corpus", tmp_path / "corpus" / "a" / "again")
    assert list_audio(str(tmp_path / "corpus")) == [str(tmp_path / "corpus" / "a" / "x.wav")]


def test_a_linked_file_beside_its_target_gets_its_own_output(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    sf.write(d / "a.wav", SPEECH, 16000)
    os.symlink("a.wav", d / "b.wav")  # one recording used under two names: two outputs
    jobs, _ = plan_outputs([str(d)], str(tmp_path / "out"))
    assert sorted(os.path.basename(dst) for _, dst in jobs) == ["a.wav", "b.wav"]
    jobs, _ = plan_outputs([str(d), str(d / "*.wav")], str(tmp_path / "out"))  # named twice: once each
    assert sorted(os.path.basename(dst) for _, dst in jobs) == ["a.wav", "b.wav"]


def _copy(src, dst, names):
    os.makedirs(dst, exist_ok=True)
    for n in names:
        data, rate = sf.read(os.path.join(src, n), dtype="float32")
        sf.write(os.path.join(dst, n), data, rate)


def test_estimates_inside_the_reference_folder_are_not_references(tmp_path):
    names = ["0015.wav", "0016.wav"]
    _copy(CLEAN, tmp_path / "clean", names)
    _copy(NOISY, tmp_path / "clean" / "enhanced", names)  # sslse-enhance noisy -o clean/enhanced
    s = evaluation.score_folders(str(tmp_path / "clean" / "enhanced"), str(tmp_path / "clean"),
                                 str(tmp_path / "eval"), "mine", workers=1)
    assert s["systems"]["mine"]["n"] == 2 and s["systems"]["mine"]["n_floored"] == 0


def test_estimates_inside_the_noisy_folder_are_not_noisy_utterances(tmp_path, monkeypatch):
    names = ["0015.wav", "0016.wav"]
    _copy(NOISY, tmp_path / "noisy", names)
    _copy(NOISY, tmp_path / "noisy" / "enhanced", names)  # sslse-enhance noisy -o noisy/enhanced
    scored = {}

    def fake_score_pairs(jobs, workers=2, desc="", dnsmos=False):
        scored[desc] = [j[0] for j in jobs]
        return [{"id": j[0], **{m: 3.0 for m in evaluation.metrics.DNSMOS_METRICS}, "floored": "", "error": ""}
                for j in jobs]

    monkeypatch.setattr(evaluation.metrics, "load_dnsmos", lambda: None)
    monkeypatch.setattr(evaluation, "score_pairs", fake_score_pairs)
    s = evaluation.score_folders(str(tmp_path / "noisy" / "enhanced"), None, str(tmp_path / "eval"), "mine",
                                 noisy_dir=str(tmp_path / "noisy"), workers=1)
    assert scored["scoring noisy"] == ["0015", "0016"]  # not the estimates scored as Noisy
    assert s["systems"]["mine"]["n"] == 2 and s["systems"]["mine"]["n_floored"] == 0


def test_a_recording_linked_under_two_speakers_is_refused_by_the_simulator(tmp_path):
    import pytest
    from conftest import speech_and_noise_folders

    from speechbrain_sslse.simulation import simulate

    speech, noise = speech_and_noise_folders(str(tmp_path / "src"), speakers=3, noises=3)
    os.symlink(os.path.join(speech, "spk0"), os.path.join(speech, "spk9"))  # spk0's files as another speaker
    with pytest.raises(ValueError, match="one file"):
        simulate([speech], [noise], str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    os.remove(os.path.join(speech, "spk9"))
    os.symlink(os.path.join(noise, "noise0.wav"), os.path.join(speech, "spk1", "n.wav"))  # a noise as speech
    with pytest.raises(ValueError, match="one file"):
        simulate([speech], [noise], str(tmp_path / "out"))


def test_scores_never_replace_an_analysis_record(tmp_path):
    import json

    import pytest

    names = ["0015.wav"]
    _copy(CLEAN, tmp_path / "clean", names)
    _copy(NOISY, tmp_path / "est", names)
    out = tmp_path / "analysis"
    out.mkdir()
    record = json.dumps({"sources": {"wavlm": None}, "pairs": 2})
    (out / "summary.json").write_text(record)
    with pytest.raises(ValueError, match="not written by an evaluation"):
        evaluation.score_folders(str(tmp_path / "est"), str(tmp_path / "clean"), str(out), "mine", workers=1)
    assert (out / "summary.json").read_text() == record and os.listdir(out) == ["summary.json"]


def test_test_pairs_that_are_the_training_pairs_are_refused(tmp_path):
    import pytest

    from speechbrain_sslse.data_prep import PrepError, prepare_vctk

    train = f"{MINI_SET}/clean_trainset_28spk_wav:{MINI_SET}/noisy_trainset_28spk_wav"
    with pytest.raises(PrepError, match="also training files"):
        prepare_vctk(train, str(tmp_path / "a"), valid_split="random", test_pairs=train)
    os.symlink(os.path.join(MINI_SET, "clean_trainset_28spk_wav"), tmp_path / "c")  # the same files, linked
    os.symlink(os.path.join(MINI_SET, "noisy_trainset_28spk_wav"), tmp_path / "n")
    with pytest.raises(PrepError, match="also training files"):
        prepare_vctk(MINI_SET, str(tmp_path / "b"), test_pairs=f"{tmp_path / 'c'}:{tmp_path / 'n'}")
    assert not (tmp_path / "b" / "test.json").exists()


def test_a_file_name_that_is_not_utf8_is_read_written_and_scored(tmp_path):
    from speechbrain_sslse.audio import read_audio, write_audio

    folder = os.path.join(os.fsencode(str(tmp_path)), b"caf\xe9")  # a Latin-1 name from an old archive
    os.makedirs(folder)
    name = os.fsdecode(os.path.join(folder, b"caf\xe9.wav"))
    sf.write(os.fsencode(os.path.join(str(tmp_path), "x.wav")), SPEECH, 16000)
    os.rename(os.path.join(str(tmp_path), "x.wav"), name)
    wav, rate = read_audio(name)  # not "not a readable audio file"
    assert rate == 16000 and wav.shape == (1, len(SPEECH))
    out = os.fsdecode(os.path.join(folder, b"\xe9t\xe9.wav"))
    write_audio(out, wav, rate)
    assert np.allclose(read_audio(out)[0], wav)
    evaluation.write_results(str(tmp_path / "eval"), {"mine": [evaluation.floored_row("caf\udce9", "no estimate")]})
    assert "caf\\udce9" in (tmp_path / "eval" / "scores_mine.csv").read_text(encoding="utf-8")


def test_ctrl_c_during_a_write_leaves_no_partial_file_and_none_is_read_as_input(tmp_path, monkeypatch):
    import pytest

    from speechbrain_sslse import audio

    real = sf.write

    def interrupted(*args, **kwargs):
        real(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(audio.sf, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        audio.write_audio(str(tmp_path / "x.wav"), SPEECH, 16000)
    assert os.listdir(tmp_path) == []  # the command says "each output is written whole or not at all"
    monkeypatch.setattr(audio.sf, "write", real)
    sf.write(tmp_path / ".tmp-ab3_x9qz.wav", SPEECH[:100], 16000)  # left by a kill -9
    sf.write(tmp_path / "a.wav", SPEECH, 16000)
    skipped = []
    assert list_audio(str(tmp_path), skipped=skipped) == [str(tmp_path / "a.wav")]
    assert skipped and "killed" in skipped[0][1]


def test_the_references_scored_as_a_system_are_refused(tmp_path):
    import pytest

    _copy(CLEAN, tmp_path / "clean", ["0015.wav"])
    os.symlink(tmp_path / "clean", tmp_path / "enhanced")  # a link, or --enhanced clean/ by mistake
    for est in ("clean", "enhanced"):
        with pytest.raises(ValueError, match="reference itself"):
            evaluation.score_folders(str(tmp_path / est), str(tmp_path / "clean"), str(tmp_path / "eval"), "x",
                                     workers=1)
    assert not (tmp_path / "eval").exists()


def test_names_differing_in_case_are_refused_on_a_disk_blind_to_case(tmp_path, monkeypatch):
    import pytest

    from speechbrain_sslse import output_plan

    d = tmp_path / "in"
    d.mkdir()
    for name in ("Take1.wav", "take1.wav"):
        sf.write(d / name, SPEECH, 16000)
    assert len(plan_outputs([str(d)], str(tmp_path / "out"))[0]) == 2  # this disk tells them apart
    monkeypatch.setattr(output_plan, "case_blind", lambda folder: True)  # a macOS / Windows disk
    with pytest.raises(output_plan.PlanError, match="upper from lower case"):
        plan_outputs([str(d)], str(tmp_path / "out"))


def test_a_broken_example_is_one_error_before_the_model_folder_is_written(tmp_path):
    import subprocess
    import sys

    import pytest
    from conftest import ROOT

    from speechbrain_sslse import EnhancementModel
    from speechbrain_sslse.audio import AudioError
    from speechbrain_sslse.model_folder import save_model_folder

    (tmp_path / "bad.wav").write_text("not audio")
    model = EnhancementModel(None, input="spectrum", hidden_size=16, num_layers=1)
    with pytest.raises(AudioError):
        save_model_folder(model, str(tmp_path / "m"), example=str(tmp_path / "bad.wav"))
    assert not (tmp_path / "m").exists()  # no half folder (weights, no card, no example)
    done = subprocess.run([sys.executable, os.path.join(ROOT, "recipes", "VCTK", "export.py"),
                           os.path.join(ROOT, "pretrained", "sslse-log1p-dm"), str(tmp_path / "e"),
                           "--example", str(tmp_path / "bad.wav")], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2 and "Traceback" not in done.stderr and "bad.wav" in done.stderr
    assert not (tmp_path / "e").exists()


def test_an_ogg_or_opus_cut_short_is_refused_not_enhanced_in_part(tmp_path):
    import pytest

    from speechbrain_sslse.audio import AudioError, read_audio

    data = sf.read(os.path.join(NOISY, "0015.wav"), dtype="float32")[0]
    for name, subtype in (("a.ogg", "VORBIS"), ("a.opus", "OPUS")):
        whole = tmp_path / name
        sf.write(whole, data, 16000, format="OGG", subtype=subtype)
        assert read_audio(str(whole))[0].shape[1] == len(data)
        cut = tmp_path / f"cut_{name}"
        cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])  # an interrupted copy
        with pytest.raises(AudioError, match="truncated"):
            read_audio(str(cut))  # libsndfile alone reads it as a shorter, whole-looking file


def test_aiff_au_w64_rf64_cut_short_are_refused_not_enhanced_in_part(tmp_path):
    import pytest

    from speechbrain_sslse.audio import AudioError, read_audio

    data = sf.read(os.path.join(NOISY, "0015.wav"), dtype="float32")[0]
    for ext, fmt in (("aiff", "AIFF"), ("au", "AU"), ("w64", "W64"), ("rf64", "RF64")):
        whole = tmp_path / f"a.{ext}"
        sf.write(whole, np.stack([data[:-1], data[:-1]], 1), 16000, format=fmt, subtype="PCM_16")  # odd length
        assert read_audio(str(whole))[0].shape == (2, len(data) - 1)
        cut = tmp_path / f"cut.{ext}"
        cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])  # an interrupted copy
        with pytest.raises(AudioError, match="truncated"):
            read_audio(str(cut))


def test_each_file_is_opened_by_libsndfile_once_and_raw_only_for_its_own_format_check(tmp_path, monkeypatch):
    """A corpus read for scoring or preparation is read file by file: the reader used to open
    each file four times (read, header log, WAV and Ogg byte checks), whatever its format."""
    import builtins

    from speechbrain_sslse import audio

    data = sf.read(os.path.join(NOISY, "0015.wav"), dtype="float32")[0]
    opened: list[str] = []
    real_soundfile, real_open = audio.sf.SoundFile, builtins.open

    def counting_soundfile(*args, **kwargs):
        opened.append("libsndfile")
        return real_soundfile(*args, **kwargs)

    def counting_open(file, *args, **kwargs):
        if str(file).startswith(str(tmp_path)):
            opened.append("raw")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(audio.sf, "SoundFile", counting_soundfile)
    monkeypatch.setattr(builtins, "open", counting_open)
    for name, fmt, subtype, raw in (("a.wav", "WAV", "PCM_16", 1), ("a.ogg", "OGG", "VORBIS", 1),
                                    ("a.flac", "FLAC", "PCM_16", 0), ("a.aiff", "AIFF", "PCM_16", 0)):
        path = tmp_path / name
        sf.write(path, data, 16000, format=fmt, subtype=subtype)
        opened.clear()
        assert audio.read_audio(str(path))[0].shape[1] == len(data)
        assert opened.count("libsndfile") == 1 and opened.count("raw") == raw, (name, opened)


def test_one_clean_file_under_two_names_stays_on_one_side_of_the_validation_split(tmp_path):
    """A linked speaker folder (or one clean take linked beside each of its noisy takes) gives
    one utterance two ids; a random split put one in training and the other in validation, so
    validation scored speech that training had seen."""
    from speechbrain_sslse.data_prep import prepare_vctk

    for kind in ("clean", "noisy"):
        (tmp_path / kind).mkdir()
        os.symlink(os.path.join(MINI_SET, f"{kind}_trainset_28spk_wav"), tmp_path / kind / "p287")
        os.symlink(tmp_path / kind / "p287", tmp_path / kind / "p287_again")  # the same speaker, linked
    files = sorted(os.listdir(os.path.join(MINI_SET, "clean_trainset_28spk_wav")))
    for seed in range(6):
        paths = prepare_vctk(f"{tmp_path / 'clean'}:{tmp_path / 'noisy'}", str(tmp_path / f"out{seed}"),
                             valid_split="random", valid_ratio=0.25, seed=seed,
                             test_pairs=f"{MINI_SET}/clean_testset_wav:{MINI_SET}/noisy_testset_wav")
        train, valid = (json.load(open(paths[k])) for k in ("train", "valid"))
        assert len(train) + len(valid) == 2 * len(files) and train and valid
        speech = {k: {os.path.realpath(e["clean_wav"]) for e in split.values()} for k, split in
                  (("train", train), ("valid", valid))}
        assert not speech["train"] & speech["valid"], seed
