"""Audio I/O with clear errors: reading any soundfile format, resampling, atomic writes."""
from __future__ import annotations

import os
import tempfile

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

SAMPLE_RATE = 16000
# Containers libsndfile reads, found when listing folders (a file of another extension
# named directly is still tried).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif", ".au", ".sph", ".caf", ".w64", ".rf64")


class AudioError(ValueError):
    """A file cannot be used as audio; the message names the file and the reason."""


def read_audio(path: str) -> tuple[torch.Tensor, int]:
    """Returns (channels, samples) float32 in [-1, 1] (float files as stored) and the rate.

    Any failure becomes one ``AudioError`` naming the file: missing, a directory,
    unreadable/corrupt, empty, or holding NaN / Inf samples.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise AudioError(f"{path}: no such file")
    if os.path.isdir(path):
        raise AudioError(f"{path}: is a directory, not an audio file")
    try:
        data, rate = sf.read(path, dtype="float32", always_2d=True)
    except Exception as err:  # libsndfile's messages are short; keep the reason
        reason = str(err).split("\n")[0] or type(err).__name__
        raise AudioError(f"{path}: not a readable audio file ({reason})") from None
    if data.shape[0] == 0:
        raise AudioError(f"{path}: contains no samples")
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: contains NaN or Inf samples")
    return torch.from_numpy(np.ascontiguousarray(data.T)), int(rate)


def resample(wav: torch.Tensor, orig_rate: int, new_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Band-limited resampling (torchaudio sinc); identity when the rates match."""
    if orig_rate == new_rate:
        return wav
    return AF.resample(wav, orig_rate, new_rate)


def read_mono_16k(path: str, downmix: bool = False) -> torch.Tensor:
    """A 1-D 16 kHz signal, resampled if needed. Multi-channel files are refused unless
    ``downmix`` (channel mean) is asked for, so nothing is down-mixed silently."""
    wav, rate = read_audio(path)
    if wav.shape[0] != 1:
        if not downmix:
            raise AudioError(f"{path}: has {wav.shape[0]} channels; expected mono")
        wav = wav.mean(0, keepdim=True)
    return resample(wav, rate)[0]


def list_audio(root: str, extensions: tuple[str, ...] = AUDIO_EXTENSIONS) -> list[str]:
    """Every audio file below ``root`` (recursive, sorted), by extension; only regular
    files (a named pipe or socket would block a reader forever)."""
    out = []
    for folder, _, files in os.walk(root):
        for f in files:
            path = os.path.join(folder, f)
            if f.lower().endswith(extensions) and os.path.isfile(path):
                out.append(path)
    return sorted(out)


def write_audio(path: str, wav: torch.Tensor | np.ndarray, rate: int = SAMPLE_RATE, subtype: str | None = None) -> None:
    """Writes (samples,) or (channels, samples) atomically: a temp file in the same folder
    then ``os.replace``, so a crash never leaves a half-written file at ``path``."""
    data = wav.detach().cpu().numpy() if torch.is_tensor(wav) else np.asarray(wav)
    if data.ndim == 2:
        data = data.T
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".wav", dir=folder)
    except OSError as err:
        raise AudioError(f"{path}: cannot write here ({err.strerror})") from None
    os.close(fd)
    try:
        fmt = os.path.splitext(path)[1].lstrip(".").upper() or "WAV"
        sf.write(tmp, data, rate, format=fmt if fmt in sf.available_formats() else "WAV", subtype=subtype)
        os.replace(tmp, path)
    except Exception:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
