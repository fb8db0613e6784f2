"""Fidelity to the authors' code (issue 15): CNN gradient factor, their validation split and
validation loss, tiled crops at random offsets, and every paper row built at its real shape."""
import contextlib
import gc
import glob
import json
import os
import re
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import MINI_SET, ROOT, SSL_TYPES, TINY, run_recipe, tiny_config

from speechbrain_sslse.data_prep import PrepError, prepare_vctk, split_valid
from speechbrain_sslse import SSLEncoder
from speechbrain_sslse.data import authors_split, random_crop_pair, validation_crop_pair
from speechbrain_sslse.errors import ConfigError
from speechbrain_sslse.hparams import load_hparams
from speechbrain_sslse.param_counts import PUBLISHED
from speechbrain_sslse.ssl_loader import CHECKPOINT_FEATURE_GRAD_MULT, SSL_TYPES as TYPES, default_feature_grad_mult

PAPER_ROWS = sorted(glob.glob(os.path.join(ROOT, "hparams", "table*", "*.yaml"))) + [
    os.path.join(ROOT, "hparams", "wavlm_ws_log1p.yaml")
]


# ---- 1. CNN gradient factor (fairseq's GradMultiply) ------------------------------------
def _grads(source, mode, mult, wav, lengths=None):
    torch.manual_seed(0)
    # float64, so that scaling before or after the CNN's backward rounds alike; eval mode: no dropout
    enc = SSLEncoder(source=source, mode=mode, feature_grad_mult=mult).double()
    out, _ = enc(wav.double(), lengths)
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    (out * weight).sum().backward()
    return {n: p.grad for n, p in enc.named_parameters()}


@pytest.mark.parametrize("model_type", SSL_TYPES)
@pytest.mark.parametrize("padded", [False, True], ids=["full", "padded"])
def test_cnn_gradient_is_feature_grad_mult_times_the_unscaled_one(model_type, padded, tiny_folders):
    wav = torch.randn(2, 6000, generator=torch.Generator().manual_seed(2))
    lengths = torch.tensor([6000, 4100]) if padded else None
    ref = _grads(tiny_folders[model_type], "entire", 1.0, wav, lengths)
    cnn = [n for n in ref if n.startswith("model.feature_extractor.")]
    assert cnn and all(ref[n] is not None and ref[n].abs().sum() > 0 for n in cnn)
    # 0.125, a power of two, commutes with every rounding: the CNN gradient is bit for bit
    # 0.125 x the unscaled one; 0.1 (the Base checkpoints' value) agrees to float64 rounding
    for mult in (0.125, 0.1):
        scaled = _grads(tiny_folders[model_type], "entire", mult, wav, lengths)
        for name, g in ref.items():
            if name in cnn:
                if mult == 0.125:
                    assert torch.equal(scaled[name], mult * g), name
                else:
                    assert (scaled[name] - mult * g).abs().max() <= 1e-13 * g.abs().max(), name
            elif g is None:
                assert scaled[name] is None, name
            else:  # the LayerNorm and projection after the CNN, the transformer, the weighted sum
                assert torch.equal(scaled[name], g), name
    # 0: the CNN gets no gradient at all (fairseq runs it without autograd), the rest as before
    off = _grads(tiny_folders[model_type], "entire", 0.0, wav, lengths)
    assert all(off[n] is None for n in cnn)
    assert all(torch.equal(off[n], g) for n, g in ref.items() if n not in cnn and g is not None)


