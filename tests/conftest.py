"""Shared fixtures: tiny random SSL encoders built from config classes (never downloaded)."""
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests must never reach a hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(ROOT, "recipes", "VCTK")
MINI_SET = os.path.join(ROOT, "tests", "samples", "mini_vbd")
SHARED = os.path.join(os.path.dirname(ROOT), "shared")
sys.path.insert(0, RECIPE)

TINY = dict(
    hidden_size=32,
    num_hidden_layers=3,
    num_attention_heads=2,
    intermediate_size=64,
    conv_dim=[16] * 7,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2,
)
SSL_TYPES = ("wavlm", "hubert", "wav2vec2")


def tiny_config(model_type: str = "wavlm", **extra) -> dict:
    return dict(TINY, model_type=model_type, **extra)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_folders(tmp_path_factory):
    """save_pretrained folders of tiny random models, with the method-breaking settings
    (layer drop, SpecAugment) a real checkpoint may carry."""
    from speechbrain_sslse.ssl_loader import SSL_TYPES as TYPES

    folders = {}
    for model_type in SSL_TYPES:
        cfg_cls, model_cls = TYPES[model_type]
        cfg = cfg_cls(**TINY, layerdrop=0.1, mask_time_prob=0.05, apply_spec_augment=True)
        torch.manual_seed(1)
        folder = tmp_path_factory.mktemp(f"tiny_{model_type}")
        model_cls(cfg).save_pretrained(folder)
        folders[model_type] = str(folder)
    return folders
