"""The one STFT / log1p feature path, shared by training, inference and analysis.

Method facts (method.md): n_fft 400, win 400, hop 160, Hamming, centred with *reflect*
padding, 201 one-sided bins; mag = |X| + 1e-6, unit phase = X / mag, feature log1p(mag).
SpeechBrain's ``processing.features.STFT`` pads with zeros by default and its
``resynthesize`` peak-normalises; we follow the method instead, and we reflect-pad each
utterance at its own end so that a padded batch gives the same frames as one file alone.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

N_FFT = 400
HOP = 160
N_BINS = N_FFT // 2 + 1
MAG_EPS = 1e-6


def num_frames(num_samples: torch.Tensor | int, hop: int = HOP) -> torch.Tensor | int:
    """STFT frames of a centred STFT: samples // hop + 1."""
    return num_samples // hop + 1


def relative_to_absolute(wav_lens: torch.Tensor | None, total: int, batch: int, device=None) -> torch.Tensor:
    """SpeechBrain relative lengths (0..1] -> absolute sample counts."""
    if wav_lens is None:
        return torch.full((batch,), total, dtype=torch.long, device=device)
    return torch.round(wav_lens.to(device).float() * total).long().clamp(1, total)


class LogSpectrum(nn.Module):
    """log1p STFT magnitude + unit phase, and its inverse (noisy-phase resynthesis)."""

    def __init__(self, n_fft: int = N_FFT, hop_length: int = HOP, win_length: int = N_FFT):
        super().__init__()
        self.n_fft, self.hop, self.win = n_fft, hop_length, win_length
        self.register_buffer("window", torch.hamming_window(win_length), persistent=False)

    @property
    def min_samples(self) -> int:
        """Reflect padding needs more samples than half a window."""
        return self.n_fft // 2 + 1

    def stft(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Complex STFT (batch, frames, bins); frames beyond an utterance's end are zero."""
        batch, n = wav.shape
        pad = self.n_fft // 2
        if lengths is None or bool((lengths == n).all()):
            if n < self.min_samples:
                raise ValueError(f"audio of {n} samples is shorter than {self.min_samples} (needed for one STFT frame)")
            x = F.pad(wav.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
        else:
            x = wav.new_zeros(batch, n + 2 * pad)
            for i, length in enumerate(lengths.tolist()):
                if length < self.min_samples:
                    raise ValueError(f"audio of {length} samples is shorter than {self.min_samples}")
                seg = wav[i : i + 1, :length].unsqueeze(1)
                x[i, : length + 2 * pad] = F.pad(seg, (pad, pad), mode="reflect")[0, 0]
        spec = torch.stft(
            x, self.n_fft, self.hop, self.win, self.window.to(x.dtype), center=False, return_complex=True
        ).transpose(1, 2)
        if lengths is not None:
            valid = torch.arange(spec.shape[1], device=wav.device)[None] < num_frames(lengths, self.hop)[:, None]
            spec = spec * valid.unsqueeze(-1)
        return spec

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (log1p magnitude, unit phase), both (batch, frames, 201)."""
        spec = self.stft(wav, lengths)
        mag = spec.abs() + MAG_EPS
        return torch.log1p(mag), spec / mag

    def inverse(self, log_mag: torch.Tensor, phase: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Noisy-phase resynthesis, no peak normalisation: (batch, max(lengths)) waveforms."""
        spec = ((torch.expm1(log_mag) - MAG_EPS) * phase).transpose(1, 2)
        window = self.window.to(log_mag.dtype)
        total = int(lengths.max())
        if bool((lengths == total).all()):
            return torch.istft(spec, self.n_fft, self.hop, self.win, window, center=True, length=total)
        out = log_mag.new_zeros(spec.shape[0], total)
        for i, length in enumerate(lengths.tolist()):
            frames = int(num_frames(length, self.hop))
            out[i, :length] = torch.istft(
                spec[i : i + 1, :, :frames], self.n_fft, self.hop, self.win, window, center=True, length=length
            )[0]
        return out


def align_ssl_frames(
    ssl: torch.Tensor, ssl_lens: torch.Tensor, total_frames: int
) -> torch.Tensor:
    """Repeat each 20 ms SSL frame twice and pad with the utterance's last frame up to the
    STFT frame count (method.md: 1.28 s -> 63 frames -> 126 -> +3 = 129).

    One gather does both: output frame t takes SSL frame min(t // 2, len - 1).
    """
    t = torch.arange(total_frames, device=ssl.device)
    idx = torch.minimum(t[None] // 2, (ssl_lens.to(ssl.device) - 1)[:, None]).clamp(min=0)
    return torch.gather(ssl, 1, idx.unsqueeze(-1).expand(-1, -1, ssl.shape[-1]))
