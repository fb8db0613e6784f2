"""Audio I/O with clear errors: reading any soundfile format, resampling, atomic writes."""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import warnings

import numpy as np
import soundfile as sf
import torch

from .errors import DataWarning

SAMPLE_RATE = 16000
# Containers libsndfile reads, found when listing folders (a file of another extension
# named directly is still tried).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif", ".au", ".sph", ".caf", ".w64", ".rf64")


class AudioError(ValueError):
    """A file cannot be used as audio; the message names the file and the reason."""


def is_utf8_name(path: str) -> bool:
    """Whether ``path`` encodes as UTF-8. A name that does not (Latin-1 bytes from an old
    archive, kept by Python as surrogate escapes) must go to libsndfile as bytes, and
    SpeechBrain's training loader cannot open it at all."""
    try:
        path.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def sf_path(path: str) -> str | bytes:
    """``path`` as libsndfile can open it: soundfile encodes a ``str`` as strict UTF-8, so a
    name that is not UTF-8 goes as its bytes instead of failing as "not a readable audio file"."""
    return path if is_utf8_name(path) else os.fsencode(path)


def _looks_like_mp3(path: str) -> bool:
    """An ID3 tag or an MPEG frame sync at the start: anything else (text named .mp3) would
    only make libmpg123 print its own resync notes before failing."""
    try:
        with open(path, "rb") as f:
            head = f.read(3)
    except OSError:
        return True  # let the reader report it
    return head == b"ID3" or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)


@contextlib.contextmanager
def _c_stderr_captured():
    """Collects what C libraries write to file descriptor 2 (libmpg123 prints its notes
    there, past Python's ``sys.stderr``) so that they can be judged and reported as one
    message naming the file instead of loose lines. Yields a list filled on exit."""
    notes: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield notes
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            notes.extend(line.strip() for line in tmp.read().decode(errors="replace").splitlines() if line.strip())


