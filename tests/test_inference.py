"""EnhanceSSL, export round trip, CLI: rates, channels, long files, batches, broken files."""
import glob
import os
import shutil
import warnings
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF
from conftest import MINI_SET, ROOT, listed_outputs

from speechbrain_sslse.cli import enhance_main
from speechbrain_sslse.inference import EnhanceSSL, load_model
from speechbrain_sslse.model_folder import save_model_folder

NOISY = os.path.join(MINI_SET, "noisy_testset_wav")
SHIPPED = os.path.join(ROOT, "pretrained", "sslse-log1p-sim")


@pytest.fixture(scope="module")
def trained(smoke_run, tmp_path_factory):
    """A smoke-trained recipe folder (``python recipes/VCTK/train.py hparams/smoke.yaml``) and its export."""
    out = tmp_path_factory.mktemp("exported")
    save_model_folder(load_model(str(smoke_run)).mods.enhancer, str(out))
    return smoke_run, out


@pytest.fixture(scope="module")
def model(trained):
    return EnhanceSSL.from_hparams(str(trained[1]))


def test_export_folder_is_self_contained(trained):
    out = trained[1]
    assert sorted(os.listdir(out)) == ["custom_interface.py", "enhancer.ckpt", "hyperparams.yaml", "layer_weights.json"]
    # loads from a copy elsewhere, with the hub unreachable
    moved = out.parent / "moved"
    shutil.copytree(out, moved)
    code = (
        "import os; os.environ['HF_HUB_OFFLINE']='1';"
        "import socket\n"
        "def deny(*a, **k): raise OSError('network disabled')\n"
        "socket.socket.connect = deny\n"
        "from speechbrain_sslse.inference import EnhanceSSL\n"
        f"m = EnhanceSSL.from_hparams({str(moved)!r}); print(m.enhance_file({os.path.join(NOISY, '0015.wav')!r}).shape)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "torch.Size([80000])" in res.stdout


def test_matches_the_recipe_test_time_output(trained, model):
    run, _ = trained
    paths = sorted(glob.glob(str(run / "enhanced_wavs" / "*.wav")))
    assert len(paths) == len(os.listdir(NOISY)) == 5
    for path in paths:
        recipe_out, rate = sf.read(path, dtype="float32")
        ours = model.enhance_file(os.path.join(NOISY, os.path.basename(path)))
        assert rate == 16000 and ours.shape == recipe_out.shape
        assert np.abs(ours.numpy() - recipe_out).max() < 1e-5


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_other_sample_rates(model, tmp_path, rate):
    x16, _ = sf.read(os.path.join(NOISY, "0016.wav"), dtype="float32")
    x = AF.resample(torch.from_numpy(x16), 16000, rate).numpy()
    src, dst = tmp_path / "in.wav", tmp_path / "out.wav"
    sf.write(src, x, rate)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        y = model.enhance_file(str(src), str(dst))
    lost_band = [w for w in said if "nothing above 8 kHz" in str(w.message)]
    assert len(lost_band) == (rate > 16000)  # what a wideband user loses is said
    info = sf.info(dst)
    assert info.samplerate == rate and info.frames == len(x) == y.shape[-1]
    # the same as enhancing the 16 kHz signal, up to the resampling round trip
    back = AF.resample(y, rate, 16000)[: len(x16)]
    ref = model.enhance_waveform(AF.resample(torch.from_numpy(x), rate, 16000))[: len(x16)]
    snr = 10 * torch.log10(ref.pow(2).sum() / (ref - back).pow(2).sum())
    assert snr > 25


def test_stereo_is_enhanced_per_channel(model, tmp_path):
    a, _ = sf.read(os.path.join(NOISY, "0015.wav"), dtype="float32")
    b, _ = sf.read(os.path.join(NOISY, "0072.wav"), dtype="float32")
    sf.write(tmp_path / "st.wav", np.stack([a, b], 1), 16000)
    y = model.enhance_file(str(tmp_path / "st.wav"), str(tmp_path / "out.wav"))
    assert y.shape == (2, len(a)) and sf.info(tmp_path / "out.wav").channels == 2
    for ch, path in zip(y, ("0015.wav", "0072.wav")):
        torch.testing.assert_close(ch, model.enhance_file(os.path.join(NOISY, path)), atol=1e-5, rtol=0)


def test_unequal_batch_equals_one_by_one(model):
    files = sorted(glob.glob(os.path.join(MINI_SET, "noisy_trainset_28spk_wav", "*.wav")))[:4]
    sigs = [torch.from_numpy(sf.read(f, dtype="float32")[0]) for f in files]
    n = max(len(s) for s in sigs)
    batch = torch.stack([torch.nn.functional.pad(s, (0, n - len(s))) for s in sigs])
    out = model.enhance_batch(batch, torch.tensor([len(s) / n for s in sigs]))
    for s, o in zip(sigs, out):
        torch.testing.assert_close(o[: len(s)], model.enhance_batch(s[None])[0], atol=1e-5, rtol=0)
        assert torch.count_nonzero(o[len(s):]) == 0
    many = model.enhance_many(sigs, batch_size=3)
    for s, o in zip(sigs, many):
        torch.testing.assert_close(o, model.enhance_batch(s[None])[0], atol=1e-5, rtol=0)


def _sixty_seconds():
    pairs = sorted(glob.glob(os.path.join(MINI_SET, "noisy_*", "*.wav")))
    noisy = np.concatenate([sf.read(p, dtype="float32")[0] for p in pairs])
    clean = np.concatenate([sf.read(p.replace("noisy_", "clean_"), dtype="float32")[0] for p in pairs])
    reps = -(-60 * 16000 // len(noisy))
    return np.tile(noisy, reps)[: 60 * 16000], np.tile(clean, reps)[: 60 * 16000]


def _snr(ref, est):
    return 10 * np.log10(np.sum(ref**2) / np.sum((ref - est) ** 2))


@pytest.mark.skipif(not os.path.isdir(SHIPPED), reason="shipped model not present")
def test_long_file_in_chunks_matches_whole_file(tmp_path):
    noisy, clean = _sixty_seconds()
    sf.write(tmp_path / "long.wav", noisy, 16000)
    chunked = EnhanceSSL.from_hparams(SHIPPED)
    whole = EnhanceSSL.from_hparams(SHIPPED, overrides={"chunk_seconds": 70.0})
    assert chunked.chunk_samples < len(noisy) <= whole.chunk_samples
    a = chunked.enhance_file(str(tmp_path / "long.wav")).numpy()
    b = whole.enhance_file(str(tmp_path / "long.wav")).numpy()
    assert abs(_snr(clean, a) - _snr(clean, b)) < 0.1
    assert _snr(b, a) > 30  # the two outputs themselves agree closely


def test_a_long_signal_shows_its_own_progress(monkeypatch, capsys):
    """One recording of hours is one step of the files bar: its chunks are counted too."""
    from speechbrain_sslse import inference, progress

    monkeypatch.setattr(progress, "LOG_DELAY", 0.0)
    monkeypatch.setattr(inference, "LONG_SIGNAL_SAMPLES", 60 * 16000)
    x = torch.from_numpy(_sixty_seconds()[0])
    model = EnhanceSSL.from_hparams(SHIPPED)
    model.enhance_waveform(x[: 50 * 16000])  # under the bound: no bar
    assert "signal" not in capsys.readouterr().err
    model.enhance_waveform(torch.cat([x, x]))
    assert "one 2-min signal" in capsys.readouterr().err
    model.enhance_waveform(torch.cat([x, x]), progress=False)  # as enhance_files(progress=False) asks
    assert "signal" not in capsys.readouterr().err


def test_chunking_covers_every_sample(trained):
    """Short chunks (2 s, 0.5 s overlap, batches of 4 chunks, a short last chunk) on 17.3 s."""
    noisy, _ = _sixty_seconds()
    x = torch.from_numpy(noisy[: int(17.3 * 16000)])
    chunked = EnhanceSSL.from_hparams(str(trained[1]), overrides={"chunk_seconds": 2.0, "overlap_seconds": 0.5})
    whole = EnhanceSSL.from_hparams(str(trained[1]), overrides={"chunk_seconds": 30.0})
    a, b = chunked.enhance_waveform(x), whole.enhance_waveform(x)
    assert a.shape == b.shape == x.shape and torch.isfinite(a).all()
    assert _snr(b.numpy(), a.numpy()) > 15


def test_chunks_without_overlap_are_cut_and_joined(trained):
    """overlap_seconds: 0 (a hand-set value): chunks are enhanced one by one and laid end to
    end; an overlap as long as a chunk is one clear error."""
    from speechbrain_sslse.errors import ConfigError

    x = torch.from_numpy(_sixty_seconds()[0][: int(2.5 * 16000)])
    chunked = EnhanceSSL.from_hparams(str(trained[1]), overrides={"chunk_seconds": 1.0, "overlap_seconds": 0.0})
    joined = torch.cat([chunked.enhance_waveform(x[s : s + 16000]) for s in range(0, len(x), 16000)])
    assert torch.allclose(chunked.enhance_waveform(x), joined, atol=1e-6)
    bad = EnhanceSSL.from_hparams(str(trained[1]), overrides={"chunk_seconds": 1.0, "overlap_seconds": 1.0})
    with pytest.raises(ConfigError, match="overlap_seconds"):
        bad.enhance_waveform(x)


def test_cli_on_a_folder_with_one_broken_file(trained, tmp_path, capsys):
    src = tmp_path / "in"
    shutil.copytree(NOISY, src)
    (src / "broken.wav").write_bytes(b"RIFF\x00\x00not really a wave file")
    out = tmp_path / "out"
    code = enhance_main([str(src), "-o", str(out), "--source", str(trained[1]), "--batch-size", "2"])
    err = capsys.readouterr().err
    assert code == 1 and "broken.wav" in err and "1 input(s) failed or skipped" in err
    assert listed_outputs(out) == sorted(os.listdir(NOISY))
    # never overwrites inputs: output folder == input folder is refused before anything is written
    code = enhance_main([str(src / "0015.wav"), "-o", str(src), "--source", str(trained[1])])
    assert code == 2 and "is the folder of the input file" in capsys.readouterr().err
    assert sf.info(src / "0015.wav").subtype == "PCM_16"  # untouched


@pytest.mark.parametrize("name", sorted(os.listdir(os.path.join(ROOT, "pretrained"))) if os.path.isdir(os.path.join(ROOT, "pretrained")) else [])
def test_shipped_model_cards_hold_their_measured_scores(name):
    import json

    import yaml

    folder = os.path.join(ROOT, "pretrained", name)
    assert os.path.getsize(os.path.join(folder, "enhancer.ckpt")) < 20 * 2**20
    front = yaml.safe_load(open(os.path.join(folder, "README.md")).read().split("---")[1])
    results = front["model-index"][0]["results"]
    summaries = sorted(glob.glob(os.path.join(folder, "eval", "*", "summary.json")))
    assert len(results) == len(summaries) == 3
    # every card result against the summary of its test set (the folder its dataset type names)
    folders = {"simulated-test": "sim_test_dm", "simulated-test-v1": "sim_v1_test",
               "voicebank-demand-train-pairs-real": "vbd_train_real", "dns-3-synthetic-test-pairs-real": "dns3_real"}
    assert sorted(os.path.join(folder, "eval", folders[r["dataset"]["type"]], "summary.json")
                  for r in results) == summaries
    for r in results:
        measured = json.load(open(os.path.join(folder, "eval", folders[r["dataset"]["type"]], "summary.json")))
        row = measured["systems"][name]
        assert len(r["metrics"]) >= 6
        for m in r["metrics"]:
            assert m["value"] == pytest.approx(row[m["type"]]["mean"], abs=1e-4), (r["dataset"]["type"], m["type"])


def test_bf16_cpu_path_stays_close_to_fp32(trained):
    x = torch.from_numpy(sf.read(os.path.join(NOISY, "0398.wav"), dtype="float32")[0])
    fp32 = EnhanceSSL.from_hparams(str(trained[1]))
    bf16 = EnhanceSSL.from_hparams(str(trained[1]), run_opts={"precision": "bf16"})
    a, b = fp32.enhance_many([x, x[:40000]]), bf16.enhance_many([x, x[:40000]])
    for u, v in zip(a, b):
        assert v.dtype == torch.float32 and u.shape == v.shape
        assert _snr(u.numpy(), v.numpy()) > 30


@pytest.mark.parametrize("name,sets", [("sslse-log1p-sim", ["dns3_real", "sim_v1_test", "vbd_train_real"]),
                                       ("sslse-log1p-dm", ["dns3_real", "sim_test_dm", "vbd_train_real"])])
def test_shipped_log1p_models_beat_noisy_on_every_committed_test_set(name, sets):
    """The issues' bar for the shipped log1p models: PESQ and STOI above the Noisy row on the
    simulated test split and on both sets of real pairs (scores as committed by sslse-evaluate)."""
    import json

    folder = os.path.join(ROOT, "pretrained", name)
    paths = sorted(glob.glob(os.path.join(folder, "eval", "*", "summary.json")))
    assert [os.path.basename(os.path.dirname(p)) for p in paths] == sets
    for path in paths:
        systems = json.load(open(path))["systems"]
        model, noisy = systems[name], systems["Noisy"]
        assert model["n"] == noisy["n"] and model.get("n_floored", model.get("n_failed")) == 0
        for metric in ("pesq", "stoi"):
            assert model[metric]["mean"] > noisy[metric]["mean"], (path, metric)


def test_windows_follow_samples_and_the_bar_counts_every_file(model, tmp_path, monkeypatch):
    """With a sample budget below one file, every file is a window of its own (memory follows
    the audio, not the file count) and the outputs equal those of one shared window; the bar
    steps once per file, a broken one included, and writes even when stderr is not a terminal."""
    import io

    from speechbrain_sslse import inference, progress

    names = sorted(os.listdir(NOISY))[:3]
    src = tmp_path / "in"
    src.mkdir()
    for name in names:
        shutil.copy(os.path.join(NOISY, name), src / name)
    (src / "broken.wav").write_bytes(b"RIFF\x00\x00not a wave")
    jobs = [(str(src / n), str(tmp_path / "a" / n)) for n in names + ["broken.wav"]]
    shared = model.enhance_files(jobs, progress=False, keep_outputs=True)
    steps, windows = [], []
    real_bar, real_read = inference.progress_bar, inference.EnhanceSSL._read_windows

    def bar(*args, **kwargs):
        kwargs["enabled"] = True  # whatever an earlier -q command in this process set
        b = real_bar(*args, file=io.StringIO(), **kwargs)
        update = b.update
        b.update = lambda n=1: (steps.append(n), update(n))[1]
        return b

    def read(*args):
        for items in real_read(*args):
            windows.append(len(items))
            yield items

    monkeypatch.setattr(inference, "progress_bar", bar)
    monkeypatch.setattr(inference.EnhanceSSL, "_read_windows", staticmethod(read))
    monkeypatch.setattr(inference, "WINDOW_SAMPLES", 1)
    alone = model.enhance_files([(s, d.replace(f"{os.sep}a{os.sep}", f"{os.sep}b{os.sep}")) for s, d in jobs],
                                keep_outputs=True)
    assert windows == [1, 1, 1] and sum(steps) == 4 and len(alone.failed) == len(shared.failed) == 1
    for (_, a), (_, b) in zip(shared.written, alone.written):
        torch.testing.assert_close(shared.outputs[a], alone.outputs[b], atol=1e-5, rtol=0)
    stream = io.StringIO()  # not a terminal: nothing for a job shorter than LOG_DELAY ...
    list(progress.progress_bar(range(3), desc="x", file=stream, enabled=True))
    assert stream.getvalue() == ""
    monkeypatch.setattr(progress, "LOG_DELAY", 0.0)  # ... and the bar once a job runs longer
    list(progress.progress_bar(range(3), desc="x", file=stream, enabled=True))
    assert "3/3" in stream.getvalue()
    quiet = io.StringIO()
    list(progress.progress_bar(range(3), enabled=False, file=quiet))
    assert quiet.getvalue() == ""


def test_loading_a_recipe_folder_writes_nothing_where_it_is_loaded(smoke_run, tmp_path, monkeypatch):
    """The run's hyperparams.yaml names its save folder relative to where it trained; loading
    the model from elsewhere must not create that folder (it did: a stray results/.../save)."""
    run = tmp_path / "run"
    shutil.copytree(smoke_run, run)
    text = (run / "hyperparams.yaml").read_text()
    assert str(smoke_run) in text
    (run / "hyperparams.yaml").write_text(text.replace(str(smoke_run), "results/smoke/1"))  # as a run from a checkout
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert load_model(str(run)) is not None
    assert os.listdir(elsewhere) == []


def test_a_recipe_folder_trained_on_a_hub_encoder_loads_offline_with_ssl_source(tmp_path, tiny_folders):
    """A recipe folder's hyperparams.yaml is resolved (the encoder block names its source as
    text): ``ssl_source`` must replace that source, not only the top-level key."""
    from speechbrain.utils.checkpoints import Checkpointer

    from conftest import SMOKE

    from speechbrain_sslse.errors import ConfigError
    from speechbrain_sslse.hparams import load_hparams, resolved_yaml

    local = tiny_folders["wavlm"]
    overrides = {"data_folder": MINI_SET, "output_folder": str(tmp_path / "run"), "ssl_source": local,
                 "ssl_config": {}, "input": "cross", "ssl_mode": "frozen"}
    text = resolved_yaml(SMOKE, overrides)
    assert f"  source: {local}\n" in text
    run = tmp_path / "run"
    (run / "save").mkdir(parents=True)
    # as a run on a machine with the hub wrote it
    (run / "hyperparams.yaml").write_text(text.replace(local, "microsoft/wavlm-base-plus"))
    torch.manual_seed(0)
    trained = load_hparams(SMOKE, overrides)["enhancer"]
    Checkpointer(str(run / "save"), {"enhancer": trained}).save_checkpoint(meta={"loss": 0.1})
    with pytest.raises(ConfigError, match="microsoft/wavlm-base-plus"):  # offline: the hub id fails
        load_model(str(run))
    loaded = load_model(str(run), ssl_source=local).mods.enhancer
    assert loaded.ssl.source == local
    x = torch.randn(1, 16000)
    trained.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x).enhanced, trained(x).enhanced)


