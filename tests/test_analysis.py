"""CN distance, correlation, weights and plots."""
import json
import os

import matplotlib.image as mpimg
import numpy as np
import pytest
import scipy.stats
import torch
from conftest import MINI_SET, tiny_config

from speechbrain_sslse import SSLEncoder
from speechbrain_sslse.analysis import analyze, cn_distance_from_states, cn_distances, minmax, pearson


def _manifest(tmp_path):
    items = {}
    for name in sorted(os.listdir(os.path.join(MINI_SET, "clean_trainset_28spk_wav"))):
        items[name[:-4]] = {"clean_wav": os.path.join(MINI_SET, "clean_trainset_28spk_wav", name),
                            "noisy_wav": os.path.join(MINI_SET, "noisy_trainset_28spk_wav", name)}
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps(items))
    return str(path)


def test_identical_clean_and_noisy_give_zero_everywhere(tmp_path):
    enc = SSLEncoder(config=tiny_config(), layers="all")
    clean = os.path.join(MINI_SET, "clean_trainset_28spk_wav", "p287_001.wav")
    d = cn_distances(enc, [(clean, clean), (clean, clean)], progress=False)
    assert d.shape == (2, 4) and np.all(d == 0)


def test_a_change_at_one_layer_shows_there():
    enc = SSLEncoder(config=tiny_config(), layers="all").eval()
    x = torch.randn(1, 16000)
    clean, _, _ = enc.hidden_states(x)
    k = 2  # perturb the output of transformer layer 2 (hidden state index 2)
    handle = enc.model.encoder.layers[k - 1].register_forward_hook(
        lambda m, a, out: (out[0] + 0.5 * torch.randn_like(out[0]),) + tuple(out[1:])
    )
    noisy, _, _ = enc.hidden_states(x)
    handle.remove()
    d = cn_distance_from_states([s[0] for s in clean], [s[0] for s in noisy])
    assert np.all(d[:k] == 0) and d[k] > 0
    assert np.argmax(d > 0) == k


def test_pearson_matches_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(13), rng.standard_normal(13)
    assert pearson(a, b) == pytest.approx(scipy.stats.pearsonr(a, b)[0], abs=1e-12)
    assert pearson(a, 2 * a + 1) == pytest.approx(1.0)
    assert minmax(np.array([2.0, 4.0, 3.0])).tolist() == [0.0, 1.0, 0.5]