def _read_mp3(path: str) -> tuple[np.ndarray, int, str | None]:
    """An MP3 whose frames are damaged or cut off decodes "successfully" to a fraction of its
    length (libmpg123 resyncs, prints a note and stops early: 0.33 s of a 3 s file), which
    would pass a broken input off as whole. libmpg123's notes plus a decoded length short of
    the length its header (Xing/Info) declares make it an ``AudioError``; notes alone (a
    skipped frame in a file of full length) a ``DataWarning``. Without notes a shortfall is
    only the length estimate of a header-less VBR file and is accepted."""
    with _c_stderr_captured() as notes:
        with sf.SoundFile(sf_path(path)) as f:
            declared, rate = f.frames, f.samplerate
            data = f.read(dtype="float32", always_2d=True)
    if notes:
        shortfall = declared - data.shape[0]
        if shortfall > max(2 * 1152, declared // 100):  # two MPEG frames or 1 %
            raise AudioError(f"{path}: damaged or truncated MP3 (its header declares {declared} samples, "
                             f"{data.shape[0]} decode; libmpg123: {notes[0]}); re-copy or repair it")
        warnings.warn(f"{path}: libmpg123 reported a damaged stream but decoded its full length "
                      f"({'; '.join(notes[:3])}); a skipped frame may be audible", DataWarning, stacklevel=3)
    return data, rate, None


def _read_other(path: str) -> tuple[np.ndarray, int, str | None]:
    """(samples, rate, what is cut off or None) from one libsndfile open: the truncation
    check that needs the header log (``_logged_truncation``) uses the same open, and only a
    WAV or an Ogg file is looked at again (their checks read raw bytes that libsndfile does
    not report)."""
    with sf.SoundFile(sf_path(path)) as f:
        container, log, rate = f.format, f.extra_info, f.samplerate
        data = f.read(dtype="float32", always_2d=True)
    if container in ("WAV", "WAVEX"):
        cut = wav_truncation(path)
        return data, rate, cut and f"its WAV header declares {cut[0]} bytes of audio, the file holds {cut[1]}"
    if container == "OGG":
        cut = ogg_truncation(path)
        return data, rate, cut and f"its last Ogg page is cut off: {cut}"
    cut = _logged_truncation(container, log)
    return data, rate, cut and f"its header declares {cut[0]} bytes for {cut[2]}, the file holds {cut[1]}"


def read_audio(path: str) -> tuple[torch.Tensor, int]:
    """Returns (channels, samples) float32 in [-1, 1] (float files as stored) and the rate.

    Any failure becomes one ``AudioError`` naming the file: missing, a directory,
    unreadable/corrupt, truncated (WAV, Ogg, MP3, AIFF, AU, W64, RF64, CAF), empty, or
    holding NaN / Inf samples.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise AudioError(f"{path}: no such file")
    if os.path.isdir(path):
        raise AudioError(f"{path}: is a directory, not an audio file")
    if path.lower().endswith(".mp3") and not _looks_like_mp3(path):  # before mpg123 prints resync notes
        raise AudioError(f"{path}: not a readable audio file (its content is not valid audio for its format)")
    try:
        data, rate, cut = (_read_mp3 if path.lower().endswith(".mp3") else _read_other)(path)
    except AudioError:
        raise
    except Exception as err:  # libsndfile's messages are short; keep the reason
        reason = (str(err).split("\n")[0].replace(f"Error opening {path!r}: ", "")
                  .replace(f"Error opening {sf_path(path)!r}: ", "") or type(err).__name__)
        if "does not exist" in reason and os.path.isfile(path):  # libsndfile's words for a bad MP3 stream
            reason = "its content is not valid audio for its format"
        raise AudioError(f"{path}: not a readable audio file ({reason})") from None
    if cut:
        raise AudioError(f"{path}: truncated ({cut}); re-copy or repair it")
    if data.shape[0] == 0:
        raise AudioError(f"{path}: contains no samples")
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: contains NaN or Inf samples")
    return torch.from_numpy(np.ascontiguousarray(data.T)), int(rate)


def wav_truncation(path: str) -> tuple[int, int] | None:
    """(declared, present) audio bytes of a RIFF/WAVE file cut short (an interrupted copy or
    download), else None. libsndfile reads such a file without complaint, up to where it
    ends; enhancing that silently would pass a damaged input off as whole. A declared size
    of 0 or 0xFFFFFFFF (streamed WAV, length unknown) is not a truncation."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            size = os.fstat(f.fileno()).st_size
            while True:
                head = f.read(8)
                if len(head) < 8:
                    return None
                chunk, length = head[:4], int.from_bytes(head[4:], "little")
                if chunk == b"data":
                    present = size - f.tell()
                    return (length, present) if 0 < length < 0xFFFFFFFF and length > present else None
                f.seek(length + (length & 1), os.SEEK_CUR)
    except OSError:
        return None


_SHOULD_BE = re.compile(r"^\s*([A-Za-z][\w ]*?)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.M)


def _logged_truncation(container: str, log: str | None) -> tuple[int, int, str] | None:
    """(declared, present, chunk) for an AIFF, AU, W64, RF64 or CAF file cut short, from its
    format and libsndfile's header log, else None. libsndfile reads those up to where they end
    without an error; its header log notes each size that does not fit the file ("SSND :
    160008 (should be 79981)"). A size more than a pad byte beyond what the file holds is a
    truncation (a smaller one, trailing bytes, is not). WAV (``wav_truncation``), Ogg and MP3
    have their own checks."""
    if container not in ("AIFF", "AU", "W64", "RF64", "CAF"):
        return None
    for chunk, declared, present in _SHOULD_BE.findall(log or ""):
        if int(declared) - int(present) > 1:
            return int(declared), int(present), chunk.strip()
    return None


#: The largest Ogg page: a 27-byte header, 255 lacing values and 255 segments of 255 bytes.
OGG_MAX_PAGE = 27 + 255 + 255 * 255


def ogg_truncation(path: str) -> str | None:
    """What is missing at the end of an Ogg file (Vorbis, Opus, FLAC in Ogg) cut short, else
    None. Ogg keeps no total length in its header, so libsndfile reads such a file without
    complaint up to its last whole page (a 5 s clip cut in half reads as 1.7 s): its last
    page, found by its ``OggS`` capture pattern, must end exactly at the end of the file."""
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"OggS":
                return None
            size = os.fstat(f.fileno()).st_size
            f.seek(max(0, size - OGG_MAX_PAGE))
            tail = f.read()
    except OSError:
        return None
    start = max(0, size - OGG_MAX_PAGE)
    at = tail.rfind(b"OggS")
    while at >= 0:  # the last capture pattern that begins a page (the bytes "OggS" may occur in audio data)
        head = tail[at : at + 27]
        if len(head) == 27 and head[4] == 0:  # stream structure version 0
            lacing = tail[at + 27 : at + 27 + head[26]]
            if len(lacing) < head[26]:
                return f"a page header at byte {start + at} of {size} is incomplete"
            end = at + 27 + head[26] + sum(lacing)
            if end == len(tail):
                return None
            if end > len(tail):
                return f"the page at byte {start + at} needs {start + end} bytes, the file holds {size}"
        at = tail.rfind(b"OggS", 0, at)
    return None


def resample(wav: torch.Tensor, orig_rate: int, new_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Band-limited resampling between any two integer rates with libsoxr (the SoX
    resampler, "HQ": 20-bit, linear phase) in bounded memory and time. (torchaudio's sinc
    kernel grows with the rates' reduced ratio: 44,101 -> 16,000 Hz took 12.5 GB;
    ``benchmarks/resample.py``.) Identity when the rates match. (channels, samples) or
    (samples,), float32 out."""
    if orig_rate == new_rate:
        return wav
    import soxr

    if orig_rate <= 0 or new_rate <= 0:
        raise AudioError(f"sample rates must be positive, got {orig_rate} -> {new_rate}")
    data = wav.detach().cpu().float().numpy()
    out = soxr.resample(np.ascontiguousarray(data.T if data.ndim == 2 else data), orig_rate, new_rate, quality="HQ")
    out = torch.from_numpy(np.ascontiguousarray(out.T if data.ndim == 2 else out))
    return out.to(wav.device)


def read_mono_16k(path: str, downmix: bool = False) -> torch.Tensor:
    """A 1-D 16 kHz signal, resampled if needed. Multi-channel files are refused unless
    ``downmix`` (channel mean) is asked for, so nothing is down-mixed silently."""
    wav, rate = read_audio(path)
    if wav.shape[0] != 1:
        if not downmix:
            raise AudioError(f"{path}: has {wav.shape[0]} channels; expected mono")
        wav = wav.mean(0, keepdim=True)
    return resample(wav, rate)[0]


NOT_REGULAR = "not a regular file (named pipe, socket or device); skipped"
#: ``write_audio``'s temporary files (``mkstemp``: prefix, 8 random characters, extension).
WRITE_TEMP = re.compile(r"^\.tmp-[A-Za-z0-9_]{8}\.[^.]+$")
LEFT_BY_A_KILLED_WRITE = "the temporary file of a write that was killed (partial audio); skipped: delete it"


def same_or_inside(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or lies below it (links resolved)."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def list_audio(
    root: str, extensions: tuple[str, ...] = AUDIO_EXTENSIONS, exclude: tuple[str, ...] | list[str] = (),
    skipped: list[tuple[str, str]] | None = None,
) -> list[str]:
    """Every audio file below ``root`` (recursive, sorted), by extension, leaving out the
    ``exclude`` folders. Linked subfolders are searched like any other (a corpus whose
    speaker folders are links to another disk is all found), except a link back to a folder
    above it (a loop). Only regular files: a named pipe or socket would block a reader
    forever, so such entries go to ``skipped`` as (path, reason) when a list is given."""
    out = []
    # the resolved folders from the root down to each folder: a link to one of them is a loop
    chain = {root: {os.path.realpath(root)}}
    for folder, dirs, files in os.walk(root, followlinks=True):
        above = chain.pop(folder, {os.path.realpath(folder)})
        dirs[:] = sorted(d for d in dirs if not any(same_or_inside(os.path.join(folder, d), e) for e in exclude)
                         and os.path.realpath(os.path.join(folder, d)) not in above)
        for d in dirs:
            chain[os.path.join(folder, d)] = above | {os.path.realpath(os.path.join(folder, d))}
        for name in sorted(files):
            path = os.path.join(folder, name)
            if not name.lower().endswith(extensions):
                continue
            if WRITE_TEMP.match(name):  # a write killed before its rename: partial, never an input
                if skipped is not None:
                    skipped.append((path, LEFT_BY_A_KILLED_WRITE))
                continue
            if os.path.isfile(path):
                out.append(path)
            elif skipped is not None:
                skipped.append((path, NOT_REGULAR))
    return sorted(out)


# extension -> (libsndfile container, subtype for float data); None: the format's default
OUTPUT_FORMATS = {
    ".wav": ("WAV", "FLOAT"), ".flac": ("FLAC", "PCM_24"), ".ogg": ("OGG", "VORBIS"), ".opus": ("OGG", "OPUS"),
    ".mp3": ("MP3", None), ".aiff": ("AIFF", "FLOAT"), ".aif": ("AIFF", "FLOAT"), ".au": ("AU", "FLOAT"),
    ".caf": ("CAF", "FLOAT"), ".w64": ("W64", "FLOAT"), ".rf64": ("RF64", "FLOAT"),
}
FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")
#: A RIFF WAV's sizes are 32-bit: larger data goes into RF64 (same samples, 64-bit sizes).
WAV_MAX_BYTES = 2**32 - 1024


def output_format(path: str, num_values: int = 0, subtype: str | None = None) -> tuple[str, str | None]:
    """(container, subtype) that ``write_audio`` uses for ``path``: chosen by extension
    (WAV when there is none), RF64 for WAV data over 4 GiB. Unknown extensions raise
    ``AudioError`` so a caller can refuse before doing any work."""
    ext = os.path.splitext(os.fspath(path))[1].lower() or ".wav"
    if ext not in OUTPUT_FORMATS:
        raise AudioError(f"{path}: cannot write {ext!r} files; use one of {', '.join(sorted(OUTPUT_FORMATS))}")
    container, default = OUTPUT_FORMATS[ext]
    chosen = subtype if subtype is not None and sf.check_format(container, subtype) else default
    if container == "WAV" and num_values * (8 if chosen == "DOUBLE" else 4) > WAV_MAX_BYTES:
        container = "RF64"
    return container, chosen


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_audio(path: str, wav: torch.Tensor | np.ndarray, rate: int = SAMPLE_RATE, subtype: str | None = None) -> None:
    """Writes (samples,) or (channels, samples) atomically: a temp file in the same folder,
    fsynced, then ``os.replace``, so a crash or a full disk never leaves a half-written
    file at ``path``. Format from the extension (``output_format``); float samples beyond
    [-1, 1] are kept in float formats and clipped, with a warning, in integer or lossy
    ones. The file gets the usual permissions (0666 less the umask). Any failure is one
    ``AudioError`` naming the file and the reason."""
    data = wav.detach().cpu().numpy() if torch.is_tensor(wav) else np.asarray(wav)
    if data.ndim == 2:
        data = data.T
    container, subtype = output_format(path, data.size, subtype)
    if subtype not in FLOAT_SUBTYPES:
        clipped = int(np.count_nonzero(np.abs(data) > 1.0))
        if clipped:
            warnings.warn(f"{path}: {clipped} sample(s) beyond [-1, 1] clipped ({container} {subtype or ''} "
                          "holds no larger values; write .wav to keep them)", DataWarning, stacklevel=2)
            data = np.clip(data, -1.0, 1.0)
    folder = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.splitext(path)[1] or ".wav", dir=folder)
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600
        sf.write(sf_path(tmp), data, rate, format=container, subtype=subtype)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:  # full disk, permissions, codec errors: one line, file named
        if tmp is not None and os.path.exists(tmp):  # Ctrl-C too: no partial file is left behind
            os.remove(tmp)
        if not isinstance(err, Exception):
            raise
        reason = getattr(err, "strerror", None) or str(err).split("\n")[0] or type(err).__name__
        raise AudioError(f"{path}: cannot write ({reason})") from None
