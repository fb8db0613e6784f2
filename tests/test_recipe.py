"""The VCTK recipe end to end on the embedded mini set (tiny random WavLM, CPU), run as its
users run it (``python recipes/VCTK/train.py hparams/smoke.yaml ...``) and checked by what it
leaves on disk: train_log.txt, checkpoints, enhanced wavs, layer weights."""
import glob
import importlib.util
import json
import os
import re
import shutil
import types

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import MINI_SET, SMOKE, TRAIN, run_recipe
from speechbrain.utils.checkpoints import Checkpointer

from speechbrain_sslse.checkpoints import AVERAGED, AtomicCheckpointer
from speechbrain_sslse.data import random_crop_pair
from speechbrain_sslse.errors import ConfigError
from speechbrain_sslse.hparams import load_hparams
from speechbrain_sslse.inference import load_model
from speechbrain_sslse.plots import read_averages


def _fixed_batch(folder):
    """The training utterances' first 1.28 s (gain 1), to measure the objective."""
    entries = json.load(open(os.path.join(folder, "train.json")))
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


def _test_stats(folder):
    """The test scores the recipe logged last (``Epoch loaded: N - test loss: ..., test pesq: ...``)."""
    line = [ln for ln in open(os.path.join(folder, "train_log.txt")) if ln.startswith("Epoch loaded")][-1]
    return {k: float(v) for k, v in re.findall(r"test (\w+): ([-+.\deE]+)", line)}


def _enhanced(folder):
    """The recipe's test-time outputs, by file name."""
    names = sorted(os.listdir(os.path.join(folder, "enhanced_wavs")))
    return {n: sf.read(os.path.join(folder, "enhanced_wavs", n), dtype="float32")[0] for n in names}