def test_analyze_writes_csv_json_and_pngs(tmp_path):
    cfg = tmp_path / "tiny_wavlm.json"
    cfg.write_text(json.dumps(tiny_config()))
    weights = tmp_path / "weights.json"
    weights.write_text(json.dumps({"weights": [0.1, 0.2, 0.3, 0.4]}))
    out = tmp_path / "out"
    other = tmp_path / "tiny_wavlm_before.json"
    other.write_text(json.dumps(tiny_config()))
    with pytest.raises(ValueError, match="same label"):  # its figures would overwrite the first ones
        analyze(str(cfg), _manifest(tmp_path), str(out), n_pairs=4, compare=str(cfg), batch_size=3)
    with pytest.raises(ValueError, match="leaves no layer"):
        analyze(str(cfg), _manifest(tmp_path), str(out), n_pairs=4, drop_last=4, batch_size=3)
    s = analyze(str(cfg), _manifest(tmp_path), str(out), n_pairs=4, weights_from=str(weights),
                compare=str(other), batch_size=3)
    assert set(s["sources"]) == {"tiny_wavlm", "tiny_wavlm_before"}
    entry = s["sources"]["tiny_wavlm"]
    assert len(entry["mean"]) == 4 and entry["pearson_weights_vs_cn"] == pytest.approx(
        scipy.stats.pearsonr([0.1, 0.2, 0.3, 0.4], entry["mean"])[0])
    assert s["pairs"] == 4
    lines = open(out / "cn_distance_tiny_wavlm.csv").read().splitlines()
    assert lines[0].startswith("layer,mean,std,mean_minmax,weight,pair0") and len(lines) == 5
    for png in ("fig2_tiny_wavlm.png", "fig3_compare.png"):
        assert open(out / png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
        assert mpimg.imread(out / png).shape[:2] == (450, 800)


def test_batched_distances_equal_one_pair_at_a_time(tmp_path):
    enc = SSLEncoder(config=tiny_config("hubert"), layers="all")
    pairs = [(c, n) for c, n in [tuple(v.values()) for v in json.load(open(_manifest(tmp_path))).values()]][:3]
    one = cn_distances(enc, pairs, batch_size=1, progress=False)
    batched = cn_distances(enc, pairs, batch_size=3, progress=False)
    np.testing.assert_allclose(one, batched, rtol=1e-4)


def test_analysis_outputs_are_consistent_and_strict(tmp_path, capsys):
    """Checks come before anything is written (a label clash, bad --weights-from JSON);
    a rerun into the same folder leaves none of the earlier run's files behind; sources
    with different layers say why there is no Fig. 3; a flat curve's Pearson is null."""
    cfg = tmp_path / "tiny_wavlm.json"
    cfg.write_text(json.dumps(tiny_config()))
    deep = tmp_path / "deeper.json"
    deep.write_text(json.dumps(tiny_config(num_hidden_layers=4)))
    out = tmp_path / "out"
    manifest = _manifest(tmp_path)
    clash = tmp_path / "other"
    clash.mkdir()
    (clash / "tiny_wavlm.json").write_text(json.dumps(tiny_config()))
    with pytest.raises(ValueError, match="same label"):
        analyze(str(cfg), manifest, str(out), n_pairs=2, compare=str(clash / "tiny_wavlm.json"))
    for bad in ({"w": [1]}, [0.25, 0.25, 0.25, 0.25], {"weights": "x"}):
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        with pytest.raises(ValueError, match="weights"):
            analyze(str(cfg), manifest, str(out), n_pairs=2, weights_from=str(tmp_path / "bad.json"))
    assert not out.exists()
    other = tmp_path / "tiny_wavlm_before.json"
    other.write_text(json.dumps(tiny_config()))
    analyze(str(cfg), manifest, str(out), n_pairs=2, compare=str(other))
    assert (out / "fig3_compare.png").exists()
    s = analyze(str(deep), manifest, str(out), n_pairs=2, compare=str(cfg))
    assert "different layers" in s["fig3"] and "different layers" in capsys.readouterr().out
    assert sorted(os.listdir(out)) == sorted(["summary.json", "cn_distance_deeper.csv", "cn_distance_tiny_wavlm.csv",
                                              "fig2_deeper.png", "fig2_tiny_wavlm.png"])
    (tmp_path / "flat.json").write_text(json.dumps({"weights": [0.25] * 4}))
    s = analyze(str(cfg), manifest, str(out), n_pairs=2, weights_from=str(tmp_path / "flat.json"))
    text = open(out / "summary.json").read()
    assert s["sources"]["tiny_wavlm"]["pearson_weights_vs_cn"] is None and "NaN" not in text


def test_a_failed_rerun_keeps_the_earlier_analysis_and_mismatched_pairs_are_refused(tmp_path):
    """The distances are computed before an earlier analysis is replaced: a pair that fails
    (here a noisy file 1 s shorter than its clean one, which would not line up frame by frame)
    is one clear error and leaves the earlier folder as it was."""
    import soundfile as sf

    cfg = tmp_path / "tiny_wavlm.json"
    cfg.write_text(json.dumps(tiny_config()))
    out = tmp_path / "out"
    analyze(str(cfg), _manifest(tmp_path), str(out), n_pairs=2)
    before = {name: (out / name).read_bytes() for name in os.listdir(out)}
    clean = os.path.join(MINI_SET, "clean_trainset_28spk_wav", "p287_001.wav")
    audio, sr = sf.read(clean)
    sf.write(tmp_path / "short.wav", audio[:-sr], sr)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"a": {"clean_wav": clean, "noisy_wav": str(tmp_path / "short.wav")}}))
    with pytest.raises(ValueError, match="not a clean/noisy pair"):
        analyze(str(cfg), str(bad), str(out), n_pairs=0)
    assert {name: (out / name).read_bytes() for name in os.listdir(out)} == before


