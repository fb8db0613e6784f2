"""Every paper row loads (offline, with a tiny local encoder) and data prep behaves."""
import glob
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from conftest import MINI_SET, RECIPE_ENV, ROOT, TRAIN

from speechbrain_sslse.data_prep import PrepError, prepare_vctk
from speechbrain_sslse.errors import ConfigError
from speechbrain_sslse.hparams import load_hparams, resolved_yaml

ROWS = sorted(glob.glob(os.path.join(ROOT, "hparams", "table*", "*.yaml"))) + [
    os.path.join(ROOT, "hparams", "wavlm_ws_log1p.yaml")
]


def test_table_rows_exist():
    names = {os.path.basename(p)[:-5] for p in ROWS}
    for model in ("wav2vec2", "hubert", "wavlm"):
        for variant in ("ll", "ll_log1p", "ws", "ws_log1p"):
            assert f"{model}_base_{variant}" in names
    for size in ("base", "large"):
        for mode in ("tfs", "pf", "ef"):
            assert {f"wavlm_{size}_{mode}", f"wavlm_{size}_{mode}_log1p"} <= names
    assert "log1p" in names


@pytest.mark.parametrize("path", ROWS, ids=lambda p: os.path.relpath(p, ROOT))
def test_row_builds_the_model_its_name_says(path, tiny_folders):
    name = os.path.basename(path)[:-5]
    overrides = {"data_folder": "/nonexistent"}
    if name != "log1p":
        model_type = next(m for m in ("wav2vec2", "hubert", "wavlm") if name.startswith(m))
        overrides["ssl_source"] = tiny_folders[model_type]
    h = load_hparams(path, overrides)
    enh = h["enhancer"]
    assert h["lr"] == 1e-4 and h["ssl_lr"] == 1e-5 and h["batch_size"] == 16 and h["number_of_epochs"] == 100
    assert h["crop_samples"] == 20480 and h["seed"] == 999
    if name == "log1p":
        assert enh.input == "spectrum" and enh.ssl is None
        return
    assert enh.input == ("cross" if name.endswith("log1p") else "ssl")
    mode = {"tfs": "scratch", "pf": "partial", "ef": "entire"}
    expected_mode = next((v for k, v in mode.items() if f"_{k}" in name), "frozen")
    assert enh.ssl.mode == expected_mode
    assert enh.ssl.output == ("last" if "_ll" in name else "weighted_sum")
    # the public hub id the row uses without the override (the checkpoints method.md names)
    hub = {"wavlm_base": "microsoft/wavlm-base-plus", "wavlm_large": "microsoft/wavlm-large",
           "hubert_base": "facebook/hubert-base-ls960", "wav2vec2_base": "facebook/wav2vec2-base",
           "wavlm_": "microsoft/wavlm-base-plus"}  # (hparams/wavlm_ws_log1p.yaml: the README's example row)
    source = re.search(r"^ssl_source: *(\S+)", resolved_yaml(path, {"data_folder": "/nonexistent"}), re.M).group(1)
    assert source == next(v for k, v in hub.items() if name.startswith(k))


def test_unknown_override_is_an_error():
    with pytest.raises(ConfigError, match="ssl_mdoe.* not found"):
        load_hparams(os.path.join(ROOT, "hparams", "smoke.yaml"), {"ssl_mdoe": "frozen"})


def _copy_mini(tmp_path):
    root = tmp_path / "vbd"
    shutil.copytree(MINI_SET, root)
    return root


def test_prepare_random_split_is_deterministic(tmp_path):
    a = prepare_vctk(MINI_SET, str(tmp_path / "a"))
    b = prepare_vctk(MINI_SET, str(tmp_path / "b"))
    va, vb = json.load(open(a["valid"])), json.load(open(b["valid"]))
    train = json.load(open(a["train"]))
    assert va == vb and len(va) == 1 and not set(va) & set(train)
    assert len(train) + len(va) == 6 and len(json.load(open(a["test"]))) == 5
    entry = next(iter(train.values()))
    assert entry["spk"] == "p287" and entry["length"] > 1 and os.path.isabs(entry["clean_wav"])


