"""Mixing speech and noise the way VoiceBank-DEMAND was made, offline or on the fly.

One owner of the mixing rules: the active-level SNR, the VoiceBank-DEMAND SNR sets, the
clip guard, babble and speech-shaped noise (the two artificial noise types of the
VoiceBank-DEMAND training set). ``recipes/VCTK/simulate_vbd.py`` renders fixed sets with
them; :class:`DynamicMixDataset` draws new training mixtures every epoch (as SpeechBrain's
separation recipes do), deterministic per (seed, epoch, index) so a resumed run sees the
mixtures an uninterrupted one would have seen.
"""
from __future__ import annotations

import json
import os
import random
from typing import Sequence

import numpy as np
import torch
from scipy.signal import resample_poly

from speechbrain_sslse.audio import SAMPLE_RATE, list_audio, read_mono_16k

TRAIN_SNRS = (0.0, 5.0, 10.0, 15.0)
TEST_SNRS = (2.5, 7.5, 12.5, 17.5)
CLIP_PEAK = 0.99


def load_mixing_audio(path: str) -> np.ndarray:
    """Speech or noise for mixing: 16 kHz, channels averaged (deliberately: a stereo noise
    recording is one noise), float64 for level arithmetic."""
    return read_mono_16k(path, downmix=True).numpy().astype(np.float64)


#: Exact-zero runs at least this long (0.25 s) are cut out of a noise: a crop inside one held
#: no noise at all, yet its mixture was labelled with the SNR drawn for it.
DIGITAL_SILENCE = SAMPLE_RATE // 4


def without_digital_silence(noise: np.ndarray, min_run: int = DIGITAL_SILENCE) -> np.ndarray:
    """``noise`` without its runs of exact zeros of ``min_run`` samples or more (gaps an
    editor or a recorder left; real background noise is never exactly 0 for long). Shorter
    runs stay, so a recording without such gaps is returned as it is."""
    zero = np.concatenate([[False], noise == 0, [False]])
    edges = np.flatnonzero(np.diff(zero.astype(np.int8)))
    starts, ends = edges[0::2], edges[1::2]
    long = ends - starts >= min_run
    if not long.any():
        return noise
    keep = np.ones(len(noise), dtype=bool)
    for a, b in zip(starts[long], ends[long]):
        keep[a:b] = False
    return noise[keep]


def load_noise(path: str) -> np.ndarray:
    """A noise recording for mixing: ``load_mixing_audio`` without its digital silence."""
    return without_digital_silence(load_mixing_audio(path))


def power(x: np.ndarray) -> float:
    """Mean power, floored at 1e-20 so a silent signal never divides by zero."""
    return max(float(np.mean(x**2)), 1e-20)


def active_level(x: np.ndarray, rate: int = SAMPLE_RATE, margin_db: float = 15.9) -> float:
    """Active speech power: a P.56-style fixed point over 10 ms frame powers (the level c
    for which the mean power of frames above c - 15.9 dB equals c)."""
    hop = rate // 100
    n = len(x) // hop
    if n == 0:
        return float(np.mean(x**2)) if len(x) else 0.0
    power = np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1)
    level = float(np.mean(power))
    for _ in range(50):
        active = power[power >= level * 10 ** (-margin_db / 10)]
        new = float(np.mean(active)) if len(active) else level
        if abs(new - level) <= 1e-6 * max(level, 1e-20):
            break
        level = new
    return level


def noise_segment(noise: np.ndarray, length: int, start: int) -> np.ndarray:
    """``length`` samples of ``noise`` from ``start``, wrapping around its end (the same
    samples as tiling it, without copying a long recording)."""
    if start + length <= len(noise):
        return noise[start : start + length]
    return noise[(start + np.arange(length)) % len(noise)]


