"""The VCTK recipe end to end on the embedded mini set (tiny random WavLM, CPU)."""
import glob
import json
import os

import torch
from conftest import MINI_SET, ROOT

import train as recipe
from speechbrain_sslse.data import random_crop_pair

SMOKE = os.path.join(ROOT, "hparams", "smoke.yaml")


def _run(tmp_path, *extra):
    args = [SMOKE, f"--output_folder={tmp_path}", f"--data_folder={MINI_SET}", "--num_workers=0", *extra]
    return recipe.main(args)


def _fixed_batch(folder):
    """The training utterances' first 1.28 s (gain 1), to measure the objective."""
    entries = json.load(open(os.path.join(folder, "train.json")))
    import soundfile as sf

    noisy, clean = [], []
    for e in entries.values():
        n, c = random_crop_pair(torch.tensor(sf.read(e["noisy_wav"], dtype="float32")[0]),
                                torch.tensor(sf.read(e["clean_wav"], dtype="float32")[0]), 20480)
        noisy.append(n)
        clean.append(c)
    return torch.stack(noisy), torch.stack(clean)


def _objective(enhancer, noisy, clean):
    enhancer.eval()
    with torch.no_grad():
        return float((enhancer(noisy).enhanced - enhancer.log_spectrum(clean)).abs().mean())


def test_smoke_recipe_trains_checkpoints_and_enhances(tmp_path):
    brain = _run(tmp_path)
    ckpts = glob.glob(str(tmp_path / "save" / "CKPT+*" / "enhancer.ckpt"))
    assert 1 <= len(ckpts) <= 2  # the most recent, and the best by validation loss if older
    assert sorted(os.listdir(tmp_path / "enhanced_wavs")) == sorted(
        os.path.basename(p) for p in glob.glob(os.path.join(MINI_SET, "noisy_testset_wav", "*.wav"))
    )
    weights = [json.loads(line) for line in open(tmp_path / "layer_weights.jsonl")]
    assert [w["epoch"] for w in weights] == [1, 2] and len(weights[0]["weights"]) == 3
    assert open(tmp_path / "layer_weights.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert brain.test_stats["pesq"] > 1.0 and 0 < brain.test_stats["stoi"] <= 1
    # the frozen random encoder is bundled (no hub id could rebuild it), the optimiser of
    # a frozen encoder does not exist
    state = torch.load(ckpts[0])
    assert any(k.startswith("ssl.model.") for k in state)
    assert not glob.glob(str(tmp_path / "save" / "CKPT+*" / "ssl_optimizer.ckpt"))


def test_short_training_at_least_halves_the_loss(tmp_path):
    brain = _run(tmp_path, "--number_of_epochs=1", "--lr=0.003")
    noisy, clean = _fixed_batch(tmp_path)
    torch.manual_seed(0)
    fresh = recipe.load_hparams(SMOKE, {"data_folder": MINI_SET})["enhancer"]
    before = _objective(fresh, noisy, clean)
    brain = _run(tmp_path / "long", "--number_of_epochs=12", "--lr=0.003")
    after = _objective(brain.hparams.enhancer, noisy, clean)
    print(f"objective before {before:.4f} after {after:.4f}")
    assert after <= 0.5 * before, (before, after)


def test_frozen_mode_skips_hub_weights_in_checkpoints(tiny_folders, tmp_path):
    brain = _run(tmp_path, f"--ssl_source={tiny_folders['wavlm']}", "--ssl_config={}", "--number_of_epochs=1")
    state = torch.load(glob.glob(str(tmp_path / "save" / "CKPT+*" / "enhancer.ckpt"))[0])
    assert not any(k.startswith("ssl.model.") for k in state)
    assert any(k.startswith("ssl.layer_sum.") for k in state)
    assert brain.hparams.enhancer.ssl.source == tiny_folders["wavlm"]


def test_partial_mode_uses_two_optimisers_without_clipping(tiny_folders, tmp_path):
    brain = _run(tmp_path, f"--ssl_source={tiny_folders['wavlm']}", "--ssl_config={}",
                 "--ssl_mode=partial", "--number_of_epochs=1")
    assert set(brain.optimizers_dict) == {"head", "ssl"}
    assert brain.optimizers_dict["head"].param_groups[0]["lr"] == 1e-3  # smoke lr
    assert brain.optimizers_dict["ssl"].param_groups[0]["lr"] == 1e-5
    assert brain.max_grad_norm == float("inf")
    ckpt = glob.glob(str(tmp_path / "save" / "CKPT+*"))[0]
    assert os.path.exists(os.path.join(ckpt, "ssl_optimizer.ckpt"))
    assert any(k.startswith("ssl.model.encoder") for k in torch.load(os.path.join(ckpt, "enhancer.ckpt")))


def test_rerun_resumes_without_repeating_epochs(tmp_path):
    _run(tmp_path, "--number_of_epochs=2")
    _run(tmp_path, "--number_of_epochs=3")
    epochs = [line.split(" - ")[0] for line in open(tmp_path / "train_log.txt") if line.startswith("epoch")]
    assert epochs == ["epoch: 1", "epoch: 2", "epoch: 3"]


def test_warm_start_loads_the_given_checkpoint_and_resume_wins(tmp_path):
    _run(tmp_path / "a", "--number_of_epochs=1")
    ckpt = glob.glob(str(tmp_path / "a" / "save" / "CKPT+*" / "enhancer.ckpt"))[0]
    brain = _run(tmp_path / "b", f"--init_from={ckpt}", "--number_of_epochs=0")  # no step: the loaded weights
    saved = torch.load(ckpt)
    for key, value in brain.hparams.enhancer.checkpoint_state_dict().items():
        assert torch.equal(value, saved[key]), key
    # a later rerun with more epochs trains on from there and then resumes its own checkpoint
    _run(tmp_path / "b", f"--init_from={ckpt}", "--number_of_epochs=1")
    own = glob.glob(str(tmp_path / "b" / "save" / "CKPT+*" / "enhancer.ckpt"))[0]
    brain = _run(tmp_path / "b", f"--init_from={ckpt}", "--number_of_epochs=1")
    resumed = torch.load(own)
    assert all(torch.equal(v, resumed[k]) for k, v in brain.hparams.enhancer.checkpoint_state_dict().items())
    assert not all(torch.equal(resumed[k], saved[k]) for k in saved)


def test_warm_start_needs_a_file(tmp_path):
    import pytest
    from speechbrain_sslse.errors import ConfigError

    with pytest.raises(ConfigError, match="no such file"):
        _run(tmp_path, "--init_from=/nonexistent/enhancer.ckpt")