def test_feature_grad_mult_defaults_to_the_checkpoints_value():
    # the published shapes (speechbrain_sslse.param_counts restates their config.json) give the
    # value stored with the checkpoints the authors load
    hub = {"WavLM Base+": "microsoft/wavlm-base-plus", "HuBERT Base": "facebook/hubert-base-ls960",
           "wav2vec 2.0 Base": "facebook/wav2vec2-base", "WavLM Large": "microsoft/wavlm-large"}
    for name, (model_type, overrides, _) in PUBLISHED.items():
        cfg = TYPES[model_type][0](**overrides)
        hub_id = next(v for k, v in hub.items() if name.startswith(k))
        assert default_feature_grad_mult(cfg) == CHECKPOINT_FEATURE_GRAD_MULT[hub_id], name
    large_cnn = tiny_config(feat_extract_norm="layer", do_stable_layer_norm=True)
    assert SSLEncoder(config=tiny_config(), mode="entire").feature_grad_mult == 0.1
    assert SSLEncoder(config=large_cnn, mode="entire").feature_grad_mult == 1.0
    assert SSLEncoder(config=tiny_config(), mode="entire", feature_grad_mult=0.5).feature_grad_mult == 0.5
    for bad in (-1, "half", None):
        with pytest.raises(ConfigError, match="feature_grad_mult"):
            SSLEncoder(config=tiny_config(), feature_grad_mult=bad)


def test_feature_grad_mult_leaves_partial_and_frozen_modes_alone():
    """The multiplier scales only the CNN's gradient: where the CNN does not train (PF) the
    transformer's gradients are those of mult 1.0, and a frozen encoder gets none at all."""
    wav = torch.randn(1, 5000)
    grads = {}
    for mult in (0.1, 1.0):
        torch.manual_seed(0)
        enc = SSLEncoder(config=tiny_config(), mode="partial", feature_grad_mult=mult)
        out, _ = enc(wav)
        assert out.requires_grad
        out.sum().backward()
        assert all(p.grad is None for p in enc.model.feature_extractor.parameters())
        grads[mult] = [p.grad.clone() for p in enc.model.encoder.parameters() if p.grad is not None]
    assert grads[0.1] and all(torch.equal(a, b) for a, b in zip(grads[0.1], grads[1.0]))
    torch.manual_seed(0)
    enc = SSLEncoder(config=tiny_config(), mode="frozen", feature_grad_mult=0.1)
    out, _ = enc(wav)
    out.sum().backward()  # (the weighted sum's LayerNorms and weights train)
    assert all(p.grad is None for p in enc.model.parameters())


# ---- 2. the authors' validation split ----------------------------------------------------
def _vbd_like_names(n_speakers=28, per_speaker=413):
    rng = np.random.RandomState(0)
    names = [f"p{226 + s:03d}_{u:03d}.wav" for s in range(n_speakers) for u in range(1, per_speaker + 1)]
    return [names[i] for i in rng.permutation(len(names))]  # as a directory listing might come


@pytest.mark.parametrize("n", [2, 6, 20, 21, 777, 11572])  # 11572: VoiceBank-DEMAND's training set
def test_authors_split_is_scikit_learns(n):
    from sklearn import model_selection as sklearn  # in the test extra: a broken install fails, never skips
    files = sorted(f"/data/noisy_trainset_28spk_wav_16k/{name}" for name in _vbd_like_names()[:n])
    want_train, want_valid = sklearn.train_test_split(files, test_size=0.05, random_state=13162)
    train, valid = authors_split(files)
    assert train == want_train and valid == want_valid  # same utterances, same order
    if n == 11572:
        assert len(valid) == 579


def _write_pair(root, subset, name, n=480):
    clean_dir, noisy_dir = {"train": ("clean_trainset_28spk_wav", "noisy_trainset_28spk_wav"),
                            "test": ("clean_testset_wav", "noisy_testset_wav")}[subset]
    x = np.random.RandomState(len(name)).randn(n).astype("float32") * 0.1
    for d in (clean_dir, noisy_dir):
        os.makedirs(root / d, exist_ok=True)
        sf.write(root / d / name, x, 16000)


