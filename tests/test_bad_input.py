"""Every kind of input a person may throw at it: a correct result or one clear error that
names the file, through EnhanceSSL.enhance_file, the CLI, the evaluate command and data prep."""
import io
import json
import os
import re
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import MINI_SET, listed_outputs, tiny_config

from speechbrain_sslse.data_prep import PrepError, prepare_vctk
from speechbrain_sslse import SSLEncoder, EnhancementModel
from speechbrain_sslse.audio import AudioError, write_audio
from speechbrain_sslse.cli import enhance_main
from speechbrain_sslse.evaluation import score_folders
from speechbrain_sslse.inference import EnhanceSSL
from speechbrain_sslse.model_folder import save_model_folder

SPEECH, _ = sf.read(os.path.join(MINI_SET, "noisy_testset_wav", "0015.wav"), dtype="float32")
SPEECH = SPEECH[:16000]


def _wav(path, data, rate=16000, subtype=None, fmt=None):
    sf.write(path, data, rate, subtype=subtype, format=fmt)


def _truncated(path):
    buf = io.BytesIO()
    sf.write(buf, SPEECH, 16000, format="WAV")
    path.write_bytes(buf.getvalue()[:30])


def _cut_short(path):
    """An interrupted copy: the header is whole, a third of the samples are there."""
    buf = io.BytesIO()
    sf.write(buf, SPEECH, 16000, format="WAV")
    path.write_bytes(buf.getvalue()[: 44 + len(SPEECH) * 2 // 3])


def _mp3_bytes(seconds=3):
    buf = io.BytesIO()
    sf.write(buf, np.tile(SPEECH, seconds), 16000, format="MP3")
    return bytearray(buf.getvalue())


def _damaged_mp3(path):
    """Garbage over a stretch of frames: libmpg123 resyncs, then decodes a fraction."""
    data = _mp3_bytes()
    data[2000:3000] = np.random.default_rng(0).integers(0, 256, 1000, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def _cut_mp3(path):
    """An interrupted download: the Xing header declares 3 s, half the frames are there."""
    data = _mp3_bytes()
    path.write_bytes(bytes(data[: len(data) // 2]))


# name -> (writer(path) or None for "missing", expected: "ok" or error regex, channels, rate)
CASES = {
    "empty_file": (lambda p: p.write_bytes(b""), "not a readable audio file", None, None),
    "one_sample": (lambda p: _wav(p, SPEECH[:1]), "ok", 1, 16000),
    "shorter_than_one_frame": (lambda p: _wav(p, SPEECH[:150]), "ok", 1, 16000),
    "all_zeros": (lambda p: _wav(p, np.zeros(16000, np.float32)), "ok", 1, 16000),
    "nan_samples": (lambda p: _wav(p, np.where(np.arange(16000) == 5, np.nan, SPEECH), subtype="FLOAT"), "NaN or Inf", None, None),
    "inf_samples": (lambda p: _wav(p, np.where(np.arange(16000) == 5, np.inf, SPEECH), subtype="FLOAT"), "NaN or Inf", None, None),
    "clipped": (lambda p: _wav(p, np.clip(SPEECH * 50, -1, 1)), "ok", 1, 16000),
    "pcm_8bit": (lambda p: _wav(p, SPEECH, subtype="PCM_U8"), "ok", 1, 16000),
    "pcm_24bit": (lambda p: _wav(p, SPEECH, subtype="PCM_24"), "ok", 1, 16000),
    "float_wav": (lambda p: _wav(p, SPEECH, subtype="FLOAT"), "ok", 1, 16000),
    "flac": (lambda p: _wav(p, SPEECH, fmt="FLAC"), "ok", 1, 16000),
    "rate_8k": (lambda p: _wav(p, SPEECH[::2], 8000), "ok", 1, 8000),
    "rate_22k": (lambda p: _wav(p, np.repeat(SPEECH, 2)[:22050], 22050), "ok", 1, 22050),
    "rate_44k": (lambda p: _wav(p, np.repeat(SPEECH, 3)[:44100], 44100), "ok", 1, 44100),
    "rate_48k": (lambda p: _wav(p, np.repeat(SPEECH, 3), 48000), "ok", 1, 48000),
    "stereo": (lambda p: _wav(p, np.stack([SPEECH, SPEECH[::-1]], 1)), "ok", 2, 16000),
    "six_channels": (lambda p: _wav(p, np.stack([SPEECH * (i + 1) / 6 for i in range(6)], 1)), "ok", 6, 16000),
    "truncated_header": (_truncated, "not a readable audio file", None, None),
    "truncated_data": (lambda p: _cut_short(p), "truncated", None, None),
    "text_named_wav": (lambda p: p.write_text("this is not audio\n"), "not a readable audio file", None, None),
    # libsndfile says "does not exist" for a bad MP3 stream; the file exists, so the error must not
    "text_named_mp3": (lambda p: p.write_text("this is not audio\n"), "not valid audio for its format", None, None),
    "mp3": (lambda p: p.write_bytes(bytes(_mp3_bytes(1))), "ok", 1, 16000),
    "damaged_mp3": (_damaged_mp3, "damaged or truncated MP3", None, None),
    "cut_mp3": (_cut_mp3, "damaged or truncated MP3", None, None),
    "missing_file": (None, "no such file", None, None),
    "directory": (lambda p: p.mkdir(), "is a directory", None, None),
}


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    torch.manual_seed(0)
    enh = EnhancementModel(SSLEncoder(config=tiny_config()), input="cross")
    return save_model_folder(enh, str(tmp_path_factory.mktemp("model")))


@pytest.fixture(scope="module")
def model(model_folder):
    return EnhanceSSL.from_hparams(model_folder)


def _make(tmp_path, case):
    writer = CASES[case][0]
    path = tmp_path / (f"{case}.flac" if case == "flac" else f"{case}.mp3" if case.endswith("mp3") else f"{case}.wav")
    if writer is not None:
        writer(path)
    return path


@pytest.mark.parametrize("case", list(CASES))
def test_enhance_file(model, tmp_path, case):
    src = _make(tmp_path, case)
    expected, channels, rate = CASES[case][1:]
    out = tmp_path / "out" / "enhanced.wav"
    if expected == "ok":
        y = model.enhance_file(str(src), str(out))
        info = sf.info(out)
        n = sf.info(src).frames
        assert info.samplerate == rate and info.channels == channels and info.frames == n
        assert torch.isfinite(y).all() and y.shape[-1] == n
        if case == "all_zeros":
            assert torch.count_nonzero(y) == 0
    else:
        with pytest.raises(AudioError, match=expected) as err:
            model.enhance_file(str(src), str(out))
        assert str(src) in str(err.value)  # names the file
        assert not out.exists()


@pytest.mark.parametrize("case", list(CASES))
def test_cli(model_folder, tmp_path, case, capsys):
    src = _make(tmp_path, case)
    good = tmp_path / "good.wav"
    _wav(good, SPEECH)
    out = tmp_path / "out"
    code = enhance_main([str(src), str(good), "-o", str(out), "--source", model_folder, "--batch-size", "4"])
    err = capsys.readouterr().err
    assert (out / "good.wav").exists()  # the other file's output is never lost
    if CASES[case][1] == "ok":
        assert code == 0 and (out / (src.stem + ".wav")).exists()
    else:
        assert code == 1 and err.count(str(src)) == 1 and "Traceback" not in err  # named once
        assert len(listed_outputs(out)) == 1


SCORABLE = {"clipped", "pcm_8bit", "pcm_24bit", "float_wav", "flac", "mp3",  # 1 s, 16 kHz, mono
            "rate_8k", "rate_22k", "rate_44k", "rate_48k"}  # 1 s, mono: scored at 16 kHz, as what they hold


@pytest.mark.parametrize("case", list(CASES))
def test_evaluate_score(tmp_path, case):
    """As an 'enhanced' file scored against a 1 s 16 kHz reference of the same name."""
    est, clean = tmp_path / "est", tmp_path / "clean"
    est.mkdir()
    clean.mkdir()
    src = _make(est, case)
    for folder, name in ((clean, src.stem + ".wav"), (est, "good.wav"), (clean, "good.wav")):
        _wav(folder / name, SPEECH)
    s = score_folders(str(est), str(clean), str(tmp_path / "scores"), "sys", workers=1)
    import csv

    rows = {r["id"]: r for r in csv.DictReader(open(tmp_path / "scores" / "scores_sys.csv"))}
    assert rows["good"]["error"] == "" and s["systems"]["sys"]["pesq"]["n"] >= 1  # never lost
    if case in ("missing_file", "directory"):  # no estimate file: counted against the system
        assert rows[case]["error"].startswith("no estimate in") and rows[case]["floored"]
        assert s["systems"]["sys"]["pesq"]["n"] == 2
    elif case in SCORABLE:
        assert rows[case]["error"] == "" and 1 <= float(rows[case]["pesq"]) <= 4.65
    else:
        assert rows[case]["error"], f"{case} should not be scored"
        assert "Traceback" not in rows[case]["error"]
        floors = score_folders.__globals__["metrics"].FLOORS  # a broken estimate counts at the floor
        assert all(float(rows[case][m]) == v for m, v in floors.items()) and rows[case]["floored"]


@pytest.mark.parametrize("case", list(CASES))
def test_data_prep(tmp_path, case):
    """As a noisy test file of a VoiceBank-DEMAND folder (its clean twin is real speech)."""
    root = tmp_path / "vbd"
    shutil.copytree(MINI_SET, root)
    noisy_dir, clean_dir = root / "noisy_testset_wav", root / "clean_testset_wav"
    src = _make(noisy_dir, case)
    if case in ("flac", "mp3"):  # prep reads .wav files only: such a pair is simply not part of the set
        paths = prepare_vctk(str(root), str(tmp_path / "out"))
        assert all(src.stem not in json.load(open(paths[k])) for k in ("train", "valid", "test"))
        return
    n = sf.info(src).frames if CASES[case][1] == "ok" else 16000
    _wav(clean_dir / (src.stem + ".wav"), np.resize(SPEECH, n), CASES[case][3] or 16000)
    if CASES[case][1] != "ok" or CASES[case][2] != 1:  # unreadable, or not mono: refused, naming the file
        with pytest.raises(PrepError, match=re.escape(src.stem)):
            prepare_vctk(str(root), str(tmp_path / "out"))
        return
    paths = prepare_vctk(str(root), str(tmp_path / "out"))  # every readable mono file is accepted
    test = json.load(open(paths["test"]))
    assert sf.info(test[src.stem]["noisy_wav"]).samplerate == 16000


def test_unwritable_output_is_a_clear_error(model, tmp_path):
    src = tmp_path / "in.wav"
    _wav(src, SPEECH)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(AudioError, match="cannot write"):
        model.enhance_file(str(src), str(blocker / "out.wav"))


def test_writes_are_atomic(tmp_path, monkeypatch):
    target = tmp_path / "out.wav"
    _wav(target, SPEECH)  # a previous good result
    before = target.read_bytes()

    def crash(path, *a, **k):
        open(path, "wb").write(b"RIFF half")
        raise OSError("disk full")

    monkeypatch.setattr(sf, "write", crash)
    with pytest.raises(AudioError, match="disk full"):  # one error naming the file, no traceback chain
        write_audio(str(target), torch.zeros(100))
    assert target.read_bytes() == before and os.listdir(tmp_path) == ["out.wav"]
