"""The whole enhancer: features (log1p, SSL or both) -> BLSTM mask -> noisy-phase resynthesis.

Training (the recipe's Brain), inference (``EnhanceSSL``) and evaluation all call this one
module, so there is a single feature and resynthesis path.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from speechbrain.utils.checkpoints import (
    mark_as_loader,
    mark_as_saver,
    mark_as_transfer,
    register_checkpoint_hooks,
)
import torch.nn.functional as F
from torch import nn

from .features import N_BINS, LogSpectrum, align_ssl_frames, num_frames, relative_to_absolute
from .errors import ConfigError
from .head import BLSTMMasker
from .lobes import SSLEncoder
from .model_folder import capture_init

INPUTS = ("spectrum", "ssl", "cross")


class EnhancerOutput(NamedTuple):
    enhanced: torch.Tensor  # enhanced log1p magnitude (batch, frames, 201)
    noisy: torch.Tensor  # noisy log1p magnitude
    phase: torch.Tensor  # noisy unit phase (complex)
    mask: torch.Tensor
    frame_lens: torch.Tensor  # valid STFT frames per item
    sample_lens: torch.Tensor  # valid samples per item


@register_checkpoint_hooks
class EnhancementModel(nn.Module):
    """Mask-based enhancer on log1p spectra, SSL embeddings, or both ("cross-domain").

    Arguments
    ---------
    ssl_encoder: an ``SSLEncoder`` (None for the log1p-only model).
    input: spectrum | ssl | cross.
    hidden_size, num_layers: BLSTM size (256, 2 in the paper).
    """

    @capture_init  # init_args: what an exported hyperparams.yaml rebuilds it from
    def __init__(
        self,
        ssl_encoder: SSLEncoder | None = None,
        input: str = "cross",
        hidden_size: int = 256,
        num_layers: int = 2,
    ):
        super().__init__()
        if input not in INPUTS:
            raise ConfigError(f"Unknown input {input!r}; choose one of {INPUTS}")
        if input != "spectrum" and ssl_encoder is None:
            raise ConfigError(f"input={input!r} needs an ssl_encoder")
        self.input = input
        self.spectrum = LogSpectrum()
        self.ssl = ssl_encoder if input != "spectrum" else None
        in_size = (N_BINS if input != "ssl" else 0) + (self.ssl.output_size if self.ssl is not None else 0)
        self.masker = BLSTMMasker(in_size, hidden_size, num_layers)

    @property
    def min_samples(self) -> int:
        """Shortest input this model accepts (one STFT frame and one SSL frame)."""
        rf = self.ssl.receptive_field if self.ssl is not None else 0
        return max(self.spectrum.min_samples, rf)

    def features(
        self, wav: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(masker input, noisy log1p, unit phase, frame lengths) for absolute lengths."""
        noisy, phase = self.spectrum(wav, lengths)
        samples = lengths if lengths is not None else torch.full((wav.shape[0],), wav.shape[1], device=wav.device)
        frame_lens = num_frames(samples, self.spectrum.hop)
        parts = [noisy] if self.input != "ssl" else []
        if self.ssl is not None:
            ssl, ssl_lens = self.ssl(wav, lengths)
            parts.append(align_ssl_frames(ssl, ssl_lens, noisy.shape[1]).to(noisy.dtype))
        return torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0], noisy, phase, frame_lens

    def forward(self, wav: torch.Tensor, wav_lens: torch.Tensor | None = None) -> EnhancerOutput:
        """Brain-facing: wav (batch, samples) at 16 kHz, ``wav_lens`` SpeechBrain relative
        lengths. Everything below works on absolute sample counts."""
        lengths = None if wav_lens is None else relative_to_absolute(wav_lens, wav.shape[1], wav.shape[0], wav.device)
        return self.run(wav, lengths)

    def run(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> EnhancerOutput:
        """The forward pass for absolute ``lengths`` in samples (None: every item full)."""
        x, noisy, phase, frame_lens = self.features(wav, lengths)
        mask = self.masker(x, frame_lens)
        if lengths is None:
            lengths = torch.full((wav.shape[0],), wav.shape[1], dtype=torch.long, device=wav.device)
        return EnhancerOutput(mask * noisy, noisy, phase, mask, frame_lens, lengths)

    def log_spectrum(self, wav: torch.Tensor, wav_lens: torch.Tensor | None = None) -> torch.Tensor:
        """log1p magnitude of a (clean) target, through the same STFT (relative lengths,
        as ``forward``)."""
        lengths = None if wav_lens is None else relative_to_absolute(wav_lens, wav.shape[1], wav.shape[0], wav.device)
        return self.spectrum(wav, lengths)[0]

    def resynthesize(self, out: EnhancerOutput) -> torch.Tensor:
        """Enhanced waveform with the noisy phase, same length as the input."""
        return self.spectrum.inverse(out.enhanced, out.phase, out.sample_lens)

    def enhance(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Enhanced waveforms (batch, samples) for absolute ``lengths``, zero past each
        length. The one place where short inputs are handled: items shorter than
        ``min_samples`` are zero-extended to it (as a single pass over a longer zero-padded
        signal would see them) and cut back."""
        batch, n = wav.shape
        if lengths is not None and lengths.is_floating_point():
            raise ValueError("enhance takes absolute lengths in samples (forward takes relative ones)")
        full = torch.full((batch,), n, dtype=torch.long, device=wav.device)
        lengths = full if lengths is None else lengths.to(wav.device).long()
        short = self.min_samples
        size = max(n, short)
        if size > n:
            wav = F.pad(wav, (0, size - n))
        run_lens = lengths.clamp(min=short)
        out = self.resynthesize(self.run(wav, None if bool((run_lens == size).all()) else run_lens))
        out = F.pad(out.float(), (0, max(0, size - out.shape[1])))[:, :n]
        keep = torch.arange(n, device=out.device)[None] < lengths[:, None]
        return out * keep

    # -- parameters ------------------------------------------------------------
    def head_parameters(self) -> list[nn.Parameter]:
        """Masker + layer-sum parameters (Adam lr 1e-4 in the method)."""
        extra = self.ssl.head_parameters() if self.ssl is not None else []
        return list(self.masker.parameters()) + extra

    def ssl_parameters(self) -> list[nn.Parameter]:
        """Trainable SSL parameters (Adam lr 1e-5), empty when frozen or absent."""
        return self.ssl.backbone_parameters() if self.ssl is not None else []

    @property
    def layer_weights(self) -> torch.Tensor | None:
        return None if self.ssl is None else self.ssl.layer_weights

    # -- checkpoints -----------------------------------------------------------
    def _skipped_keys(self) -> set[str]:
        """A frozen hub encoder is rebuilt from its source, so its 95-300 M weights are not
        copied into every checkpoint."""
        if self.ssl is None or self.ssl.backbone_in_checkpoint:
            return set()
        return {k for k in self.state_dict() if k.startswith("ssl.model.")}

    def checkpoint_state_dict(self) -> dict[str, torch.Tensor]:
        skipped = self._skipped_keys()
        return {k: v for k, v in self.state_dict().items() if k not in skipped}

    def load_checkpoint_state(self, state: dict[str, torch.Tensor]) -> None:
        result = self.load_state_dict(state, strict=False)
        missing = set(result.missing_keys) - self._skipped_keys()
        if missing or result.unexpected_keys:
            raise RuntimeError(
                "Checkpoint does not match this enhancer configuration: "
                f"missing {sorted(missing)[:5]}, unexpected {sorted(result.unexpected_keys)[:5]}"
            )

    def weights_digest(self) -> str:
        """SHA-256 of the checkpoint state (names, dtypes, shapes, values): which trained
        weights a result was measured with (``sslse-evaluate`` records it; export checks it)."""
        import hashlib

        h = hashlib.sha256()
        for name, t in sorted(self.checkpoint_state_dict().items()):
            t = t.detach().cpu().reshape(-1).contiguous()
            h.update(f"{name}|{t.dtype}|{tuple(self.state_dict()[name].shape)}|".encode())
            h.update(t.view(torch.uint8).numpy().tobytes())
        return h.hexdigest()

    @mark_as_saver
    def _save(self, path) -> None:
        torch.save(self.checkpoint_state_dict(), path)

    @mark_as_loader
    def _load(self, path, end_of_epoch=True) -> None:
        del end_of_epoch
        self.load_checkpoint_state(torch.load(path, map_location="cpu"))

    @mark_as_transfer
    def _transfer(self, path) -> None:
        """Warm start (``init_from``). A checkpoint of a frozen hub encoder holds no encoder
        weights: an encoder that starts from the same pretrained source (a PF or EF run
        fine-tuning that head) keeps the weights it loaded, instead of the warm start being
        refused as "missing" keys (the recipe checks that the source is the same encoder)."""
        state = torch.load(path, map_location="cpu")
        if (self.ssl is not None and getattr(self.ssl, "pretrained_backbone", False)
                and not any(k.startswith("ssl.model.") for k in state)):
            own = {k: v for k, v in self.state_dict().items() if k.startswith("ssl.model.")}
            state = {**own, **state}
        self.load_checkpoint_state(state)