def test_prepare_writes_the_authors_split_in_their_order(tmp_path):
    from sklearn import model_selection as sklearn  # in the test extra: a broken install fails, never skips
    root = tmp_path / "vbd"
    # one name whose file-name order differs from its stem order ('-' sorts before '.')
    names = sorted(_vbd_like_names(4, 10)[:39]) + ["p226_001-b.wav"]
    for name in names:
        _write_pair(root, "train", name)
    _write_pair(root, "test", "p232_001.wav")
    # the authors' list: util.get_filepaths = sorted paths of the .wav files under the folder
    noisy = sorted(glob.glob(str(root / "noisy_trainset_28spk_wav" / "*.wav")))
    want_train, want_valid = sklearn.train_test_split(noisy, test_size=0.05, random_state=13162)
    stem = lambda paths: [os.path.splitext(os.path.basename(p))[0] for p in paths]  # noqa: E731
    paths = prepare_vctk(str(root), str(tmp_path / "out"), valid_split="authors")
    assert list(json.load(open(paths["train"]))) == stem(want_train)
    assert list(json.load(open(paths["valid"]))) == stem(want_valid)
    assert json.load(open(tmp_path / "out" / "prep.json"))["random_state"] == 13162
    # the other splits stay available; a too-small set is a clear error
    entries = json.load(open(paths["train"])) | json.load(open(paths["valid"]))
    rest, valid = split_valid(entries, "random", 0.05, 999)
    assert len(valid) == 2 and not set(rest) & set(valid)
    with pytest.raises(PrepError, match="authors' split"):
        split_valid(dict(list(entries.items())[:1]), "authors", 0.05, 999)


# ---- 3. validation loss on one fresh crop per utterance and epoch -------------------------
def test_validation_crops_are_reproducible_per_epoch_and_fresh_each_epoch():
    x = torch.arange(50000, dtype=torch.float32)
    crop = lambda epoch, uid="p226_001", seed=999: validation_crop_pair(x, -x, seed, epoch, uid)  # noqa: E731
    starts = []
    for epoch in range(1, 9):
        n, c = crop(epoch)
        m, d = crop(epoch)
        assert torch.equal(n, m) and torch.equal(c, d) and len(n) == 20480
        start = int(n[0])
        assert torch.equal(n, x[start : start + 20480]) and torch.equal(c, -n)  # no gain
        starts.append(start)
    assert len(set(starts)) == len(starts)  # a new crop each epoch
    assert int(crop(1, uid="p226_002")[0][0]) != starts[0]
    assert int(crop(1, seed=1)[0][0]) != starts[0]


def test_validation_crops_of_a_manifest_are_reproducible_per_epoch_and_fresh_each_epoch(tmp_path):
    """The recipe's valid_mode=crop pipeline: ``validation_crop_pair(noisy, clean, seed,
    epoch, utterance id, crop_samples)`` on the files of the validation manifest."""
    h = load_hparams(os.path.join(ROOT, "hparams", "smoke.yaml"),
                     {"data_folder": MINI_SET, "output_folder": str(tmp_path / "run"), "valid_mode": "crop",
                      "valid_split": "authors"})
    paths = prepare_vctk(MINI_SET, str(tmp_path / "run"), valid_split="authors")
    entry = json.load(open(paths["valid"]))
    uid = next(iter(entry))
    full = torch.tensor(sf.read(entry[uid]["noisy_wav"], dtype="float32")[0])
    full_clean = torch.tensor(sf.read(entry[uid]["clean_wav"], dtype="float32")[0])
    crop = h["crop_samples"]
    assert crop == 20480 and len(full) > crop
    seen = []
    for epoch in (1, 1, 2, 3):
        noisy, clean = validation_crop_pair(full, full_clean, h["seed"], epoch, uid, crop)
        assert len(noisy) == 20480 and len(clean) == 20480
        start = int(torch.argmin((full.unfold(0, 20480, 1)[:, :64] - noisy[:64]).abs().sum(1)))
        assert torch.equal(full[start : start + 20480], noisy)  # an exact window: no gain
        assert torch.equal(full_clean[start : start + 20480], clean)  # the same window of both
        seen.append(start)
    assert seen[0] == seen[1] and len(set(seen)) == 3