def mix_at_snr(clean: np.ndarray, noise: np.ndarray, snr_db: float, speech_level: float | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """(clean, noisy): ``noise`` (already ``len(clean)`` long) scaled to ``snr_db`` below
    the active speech level (of ``clean`` unless given, e.g. the whole utterance's for a
    crop); both rescaled together if the mixture would clip."""
    level = active_level(clean) if speech_level is None else speech_level
    seg_power = power(noise)
    noisy = clean + noise * np.sqrt(level / (seg_power * 10 ** (snr_db / 10)))
    peak = max(float(np.abs(noisy).max(initial=0.0)), float(np.abs(clean).max(initial=0.0)))
    if peak > CLIP_PEAK:
        clean, noisy = clean * CLIP_PEAK / peak, noisy * CLIP_PEAK / peak
    return clean, noisy


def mix(clean: np.ndarray, noise: np.ndarray, snr_db: float, rng: random.Random) -> tuple[np.ndarray, np.ndarray]:
    """A random segment of ``noise`` mixed with the whole of ``clean`` at ``snr_db``."""
    tiled = noise if len(noise) >= len(clean) else np.tile(noise, -(-len(clean) // len(noise)))
    start = rng.randrange(0, len(tiled) - len(clean) + 1)
    return mix_at_snr(clean, tiled[start : start + len(clean)], snr_db)


def babble(utterances: Sequence[np.ndarray], talkers: int, seconds: float, rng: np.random.Generator
           ) -> tuple[np.ndarray, list[int]]:
    """Babble: ``talkers`` utterances (tiled to ``seconds``, random offsets) at equal active
    level, summed (unit RMS); and which utterances it used. Pass only training speakers'."""
    n = int(seconds * SAMPLE_RATE)
    out = np.zeros(n)
    used = [int(k) for k in rng.choice(len(utterances), size=talkers, replace=len(utterances) < talkers)]
    for k in used:
        u = utterances[k]
        seg = noise_segment(u, n, int(rng.integers(0, len(u))))
        out += seg / np.sqrt(max(active_level(u), 1e-20))
    return out / np.sqrt(power(out)), used


def long_term_spectrum(utterances: Sequence[np.ndarray], n_fft: int = 512) -> np.ndarray:
    """Mean power spectrum (``n_fft // 2 + 1`` bins) over Hann-windowed frames of all
    utterances, each utterance weighted by its frames."""
    window = np.hanning(n_fft)
    total, frames = np.zeros(n_fft // 2 + 1), 0
    for u in utterances:
        if len(u) < n_fft:
            continue
        idx = np.arange(0, len(u) - n_fft + 1, n_fft // 2)
        spec = np.abs(np.fft.rfft(u[idx[:, None] + np.arange(n_fft)] * window, axis=1)) ** 2
        total += spec.sum(0)
        frames += len(idx)
    if frames == 0:
        raise ValueError("no utterance is long enough for a long-term spectrum")
    return total / frames


def speech_shaped_noise(spectrum: np.ndarray, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise whose power spectrum follows ``spectrum`` (unit RMS)."""
    n = int(seconds * SAMPLE_RATE)
    white = np.fft.rfft(rng.standard_normal(n))
    freqs = np.linspace(0, 1, len(white))
    shape = np.sqrt(np.interp(freqs, np.linspace(0, 1, len(spectrum)), spectrum))
    out = np.fft.irfft(white * shape, n)
    return out / np.sqrt(power(out))


def random_eq(x: np.ndarray, max_db: float, rng: np.random.Generator, points: int = 8) -> np.ndarray:
    """``x`` through a random smooth filter: gains uniform in +-``max_db`` at ``points``
    log-spaced frequencies (50 Hz to Nyquist), interpolated over the FFT bins. Turns one
    noise recording into many colourings of it."""
    spec = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE)
    anchors = np.geomspace(50.0, SAMPLE_RATE / 2, points)
    gains_db = rng.uniform(-max_db, max_db, points)
    curve = np.interp(np.log(np.maximum(freqs, 1.0)), np.log(anchors), gains_db)
    return np.fft.irfft(spec * 10 ** (curve / 20), len(x))


def speed_segment(noise: np.ndarray, length: int, start: int, factor: float) -> np.ndarray:
    """``length`` samples of ``noise`` played ``factor`` times faster (``factor`` > 1 moves
    its spectrum up), from ``start``, wrapping around; linear interpolation (a noise
    augmentation, not a resampler for speech)."""
    span = int(np.ceil(length * factor)) + 2
    seg = noise_segment(noise, span, start)
    return np.interp(np.arange(length) * factor, np.arange(span), seg)


def speed_speech(utt: np.ndarray, length: int, start: int, factor: float, margin: int = 64) -> np.ndarray:
    """``length`` samples of ``utt`` from about ``start`` played ``factor`` times faster
    (tempo and pitch together, as SpeechBrain's SpeedPerturb), by polyphase resampling
    (``factor`` to 1/100; anti-aliased, unlike the noise augmentation's ``speed_segment``)
    of only the span needed, with ``margin`` samples each side for the filter. The span is
    moved back when it would run past the end, so no wrap-around splice enters the speech of
    an utterance longer than the span; a shorter one is tiled, as the plain crop tiles
    utterances shorter than the crop."""
    down = max(1, int(round(100 * factor)))
    need = -(-length * down // 100) + 2
    span = need + 2 * margin
    if len(utt) < span:
        utt = np.tile(utt, -(-span // len(utt)))
    first = max(0, min(start - margin, len(utt) - span))
    begin = min(start, first + span - margin - need)  # moved back with the span near the end
    out = resample_poly(utt[first : first + span], 100, down)
    skip = (begin - first) * 100 // down
    out = out[skip : skip + length]
    return out if len(out) == length else np.pad(out, (0, length - len(out)))


class DynamicMixDataset(torch.utils.data.Dataset):
    """Training mixtures drawn on the fly: a random crop of a random training utterance
    (tiled if shorter, random offset), a random segment of a random training noise
    (recordings, real paired noise, babble, speech-shaped noise), an SNR from ``snrs``
    (or uniform in ``snr_range``) on the utterance's active level, the method's random
    gain on both signals. Optional noise augmentation (off by default, and drawn after the
    draws above so that enabling it leaves them as they were): the segment played at a
    random speed in ``noise_speed_range``, a random EQ of up to +-``noise_eq_db``, and with
    probability ``second_noise_prob`` a second training noise added at -5..+5 dB relative
    level; the SNR is set after augmentation, on the noise as mixed. Speech augmentation
    (off by default, drawn last): the utterance played at a random speed in
    ``speech_speed_range`` (new pitch and tempo; the clean target is the sped speech) and a
    random EQ of up to +-``speech_eq_db`` that keeps the crop's active level (so the
    utterance's stays the SNR's reference; resampling keeps the level too). Both act on the crop's
    span only: a few ms per mixture, so the loader keeps pace with training.

    Item ``i`` of epoch ``e`` depends only on (seed, e, i): a killed run that resumes
    mid-epoch gets the same mixtures, and ranks under DDP, which sample disjoint
    indices, get different ones. Call :meth:`set_epoch` before each epoch.
    """

    def __init__(
        self, speech: Sequence[str], noise: Sequence[str], items_per_epoch: int, crop: int = 20480,
        snrs: Sequence[float] = TRAIN_SNRS, snr_range: Sequence[float] | None = None,
        gain_range: Sequence[float] = (1.0, 2.5), babble_tracks: int = 0, babble_talkers: tuple[int, int] = (3, 7),
        ssn_tracks: int = 0, noise_pairs: Sequence[str] = (), seed: int = 999, max_seconds: float = 12.0,
        noise_speed_range: Sequence[float] | None = None, noise_eq_db: float = 0.0, second_noise_prob: float = 0.0,
        speech_speed_range: Sequence[float] | None = None, speech_eq_db: float = 0.0,
    ) -> None:
        if items_per_epoch < 1 or crop < 1:
            raise ValueError("items_per_epoch and crop must be positive")
        for key, value in (("noise_speed_range", noise_speed_range), ("speech_speed_range", speech_speed_range)):
            if value is not None and not (len(value) == 2 and np.all(np.isfinite(value))
                                          and 0 < float(value[0]) <= float(value[1])):
                raise ValueError(f"{key} must be [low, high] with 0 < low <= high, got {value}")
        if not (np.isfinite(noise_eq_db) and noise_eq_db >= 0 and 0 <= second_noise_prob <= 1):
            raise ValueError("noise_eq_db must be a finite value >= 0 and second_noise_prob in [0, 1]")
        if not (np.isfinite(speech_eq_db) and speech_eq_db >= 0):
            raise ValueError("speech_eq_db must be a finite value >= 0")
        self.speech_files = sorted(speech)
        if not self.speech_files or not (noise or noise_pairs or babble_tracks or ssn_tracks):
            raise ValueError("dynamic mixing needs training speech and at least one noise source")
        limit = int(max_seconds * SAMPLE_RATE)
        self.speech = [load_mixing_audio(p)[:limit] for p in self.speech_files]
        self.levels = [active_level(u) for u in self.speech]
        self.noise_names: list[str] = []
        self.noises: list[np.ndarray] = []
        for path in sorted(noise):
            self._add_noise(path, load_noise(path))
        for spec in noise_pairs:
            for name, wav in pair_noises(spec).items():
                self._add_noise(name, wav)
        rng = np.random.default_rng([seed, 7919])  # artificial noises: fixed per seed
        low, high = babble_talkers
        self.artificial_sources: dict[str, list[str]] = {}  # babble / SSN track -> speech files
        for k in range(babble_tracks):
            track, used = babble(self.speech, int(rng.integers(low, high + 1)), 10.0, rng)
            self._add_noise(f"babble:{k}", track)
            self.artificial_sources[f"babble:{k}"] = [self.speech_files[i] for i in used]
        if ssn_tracks:
            spectrum = long_term_spectrum(self.speech)
            for k in range(ssn_tracks):
                self._add_noise(f"ssn:{k}", speech_shaped_noise(spectrum, 10.0, rng))
                self.artificial_sources[f"ssn:{k}"] = list(self.speech_files)
        if second_noise_prob > 0 and len(self.noises) < 2:
            raise ValueError("second_noise_prob needs at least two training noises")
        self.items, self.crop, self.seed, self.epoch = int(items_per_epoch), int(crop), int(seed), 0
        self.snrs, self.snr_range = tuple(float(s) for s in snrs), snr_range
        self.gain_range = tuple(float(g) for g in gain_range)
        self.noise_speed_range = None if noise_speed_range is None else tuple(float(v) for v in noise_speed_range)
        self.noise_eq_db, self.second_noise_prob = float(noise_eq_db), float(second_noise_prob)
        self.speech_speed_range = None if speech_speed_range is None else tuple(float(v) for v in speech_speed_range)
        self.speech_eq_db = float(speech_eq_db)

    def _add_noise(self, name: str, wav: np.ndarray) -> None:
        if len(wav) == 0 or not np.any(wav):
            raise ValueError(f"noise {name}: silent or empty")
        self.noise_names.append(name)
        self.noises.append(wav)

    @classmethod
    def from_simulation(cls, simulation_json: str, **kwargs) -> "DynamicMixDataset":
        """The training speech and noise of a set rendered by ``simulate_vbd.py``: its
        split decides which speakers and noises are for training, so validation and test
        speakers and noises never enter a mixture (nor babble, nor speech-shaped noise)."""
        with open(simulation_json, encoding="utf-8") as f:
            sim = json.load(f)
        if "train_speech" not in sim:
            raise ValueError(f"{simulation_json}: no train_speech list; re-render with the current simulate_vbd.py")
        kwargs.setdefault("noise_pairs", sim.get("train_noise_pairs", []))
        kwargs.setdefault("seed", sim.get("seed", 999))
        return cls(sim["train_speech"], sim["train_noise_files"], **kwargs)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.items

    def mixture(self, index: int) -> dict:
        """The clean/noisy pair of ``index`` in the current epoch, with how it was drawn."""
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        k = int(rng.integers(len(self.speech)))
        utt = self.speech[k]
        if len(utt) < self.crop:  # tiled, then cropped at a random offset
            utt = np.tile(utt, -(-2 * self.crop // len(utt)))
        start = int(rng.integers(0, len(utt) - self.crop + 1))
        clean = utt[start : start + self.crop]
        j = int(rng.integers(len(self.noises)))
        noise = self.noises[j]
        noise_start = int(rng.integers(0, len(noise)))
        if self.snr_range is not None:
            snr = float(rng.uniform(*self.snr_range))
        else:
            snr = self.snrs[int(rng.integers(len(self.snrs)))]
        gain = float(rng.uniform(*self.gain_range))
        seg, names = self._noise(j, noise_start, rng)
        level = self.levels[k]
        if self.speech_speed_range or self.speech_eq_db > 0:
            clean = self._speech(utt, start, clean, rng)
        clean, noisy = mix_at_snr(clean, seg, snr, speech_level=level)
        return {"id": f"dm_e{self.epoch}_{index}", "clean": clean * gain, "noisy": noisy * gain, "snr_db": snr,
                "speech": self.speech_files[k], "noise": "+".join(names), "gain": gain,
                "speech_level": level}

    def _noise(self, j: int, start: int, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
        """The noise segment of a mixture (augmented when asked) and the noises it holds."""
        speed = float(rng.uniform(*self.noise_speed_range)) if self.noise_speed_range else 1.0
        seg = speed_segment(self.noises[j], self.crop, start, speed) if speed != 1.0 else \
            noise_segment(self.noises[j], self.crop, start)
        names = [self.noise_names[j]]
        if self.noise_eq_db > 0:
            seg = random_eq(seg, self.noise_eq_db, rng)
        if self.second_noise_prob > 0 and rng.random() < self.second_noise_prob:  # >= 2 noises (checked)
            other = int(rng.integers(len(self.noises) - 1))
            other += other >= j  # any noise but the first
            extra = noise_segment(self.noises[other], self.crop, int(rng.integers(0, len(self.noises[other]))))
            rel_db = float(rng.uniform(-5.0, 5.0))
            scale = np.sqrt(power(seg) / power(extra))
            seg = seg + extra * scale * 10 ** (rel_db / 20)
            names.append(self.noise_names[other])
        return seg, names

    def _speech(self, utt: np.ndarray, start: int, crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The speech crop augmented as asked: sped up or slowed down from the same start,
        then coloured at its own active level."""
        if self.speech_speed_range:
            crop = speed_speech(utt, self.crop, start, float(rng.uniform(*self.speech_speed_range)))
        if self.speech_eq_db > 0:
            before = active_level(crop)
            crop = random_eq(crop, self.speech_eq_db, rng)
            crop = crop * np.sqrt(before / max(active_level(crop), 1e-20))
        return crop

    def __getitem__(self, index: int) -> dict:
        m = self.mixture(index)
        return {"id": m["id"], "noisy_sig": torch.from_numpy(m["noisy"]).float(),
                "clean_sig": torch.from_numpy(m["clean"]).float()}


def pair_noises(spec: str) -> dict[str, np.ndarray]:
    """Noise of sample-aligned pairs in ``CLEAN:NOISY`` folders (same paths below each
    folder, subfolders included): noisy - clean."""
    clean_dir, sep, noisy_dir = spec.rpartition(":")
    if not sep or not os.path.isdir(clean_dir) or not os.path.isdir(noisy_dir):
        raise ValueError(f"noise pairs want CLEAN:NOISY folders, got {spec!r}")
    out = {}
    for noisy_path in list_audio(noisy_dir):
        name = os.path.relpath(noisy_path, noisy_dir)  # by path, not base name: sub/x.wav pairs with sub/x.wav
        clean_path = os.path.join(clean_dir, name)
        if not os.path.exists(clean_path):
            raise ValueError(f"no clean file for {noisy_path} in {clean_dir}")
        clean, noisy = load_mixing_audio(clean_path), load_mixing_audio(noisy_path)
        if len(clean) != len(noisy):
            raise ValueError(f"{name}: clean and noisy lengths differ ({len(clean)} vs {len(noisy)}); pairs must be aligned")
        out[f"pair:{name}"] = without_digital_silence(noisy - clean)
    if not out:
        raise ValueError(f"no audio files in {noisy_dir}")
    return out
