"""File names that are not UTF-8 (Latin-1 bytes from an old archive) beyond read_audio:
refused up front where the training loader could not open them, read by their bytes elsewhere."""
import os

import numpy as np
import pytest
import soundfile as sf

from speechbrain_sslse import data_prep, evaluation, simulation


def _latin1_wav(tmp_path, rate, name=b"caf\xe9.wav", gain=0.1):
    folder = os.fsencode(str(tmp_path))
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        sf.write(f, (np.random.RandomState(0).randn(rate // 2) * gain).astype("float32"), rate, format="WAV")
    return os.fsdecode(path)


@pytest.mark.parametrize("rate", [16000, 48000])
def test_prep_refuses_a_name_the_training_loader_cannot_open(tmp_path, rate):
    """read_audio opens it by its bytes, but SpeechBrain's loader (training) cannot: one
    PrepError at preparation, not a UnicodeEncodeError traceback (48 kHz: after writing the
    copy) nor a manifest that fails in the middle of training (16 kHz)."""
    path = _latin1_wav(tmp_path, rate)
    with pytest.raises(data_prep.PrepError, match="not UTF-8"):
        data_prep._to_16k(path, str(tmp_path / "copies"), "caf\udce9")


def test_silence_check_and_rate_notes_open_such_names(tmp_path):
    path = _latin1_wav(tmp_path, 8000)
    silent = _latin1_wav(tmp_path, 8000, b"silenc\xe9.wav", gain=0.0)
    # opened, not skipped as unreadable (it was a UnicodeEncodeError, and unreadable files are
    # left to the renderer): the silent one is found
    assert simulation.silent_files([path, silent]) == [silent]
    ref = _latin1_wav(tmp_path, 16000, b"r\xe9f.wav")
    assert any("8000" in n for n in [" ".join(evaluation.rate_notes([("u", ref, path)]))])