def test_recipe_validates_on_epoch_crops_and_says_so(tmp_path):
    run_recipe(tmp_path / "run", "--valid_mode=crop", "--valid_split=authors", "--number_of_epochs=1",
               "--train_repeats=1")
    log = open(tmp_path / "run" / "train_log.txt").read()
    assert "validation: valid_mode=crop (one random 20480-sample crop per utterance and epoch, no gain, seed 999)" in log
    assert re.search(r"^epoch: 1 - .* valid loss: ", log, re.M)  # it validated
    for name in os.listdir(tmp_path / "run" / "enhanced_wavs"):  # the test set stays whole
        noisy = os.path.join(MINI_SET, "noisy_testset_wav", name)
        assert sf.info(tmp_path / "run" / "enhanced_wavs" / name).frames == sf.info(noisy).frames > 20480
    bad = run_recipe(tmp_path / "bad", "--valid_mode=crops", check=False)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: valid_mode must be one of"), bad.stderr[-2000:]


# ---- 4. short utterances: tiled, then cropped at a random offset --------------------------
def test_tiled_crop_offsets_vary():
    x = torch.arange(5000, dtype=torch.float32)  # 0.31 s: tiled to 5 copies
    tiled = x.repeat(20480 // 5000 + 1)
    starts = set()
    for seed in range(40):
        n, c = random_crop_pair(x, x + 1, generator=torch.Generator().manual_seed(seed))
        start = int(n[0])
        assert len(n) == 20480 and torch.equal(c, n + 1)
        assert torch.equal(n, tiled[start : start + 20480])  # a window of the tiled signal
        starts.add(start)
    assert len(starts) >= 30 and min(starts) >= 0 and max(starts) < 5000
    # exactly one crop long: tiled too (the authors tile when n <= crop), so it rotates
    y = torch.arange(20480, dtype=torch.float32)
    assert len({int(random_crop_pair(y, y)[0][0]) for _ in range(20)}) > 1
    # one sample longer: not tiled, offsets 0 or 1
    z = torch.arange(20481, dtype=torch.float32)
    assert {int(random_crop_pair(z, z)[0][0]) for _ in range(40)} == {0, 1}


# ---- 5. every paper row at its published shape, offline ----------------------------------
def _write_safetensors(path, shapes, buf):
    """A safetensors file (8-byte header size, JSON header, raw float32 data) whose tensors
    are consecutive slices of ``buf``, written without copying them first: ~10x faster
    than initialising and saving 315 M parameters one by one."""
    header, offset, pieces = {"__metadata__": {"format": "pt"}}, 0, []
    for key, shape in shapes.items():
        n = shape.numel()
        start = offset % (len(buf) - n)
        pieces.append(buf[start : start + n])
        header[key] = {"dtype": "F32", "shape": list(shape), "data_offsets": [4 * offset, 4 * (offset + n)]}
        offset += n
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(len(blob).to_bytes(8, "little") + blob)
        for piece in pieces:
            f.write(memoryview(piece.numpy()).cast("B"))


@pytest.fixture(scope="module")
def published_folders(tmp_path_factory):
    """save_pretrained-style folders (config.json + model.safetensors) of the four published
    encoder shapes (speechbrain_sslse.param_counts), with random weights."""
    buf = torch.randn(10_000_000, generator=torch.Generator().manual_seed(0)) * 0.02
    folders = {}
    root = tmp_path_factory.mktemp("published")
    for name, (model_type, overrides, _) in PUBLISHED.items():
        cfg_cls, model_cls = TYPES[model_type]
        cfg = cfg_cls(**overrides)
        with torch.device("meta"):
            shapes = {k: v.shape for k, v in model_cls(cfg).state_dict().items()}
        folder = root / re.sub(r"\W+", "_", name)
        cfg.save_pretrained(folder)
        _write_safetensors(folder / "model.safetensors", shapes, buf)
        folders[name] = str(folder)
    yield folders
    shutil.rmtree(root, ignore_errors=True)  # ~2.4 GB


ROW_SHAPES = {"wavlm_large": "WavLM Large (microsoft/wavlm-large)", "wavlm": "WavLM Base+ (microsoft/wavlm-base-plus)",
              "hubert": "HuBERT Base (facebook/hubert-base-ls960)", "wav2vec2": "wav2vec 2.0 Base (facebook/wav2vec2-base)"}


@pytest.mark.parametrize("path", PAPER_ROWS, ids=lambda p: os.path.relpath(p, ROOT))
def test_paper_row_builds_its_published_shape_offline(path, published_folders, tmp_path):
    """Each row, given ``--ssl_source`` = a local folder of the published shape, builds its
    enhancer offline: encoder size and depth, weighted-sum layers, head input, CNN gradient
    factor, weights read from the folder, and (frozen rows) a forward pass. TFS rows take only the
    folder's config and initialise randomly: they are built on the meta device (shapes
    only; 315 M random parameters would take seconds to initialise)."""
    row = os.path.basename(path)[:-5]
    overrides = {"data_folder": "/nonexistent", "output_folder": str(tmp_path)}
    if row == "log1p":
        h = load_hparams(path, overrides)
        assert h["enhancer"].ssl is None and h["enhancer"].masker.proj.in_features == 201
        assert (h["valid_split"], h["valid_mode"]) == ("authors", "crop")
        return
    name = ROW_SHAPES["wavlm_large" if row.startswith("wavlm_large") else row.split("_")[0]]
    model_type, shape, n_layers = PUBLISHED[name]
    scratch = "_tfs" in row
    with torch.device("meta") if scratch else contextlib.nullcontext():
        h = load_hparams(path, dict(overrides, ssl_source=published_folders[name]))
    assert (h["valid_split"], h["valid_mode"]) == ("authors", "crop")  # the authors' validation
    enh = h["enhancer"]
    enc = enh.ssl
    dim = shape.get("hidden_size", 768)
    assert enc.model_type == model_type and enc.output_size == dim
    assert enc.model.config.num_hidden_layers == shape.get("num_hidden_layers", 12)
    assert enc.model.config.feat_extract_norm == shape.get("feat_extract_norm", "group")
    if enc.output == "weighted_sum":
        assert len(enc.layer_ids) == n_layers == len(enc.layer_sum.norms)
    assert enh.masker.proj.in_features == dim + (201 if enh.input == "cross" else 0)
    assert enc.feature_grad_mult == (1.0 if "large" in row else 0.1)
    if scratch:
        assert enc.mode == "scratch" and all(p.is_meta for p in enc.model.parameters())
        return
    from safetensors import safe_open

    with safe_open(os.path.join(published_folders[name], "model.safetensors"), "pt") as f:
        key = "encoder.layers.0.attention.k_proj.weight"  # read from the folder, not initialised
        assert torch.equal(enc.model.state_dict()[key], f.get_tensor(key))
    if enc.mode != "frozen":  # PF / EF run the same forward in eval mode: one per shape is enough
        del h, enh, enc
        gc.collect()
        return
    with torch.no_grad():
        enh.eval()
        out = enh(torch.randn(1, 4800))
    assert out.enhanced.shape == (1, 31, 201) and torch.isfinite(out.enhanced).all()
    del h, enh, enc, out
    gc.collect()  # the hparams hold reference cycles: free the encoder now, not at the next collection


# ---- the README's table of paper rows ------------------------------------------------------
def test_readme_lists_every_paper_row():
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    section = text.split("## Paper rows", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`(hparams/[\w/]+\.yaml)`", section))
    assert listed == {os.path.relpath(p, ROOT) for p in PAPER_ROWS}
    for rel in listed:  # the command in each line names the same file
        line = next(ln for ln in section.splitlines() if f"`{rel}`" in ln)
        assert f"train.py {rel}" in line


def test_fidelity_doc_covers_the_issue():
    doc = open(os.path.join(ROOT, "docs", "fidelity.md"), encoding="utf-8").read().lower()
    for topic in ("layernorm", "shuffl", "sox", "metric", "tfs", "cn distance", "feature_grad_mult",
                  "base+", "hidden states", "13162"):
        assert topic in doc, topic