def test_prepare_refuses_manifests_of_another_split(tmp_path):
    """Kept, they would validate on another split than the run records (with dynamic mixing:
    on speakers of its mixing pool)."""
    paths = prepare_vctk(MINI_SET, str(tmp_path), "random")
    before = {k: open(p).read() for k, p in paths.items()}
    with pytest.raises(PrepError, match="made with .*random.* to re-split"):
        prepare_vctk(MINI_SET, str(tmp_path), "speakers")
    assert {k: open(p).read() for k, p in paths.items()} == before
    assert prepare_vctk(MINI_SET, str(tmp_path), "random") == paths  # the same split: kept


def test_prepare_speaker_split_and_48k_input(tmp_path):
    root = _copy_mini(tmp_path)
    # make p226 exist and store everything at 48 kHz as the official release does
    for sub in ("clean_trainset_28spk_wav", "noisy_trainset_28spk_wav"):
        shutil.copy(root / sub / "p287_001.wav", root / sub / "p226_001.wav")
        shutil.copy(root / sub / "p287_002.wav", root / sub / "p230_002.wav")
    for path in glob.glob(str(root / "*" / "*.wav")):
        x, sr = sf.read(path)
        sf.write(path, np.repeat(x, 3), 48000)
    paths = prepare_vctk(str(root), str(tmp_path / "out"), valid_split="speakers")
    valid = json.load(open(paths["valid"]))
    assert len(valid) == 7  # all of p226 and p287
    assert list(json.load(open(paths["train"]))) == ["p230_002"]
    for e in valid.values():
        info = sf.info(e["noisy_wav"])
        assert info.samplerate == 16000 and abs(e["length"] - info.frames / 16000) < 1e-9


def test_prepare_reports_unpaired_and_misaligned_files(tmp_path):
    root = _copy_mini(tmp_path)
    os.remove(root / "noisy_testset_wav" / "0015.wav")
    with pytest.raises(PrepError, match="only clean: \\['0015'\\]"):
        prepare_vctk(str(root), str(tmp_path / "o1"))
    root2 = _copy_mini(tmp_path / "x")
    x, sr = sf.read(root2 / "noisy_testset_wav" / "0016.wav")
    sf.write(root2 / "noisy_testset_wav" / "0016.wav", x[:-5], sr)
    with pytest.raises(PrepError, match="0016.*aligned"):
        prepare_vctk(str(root2), str(tmp_path / "o2"))
    with pytest.raises(PrepError, match="missing folder"):
        prepare_vctk(str(tmp_path), str(tmp_path / "o3"))


def test_a_folder_prepared_from_other_data_is_refused(tmp_path):
    """Manifests of data A in the output folder, data B asked: refused by prepare_vctk and
    by the recipe before its folder changes (a rerun would train on A while its
    hyperparams.yaml named B); the same data again is fine."""
    a = _copy_mini(tmp_path / "a")
    b = _copy_mini(tmp_path / "b")
    out = tmp_path / "run"
    prepare_vctk(str(a), str(out))
    prepare_vctk(str(a), str(out))
    with pytest.raises(PrepError, match="holds manifests of other data"):
        prepare_vctk(str(b), str(out))
    with pytest.raises(PrepError, match="holds manifests of other data"):
        prepare_vctk(f"{a}/clean_trainset_28spk_wav:{a}/noisy_trainset_28spk_wav", str(out))
    run = subprocess.run([sys.executable, TRAIN, os.path.join(ROOT, "hparams", "smoke.yaml"), f"--output_folder={out}",
                          f"--data_folder={b}", "--num_workers=0"], capture_output=True, text=True, env=RECIPE_ENV)
    assert run.returncode == 2 and "holds manifests of other data" in run.stderr, run.stderr[-2000:]
    assert not (out / "hyperparams.yaml").exists()


