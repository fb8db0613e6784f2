"""The one loader for SSL encoders: a hub id, a local ``save_pretrained`` folder, or a config.

Why not SpeechBrain's ``HFTransformersInterface``: it always resolves the source
through the hub cache, and its weighted-sum lobe neither forwards padding masks nor
has learnable per-layer LayerNorms (both required by the method). This module keeps
the loading rules in one place so every entry point (recipe, inference, analysis,
benchmarks) builds encoders the same way.
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping

import torch
from transformers import (
    HubertConfig,
    HubertModel,
    PretrainedConfig,
    Wav2Vec2Config,
    Wav2Vec2Model,
    WavLMConfig,
    WavLMModel,
)

from .errors import ConfigError

#: model_type (as in an HF ``config.json``) -> (config class, model class)
SSL_TYPES: dict[str, tuple[type, type]] = {
    "wavlm": (WavLMConfig, WavLMModel),
    "hubert": (HubertConfig, HubertModel),
    "wav2vec2": (Wav2Vec2Config, Wav2Vec2Model),
}

#: ``feature_grad_mult`` in the pretraining config stored with each checkpoint the paper's
#: authors load (fairseq / unilm): their forward multiplies the gradient that reaches the CNN
#: feature extractor by it (fairseq's ``GradMultiply``); transformers has no such factor.
#: Read from the published configs (docs/fidelity.md gives the sources): every Base model
#: (GroupNorm CNN) was pretrained with 0.1, every Large model (LayerNorm CNN) with 1.0.
CHECKPOINT_FEATURE_GRAD_MULT: dict[str, float] = {
    "microsoft/wavlm-base-plus": 0.1,  # WavLM-Base+.pt
    "microsoft/wavlm-large": 1.0,  # WavLM-Large.pt
    "facebook/hubert-base-ls960": 0.1,  # hubert_base_ls960.pt
    "facebook/wav2vec2-base": 0.1,  # wav2vec_small.pt
    "facebook/hubert-large-ll60k": 1.0,  # hubert_large_ll60k.pt
}


def default_feature_grad_mult(config: PretrainedConfig) -> float:
    """The CNN gradient factor the authors' code would use for an encoder of this shape:
    0.1 for a GroupNorm CNN (Base checkpoints), 1.0 for a LayerNorm CNN (Large ones);
    the rule reproduces ``CHECKPOINT_FEATURE_GRAD_MULT`` for every checkpoint listed there."""
    return 0.1 if getattr(config, "feat_extract_norm", "group") == "group" else 1.0


class SSLSourceError(ConfigError):
    """Raised when an SSL source cannot be resolved; the message says why and what to do."""


def _method_overrides(config: PretrainedConfig) -> PretrainedConfig:
    """The method trains with layer drop 0 and no SpecAugment, whatever the checkpoint says
    (wavlm-base-plus ships layerdrop 0.05 and mask_time_prob 0.05)."""
    config.layerdrop = 0.0
    config.apply_spec_augment = False
    config.mask_time_prob = 0.0
    config.mask_feature_prob = 0.0
    return config


def config_from_dict(cfg: Mapping[str, Any]) -> PretrainedConfig:
    """Builds an HF config from a plain mapping with a ``model_type`` key."""
    cfg = dict(cfg)
    model_type = cfg.pop("model_type", None)
    if model_type not in SSL_TYPES:
        raise SSLSourceError(
            f"Unknown SSL model_type {model_type!r}; supported: {sorted(SSL_TYPES)}"
        )
    for key in ("conv_dim", "conv_stride", "conv_kernel"):
        if key in cfg:
            cfg[key] = tuple(cfg[key])
    return SSL_TYPES[model_type][0](**cfg)


def source_model_type(source: str) -> str | None:
    """The ``SSL_TYPES`` type of a source without loading it: a local folder's config.json
    ``model_type``, else the first type its name contains (``microsoft/wavlm-base-plus``);
    None when neither says."""
    try:
        with open(os.path.join(os.path.expanduser(str(source)), "config.json"), encoding="utf-8") as f:
            return str(json.load(f).get("model_type") or "").replace("-", "") or None
    except (OSError, ValueError):
        pass
    name = str(source).lower().replace("-", "").replace("_", "")
    return next((t for t in SSL_TYPES if t in name), None)


def _is_local(source: str) -> bool:
    return os.path.isabs(source) or source.startswith((".", "~")) or os.path.exists(source)


def _resolve_config(source: str, cache_dir: str | None) -> PretrainedConfig:
    from transformers import AutoConfig

    if _is_local(source):
        folder = os.path.expanduser(source)
        if not os.path.isdir(folder):
            raise SSLSourceError(f"SSL source folder {folder!r} does not exist")
        if not os.path.isfile(os.path.join(folder, "config.json")):
            raise SSLSourceError(
                f"SSL source folder {folder!r} has no config.json "
                "(expected a transformers save_pretrained folder)"
            )
        return AutoConfig.from_pretrained(folder, local_files_only=True)
    try:
        return AutoConfig.from_pretrained(source, cache_dir=cache_dir)
    except OSError as err:
        raise SSLSourceError(
            f"Could not fetch SSL config {source!r} from the Hugging Face Hub or its cache "
            f"({type(err).__name__}). Offline? Pass a local save_pretrained folder of it instead "
            f"(and set HF_HUB_OFFLINE=1 to skip the retries): "
            f"--ssl_source=/path/to/{source.split('/')[-1]} for a recipe, --ssl-source "
            f"/path/to/{source.split('/')[-1]} for sslse-enhance, sslse-evaluate or sslse-analyze"
        ) from None


def load_ssl_model(
    source: str | None = None,
    config: Mapping[str, Any] | PretrainedConfig | None = None,
    random_init: bool = False,
    cache_dir: str | None = None,
) -> torch.nn.Module:
    """Returns an HF WavLM / HuBERT / wav2vec 2.0 encoder with the method's config overrides.

    source: a hub id or a local folder (``config.json`` + weights); a local folder never
        touches the network.
    config: a mapping with ``model_type`` (or an HF config) to build a randomly
        initialised model without any file (tiny test models, TFS from a known shape).
    random_init: with a source, take only its config and initialise randomly (TFS).
    """
    if config is not None:
        cfg = config if isinstance(config, PretrainedConfig) else config_from_dict(config)
        if cfg.model_type not in SSL_TYPES:
            raise SSLSourceError(f"Unknown SSL model_type {cfg.model_type!r}")
        return SSL_TYPES[cfg.model_type][1](_method_overrides(cfg))
    if not source:
        raise SSLSourceError("An SSL encoder needs a source (hub id or folder) or a config")
    cfg = _method_overrides(_resolve_config(source, cache_dir))
    if cfg.model_type not in SSL_TYPES:
        raise SSLSourceError(
            f"SSL source {source!r} is a {cfg.model_type!r} model; supported: {sorted(SSL_TYPES)}"
        )
    model_cls = SSL_TYPES[cfg.model_type][1]
    if random_init:
        return model_cls(cfg)
    local = _is_local(source)
    try:
        return model_cls.from_pretrained(
            os.path.expanduser(source) if local else source,
            config=cfg,
            local_files_only=local,
            cache_dir=None if local else cache_dir,
        )
    except OSError as err:  # a folder with config.json but no weights, an interrupted download
        where = "folder" if local else "hub id"
        raise SSLSourceError(f"SSL {where} {source!r}: its weights could not be loaded ({str(err).splitlines()[0]}); "
                             "expected a transformers save_pretrained folder with model.safetensors "
                             "or pytorch_model.bin") from None
