"""SSL encoder lobe: last layer (LL) or learned weighted sum (WS) of an HF encoder's layers."""
from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError
from .model_folder import capture_init
from .ssl_loader import default_feature_grad_mult, load_ssl_model

MODES = ("frozen", "partial", "entire", "scratch")
OUTPUTS = ("last", "weighted_sum")


class WeightedLayerSum(nn.Module):
    """Per-layer affine LayerNorm, then a softmax-weighted sum (weights start equal).

    Summing layer by layer avoids stacking all hidden states into one more tensor.
    """

    def __init__(self, num_layers: int, dim: int):
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(num_layers))
        self.weights = nn.Parameter(torch.zeros(num_layers))

    @property
    def normalized_weights(self) -> torch.Tensor:
        """The softmax weights as a detached vector (non-negative, sums to 1)."""
        return F.softmax(self.weights.detach(), dim=0)

    def forward(self, states: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(states) != len(self.norms):
            raise ValueError(f"expected {len(self.norms)} hidden states, got {len(states)}")
        w = F.softmax(self.weights, dim=0)
        out = w[0] * self.norms[0](states[0])
        for i in range(1, len(states)):
            out = out + w[i] * self.norms[i](states[i])
        return out


def _receptive_field(config: Any) -> int:
    """Samples needed for one SSL frame (400 for every published config)."""
    rf, jump = 1, 1
    for k, s in zip(config.conv_kernel, config.conv_stride):
        rf += (k - 1) * jump
        jump *= s
    return rf


class SSLEncoder(nn.Module):
    """Wraps a transformers WavLM / HuBERT / wav2vec 2.0 encoder for enhancement.

    Arguments
    ---------
    source: hub id or local folder (see ``ssl_loader.load_ssl_model``).
    config: mapping with ``model_type`` to build a random model with no file.
    mode: frozen | partial (CNN frozen, transformer trained) | entire | scratch (random init).
    output: last | weighted_sum.
    layers: "auto" (the authors' counts: all HF hidden states for WavLM, states[1:] for
        HuBERT / wav2vec 2.0), "all", "transformer", or a list of hidden-state indices.
    feature_grad_mult: factor on the gradient that reaches the CNN feature extractor when
        it trains (entire / scratch), as fairseq's ``GradMultiply`` in the authors' forward;
        "auto" = the checkpoint's pretraining value (0.1 for Base / GroupNorm CNNs, 1.0 for
        Large / LayerNorm ones, ``ssl_loader.CHECKPOINT_FEATURE_GRAD_MULT``); 0 = the CNN
        gets no gradient (run without autograd, as fairseq does). Applied by a hook on the
        CNN output, so the LayerNorm and projection after it get the unscaled gradient.

    Batches of unequal length (``wav_lens`` < 1) use a real attention mask, and the CNN
    feature extractor runs per utterance when it uses GroupNorm (Base models), because
    GroupNorm statistics over a padded batch would differ from a single-file pass.
    """

    @capture_init  # init_args: what an exported hyperparams.yaml rebuilds it from
    def __init__(
        self,
        source: str | None = None,
        config: Mapping[str, Any] | None = None,
        mode: str = "frozen",
        output: str = "weighted_sum",
        layers: str | Sequence[int] = "auto",
        cache_dir: str | None = None,
        feature_grad_mult: float | str = "auto",
    ):
        super().__init__()
        if mode not in MODES:
            raise ConfigError(f"Unknown SSL mode {mode!r}; choose one of {MODES}")
        if output not in OUTPUTS:
            raise ConfigError(f"Unknown SSL output {output!r}; choose one of {OUTPUTS}")
        self.mode, self.output, self.source = mode, output, source
        config = config or None  # an empty mapping (YAML `{}`) means "load from source"
        self.model = load_ssl_model(
            source=None if config is not None else source,
            config=config,
            random_init=mode == "scratch",
            cache_dir=cache_dir,
        )
        cfg = self.model.config
        self.model_type = cfg.model_type
        n = cfg.num_hidden_layers
        if layers == "auto":
            layers = "all" if self.model_type == "wavlm" else "transformer"
        if layers == "all":
            self.layer_ids = list(range(n + 1))
        elif layers == "transformer":
            self.layer_ids = list(range(1, n + 1))
        else:
            self.layer_ids = [int(i) for i in layers]
            if not all(0 <= i <= n for i in self.layer_ids):
                raise ConfigError(f"layer ids must lie in [0, {n}], got {self.layer_ids}")
        self.output_size = cfg.hidden_size
        self.receptive_field = _receptive_field(cfg)
        self._groupnorm_cnn = cfg.feat_extract_norm == "group"
        if feature_grad_mult == "auto":
            feature_grad_mult = default_feature_grad_mult(cfg)
        try:
            self.feature_grad_mult = float(feature_grad_mult)
        except (TypeError, ValueError):
            raise ConfigError(f"feature_grad_mult must be a number >= 0 or 'auto', got {feature_grad_mult!r}") from None
        if not self.feature_grad_mult >= 0:
            raise ConfigError(f"feature_grad_mult must be a number >= 0 or 'auto', got {feature_grad_mult!r}")
        self.layer_sum = (
            WeightedLayerSum(len(self.layer_ids), cfg.hidden_size)
            if output == "weighted_sum"
            else None
        )
        # Weights that a checkpoint must carry: everything that trains, and a
        # config-built (random) encoder, which no hub id could rebuild.
        self.backbone_in_checkpoint = mode != "frozen" or config is not None
        # Whether the encoder starts from the source's pretrained weights (what a warm start
        # from a frozen-encoder checkpoint, which holds none, leaves in place).
        self.pretrained_backbone = config is None and mode != "scratch"
        if mode == "frozen":
            self.model.requires_grad_(False)
        elif mode == "partial":
            self.model.feature_extractor.requires_grad_(False)
        for module in self._feeding_nothing():
            module.requires_grad_(False)
        self.model.train(False)

    def _feeding_nothing(self) -> list[nn.Module]:
        """Parts of the encoder whose output never reaches what this encoder returns, so
        they can get no gradient: left trainable, they would sit in the SSL optimiser and
        make DistributedDataParallel stop ("parameters that did not receive grad"). The CNN
        when its gradient factor is 0; with a weighted sum, the layers above the highest
        one summed and a stable-layer-norm (Large) encoder's final LayerNorm, which only
        feeds ``last_hidden_state``."""
        unused: list[nn.Module] = []
        if self.feature_grad_mult == 0:
            unused.append(self.model.feature_extractor)
        if self.output == "weighted_sum":
            unused += list(self.model.encoder.layers[max(self.layer_ids):])  # state k is the output of layer k - 1
            if getattr(self.model.config, "do_stable_layer_norm", False):
                unused.append(self.model.encoder.layer_norm)
        return unused

    # -- modes -------------------------------------------------------------
    def train(self, mode: bool = True) -> "SSLEncoder":
        """Brain switches every module to train mode each epoch; a frozen encoder
        must stay in eval mode (no dropout), so it is put back here."""
        super().train(mode)
        if self.mode == "frozen":
            self.model.train(False)
        return self

    def backbone_parameters(self) -> list[nn.Parameter]:
        """SSL parameters that train in this mode (lr 1e-5 in the method)."""
        return [p for p in self.model.parameters() if p.requires_grad]

    def head_parameters(self) -> list[nn.Parameter]:
        """Layer-sum weights and LayerNorms (trained with the head, lr 1e-4)."""
        return list(self.layer_sum.parameters()) if self.layer_sum is not None else []

    @property
    def layer_weights(self) -> torch.Tensor | None:
        return None if self.layer_sum is None else self.layer_sum.normalized_weights

    # -- frames --------------------------------------------------------------
    def frame_lengths(self, sample_lengths: torch.Tensor) -> torch.Tensor:
        """SSL frames (20 ms) produced for each absolute sample length."""
        return self.model._get_feat_extract_output_lengths(sample_lengths).long()

    def _cnn(self, wav: torch.Tensor, lengths: torch.Tensor, padded: bool) -> torch.Tensor:
        extractor = self.model.feature_extractor
        if not padded or not self._groupnorm_cnn:
            return extractor(wav)
        frames = self.frame_lengths(lengths)
        total = int(self.model._get_feat_extract_output_lengths(torch.tensor(wav.shape[1])))
        out = None
        for i in range(wav.shape[0]):
            f = extractor(wav[i : i + 1, : int(lengths[i])])
            if out is None:
                out = f.new_zeros(wav.shape[0], f.shape[1], total)
            out[i, :, : int(frames[i])] = f[0, :, : int(frames[i])]
        return out

    def hidden_states(
        self, wav: torch.Tensor, lengths: torch.Tensor | None = None, layer_ids: Sequence[int] | None = None
    ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """Selected hidden states (HF ``output_hidden_states`` indexing), frame lengths and
        the encoder's final output (``last_hidden_state``).

        wav: (batch, samples) float; lengths: absolute sample counts (None = all full).
        Only the requested states are kept (hooks on the needed layers only).
        """
        if wav.dim() != 2:
            raise ValueError(f"expected (batch, samples) audio, got shape {tuple(wav.shape)}")
        batch, n = wav.shape
        if lengths is None:
            lengths = torch.full((batch,), n, dtype=torch.long, device=wav.device)
        lengths = lengths.to(wav.device).long().clamp(max=n)
        if bool((lengths < self.receptive_field).any()):
            # short inputs are the model's business (EnhancementModel.enhance zero-extends them)
            raise ValueError(f"audio of {int(lengths.min())} samples is shorter than the SSL encoder's receptive "
                             f"field ({self.receptive_field} samples)")
        padded = bool((lengths < n).any())
        layer_ids = self.layer_ids if layer_ids is None else list(layer_ids)

        frozen = self.mode == "frozen"
        cnn_frozen = self.mode == "partial" or self.feature_grad_mult == 0
        with torch.no_grad() if frozen else nullcontext():
            with torch.no_grad() if cnn_frozen else nullcontext():
                feats = self._cnn(wav, lengths, padded)
            if feats.requires_grad and self.feature_grad_mult != 1.0:
                mult = self.feature_grad_mult
                feats.register_hook(lambda grad: grad * mult)
            feats = feats.transpose(1, 2)
            frame_lens = self.frame_lengths(lengths)
            mask = None
            if padded:
                mask = torch.arange(feats.shape[1], device=wav.device)[None] < frame_lens[:, None]
            proj = self.model.feature_projection(feats)
            hidden = proj[0] if isinstance(proj, tuple) else proj

            captured: dict[int, torch.Tensor] = {}
            handles = []
            layers = self.model.encoder.layers
            if 0 in layer_ids:
                handles.append(
                    layers[0].register_forward_pre_hook(
                        lambda m, args, kw: captured.__setitem__(0, args[0] if args else kw["hidden_states"]),
                        with_kwargs=True,
                    )
                )
            for idx in layer_ids:
                if idx >= 1:
                    handles.append(
                        layers[idx - 1].register_forward_hook(
                            lambda m, a, out, idx=idx: captured.__setitem__(
                                idx, out[0] if isinstance(out, tuple) else out
                            )
                        )
                    )
            try:
                last = self.model.encoder(hidden, attention_mask=mask).last_hidden_state
            finally:
                for h in handles:
                    h.remove()
        states = [captured[i] for i in layer_ids]
        return states, frame_lens, last

    def forward(
        self, wav: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (features (batch, frames, dim), frame lengths).

        lengths: absolute sample counts per utterance, or None when all are full.
        """
        if self.output == "last":
            _, frame_lens, last = self.hidden_states(wav, lengths, layer_ids=[])
            return last, frame_lens
        states, frame_lens, _ = self.hidden_states(wav, lengths)
        return self.layer_sum(states), frame_lens


def ssl_encoder_for(input: str, **kwargs) -> "SSLEncoder | None":
    """The encoder an ``input`` kind needs: None for ``spectrum`` (log1p only), else an
    ``SSLEncoder(**kwargs)``. hparams build the encoder through this, so the one setting
    ``input`` decides whether an SSL model exists (a log1p row never builds one)."""
    return None if input == "spectrum" else SSLEncoder(**kwargs)

