"""Interrupted training loses nothing; bad configurations fail early; torchrun (gloo) works."""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from conftest import MINI_SET, ROOT

from speechbrain.utils.epoch_loop import EpochCounter

from speechbrain_sslse.checkpoints import (AVERAGED, AtomicCheckpointer, CheckpointError, average_last_epochs,
                                          check_checkpoints)
from speechbrain_sslse.inference import load_model

TRAIN = os.path.join(ROOT, "recipes", "VCTK", "train.py")
SMOKE = os.path.join(ROOT, "hparams", "smoke.yaml")
ENV = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")


def _cmd(out, *extra):
    return [sys.executable, TRAIN, SMOKE, f"--output_folder={out}", f"--data_folder={MINI_SET}",
            "--num_workers=0", *extra]


def _epochs(out):
    path = os.path.join(out, "train_log.txt")
    if not os.path.exists(path):
        return []
    return [int(line.split(" - ")[0].split(": ")[1]) for line in open(path) if line.startswith("epoch:")]


def _checkpointed_epochs(out):
    save = os.path.join(out, "save")
    found = []
    for d in os.listdir(save) if os.path.isdir(save) else []:
        counter = os.path.join(save, d, "counter.ckpt")
        if os.path.exists(os.path.join(save, d, "CKPT.yaml")) and os.path.exists(counter):
            found.append(int(open(counter).read().strip()))
    return found