def test_a_resampled_copy_follows_its_source(tmp_path):
    """A 48 kHz source replaced after preparation gets a new 16 kHz copy on the next
    preparation, never the stale one."""
    root = _copy_mini(tmp_path)
    for path in glob.glob(str(root / "*" / "*.wav")):
        x, sr = sf.read(path)
        sf.write(path, np.repeat(x, 3), 48000)
    paths = prepare_vctk(str(root), str(tmp_path / "out"))
    entry = json.load(open(paths["train"]))["p287_001"]
    old = sf.read(entry["noisy_wav"])[0]
    x, _ = sf.read(root / "noisy_trainset_28spk_wav" / "p287_001.wav")
    sf.write(root / "noisy_trainset_28spk_wav" / "p287_001.wav", 0.5 * x, 48000)
    for name in ("train", "valid", "test"):
        os.remove(paths[name])
    paths = prepare_vctk(str(root), str(tmp_path / "out"))
    new = sf.read(json.load(open(paths["train"]))["p287_001"]["noisy_wav"])[0]
    assert np.allclose(new, 0.5 * old, atol=1e-4) and not np.allclose(new, old, atol=1e-3)
    # replaced again, by a file with an older time (cp -p, tar, rsync -t): made again too
    sf.write(root / "noisy_trainset_28spk_wav" / "p287_001.wav", 0.25 * x, 48000)
    os.utime(root / "noisy_trainset_28spk_wav" / "p287_001.wav", (1_500_000_000, 1_500_000_000))
    for name in ("train", "valid", "test"):
        os.remove(paths[name])
    paths = prepare_vctk(str(root), str(tmp_path / "out"))
    newer = sf.read(json.load(open(paths["train"]))["p287_001"]["noisy_wav"])[0]
    assert np.allclose(newer, 0.5 * new, atol=1e-4)


def test_a_save_folder_that_holds_the_data_still_reads_its_subfolders(tmp_path):
    """Pairs in subfolders of CLEAN:NOISY folders that lie inside the save folder are all
    read (only the recipe's own copies below the save folder are left out)."""
    data = tmp_path / "mine"
    for side, sub in (("clean", "clean_trainset_28spk_wav"), ("noisy", "noisy_trainset_28spk_wav")):
        for k, path in enumerate(sorted(glob.glob(os.path.join(MINI_SET, sub, "*.wav")))):
            folder = data / side / ("" if k < 2 else f"spk{k % 2}")
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, folder / os.path.basename(path))
    spec = f"{data / 'clean'}:{data / 'noisy'}"
    inside = prepare_vctk(spec, str(tmp_path), valid_split="random")
    apart = prepare_vctk(spec, str(tmp_path / "apart"), valid_split="random")
    for name in ("train", "valid"):
        assert json.load(open(inside[name])) == json.load(open(apart[name]))
    n = sum(len(json.load(open(inside[name]))) for name in ("train", "valid"))
    assert n == len(glob.glob(os.path.join(MINI_SET, "clean_trainset_28spk_wav", "*.wav")))


def test_folders_the_recipe_writes_are_never_read_as_data_wherever_they_are(tmp_path):
    """An enhanced folder moved (enhanced_folder=...) into the data's clean folder, itself
    inside the save folder, is left out of the listing: its files are outputs, not pairs."""
    data = tmp_path / "mine"
    for side, sub in (("clean", "clean_trainset_28spk_wav"), ("noisy", "noisy_trainset_28spk_wav")):
        shutil.copytree(os.path.join(MINI_SET, sub), data / side)
    enhanced = data / "clean" / "enhanced"
    enhanced.mkdir()
    shutil.copy(sorted(glob.glob(str(data / "clean" / "*.wav")))[0], enhanced / "p287_001.wav")
    spec = f"{data / 'clean'}:{data / 'noisy'}"
    paths = prepare_vctk(spec, str(tmp_path), valid_split="random", written=[str(enhanced)])
    n = sum(len(json.load(open(paths[name]))) for name in ("train", "valid"))
    assert n == len(glob.glob(os.path.join(MINI_SET, "clean_trainset_28spk_wav", "*.wav")))
    with pytest.raises(PrepError, match="do not pair up"):  # what the folder is when not named
        prepare_vctk(spec, str(tmp_path / "again"), valid_split="random")


def test_placeholder_in_a_child_file_must_be_given():
    path = os.path.join(ROOT, "hparams", "sim_log1p_demand.yaml")
    with pytest.raises(ConfigError, match="init_from"):
        load_hparams(path, {"data_folder": MINI_SET})
    hp = load_hparams(path, {"data_folder": MINI_SET, "init_from": "x.ckpt"})
    assert hp["init_from"] == "x.ckpt" and hp["input"] == "spectrum" and hp["number_of_epochs"] == 150