def test_analysis_never_overwrites_files_it_did_not_write(tmp_path):
    """An evaluation's summary.json (no analysis record) or a figure of the user's with an
    analysis file's name is refused before any work; an empty manifest is one clear error."""
    cfg = tmp_path / "tiny_wavlm.json"
    cfg.write_text(json.dumps(tiny_config()))
    manifest = _manifest(tmp_path)
    scores = tmp_path / "scores"
    scores.mkdir()
    (scores / "summary.json").write_text(json.dumps({"systems": {"x": {"pesq": 2.0}}}))
    with pytest.raises(ValueError, match="not written by sslse-analyze"):
        analyze(str(cfg), manifest, str(scores), n_pairs=2)
    assert json.loads((scores / "summary.json").read_text()) == {"systems": {"x": {"pesq": 2.0}}}
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "fig2_tiny_wavlm.png").write_bytes(b"my figure")
    with pytest.raises(ValueError, match="fig2_tiny_wavlm.png, which no earlier analysis wrote"):
        analyze(str(cfg), manifest, str(mine), n_pairs=2)
    assert (mine / "fig2_tiny_wavlm.png").read_bytes() == b"my figure"
    analyze(str(cfg), manifest, str(tmp_path / "out"), n_pairs=2)
    analyze(str(cfg), manifest, str(tmp_path / "out"), n_pairs=2)  # its own earlier files: replaced
    # a run killed after its record and some files: the rerun knows them as its own
    record = json.loads((tmp_path / "out" / "summary.json").read_text())
    (tmp_path / "out" / "summary.json").write_text(json.dumps({**record, "sources": {"tiny_wavlm": None},
                                                               "complete": False}))
    os.remove(tmp_path / "out" / "fig2_tiny_wavlm.png")
    assert "tiny_wavlm" in analyze(str(cfg), manifest, str(tmp_path / "out"), n_pairs=2)["sources"]
    (tmp_path / "empty.json").write_text("{}")
    with pytest.raises(ValueError, match="an empty manifest"):
        analyze(str(cfg), str(tmp_path / "empty.json"), str(tmp_path / "out2"), n_pairs=2)


def test_a_score_summary_with_sources_is_no_analysis_record(tmp_path):
    """benchmarks/peers.py writes summary.json with score tables and a ``sources`` key (the
    systems scored elsewhere): an analysis into that folder must refuse it, not replace it."""
    cfg = tmp_path / "tiny_wavlm.json"
    cfg.write_text(json.dumps(tiny_config()))
    peers = tmp_path / "peers_set"
    peers.mkdir()
    record = {"metrics": ["pesq"], "systems": {"Noisy": {"n": 2}}, "set": "dns3", "sources": {}, "timing": {}}
    (peers / "summary.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="not written by sslse-analyze"):
        analyze(str(cfg), _manifest(tmp_path), str(peers), n_pairs=2)
    assert json.loads((peers / "summary.json").read_text()) == record


def test_an_out_that_is_a_file_is_refused_before_any_work(tmp_path, monkeypatch):
    """--out naming a file: one clear error before the encoder runs (it was a FileExistsError
    from makedirs after every distance had been computed)."""
    import speechbrain_sslse.analysis as analysis

    cfg = tmp_path / "tiny_wavlm.json"
    cfg.write_text(json.dumps(tiny_config()))
    out = tmp_path / "notes.txt"
    out.write_text("mine")

    def no_work(*args, **kwargs):
        raise AssertionError("distances computed before --out was checked")

    monkeypatch.setattr(analysis, "cn_distances", no_work)
    with pytest.raises(ValueError, match="is a file"):
        analyze(str(cfg), _manifest(tmp_path), str(out), n_pairs=2)
    assert out.read_text() == "mine"