def _same_outputs(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def _epochs(folder):
    return [line.split(" - ")[0] for line in open(os.path.join(folder, "train_log.txt")) if line.startswith("epoch")]


def test_smoke_recipe_trains_checkpoints_and_enhances(smoke_run):
    ckpts = glob.glob(str(smoke_run / "save" / "CKPT+*" / "enhancer.ckpt"))
    assert 1 <= len(ckpts) <= 2  # the most recent, and the best by validation loss if older
    assert sorted(os.listdir(smoke_run / "enhanced_wavs")) == sorted(
        os.path.basename(p) for p in glob.glob(os.path.join(MINI_SET, "noisy_testset_wav", "*.wav"))
    )
    weights = [json.loads(line) for line in open(smoke_run / "layer_weights.jsonl")]
    assert [w["epoch"] for w in weights] == [1, 2] and len(weights[0]["weights"]) == 3
    assert open(smoke_run / "layer_weights.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    stats = _test_stats(smoke_run)  # as logged (2 digits): at least as strict as the unrounded values
    assert stats["pesq"] > 1.0 and 0 < stats["stoi"] <= 1
    assert "validation: valid_mode=whole (whole utterances)" in open(smoke_run / "train_log.txt").read()
    # the frozen random encoder is bundled (no hub id could rebuild it), the optimiser of
    # a frozen encoder does not exist
    state = torch.load(ckpts[0])
    assert any(k.startswith("ssl.model.") for k in state)
    assert not glob.glob(str(smoke_run / "save" / "CKPT+*" / "ssl_optimizer.ckpt"))


def test_short_training_cuts_the_loss_by_at_least_40_percent(tmp_path):
    run_recipe(tmp_path, "--number_of_epochs=12", "--lr=0.003")
    noisy, clean = _fixed_batch(tmp_path)
    torch.manual_seed(0)
    # the run's initial weights: the same hparams seed the model the same way
    fresh = load_hparams(SMOKE, {"data_folder": MINI_SET})["enhancer"]
    before = _objective(fresh, noisy, clean)
    # the weights the run ended with: its best checkpoint (the one it tested)
    after = _objective(load_model(str(tmp_path)).mods.enhancer, noisy, clean)
    print(f"objective before {before:.4f} after {after:.4f}")
    # measured: 0.45 x before with the global-RNG crops, 0.52 x with EpochCrops' draws (the
    # best-by-validation epoch of 12 on one validation utterance); an untrained model stays at 1 x
    assert after <= 0.6 * before, (before, after)


def test_frozen_mode_skips_hub_weights_in_checkpoints(tiny_folders, tmp_path):
    # with checkpoint averaging: the mean of states without the encoder's weights loads too
    run_recipe(tmp_path, f"--ssl_source={tiny_folders['wavlm']}", "--ssl_config={}", "--number_of_epochs=2",
               "--ckpt_num_to_keep=3", "--average_last_epochs=[2]")
    assert any(c.meta.get(AVERAGED) == "1-2" for c in Checkpointer(str(tmp_path / "save")).list_checkpoints())
    for path in glob.glob(str(tmp_path / "save" / "CKPT+*" / "enhancer.ckpt")):
        state = torch.load(path)
        assert not any(k.startswith("ssl.model.") for k in state)
        assert any(k.startswith("ssl.layer_sum.") for k in state)
    # the folder rebuilds its encoder from the local source it was trained with
    assert load_model(str(tmp_path)).mods.enhancer.ssl.source == tiny_folders["wavlm"]
    # exporting it would write that local path into the model folder: refused without a hub id
    import subprocess
    import sys

    from conftest import ROOT

    export = [sys.executable, os.path.join(ROOT, "recipes", "VCTK", "export.py"), str(tmp_path), str(tmp_path / "m"),
              "--example", ""]
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    res = subprocess.run(export, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 2 and "--ssl_hub_id" in res.stderr and not (tmp_path / "m").exists(), res.stderr
    res = subprocess.run(export + ["--ssl_hub_id", "owner/tiny-wavlm"], capture_output=True, text=True, env=env,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    assert "source: owner/tiny-wavlm" in (tmp_path / "m" / "hyperparams.yaml").read_text()


def test_partial_mode_uses_two_optimisers_without_clipping(tiny_folders, tmp_path):
    run_recipe(tmp_path, f"--ssl_source={tiny_folders['wavlm']}", "--ssl_config={}",
               "--ssl_mode=partial", "--number_of_epochs=1")
    ckpt = glob.glob(str(tmp_path / "save" / "CKPT+*"))[0]
    # every optimiser of the run is a recoverable named <name>_optimizer
    assert {f for f in os.listdir(ckpt) if f.endswith("_optimizer.ckpt")} == {"head_optimizer.ckpt",
                                                                            "ssl_optimizer.ckpt"}
    lrs = {name: torch.load(os.path.join(ckpt, f"{name}_optimizer.ckpt"))["param_groups"][0]["lr"]
           for name in ("head", "ssl")}
    assert lrs == {"head": 1e-3, "ssl": 1e-5}  # smoke lr; ssl_lr
    # Brain takes max_grad_norm from the run's hparams (saved resolved in hyperparams.yaml)
    assert load_hparams(str(tmp_path / "hyperparams.yaml"))["max_grad_norm"] == float("inf")
    assert os.path.exists(os.path.join(ckpt, "ssl_optimizer.ckpt"))
    assert any(k.startswith("ssl.model.encoder") for k in torch.load(os.path.join(ckpt, "enhancer.ckpt")))


def test_rerun_resumes_without_repeating_epochs(smoke_run, tmp_path):
    shutil.copytree(smoke_run, tmp_path / "run")  # a finished 2-epoch run
    assert _epochs(tmp_path / "run") == ["epoch: 1", "epoch: 2"]
    run_recipe(tmp_path / "run", "--number_of_epochs=3")
    assert _epochs(tmp_path / "run") == ["epoch: 1", "epoch: 2", "epoch: 3"]


def test_warm_start_loads_the_given_checkpoint_and_resume_wins(smoke_run, tmp_path):
    # the checkpoint the smoke run tested with, so its enhanced wavs are that checkpoint's outputs
    ckpt = Checkpointer(str(smoke_run / "save")).find_checkpoint(min_key="loss").path / "enhancer.ckpt"
    saved = torch.load(ckpt)
    run_recipe(tmp_path / "b", f"--init_from={ckpt}", "--number_of_epochs=0")  # no step: the loaded weights
    loaded = _enhanced(tmp_path / "b")
    assert _same_outputs(loaded, _enhanced(smoke_run))  # bit for bit: the very weights of that checkpoint
    # a later rerun with more epochs trains on from there and then resumes its own checkpoint
    run_recipe(tmp_path / "b", f"--init_from={ckpt}", "--number_of_epochs=1")
    own = glob.glob(str(tmp_path / "b" / "save" / "CKPT+*" / "enhancer.ckpt"))[0]
    trained = _enhanced(tmp_path / "b")
    run_recipe(tmp_path / "b", f"--init_from={ckpt}", "--number_of_epochs=1")
    assert _epochs(tmp_path / "b") == ["epoch: 1"]  # resumed, not trained again from the warm start
    assert _same_outputs(_enhanced(tmp_path / "b"), trained)  # its own checkpoint's outputs
    resumed = torch.load(own)
    assert not all(torch.equal(resumed[k], saved[k]) for k in saved)
    assert not _same_outputs(trained, loaded)


def test_warm_start_follows_a_changed_init_from(smoke_run, tmp_path):
    # a folder warm-started once (no checkpoint of its own yet) and rerun with another
    # --init_from loads the new file, not the link the first run left in init_from/
    ckpt = Checkpointer(str(smoke_run / "save")).find_checkpoint(min_key="loss").path / "enhancer.ckpt"
    other = tmp_path / "other.ckpt"
    torch.save({k: v * 0.5 if v.is_floating_point() else v for k, v in torch.load(ckpt).items()}, other)
    before = ckpt.read_bytes()
    run_recipe(tmp_path / "b", f"--init_from={ckpt}", "--number_of_epochs=0")
    first = _enhanced(tmp_path / "b")
    run_recipe(tmp_path / "b", f"--init_from={other}", "--number_of_epochs=0")
    run_recipe(tmp_path / "c", f"--init_from={other}", "--number_of_epochs=0")  # a fresh folder: the reference
    assert _same_outputs(_enhanced(tmp_path / "b"), _enhanced(tmp_path / "c"))
    assert not _same_outputs(_enhanced(tmp_path / "b"), first)
    assert ckpt.read_bytes() == before and not os.path.islink(ckpt)  # the sources are never touched


def test_warm_start_needs_a_file(tmp_path):
    res = run_recipe(tmp_path, "--init_from=/nonexistent/enhancer.ckpt", check=False)
    assert res.returncode == 2 and "error: init_from: no such file" in res.stderr, res.stderr[-2000:]


def test_checkpoint_averaging_adds_a_scored_candidate_that_resuming_skips(tmp_path):
    run_recipe(tmp_path, "--number_of_epochs=3", "--ckpt_num_to_keep=3", "--average_last_epochs=[2]")
    ckpter = Checkpointer(str(tmp_path / "save"))
    ckpts = ckpter.list_checkpoints()
    averaged = [c for c in ckpts if AVERAGED in c.meta]
    epochs = {int(open(c.path / "counter.ckpt").read()): c for c in ckpts if AVERAGED not in c.meta}
    assert len(averaged) == 1 and averaged[0].meta[AVERAGED] == "2-3" and sorted(epochs) == [1, 2, 3]
    mean = {k: (torch.load(epochs[2].path / "enhancer.ckpt")[k] + torch.load(epochs[3].path / "enhancer.ckpt")[k]) / 2
            for k in torch.load(epochs[3].path / "enhancer.ckpt")}
    state = torch.load(averaged[0].path / "enhancer.ckpt")
    assert state.keys() == mean.keys()
    assert all(torch.allclose(state[k].float(), mean[k].float(), atol=1e-6) for k in state if state[k].is_floating_point())
    log = open(tmp_path / "train_log.txt").read()
    loss = float(re.search(r"average of epochs: 2-3 - valid loss: ([-+.\deE]+)", log).group(1))
    assert abs(loss - averaged[0].meta["loss"]) < 0.01 * loss  # logged (3 digits) = the key it is chosen by
    assert read_averages(str(tmp_path / "train_log.txt")) == [("2-3", loss)]  # drawn on training_curves.png
    # resuming continues from epoch 3's own state, not from the average
    module = load_hparams(str(tmp_path / "hyperparams.yaml"))["enhancer"]
    found = AtomicCheckpointer(str(tmp_path / "save"), {"enhancer": module}).recover_if_possible()
    assert found.path == epochs[3].path
    run_recipe(tmp_path, "--number_of_epochs=4", "--ckpt_num_to_keep=3", "--average_last_epochs=[2]")
    assert _epochs(tmp_path) == ["epoch: 1", "epoch: 2", "epoch: 3", "epoch: 4"]
    run_recipe(tmp_path, "--number_of_epochs=4", "--ckpt_num_to_keep=3", "--average_last_epochs=[2]")  # again
    spans = sorted(c.meta[AVERAGED] for c in Checkpointer(str(tmp_path / "save")).list_checkpoints() if AVERAGED in c.meta)
    assert spans == ["2-3", "3-4"]  # earlier averages kept, none made twice


def test_checkpoint_averaging_needs_the_checkpoints_kept(tmp_path):
    res = run_recipe(tmp_path, "--number_of_epochs=3", "--ckpt_num_to_keep=2", "--average_last_epochs=[2]", check=False)
    assert res.returncode == 2 and "ckpt_num_to_keep (2) must be >= 3" in res.stderr, res.stderr[-2000:]
    assert not glob.glob(str(tmp_path / "save" / "CKPT+*"))  # refused before training


def test_dynamic_mixing_recipe_with_extra_noise_pairs(tmp_path):
    """The recipe on a rendered set with dynamic mixing, one epoch: the training noises
    are the set's training recordings plus the noise of the pairs named in
    dm_noise_pairs (their speech unused), and train_log.txt says so; validation and test
    stay the rendered files."""
    import subprocess
    import sys

    from conftest import RECIPE_ENV, TRAIN, speech_and_noise_folders

    from speechbrain_sslse.simulation import simulate

    speech, noise = speech_and_noise_folders(tmp_path / "src", speakers=5, noises=5)
    sim = simulate([speech], [noise], str(tmp_path / "set"), test_fraction=0.2, noise_test_fraction=0.2,
                   valid_fraction=0.25, noise_valid_fraction=0.25)
    pairs = f"{MINI_SET}/clean_trainset_28spk_wav:{MINI_SET}/noisy_trainset_28spk_wav"
    out = tmp_path / "run"
    cmd = [sys.executable, TRAIN, SMOKE, f"--output_folder={out}", f"--data_folder={tmp_path / 'set'}",
           "--num_workers=0", "--dynamic_mixing=True", "--valid_split=folder", "--dm_items_per_epoch=16",
           "--number_of_epochs=1", f"--dm_noise_pairs=[{pairs}]"]
    res = subprocess.run(cmd, env=RECIPE_ENV, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    log = open(out / "train_log.txt").read()
    n_recordings = len(sim["train_noises"])
    assert f"dynamic mixing: {len(sim['train_speech'])} training utterances, {n_recordings + 6} noises " \
           f"({n_recordings} recording, 6 pair)" in log
    assert _epochs(out) == ["epoch: 1"]
    assert sorted(os.listdir(out / "enhanced_wavs")) == sorted(e["id"] + ".wav" for e in sim["test"])


def test_rerun_with_other_training_settings_is_refused(smoke_run, tmp_path):
    """Resuming keeps the optimiser state (its lr) and the folder's validation: a changed
    setting outside the resumable few would not take effect or would mix two runs."""
    shutil.copytree(smoke_run, tmp_path / "run")
    saved = (tmp_path / "run" / "hyperparams.yaml").read_bytes()
    for change in ("--lr=0.00001", "--valid_mode=crop", "--gain_range=[1.0,1.0]"):
        res = run_recipe(tmp_path / "run", "--number_of_epochs=3", change, check=False)
        key = change[2:].split("=")[0]
        assert res.returncode == 2 and "trained with other settings" in res.stderr and f"{key}:" in res.stderr, \
            res.stderr[-2000:]
    assert (tmp_path / "run" / "hyperparams.yaml").read_bytes() == saved
    assert _epochs(tmp_path / "run") == ["epoch: 1", "epoch: 2"]
    res = run_recipe(tmp_path / "run", "--lr=1e-5", check=False)  # YAML 1.1: text, not a number
    assert res.returncode == 2 and "write 1.0e-05" in res.stderr, res.stderr[-2000:]
    # a folder of an older version (a setting added since) resumes, under another experiment name
    saved = (tmp_path / "run" / "hyperparams.yaml").read_text()
    (tmp_path / "run" / "hyperparams.yaml").write_text(
        "\n".join(line for line in saved.splitlines() if not line.startswith("dm_speech_eq_db:")) + "\n")
    run_recipe(tmp_path / "run", "--number_of_epochs=3", "--experiment=renamed")
    assert _epochs(tmp_path / "run") == ["epoch: 1", "epoch: 2", "epoch: 3"]
    run_recipe(tmp_path / "run", "--number_of_epochs=3", "--ssl_lr=0.00001")  # saved as 1e-05: the same number


def _head_checkpoint(tmp_path, ssl_source, built_on=None):
    """A recipe-style frozen-encoder checkpoint (head only) of a run on ``ssl_source`` (its
    weights built on the local folder ``built_on``, default ``ssl_source``)."""
    overrides = {"data_folder": MINI_SET, "ssl_source": built_on or ssl_source, "ssl_config": {}, "input": "cross"}
    enhancer = load_hparams(SMOKE, overrides)["enhancer"]
    run = tmp_path / "src"
    (run / "save" / "CKPT+1").mkdir(parents=True)
    (run / "hyperparams.yaml").write_text(f"input: cross\nssl_source: {ssl_source}\nssl_mode: frozen\n")
    torch.save(enhancer.checkpoint_state_dict(), run / "save" / "CKPT+1" / "enhancer.ckpt")
    return run / "save" / "CKPT+1" / "enhancer.ckpt"


def _train_module():
    spec = importlib.util.spec_from_file_location("sslse_train", TRAIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_warm_start_refuses_a_head_of_another_hub_encoder(tmp_path, tiny_folders):
    """wav2vec 2.0 and HuBERT Base have the same shapes: the head would load without a word."""
    train = _train_module()
    ckpt = _head_checkpoint(tmp_path, "microsoft/wavlm-base-plus", built_on=tiny_folders["wavlm"])
    frozen = types.SimpleNamespace(ssl=types.SimpleNamespace(backbone_in_checkpoint=False))
    hparams = {"enhancer": frozen, "ssl_mode": "frozen", "ssl_source": "facebook/hubert-base-ls960"}
    with pytest.raises(ConfigError, match="was trained on the encoder microsoft/wavlm-base-plus"):
        train.check_init_from(hparams, str(ckpt))
    train.check_init_from(dict(hparams, ssl_source="/models/wavlm-base-plus"), str(ckpt))  # a local copy


def test_warm_start_checks_local_encoders_by_their_type(tmp_path, tiny_folders):
    frozen = ("--ssl_config={}", "--input=cross", "--number_of_epochs=0")
    # a copy of the same encoder under another folder name: said, and trained on
    copy = tmp_path / "my-copy"
    shutil.copytree(tiny_folders["hubert"], copy)
    ckpt = _head_checkpoint(tmp_path / "h", tiny_folders["hubert"])
    res = run_recipe(tmp_path / "b", f"--init_from={ckpt}", f"--ssl_source={copy}", *frozen, check=False)
    said = res.stdout + res.stderr
    assert res.returncode == 0 and "was trained on the encoder" in said, said[-2000:]
    # a wav2vec 2.0 head on HuBERT (one shape, another model): refused
    ckpt = _head_checkpoint(tmp_path / "w2", tiny_folders["wav2vec2"])
    res = run_recipe(tmp_path / "c", f"--init_from={ckpt}", f"--ssl_source={tiny_folders['hubert']}", *frozen,
                     check=False)
    assert res.returncode == 2 and "was trained on the encoder" in res.stderr, res.stderr[-2000:]
    # a bare checkpoint (no run folder to say its encoder) that does not fit: one line, with the reason
    bare = tmp_path / "bare.ckpt"
    shutil.copy(_head_checkpoint(tmp_path / "w", tiny_folders["wavlm"]), bare)
    res = run_recipe(tmp_path / "d", f"--init_from={bare}", f"--ssl_source={tiny_folders['hubert']}", *frozen,
                     check=False)
    assert res.returncode == 2 and "does not fit this model (size mismatch" in res.stderr, res.stderr[-2000:]
    assert "Traceback" not in res.stderr

def test_warm_start_refuses_encoder_weights_into_a_frozen_encoder(smoke_run, tmp_path, tiny_folders):
    # the smoke run's encoder is built from a config, so its checkpoints carry the encoder
    ckpt = Checkpointer(str(smoke_run / "save")).find_checkpoint(min_key="loss").path / "enhancer.ckpt"
    res = run_recipe(tmp_path / "b", f"--init_from={ckpt}", f"--ssl_source={tiny_folders['wavlm']}",
                     "--ssl_config={}", "--number_of_epochs=0", check=False)
    assert res.returncode == 2 and "holds SSL encoder weights" in res.stderr, res.stderr[-2000:]


def test_recipe_draws_static_crops_per_epoch_it_is_told(tmp_path):
    """The recipe's static training set is EpochCrops (train_repeats crops of each pair), and
    the Brain tells it each epoch before the epoch's examples are drawn: a resumed epoch
    draws the crops of an uninterrupted one."""
    import speechbrain as sb

    from speechbrain_sslse.data import EpochCrops
    from speechbrain_sslse.data_prep import prepare_vctk

    train = _train_module()
    out = tmp_path / "run"
    hparams = load_hparams(SMOKE, {"data_folder": MINI_SET, "output_folder": str(out)})
    prepare_vctk(MINI_SET, str(out), valid_split=hparams["valid_split"], seed=hparams["seed"])
    train_set = train.dataio_prep(hparams)["train"]
    pairs = len(json.load(open(hparams["train_annotation"])))
    assert isinstance(train_set, EpochCrops) and len(train_set) == hparams["train_repeats"] * pairs
    fake_brain = types.SimpleNamespace(train_set=train_set)
    drawn = {}
    for epoch in (3, 4, 3):
        train.SSLSEBrain.on_stage_start(fake_brain, sb.Stage.TRAIN, epoch)
        assert train_set.epoch == epoch
        drawn.setdefault(epoch, []).append([train_set[i]["noisy_sig"] for i in range(len(train_set))])
    assert all(torch.equal(a, b) for a, b in zip(*drawn[3]))  # epoch 3 again: the same crops
    assert not any(torch.equal(a, b) for a, b in zip(drawn[3][0], drawn[4][0]))  # epoch 4: others


def test_persistent_loader_workers_are_refused():
    """Workers that persist keep the epoch they started with: every epoch would draw the first
    one's crops (EpochCrops) or mixtures (DynamicMixDataset)."""
    train = _train_module()
    hparams = load_hparams(SMOKE, {"data_folder": MINI_SET})
    train.check_training_settings(hparams)
    hparams["train_dataloader_options"]["persistent_workers"] = True
    with pytest.raises(ConfigError, match="persistent_workers"):
        train.check_training_settings(hparams)