def test_chunk_cross_fade_sums_to_one_or_is_refused():
    """With the enhancer replaced by the identity, chunking must give the input back: the
    ramps sum to 1 where two chunks overlap. An overlap over half a chunk (three chunks over
    one sample; the output was scaled up to 13x) is refused instead."""
    from speechbrain_sslse.errors import ConfigError

    model = EnhanceSSL.from_hparams(SHIPPED)
    model._enhance = lambda noisy, lengths: noisy * (torch.arange(noisy.shape[1])[None] < lengths[:, None])
    x = torch.randn(10_000)
    for overlap in (0.0, 0.01, 0.05):
        model.hparams.chunk_seconds, model.hparams.overlap_seconds = 0.1, overlap
        for n in (1600, 1601, 3000, 10_000):
            assert torch.allclose(model.enhance_waveform(x[:n]), x[:n], atol=1e-6)
    for overlap in (0.06, 0.09):
        model.hparams.chunk_seconds, model.hparams.overlap_seconds = 0.1, overlap
        with pytest.raises(ConfigError, match="half"):
            model.enhance_waveform(x)


def test_integer_samples_are_refused_by_every_signal_method():
    """int16 tensors given to enhance_waveform / enhance_many / enhance_signals came back at
    int16 scale; like enhance_batch, every method refuses them and says how to convert."""
    model = EnhanceSSL.from_hparams(SHIPPED)
    x = (torch.randn(4000) * 3000).to(torch.int16)
    for call in (lambda: model.enhance_waveform(x), lambda: model.enhance_many([x.float() / 32768, x]),
                 lambda: model.enhance_signals([(x[None], 16000)]), lambda: model.enhance_batch(x[None])):
        with pytest.raises(ValueError, match="float samples.*32768"):
            call()
    assert model.enhance_waveform(x.float() / 32768).shape == (4000,)
