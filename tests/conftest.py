"""Shared fixtures: tiny random SSL encoders built from config classes (never downloaded),
and the recipe run as its users run it (a subprocess; nothing imports from recipes/)."""
import os
import subprocess
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests must never reach a hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(ROOT, "recipes", "VCTK")  # run as scripts (subprocess), never imported
MINI_SET = os.path.join(ROOT, "tests", "samples", "mini_vbd")
SHARED = os.path.join(os.path.dirname(ROOT), "shared")
TRAIN = os.path.join(RECIPE, "train.py")
SMOKE = os.path.join(ROOT, "hparams", "smoke.yaml")
RECIPE_ENV = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE", HF_HUB_OFFLINE="1",
                  TRANSFORMERS_OFFLINE="1")

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


def listed_outputs(folder) -> list[str]:
    """The files ``sslse-enhance`` wrote at the top of ``folder`` (sorted), without the
    folder's record of them (``output_plan.OUTPUT_RECORD``)."""
    from speechbrain_sslse.output_plan import OUTPUT_RECORD

    return sorted(f for f in os.listdir(folder) if f != OUTPUT_RECORD)


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


def run_recipe(out, *extra, check=True) -> subprocess.CompletedProcess:
    """``python recipes/VCTK/train.py hparams/smoke.yaml`` on the mini set into ``out``
    (one thread: runs are reproducible to the bit); fails the test on a non-zero exit
    unless ``check`` is false."""
    cmd = [sys.executable, TRAIN, SMOKE, f"--output_folder={out}", f"--data_folder={MINI_SET}", "--num_workers=0",
           *extra]
    res = subprocess.run(cmd, env=RECIPE_ENV, capture_output=True, text=True, timeout=900)
    if check:
        assert res.returncode == 0, res.stderr[-3000:]
    return res


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """One default smoke run (2 epochs), shared read-only: tests that change a run copy it."""
    out = tmp_path_factory.mktemp("smoke") / "run"
    run_recipe(out)
    return out


def speech_and_noise_folders(root, speakers: int, noises: int) -> tuple[str, str]:
    """``root/speech/spk<k>/`` with two real clean utterances of the mini set each, and
    ``root/noise/`` with synthetic noises of 2, 3, ... seconds (for simulation tests)."""
    import glob
    import shutil

    import numpy as np
    import soundfile as sf

    clean = sorted(glob.glob(os.path.join(MINI_SET, "clean_*", "*.wav")))
    for i, path in enumerate(clean[: 2 * speakers]):
        os.makedirs(os.path.join(root, "speech", f"spk{i % speakers}"), exist_ok=True)
        shutil.copy(path, os.path.join(root, "speech", f"spk{i % speakers}", os.path.basename(path)))
    rng = np.random.default_rng(0)
    os.makedirs(os.path.join(root, "noise"))
    for k in range(noises):
        sf.write(os.path.join(root, "noise", f"noise{k}.wav"), 0.1 * rng.standard_normal(16000 * (2 + k)), 16000)
    return os.path.join(root, "speech"), os.path.join(root, "noise")


@pytest.fixture(autouse=True)
def _progress_default():
    """A command run with -q switches bars off for its whole process; each test starts with
    the default, as a fresh process would."""
    from speechbrain_sslse.progress import show_progress

    show_progress(True)
    yield
    show_progress(True)