def test_sigkill_mid_epoch_then_resume(tmp_path):
    out = str(tmp_path / "run")
    proc = subprocess.Popen(_cmd(out, "--number_of_epochs=6", "--train_repeats=24"), env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while not _checkpointed_epochs(out) and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(random.Random(0).uniform(0.3, 2.0))  # somewhere inside the next epoch
        assert proc.poll() is None, "training ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    done_at_kill = max(_checkpointed_epochs(out))
    logged_at_kill = len(_epochs(out))
    assert 1 <= done_at_kill < 6
    res = subprocess.run(_cmd(out, "--number_of_epochs=6", "--train_repeats=24"), env=ENV,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    epochs = _epochs(out)
    resumed = epochs[logged_at_kill:]
    assert resumed == list(range(done_at_kill + 1, 7))  # no finished epoch repeated
    assert sorted(set(epochs)) == [1, 2, 3, 4, 5, 6]
    assert max(_checkpointed_epochs(out)) == 6 and len(_checkpointed_epochs(out)) <= 2  # recent + best
    assert "test loss" in open(os.path.join(out, "train_log.txt")).read().splitlines()[-1]


def _two_checkpoints(save):
    """(checkpointer, older, newer): two checkpoints of a small module, a second apart."""
    ckpter = AtomicCheckpointer(str(save), {"model": torch.nn.Linear(2, 2)})
    first = ckpter.save_checkpoint(meta={"n": 1})
    time.sleep(1.1)
    return ckpter, first, ckpter.save_checkpoint(meta={"n": 2})


def test_corrupt_checkpoint_falls_back_or_fails_clearly(tmp_path):
    save = tmp_path / "save"
    ckpter, first, second = _two_checkpoints(save)
    assert not list(save.glob("*/*.pending"))
    (second.path / "model.ckpt").write_bytes((second.path / "model.ckpt").read_bytes()[:40])  # truncate
    (save / "CKPT+half-written").mkdir()  # a save killed before its meta file
    check_checkpoints(ckpter)
    assert not (save / "CKPT+half-written").exists()
    assert os.path.isdir(str(second.path) + ".corrupt")
    assert ckpter.recover_if_possible().path == first.path
    # the only checkpoint left is corrupt too: one clear error naming it
    (first.path / "model.ckpt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="model.ckpt is unreadable.*start training from scratch"):
        check_checkpoints(ckpter)


@pytest.mark.parametrize("content", ["", "garbage: [unclosed", "just text"])
def test_a_garbage_ckpt_yaml_falls_back_to_the_previous_checkpoint(tmp_path, content):
    """The README's promise for an empty or garbage CKPT.yaml: set aside, the previous
    checkpoint used (with only one checkpoint the recipe says so and exits: test_data_safety)."""
    ckpter, first, second = _two_checkpoints(tmp_path / "save")
    (second.path / "CKPT.yaml").write_text(content)
    check_checkpoints(ckpter)
    assert os.path.isdir(str(second.path) + ".corrupt") and not second.path.exists()
    assert ckpter.recover_if_possible().path == first.path


def _epoch_checkpoints(save, epochs):
    """An AtomicCheckpointer with one end-of-epoch checkpoint per epoch (weights = the epoch)."""
    module, counter = torch.nn.Linear(2, 2), EpochCounter(100)
    ckpter = AtomicCheckpointer(str(save), {"enhancer": module, "counter": counter})
    saved = {}
    for epoch in epochs:
        counter.current = epoch
        torch.nn.init.constant_(module.weight, float(epoch))
        saved[epoch] = ckpter.save_checkpoint(meta={"loss": 1.0 / epoch})
        time.sleep(0.01)
    return ckpter, module, saved


def test_averaging_takes_the_last_consecutive_epochs_or_says_why(tmp_path):
    ckpter, _, saved = _epoch_checkpoints(tmp_path / "save", [1, 2, 3, 4])
    state, epochs = average_last_epochs(ckpter, 3)
    assert epochs == [2, 3, 4] and torch.allclose(state["weight"], torch.full((2, 2), 3.0))
    shutil.rmtree(saved[3].path)  # epoch 3 deleted: epoch 1 must not stand in for it
    with pytest.raises(CheckpointError, match=r"holds epochs \[1, 2, 4\]"):
        average_last_epochs(ckpter, 3)


def test_resume_check_verifies_the_checkpoint_resuming_loads(tmp_path):
    ckpter, _, saved = _epoch_checkpoints(tmp_path / "save", [1, 2])
    time.sleep(0.01)
    averaged = ckpter.save_checkpoint(meta={"loss": 0.1, AVERAGED: "1-2"})  # newest, but never resumed
    (saved[2].path / "enhancer.ckpt").write_bytes(b"garbage")
    check_checkpoints(ckpter)
    assert os.path.isdir(str(saved[2].path) + ".corrupt") and os.path.isdir(averaged.path)
    assert ckpter.recover_if_possible().path == saved[1].path


@pytest.mark.parametrize(
    "args, message",
    [
        (["--ssl_mode=finetune"], "Unknown SSL mode 'finetune'"),
        (["--ssl_config={model_type: whisper}"], "Unknown SSL model_type 'whisper'"),
        (["--ssl_config={}", "--ssl_source=/nonexistent/wavlm"], "SSL source folder '/nonexistent/wavlm' does not exist"),
        (["--ssl_config={}", "--ssl_source=microsoft/wavlm-base-plus"], "Could not fetch SSL config 'microsoft/wavlm-base-plus'"),
        (["--ssl_mdoe=frozen"], "Override 'ssl_mdoe' not found"),
        (["--data_folder=/nonexistent/vbd"], "data folder /nonexistent/vbd does not exist"),
    ],
    ids=["mode", "ssl_type", "missing_folder", "hub_offline", "typo", "data_folder"],
)
def test_configuration_errors_are_one_clear_line(tmp_path, args, message):
    cmd = _cmd(tmp_path / "run")
    cmd = [c for c in cmd if not (c.startswith("--data_folder") and any(a.startswith("--data_folder") for a in args))]
    res = subprocess.run(cmd + args, env=ENV, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert message in res.stderr and "Traceback" not in res.stderr
    assert not os.path.exists(tmp_path / "run" / "save") or not os.listdir(tmp_path / "run" / "save")


@pytest.mark.skipif(shutil.which("torchrun") is None and not os.path.exists(os.path.join(os.path.dirname(sys.executable), "torchrun")),
                    reason="torchrun not installed")
def test_torchrun_two_processes_gloo(tmp_path):
    out = tmp_path / "ddp"
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    # --standalone: a local rendezvous on a free port
    cmd = [torchrun, "--standalone", "--nproc_per_node=2", *_cmd(out)[1:], "--distributed_backend=gloo"]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, err = proc.communicate(timeout=400)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both ranks
        raise
    assert proc.returncode == 0, err[-3000:]
    # what a user sees: one checkpoint (rank 0's), two epochs logged, and each rank trained
    # on half the data (DistributedSampler), so the optimiser stepped half as often
    assert len(os.listdir(out / "save")) == 1
    ckpt = out / "save" / os.listdir(out / "save")[0]
    steps = yaml.safe_load(open(ckpt / "brain.ckpt"))["optimizer_step"]
    n_train = len(json.load(open(out / "train.json"))) * 8  # smoke.yaml: train_repeats 8
    assert steps == 2 * -(-(-(-n_train // 2)) // 8)  # 2 epochs x ceil(ceil(n / 2 ranks) / batch 8)
    assert load_model(str(out)) is not None  # the result loads for inference
    assert len(_epochs(out)) == 2
