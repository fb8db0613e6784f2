"""``EnhanceSSL``: the user-facing enhancer on SpeechBrain's ``Pretrained`` interface.

    enhancer = EnhanceSSL.from_hparams(source="pretrained/sslse-log1p-sim")
    enhanced = enhancer.enhance_file("noisy.wav", "enhanced.wav")

It runs the package's ``SSLEnhancer`` (the same module training uses). Any sample rate is
resampled to 16 kHz and back; each channel is enhanced on its own; long inputs go through
overlapping chunks with a linear cross-fade so memory stays bounded.
"""
from __future__ import annotations

import os

import torch
from speechbrain.inference.interfaces import Pretrained
from speechbrain.utils.fetching import LocalStrategy

from .audio import SAMPLE_RATE, AudioError, read_audio, resample, write_audio


class EnhanceSSL(Pretrained):
    """Speech enhancement with an SSL (+ log1p) mask model.

    hparams (``hyperparams.yaml`` written by ``recipes/VCTK/export.py``): ``enhancer``
    (an ``SSLEnhancer``), ``chunk_seconds``, ``overlap_seconds``, ``batch_size``.
    """

    HPARAMS_NEEDED = ["enhancer"]
    MODULES_NEEDED = ["enhancer"]

    @classmethod
    def from_hparams(cls, source, hparams_file="hyperparams.yaml", savedir=None, **kwargs):
        """Like ``Pretrained.from_hparams``; a local folder is used in place (no copies,
        no network)."""
        if savedir is None and os.path.isdir(str(source)):
            kwargs.setdefault("local_strategy", LocalStrategy.NO_LINK)
        return super().from_hparams(source=str(source), hparams_file=hparams_file, savedir=savedir, **kwargs)

    @property
    def enhancer(self):
        return self.mods.enhancer

    @property
    def chunk_samples(self) -> int:
        return int(getattr(self.hparams, "chunk_seconds", 30.0) * SAMPLE_RATE)

    @property
    def overlap_samples(self) -> int:
        return int(getattr(self.hparams, "overlap_seconds", 1.0) * SAMPLE_RATE)

    def enhance_batch(self, noisy: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Enhances a padded batch of 16 kHz waveforms (batch, samples); ``lengths`` are
        SpeechBrain relative lengths. Returns (batch, samples), zero past each length."""
        noisy = noisy.to(self.device, torch.float32)
        batch, n = noisy.shape
        if n == 0:
            raise ValueError("cannot enhance an empty waveform")
        lengths = torch.ones(batch) if lengths is None else lengths.float().cpu()
        abs_lens = torch.round(lengths * n).long().clamp(1, n)
        short = self.enhancer.min_samples
        if n < short:  # zero-extend to the shortest input the model takes, then cut back
            out = self.enhance_batch(torch.nn.functional.pad(noisy, (0, short - n)), abs_lens.float() / short)
            return out[:, :n]
        # items shorter than min_samples inside a longer batch: their padding is zeros anyway
        rel = abs_lens.clamp(min=short).float() / n
        # run option precision=bf16 / fp16 (SpeechBrain's own): autocast, e.g. bf16 on CPUs
        # with AVX-512 BF16 (WavLM Base, 10 s: 2.14x faster than fp32, output within 54.9 dB
        # SNR of it; benchmarks/precision.py)
        with torch.inference_mode(), self.inference_ctx:
            out = self.enhancer.enhance(noisy, None if bool((abs_lens == n).all()) else rel.to(self.device))
        out = torch.nn.functional.pad(out.float(), (0, n - out.shape[1]))  # no item may fill the batch
        mask = torch.arange(n, device=out.device)[None] < abs_lens.to(out.device)[:, None]
        return out * mask

    def enhance_waveform(self, wav: torch.Tensor) -> torch.Tensor:
        """One 16 kHz signal (samples,) of any length, in overlapping chunks when long."""
        n = wav.shape[-1]
        size, overlap = self.chunk_samples, self.overlap_samples
        if n <= size:
            return self.enhance_batch(wav[None])[0]
        hop = size - overlap
        starts = list(range(0, n - overlap, hop))
        # consecutive chunks overlap by exactly `overlap` samples, where the fade-in and the
        # fade-out ramps sum to 1: no normalisation buffer is needed (memory: one output)
        out = torch.zeros(n)
        ramp = torch.linspace(0, 1, overlap + 2)[1:-1]
        bs = int(getattr(self.hparams, "batch_size", 4))
        for i in range(0, len(starts), bs):
            group = starts[i : i + bs]
            segs = [wav[s : s + size] for s in group]
            lens = torch.tensor([len(s) for s in segs])
            batch = torch.stack([torch.nn.functional.pad(s, (0, size - len(s))) for s in segs])
            enhanced = self.enhance_batch(batch, lens.float() / size).cpu()
            for s, e, length in zip(group, enhanced, lens.tolist()):
                w = torch.ones(length)
                if s > 0:
                    w[:overlap] = ramp
                if s + length < n:
                    w[-overlap:] = ramp.flip(0)
                out[s : s + length] += e[:length] * w
        return out

    def enhance_many(self, signals: list[torch.Tensor], batch_size: int | None = None) -> list[torch.Tensor]:
        """Enhances 1-D 16 kHz signals of any lengths: those that fit in one chunk are
        sorted by length and run as padded, masked batches; longer ones are chunked."""
        bs = batch_size or int(getattr(self.hparams, "batch_size", 4))
        if self.device_type == "cpu" and self.precision != "fp32":
            # bf16 on CPU pays only one signal at a time (WavLM Base, 10 s: batch 1 is 2.6x
            # faster than fp32, batch 8 is 1.5x *slower*; benchmarks/inference.py)
            bs = 1
        out: list[torch.Tensor | None] = [None] * len(signals)
        short = sorted((i for i, s in enumerate(signals) if s.shape[-1] <= self.chunk_samples),
                       key=lambda i: signals[i].shape[-1])
        for k in range(0, len(short), bs):
            idx = short[k : k + bs]
            n = max(signals[i].shape[-1] for i in idx)
            batch = torch.stack([torch.nn.functional.pad(signals[i], (0, n - signals[i].shape[-1])) for i in idx])
            lens = torch.tensor([signals[i].shape[-1] / n for i in idx])
            enhanced = self.enhance_batch(batch, lens).cpu()
            for i, e in zip(idx, enhanced):
                out[i] = e[: signals[i].shape[-1]]
        for i, s in enumerate(signals):
            if out[i] is None:
                out[i] = self.enhance_waveform(s)
        return out

    def enhance_signals(self, items: list[tuple[torch.Tensor, int]], batch_size: int | None = None) -> list[torch.Tensor]:
        """Several (channels, samples) signals at their own rates, channels batched together."""
        flat, where = [], []
        for k, (wav, rate) in enumerate(items):
            wav = wav[None] if wav.dim() == 1 else wav
            for ch in resample(wav.float(), rate, SAMPLE_RATE):
                flat.append(ch)
                where.append(k)
        enhanced = self.enhance_many(flat, batch_size)
        results = []
        for k, (wav, rate) in enumerate(items):
            channels = [e for e, w in zip(enhanced, where) if w == k]
            out = channels[0][None] if len(channels) == 1 else torch.stack(channels)  # no copy for mono
            out = resample(out, SAMPLE_RATE, rate)
            n = wav.shape[-1]  # resampling round trips may differ by a sample
            if out.shape[-1] != n:
                out = torch.nn.functional.pad(out, (0, max(0, n - out.shape[-1])))[..., :n]
            results.append(out)
        return results

    def enhance_file(self, filename: str, output_filename: str | None = None) -> torch.Tensor:
        """Enhances an audio file; returns (samples,) for mono, (channels, samples) otherwise,
        at the file's own rate, and writes it (float WAV, atomically) when asked.
        Refuses to overwrite the input file."""
        if output_filename is not None and os.path.exists(output_filename) and os.path.samefile(filename, output_filename):
            raise AudioError(f"{output_filename}: refusing to overwrite the input file")
        wav, rate = read_audio(filename)
        out = self.enhance_signals([(wav, rate)])[0]
        if output_filename is not None:
            write_audio(output_filename, out, rate, subtype="FLOAT")
        return out[0] if out.shape[0] == 1 else out

    def forward(self, noisy: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.enhance_batch(noisy, lengths)


def model_label(path: str) -> str:
    """A short name for a model path: recipe folders end in the seed
    (results/<experiment>/<seed>), so they are named by the experiment."""
    parts = os.path.splitext(os.path.normpath(path))[0].split(os.sep)
    return parts[-2] if parts[-1].isdigit() and len(parts) > 1 else parts[-1]


def load_model(path: str, ssl_source: str | None = None, device: str = "cpu", precision: str = "fp32") -> EnhanceSSL:
    """An ``EnhanceSSL`` from an exported model folder (``from_hparams``) or from a trained
    recipe folder (its ``hyperparams.yaml`` and best checkpoint in ``save/``)."""
    path = os.fspath(path)
    run_opts = {"device": device, "precision": precision}
    if os.path.isdir(os.path.join(path, "save")) and os.path.isfile(os.path.join(path, "hyperparams.yaml")):
        from speechbrain.utils.checkpoints import Checkpointer

        from .hparams import load_hparams

        hparams = load_hparams(os.path.join(path, "hyperparams.yaml"), {"ssl_source": ssl_source} if ssl_source else {})
        enhancer = hparams["enhancer"]
        key = hparams.get("ckpt_key", "loss")
        found = Checkpointer(os.path.join(path, "save"), {"enhancer": enhancer}).recover_if_possible(
            min_key="loss" if key == "loss" else None, max_key=key if key != "loss" else None
        )
        if found is None:
            raise FileNotFoundError(f"{path}: no checkpoint in save/")
        return EnhanceSSL(modules={"enhancer": enhancer}, hparams={"enhancer": enhancer}, run_opts=run_opts)
    if not os.path.isfile(os.path.join(path, "hyperparams.yaml")) and os.path.exists(path):
        raise FileNotFoundError(f"{path}: neither an exported model folder nor a recipe folder (no hyperparams.yaml)")
    return EnhanceSSL.from_hparams(path, run_opts=run_opts)
