"""SSL lobe: loading, modes, hidden states vs transformers, weighted sum."""
import pytest
import torch
from conftest import SSL_TYPES, tiny_config

from speechbrain_sslse import SSLEncoder, EnhancementModel
from speechbrain_sslse.ssl_loader import SSL_TYPES as TYPES, SSLSourceError, load_ssl_model


def _grad_names(mode):
    enh = EnhancementModel(SSLEncoder(config=tiny_config(), mode=mode), input="cross")
    enh.train()
    out = enh(torch.randn(2, 8000))
    out.enhanced.mean().backward()
    return enh, {n for n, p in enh.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


@pytest.mark.parametrize("mode", ["frozen", "partial", "entire", "scratch"])
def test_gradients_per_mode(mode):
    enh, got = _grad_names(mode)
    names = {n for n, _ in enh.named_parameters()}
    head = {n for n in names if n.startswith("masker.") or n.startswith("ssl.layer_sum.")}
    cnn = {n for n in names if n.startswith("ssl.model.feature_extractor.")}
    rest = names - head - cnn
    # masked_spec_embed is only used by SpecAugment, which the method disables
    rest = {n for n in rest if "masked_spec_embed" not in n}
    assert head <= got
    if mode == "frozen":
        assert got == head
    elif mode == "partial":
        assert rest <= got and not (cnn & got)
    else:
        assert rest <= got and cnn <= got
    # parameter groups handed to the two optimisers partition what trains
    trainable = {id(p) for p in enh.parameters() if p.requires_grad}
    groups = {id(p) for p in enh.head_parameters()} | {id(p) for p in enh.ssl_parameters()}
    assert groups == trainable


@pytest.mark.parametrize("extra,enc_kwargs,idle", [
    ({"do_stable_layer_norm": True, "feat_extract_norm": "layer"}, {"mode": "partial"}, ["encoder.layer_norm."]),
    ({}, {"mode": "entire", "feature_grad_mult": 0}, ["feature_extractor."]),
    ({}, {"mode": "entire", "layers": [0, 1]}, ["encoder.layers.1.", "encoder.layers.2."]),
    ({"do_stable_layer_norm": True, "feat_extract_norm": "layer"}, {"mode": "entire", "output": "last"}, []),
])
def test_every_trainable_parameter_gets_a_gradient(extra, enc_kwargs, idle):
    """What DistributedDataParallel needs: a Large encoder's final LayerNorm (weighted sum),
    a CNN with gradient factor 0 and layers above the highest one summed feed nothing, so
    they are frozen; every parameter left trainable gets a gradient."""
    enh = EnhancementModel(SSLEncoder(config=tiny_config(**extra), **enc_kwargs), input="cross")
    enh.train()
    enh(torch.randn(2, 8000)).enhanced.mean().backward()
    frozen = {n for n, p in enh.ssl.model.named_parameters() if not p.requires_grad and "masked_spec_embed" not in n}
    expected = {n for n, _ in enh.ssl.model.named_parameters() if any(n.startswith(i) for i in idle)}
    if enc_kwargs["mode"] == "partial":
        expected |= {n for n, _ in enh.ssl.model.named_parameters() if n.startswith("feature_extractor.")}
    assert frozen == expected
    no_grad = [n for n, p in enh.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, no_grad


def test_frozen_encoder_stays_in_eval_mode():
    enc = SSLEncoder(config=tiny_config(), mode="frozen")
    enh = EnhancementModel(enc)
    enh.train()  # what Brain does every epoch
    assert enh.masker.training and enc.layer_sum.training
    assert not any(m.training for m in enc.model.modules())
    x = torch.randn(1, 8000)
    a, _ = enc(x)
    b, _ = enc(x)
    assert torch.equal(a, b)  # no dropout


@pytest.mark.parametrize("model_type", SSL_TYPES)
def test_hidden_states_match_transformers(model_type, tiny_folders):
    enc = SSLEncoder(source=tiny_folders[model_type], mode="frozen", layers="all")
    ref = TYPES[model_type][1].from_pretrained(tiny_folders[model_type], local_files_only=True).eval()
    x = torch.randn(3, 12000)
    # full-length batch
    states, lens, last = enc.hidden_states(x)
    with torch.no_grad():
        hf = ref(x, output_hidden_states=True)
    assert len(states) == len(hf.hidden_states) == ref.config.num_hidden_layers + 1
    for a, b in zip(states, hf.hidden_states):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(last, hf.last_hidden_state, atol=1e-5, rtol=1e-5)
    # padded batch: each item equals transformers on that utterance alone
    lengths = torch.tensor([12000, 9001, 4003])
    states, lens, _ = enc.hidden_states(x, lengths)
    for i, n in enumerate(lengths.tolist()):
        with torch.no_grad():
            single = ref(x[i : i + 1, :n], output_hidden_states=True).hidden_states
        assert int(lens[i]) == single[0].shape[1]
        for a, b in zip(states, single):
            torch.testing.assert_close(a[i, : int(lens[i])], b[0], atol=1e-5, rtol=1e-5)


def test_default_layer_counts_follow_the_authors():
    n = tiny_config()["num_hidden_layers"]
    assert len(SSLEncoder(config=tiny_config("wavlm")).layer_ids) == n + 1
    assert SSLEncoder(config=tiny_config("hubert")).layer_ids == list(range(1, n + 1))
    assert SSLEncoder(config=tiny_config("wav2vec2")).layer_ids == list(range(1, n + 1))
    assert SSLEncoder(config=tiny_config("hubert"), layers="all").layer_ids == list(range(n + 1))


def test_local_folder_loads_offline_with_method_overrides(tiny_folders, monkeypatch):
    import huggingface_hub

    def no_network(*a, **k):
        raise AssertionError("the hub was contacted")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    model = load_ssl_model(tiny_folders["wavlm"])
    assert model.config.layerdrop == 0.0 and model.config.mask_time_prob == 0.0
    assert model.config.apply_spec_augment is False
    saved = TYPES["wavlm"][1].from_pretrained(tiny_folders["wavlm"], local_files_only=True)
    ours, theirs = model.state_dict(), saved.state_dict()
    # masked_spec_embed exists only for SpecAugment, which the method switches off
    assert set(ours) == set(theirs) - {"masked_spec_embed"}
    for k, v in ours.items():
        assert torch.equal(v, theirs[k]), k
    # scratch (TFS): same architecture from the folder's config, random weights
    scratch = load_ssl_model(tiny_folders["wavlm"], random_init=True)
    assert not torch.equal(next(iter(scratch.parameters())), next(iter(saved.parameters())))


def test_source_errors_are_clear(tmp_path):
    with pytest.raises(SSLSourceError, match="does not exist"):
        load_ssl_model(str(tmp_path / "missing"))
    with pytest.raises(SSLSourceError, match="no config.json"):
        load_ssl_model(str(tmp_path))
    only_config = tmp_path / "only_config"
    only_config.mkdir()
    TYPES["wavlm"][0](**tiny_config()).save_pretrained(only_config)  # config.json, no weights
    with pytest.raises(SSLSourceError, match="weights could not be loaded"):
        load_ssl_model(str(only_config))
    with pytest.raises(SSLSourceError, match="Unknown SSL model_type"):
        load_ssl_model(config={"model_type": "whisper"})
    with pytest.raises(ValueError, match="Unknown SSL mode"):
        SSLEncoder(config=tiny_config(), mode="finetune")


def test_weighted_sum_weights_are_a_distribution_that_learns():
    enh = EnhancementModel(SSLEncoder(config=tiny_config(), mode="frozen"))
    w0 = enh.layer_weights.clone()
    assert torch.allclose(w0, torch.full_like(w0, 1 / len(w0)))
    opt = torch.optim.Adam(enh.head_parameters(), lr=1e-2)
    x, clean = torch.randn(2, 8000), torch.randn(2, 8000) * 0.1
    for _ in range(3):
        out = enh(x)
        loss = (out.enhanced - enh.log_spectrum(clean)).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    w = enh.layer_weights
    assert (w >= 0).all() and torch.isclose(w.sum(), torch.tensor(1.0))
    assert not torch.allclose(w, w0)


def test_last_layer_output_is_the_encoder_output(tiny_folders):
    enc = SSLEncoder(source=tiny_folders["hubert"], output="last")
    ref = TYPES["hubert"][1].from_pretrained(tiny_folders["hubert"], local_files_only=True).eval()
    x = torch.randn(2, 8000)
    feats, _ = enc(x)
    assert enc.layer_sum is None
    with torch.no_grad():
        torch.testing.assert_close(feats, ref(x).last_hidden_state, atol=1e-5, rtol=1e-5)



@pytest.mark.parametrize("model_type", SSL_TYPES)
def test_large_shape_last_state_is_the_layer_output_before_the_final_layernorm(model_type):
    """Large (stable-layer-norm) encoders: the weighted sum's last state is the last layer's
    output before the encoder's final LayerNorm, as in the authors' unilm / fairseq
    ``layer_results`` (docs/fidelity.md, item 9); the LL output is after it. The tiny models
    of test_hidden_states_match_transformers are Base-shaped, where the two coincide."""
    enc = SSLEncoder(config=tiny_config(model_type, do_stable_layer_norm=True, feat_extract_norm="layer"),
                     mode="frozen", layers="all")
    x = torch.randn(2, 12000)
    states, _, last = enc.hidden_states(x)
    with torch.no_grad():
        hf = enc.model(x, output_hidden_states=True)
        normed = enc.model.encoder.layer_norm(states[-1])
    assert len(states) == len(hf.hidden_states)
    for a, b in zip(states, hf.hidden_states):  # transformers 5 records the layers' outputs too
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(last, hf.last_hidden_state, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(normed, last, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(states[-1], last, atol=1e-3)


def test_warm_start_of_a_fine_tuned_encoder_from_a_frozen_encoder_checkpoint(tiny_folders, tmp_path):
    """The head of a frozen-encoder run (its checkpoint holds no encoder weights) warm-starts
    a PF / EF run on the same hub encoder: the head comes from the checkpoint, the encoder
    keeps its pretrained weights. (It was refused as missing ssl.model.* keys.) A random
    (scratch) encoder has no pretrained weights to keep: still refused."""
    source = tiny_folders["wavlm"]
    torch.manual_seed(3)
    frozen = EnhancementModel(SSLEncoder(source=source, mode="frozen"), input="cross")
    path = str(tmp_path / "enhancer.ckpt")
    frozen._save(path)
    for mode in ("partial", "entire"):
        tuned = EnhancementModel(SSLEncoder(source=source, mode=mode), input="cross")
        hub = {k: v.clone() for k, v in tuned.state_dict().items() if k.startswith("ssl.model.")}
        tuned._transfer(path)
        state = tuned.state_dict()
        assert all(torch.equal(state[k], v) for k, v in hub.items())
        assert all(torch.equal(state[k], v) for k, v in frozen.checkpoint_state_dict().items())
    scratch = EnhancementModel(SSLEncoder(source=source, mode="scratch"), input="cross")
    with pytest.raises(RuntimeError, match="missing"):
        scratch._transfer(path)
