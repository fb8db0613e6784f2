"""``EnhanceSSL``: the user-facing enhancer on SpeechBrain's ``Pretrained`` interface.

    enhancer = EnhanceSSL.from_hparams(source="pretrained/sslse-log1p-sim")
    enhanced = enhancer.enhance_file("noisy.wav", "enhanced.wav")

It runs the package's ``EnhancementModel`` (the same module training uses). Any sample rate is
resampled to 16 kHz and back; each channel is enhanced on its own; long inputs go through
overlapping chunks with a linear cross-fade so memory stays bounded.
"""
from __future__ import annotations

import difflib
import os
import re
import warnings
from dataclasses import dataclass, field

import torch
from speechbrain.inference.interfaces import Pretrained
from speechbrain.utils.fetching import LocalStrategy

from .audio import SAMPLE_RATE, AudioError, output_format, read_audio, resample, write_audio
from .errors import ConfigError, DataWarning
from .output_plan import check_jobs, check_replaceable, record_output
from .progress import progress_bar

#: ``enhance_files`` reads at most about this many samples (all channels) before enhancing
#: them: 10 min of 16 kHz mono, 40 MB of float32 input, whatever the number of files.
WINDOW_SAMPLES = 16_000 * 600


class EnhanceSSL(Pretrained):
    """Speech enhancement with an SSL (+ log1p) mask model.

    hparams (``hyperparams.yaml`` written by ``recipes/VCTK/export.py``): ``enhancer``
    (an ``EnhancementModel``), ``chunk_seconds``, ``overlap_seconds``, ``batch_size``.
    """

    HPARAMS_NEEDED = ["enhancer"]
    MODULES_NEEDED = ["enhancer"]

    @classmethod
    def from_hparams(cls, source, hparams_file="hyperparams.yaml", savedir=None, **kwargs):
        """Like ``Pretrained.from_hparams``; a local folder is used in place (no copies,
        no network)."""
        if savedir is None and os.path.isdir(str(source)):
            kwargs.setdefault("local_strategy", LocalStrategy.NO_LINK)
        else:
            check_source(str(source))  # a mistyped folder fails here, not after hub retries
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
        """Enhances a padded batch of 16 kHz float waveforms (batch, samples) in [-1, 1];
        ``lengths`` are SpeechBrain relative lengths in (0, 1] (None: all full). Returns
        (batch, samples), zero past each length. Anything else is a ``ValueError`` that
        says what was expected (integer samples are not rescaled silently)."""
        return self._enhance(noisy, check_batch(noisy, lengths))

    def _enhance(self, noisy: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """A checked batch with absolute ``lengths`` (samples) through the enhancer."""
        # run option precision=bf16 / fp16 (SpeechBrain's own): autocast, e.g. bf16 on CPUs
        # with AVX-512 BF16 (speed and accuracy: benchmarks/precision.py)
        with torch.inference_mode(), self.inference_ctx:
            full = bool((lengths == noisy.shape[1]).all())
            return self.enhancer.enhance(noisy.to(self.device, torch.float32), None if full else lengths.to(self.device))

    def enhance_waveform(self, wav: torch.Tensor, progress: bool | None = None) -> torch.Tensor:
        """One 16 kHz signal (samples,) of any length, in overlapping chunks when long.
        ``progress``: the bar over the chunks of a signal over ``LONG_SIGNAL_SAMPLES``
        (default: ``show_progress``'s setting; False: none)."""
        require_float(wav, "wav")
        n = wav.shape[-1]
        size, overlap = self.chunk_samples, self.overlap_samples
        if not 0 <= overlap < size:
            raise ConfigError(f"overlap_seconds must be >= 0 and below chunk_seconds; got {overlap} and "
                              f"{size} samples")
        if 2 * overlap > size:
            # the fade-in and fade-out ramps sum to 1 only where exactly two chunks overlap: with
            # an overlap over half a chunk, three or more chunks cover a sample and the joined
            # signal is scaled wrongly (up to several times too loud)
            raise ConfigError(f"overlap_seconds must be at most half of chunk_seconds; got {overlap} and "
                              f"{size} samples")
        if n <= size:
            return self._enhance(wav[None], torch.tensor([n]))[0].cpu()
        hop = size - overlap
        starts = list(range(0, n - overlap, hop))
        # consecutive chunks overlap by exactly `overlap` samples, where the fade-in and the
        # fade-out ramps sum to 1: no normalisation buffer is needed (memory: one output)
        out = torch.zeros(n)
        ramp = torch.linspace(0, 1, overlap + 2)[1:-1]
        bs = int(getattr(self.hparams, "batch_size", 4))
        # a recording of hours is one "file" of the files bar: its chunks get a bar of their own
        groups = progress_bar(range(0, len(starts), bs), desc=f"one {n / SAMPLE_RATE / 60:.0f}-min signal",
                              unit="batch", leave=False, enabled=progress if n > LONG_SIGNAL_SAMPLES else False)
        for i in groups:
            group = starts[i : i + bs]
            segs = [wav[s : s + size] for s in group]
            lens = torch.tensor([len(s) for s in segs])
            batch = torch.stack([torch.nn.functional.pad(s, (0, size - len(s))) for s in segs])
            enhanced = self._enhance(batch, lens).cpu()
            for s, e, length in zip(group, enhanced, lens.tolist()):
                w = torch.ones(length)
                if s > 0 and overlap:  # (w[-0:] would be all of w)
                    w[:overlap] = ramp
                if s + length < n and overlap:
                    w[-overlap:] = ramp.flip(0)
                out[s : s + length] += e[:length] * w
        return out

    def enhance_many(self, signals: list[torch.Tensor], batch_size: int | None = None,
                     progress: bool | None = None) -> list[torch.Tensor]:
        """Enhances 1-D 16 kHz signals of any lengths: those that fit in one chunk are
        sorted by length and run as padded, masked batches; longer ones are chunked."""
        for k, signal in enumerate(signals):
            require_float(signal, f"signals[{k}]")
        bs = batch_size or int(getattr(self.hparams, "batch_size", 4))
        if self.device_type == "cpu" and self.precision != "fp32":
            # bf16 on CPU pays only one signal at a time: batches of 8 are slower than
            # fp32 on CPUs measured so far (benchmarks/inference.py)
            bs = 1
        out: list[torch.Tensor | None] = [None] * len(signals)
        short = sorted((i for i, s in enumerate(signals) if s.shape[-1] <= self.chunk_samples),
                       key=lambda i: signals[i].shape[-1])
        for k in range(0, len(short), bs):
            idx = short[k : k + bs]
            n = max(signals[i].shape[-1] for i in idx)
            batch = torch.stack([torch.nn.functional.pad(signals[i], (0, n - signals[i].shape[-1])) for i in idx])
            lens = torch.tensor([signals[i].shape[-1] for i in idx])
            enhanced = self._enhance(batch, lens).cpu()
            for i, e in zip(idx, enhanced):
                out[i] = e[: signals[i].shape[-1]]
        for i, s in enumerate(signals):
            if out[i] is None:
                out[i] = self.enhance_waveform(s, progress)
        return out

    def enhance_signals(self, items: list[tuple[torch.Tensor, int]], batch_size: int | None = None,
                        progress: bool | None = None) -> list[torch.Tensor]:
        """Several (channels, samples) signals at their own rates, channels batched together."""
        flat, where = [], []
        for k, (wav, rate) in enumerate(items):
            require_float(wav, f"items[{k}]")
            wav = wav[None] if wav.dim() == 1 else wav
            if rate > SAMPLE_RATE:  # said once per rate (the message does not name the file)
                warnings.warn(f"inputs at {rate} Hz: the enhancer works at {SAMPLE_RATE} Hz, so their outputs "
                              f"(at {rate} Hz) hold nothing above {SAMPLE_RATE // 2000} kHz",
                              DataWarning, stacklevel=2)
            for ch in resample(wav.float(), rate, SAMPLE_RATE):
                flat.append(ch)
                where.append(k)
        enhanced = self.enhance_many(flat, batch_size, progress)
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

    @staticmethod
    def _read_windows(jobs, window, report, bar):
        """Reads the inputs in order and yields lists of (src, dst, wav, rate): at most
        ``window`` files and about ``WINDOW_SAMPLES`` samples each (one longer file is a
        window of its own), so memory follows the audio, not the number of files. An
        unreadable file is a failure (and a step of ``bar``) here."""
        items, held = [], 0
        for src, dst in jobs:
            try:
                wav, rate = read_audio(src)
                warn_if_level_unusual(wav, src)
            except AudioError as err:
                report.failed.append((src, str(err)))
                bar.update(1)
                continue
            items.append((src, dst, wav, rate))
            held += wav.numel()
            if len(items) >= window or held >= WINDOW_SAMPLES:
                yield items
                items, held = [], 0
        if items:
            yield items

    def _window_results(self, items, batch_size, report, progress=None):
        """Enhances a window of read files together, yields (src, dst, rate, out)."""
        try:
            outs = self.enhance_signals([(w, r) for _, _, w, r in items], batch_size, progress)
        except (RuntimeError, ValueError):  # keep going: one by one to isolate the culprit
            outs = []
            for src, _, w, r in items:
                try:
                    outs.append(self.enhance_signals([(w, r)], progress=progress)[0])
                except (RuntimeError, ValueError) as err:
                    outs.append(None)
                    report.failed.append((src, f"enhancement failed: {err}"))
        for (src, dst, _, rate), out in zip(items, outs):
            if out is not None:
                yield src, dst, rate, out

    def enhance_files(self, jobs: list[tuple[str, str]], batch_size: int | None = None, progress: bool | None = None,
                      window: int = 32, keep_outputs: bool = False, record_in: str | None = None) -> "FilesReport":
        """The one path from files to enhanced files, used by ``enhance_file``, the
        ``sslse-enhance`` command and evaluation. ``jobs``: (input, output) pairs; checked
        as a whole first (``output_plan.check_jobs``: no output replaces an input, no two
        inputs share an output; an unwritable format fails before any work), then
        enhanced a window at a time (``window`` files, at most about ``WINDOW_SAMPLES``
        samples), each output written (atomically) as soon as it is ready. A file that cannot be read, enhanced or written is a per-file failure;
        the others go on. ``keep_outputs``: also return the enhanced tensors (memory!).
        ``record_in``: the output folder whose record (``output_plan.OUTPUT_RECORD``) lists
        each output as it is written, so that a rerun may replace it and nothing else (an
        existing file there that the record does not vouch for is refused first).
        ``progress``: None follows ``progress.show_progress`` (the commands' ``--quiet``)."""
        check_jobs(jobs)
        if record_in is not None:
            check_replaceable(jobs, record_in)
        report = FilesReport()
        todo = []
        for src, dst in jobs:
            try:
                output_format(dst)
                todo.append((src, dst))
            except AudioError as err:
                report.failed.append((src, str(err)))
        bar = progress_bar(total=len(jobs), desc="enhancing", unit="file", enabled=progress)
        bar.update(len(jobs) - len(todo))
        for items in self._read_windows(todo, window, report, bar):
            left = len(items)  # steps of the bar this window still owes (per file, as it is written)
            for src, dst, rate, out in self._window_results(items, batch_size, report, progress):
                left -= 1
                bar.update(1)
                try:
                    write_audio(dst, out[0] if out.shape[0] == 1 else out, rate)
                    if record_in is not None:
                        record_output(record_in, dst)
                    report.written.append((src, dst))
                    if keep_outputs:
                        report.outputs[dst] = out
                except AudioError as err:
                    report.failed.append((src, str(err)))
                except OSError as err:  # written, but the record could not be: a rerun would refuse it
                    report.failed.append((src, f"{dst} written but not recorded in its folder: {err}"))
            bar.update(left)  # files whose enhancement failed
            del items  # the next window is read without this one still held
        bar.close()
        return report

    def enhance_file(self, filename: str, output_filename: str | None = None, **kwargs) -> torch.Tensor:
        """Enhances an audio file; returns (samples,) for mono, (channels, samples)
        otherwise, at the file's own rate. With ``output_filename`` it is also written, in
        the format of its extension (float WAV for .wav; an unknown extension is refused
        before enhancing) and never over the input. ``kwargs`` as in SpeechBrain's
        interfaces (``batch_size``)."""
        if output_filename is None:
            wav, rate = read_audio(filename)
            warn_if_level_unusual(wav, filename)
            out = self.enhance_signals([(wav, rate)], kwargs.get("batch_size"))[0]
        else:
            report = self.enhance_files([(filename, output_filename)], kwargs.get("batch_size"), progress=False,
                                        keep_outputs=True)
            if report.failed:
                raise AudioError(report.failed[0][1])
            out = report.outputs[output_filename]
        return out[0] if out.shape[0] == 1 else out

    def forward(self, noisy: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.enhance_batch(noisy, lengths)


@dataclass
class FilesReport:
    """What ``enhance_files`` did: (input, output) written, (input, reason) failed."""

    written: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    outputs: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)


#: Signals longer than this (10 min) show a bar over their chunks while they are enhanced.
LONG_SIGNAL_SAMPLES = 10 * 60 * SAMPLE_RATE

#: Peaks above this are far outside float audio's [-1, 1] (e.g. int16-scaled samples).
LEVEL_WARN_PEAK = 4.0


def warn_if_level_unusual(wav: torch.Tensor, name: str = "input") -> None:
    """The method is level-dependent (log1p of the raw magnitude): an input far outside
    [-1, 1], such as int16-scaled floats, is enhanced as a very different signal."""
    peak = float(wav.abs().max()) if wav.numel() else 0.0
    if peak > LEVEL_WARN_PEAK:
        warnings.warn(f"{name}: peak {peak:.1f} is far outside [-1, 1]; the enhancer expects float audio "
                      "in [-1, 1] (divide int16 samples by 32768)", DataWarning, stacklevel=3)


def require_float(wav: torch.Tensor, name: str) -> None:
    """``ValueError`` for integer samples: enhanced as they are, int16 audio would come back at
    int16 scale (the method is level-dependent), so it is refused, not rescaled silently."""
    if torch.is_tensor(wav) and not wav.is_floating_point():
        raise ValueError(f"{name} must hold float samples in [-1, 1], got {wav.dtype} "
                         "(for int16 audio: wav.float() / 32768)")


def check_batch(noisy: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Validates an ``enhance_batch`` call; returns absolute lengths (samples)."""
    if not torch.is_tensor(noisy):
        raise ValueError(f"noisy must be a torch tensor, got {type(noisy).__name__}"
                         + (" (torch.from_numpy(x) makes one)" if type(noisy).__module__ == "numpy" else ""))
    if noisy.dim() != 2:
        raise ValueError(f"noisy must be a (batch, samples) tensor, got shape {tuple(noisy.shape)}")
    require_float(noisy, "noisy")
    batch, n = noisy.shape
    if n == 0 or batch == 0:
        raise ValueError(f"cannot enhance an empty batch {tuple(noisy.shape)}")
    if not torch.isfinite(noisy).all():
        raise ValueError("noisy contains NaN or Inf samples")
    warn_if_level_unusual(noisy, "noisy batch")
    if lengths is None:
        return torch.full((batch,), n, dtype=torch.long)
    lengths = torch.as_tensor(lengths)
    if lengths.shape != (batch,) or not lengths.is_floating_point():
        raise ValueError(f"lengths must be a float tensor of shape ({batch},) with relative lengths in (0, 1], "
                         f"got {lengths.dtype} of shape {tuple(lengths.shape)}")
    if not torch.isfinite(lengths).all() or bool((lengths <= 0).any()) or bool((lengths > 1).any()):
        raise ValueError(f"lengths must be relative lengths in (0, 1] (SpeechBrain's convention), got {lengths.tolist()}")
    return torch.round(lengths.float().cpu() * n).long().clamp(1, n)


def model_label(path: str) -> str:
    """A short name for a model path: recipe folders end in the seed
    (results/<experiment>/<seed>), so they are named by the experiment."""
    parts = os.path.splitext(os.path.normpath(path))[0].split(os.sep)
    return parts[-2] if parts[-1].isdigit() and len(parts) > 1 else parts[-1]


#: owner/name, as the Hugging Face Hub spells model ids
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_device(device: str) -> None:
    """One clear error for a device this machine does not have, before any loading."""
    if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", device):
        raise ConfigError(f"device {device!r}: use cpu, cuda, cuda:N or mps")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device 'mps': no Apple GPU is available here; use --device cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r}: no CUDA GPU is available here; use --device cpu")
    if device.startswith("cuda:") and int(device.split(":", 1)[1] or 0) >= torch.cuda.device_count():
        raise ConfigError(f"device {device!r}: only {torch.cuda.device_count()} GPU(s) here")


def check_source(path: str) -> None:
    """A model source is an existing folder or a plausible hub id (owner/name); anything
    else (a mistyped path) fails at once instead of being sent to the hub."""
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise ConfigError(f"{path}: is a file; --source takes a model folder (or a hub id)")
        return
    missing = f"{path}: no such model folder (from {os.getcwd()})"
    if path.startswith((".", "/", "~")) or path.count("/") != 1 or not HUB_ID.match(path):
        raise ConfigError(f"{missing}, and not a hub id like owner/name")
    parent, name = path.split("/")
    if os.path.isdir(parent):  # "pretrained/sslse-log1p-sm": a mistyped local path, not a hub id
        near = difflib.get_close_matches(name, sorted(os.listdir(parent)), n=3)
        hint = f"; did you mean {' or '.join(f'{parent}/{n}' for n in near)}?" if near else ""
        raise ConfigError(f"{missing}: {parent}/ is a local folder, so this is not sent to the hub{hint} "
                          f"(for the hub id {path}, run from a folder without a {parent}/)")


def load_model(path: str, ssl_source: str | None = None, device: str = "cpu", precision: str = "fp32") -> EnhanceSSL:
    """An ``EnhanceSSL`` from an exported model folder (``from_hparams``), a hub id, or a
    trained recipe folder (its ``hyperparams.yaml`` and best checkpoint in ``save/``).
    Every failure (mistyped source, missing GPU, broken YAML, empty or garbage
    checkpoint) is one ``ConfigError`` naming the cause."""
    path = os.fspath(path)
    check_device(device)  # a mistyped source fails in EnhanceSSL.from_hparams, before the hub
    try:
        return _load_model(path, ssl_source, device, precision)
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - one line, whatever broke inside
        # one line, but not only the first: torch's "Error(s) in loading state_dict for
        # Enhancer:" says which model is wrong only on the lines after it
        reason = " ".join(str(err).split()) or type(err).__name__
        reason = reason if len(reason) <= 400 else reason[:400] + " ..."
        raise ConfigError(f"{path}: cannot load the model ({type(err).__name__}: {reason})") from None


def _load_model(path: str, ssl_source: str | None, device: str, precision: str) -> EnhanceSSL:
    run_opts = {"device": device, "precision": precision}
    if os.path.isdir(os.path.join(path, "save")) and os.path.isfile(os.path.join(path, "hyperparams.yaml")):
        from speechbrain.utils.checkpoints import Checkpointer

        from .checkpoints import best_checkpoint
        from .hparams import load_hparams

        overrides = _recipe_source_overrides(os.path.join(path, "hyperparams.yaml"), ssl_source)
        # the run's own checkpointer would create its save folder relative to the current
        # directory (a stray results/... wherever the model is loaded from): not built here
        overrides["checkpointer"] = None
        hparams = load_hparams(os.path.join(path, "hyperparams.yaml"), overrides)
        enhancer = hparams["enhancer"]
        found = Checkpointer(os.path.join(path, "save"), {"enhancer": enhancer}).recover_if_possible(
            **best_checkpoint(hparams.get("ckpt_key", "loss")))
        if found is None:
            raise ConfigError(f"{path}: no checkpoint in save/")
        return EnhanceSSL(modules={"enhancer": enhancer}, hparams={"enhancer": enhancer}, run_opts=run_opts)
    if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "hyperparams.yaml")):
        raise ConfigError(f"{path}: neither an exported model folder nor a recipe folder (no hyperparams.yaml)")
    overrides = {"ssl_encoder": {"source": ssl_source}} if ssl_source and _names_hub_encoder(path) else None
    return EnhanceSSL.from_hparams(path, run_opts=run_opts, overrides=overrides)


def _recipe_source_overrides(hparams_file: str, ssl_source: str | None) -> dict:
    """Overrides that put ``ssl_source`` in place of the encoder source a recipe folder's
    saved hyperparams.yaml names. That file is resolved: its ``ssl_encoder`` block holds the
    source as text, so the top-level ``ssl_source`` key alone would change nothing."""
    if not ssl_source:
        return {}
    with open(hparams_file, encoding="utf-8") as f:
        names_source = re.search(r"^ssl_encoder:.*\n(?:  .*\n)*?  source: ", f.read(), re.M)
    return {"ssl_source": ssl_source, **({"ssl_encoder": {"source": ssl_source}} if names_source else {})}


def _names_hub_encoder(folder: str) -> bool:
    """Whether a model folder loads its SSL encoder from a source (a frozen hub encoder):
    only then can ``ssl_source`` stand in for it. A hub id (no local file) is assumed to.
    Models without an encoder, or with its weights inside, ignore it."""
    if not os.path.isfile(os.path.join(folder, "hyperparams.yaml")):
        return True
    return folder_ssl_source(folder) is not None


def folder_ssl_source(folder: str) -> str | None:
    """The source a model folder's hyperparams.yaml names for its SSL encoder (a hub id),
    or None (no encoder, or one rebuilt from its config with the weights in the checkpoint)."""
    try:
        text = open(os.path.join(folder, "hyperparams.yaml"), encoding="utf-8").read()
    except OSError:
        return None
    found = re.search(r"^ssl_encoder: !new:[\w.]+\n(?:  .*\n)*?  source: (\S+)", text, re.M)
    return found.group(1) if found and found.group(1) != "null" else None