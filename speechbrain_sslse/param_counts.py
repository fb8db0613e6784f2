"""Parameter counts of the published SSL configurations and of the head per input variant.

``python -m speechbrain_sslse.param_counts`` prints the README table; a test checks that the
README shows exactly what this computes. Models are built on the meta device (no memory,
no download): the configs below restate the published ``config.json`` shapes.
"""
from __future__ import annotations

import torch

from .features import N_BINS
from .head import BLSTMMasker
from .lobes import WeightedLayerSum
from .ssl_loader import SSL_TYPES

_LARGE = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
              feat_extract_norm="layer", do_stable_layer_norm=True)
#: name -> (model_type, config overrides of the transformers defaults, number of WS layers)
PUBLISHED = {
    "WavLM Base+ (microsoft/wavlm-base-plus)": ("wavlm", {}, 13),
    "HuBERT Base (facebook/hubert-base-ls960)": ("hubert", {}, 12),
    "wav2vec 2.0 Base (facebook/wav2vec2-base)": ("wav2vec2", {}, 12),
    "WavLM Large (microsoft/wavlm-large)": ("wavlm", _LARGE, 25),
}


def encoder_parameters(model_type: str, overrides: dict) -> int:
    cfg_cls, model_cls = SSL_TYPES[model_type]
    cfg = cfg_cls(**overrides, apply_spec_augment=False)
    with torch.device("meta"):
        return sum(p.numel() for p in model_cls(cfg).parameters())


def head_parameters(ssl_dim: int | None, ws_layers: int | None, with_log1p: bool) -> int:
    """Masker (+ weighted-sum LayerNorms and weights when ws_layers is given)."""
    in_size = (N_BINS if with_log1p else 0) + (ssl_dim or 0)
    n = sum(p.numel() for p in BLSTMMasker(in_size).parameters())
    if ws_layers:
        n += sum(p.numel() for p in WeightedLayerSum(ws_layers, ssl_dim).parameters())
    return n


def table() -> str:
    lines = [
        "| SSL encoder | encoder params | head: SSL only (WS) | head: SSL + log1p (WS) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, (model_type, overrides, layers) in PUBLISHED.items():
        dim = overrides.get("hidden_size", 768)
        lines.append(
            f"| {name} | {encoder_parameters(model_type, overrides) / 1e6:.2f} M "
            f"| {head_parameters(dim, layers, False) / 1e6:.2f} M | {head_parameters(dim, layers, True) / 1e6:.2f} M |"
        )
    lines.append(f"| none (log1p only) | - | - | {head_parameters(None, None, True) / 1e6:.2f} M |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
