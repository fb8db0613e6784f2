"""Model folders: written by the library from constructor arguments, Hub model cards that
parse, SpeechBrain's foreign_class, the shipped folders, and fine-tuning data given as
CLEAN_DIR:NOISY_DIR pairs (the recipe and export.py run as a user runs them)."""
import glob
import json
import os
import time
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
import torch
from conftest import MINI_SET, ROOT, tiny_config
from huggingface_hub import ModelCard
from hyperpyyaml import load_hyperpyyaml

from speechbrain_sslse import EnhanceSSL, EnhancementModel, SSLEncoder
from speechbrain_sslse.errors import ConfigError
from speechbrain_sslse.inference import load_model
from speechbrain_sslse.model_folder import FILES, capture_init, inference_yaml, save_model_folder

SHIPPED = sorted(glob.glob(os.path.join(ROOT, "pretrained", "*", "hyperparams.yaml")))
SHIPPED = [os.path.dirname(p) for p in SHIPPED]
EXPORT = os.path.join(ROOT, "recipes", "VCTK", "export.py")
ENV = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_WAIT_POLICY="PASSIVE")


def _run(args, cwd):
    res = subprocess.run([sys.executable, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


@pytest.fixture()
def offline(monkeypatch, tmp_path):
    """No network, and a working directory that is not the repository."""
    def deny(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", deny)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A recipe trained on CLEAN_DIR:NOISY_DIR pairs with names of our own (the README's
    fine-tuning command), exported without and with --summary."""
    tmp = tmp_path_factory.mktemp("folders")
    data = tmp / "mine"
    for split, official in (("train", "trainset_28spk_wav"), ("test", "testset_wav")):
        for side in ("clean", "noisy"):
            for k, src in enumerate(sorted(glob.glob(os.path.join(MINI_SET, f"{side}_{official}", "*.wav")))):
                dst = data / split / side / f"group{k % 2}" / f"utt_{os.path.basename(src)}"
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(src, dst)
    run = tmp / "run"
    _run([os.path.join(ROOT, "recipes", "VCTK", "train.py"), os.path.join(ROOT, "hparams", "smoke.yaml"),
          f"--output_folder={run}", "--number_of_epochs=1", "--num_workers=0",
          f"--data_folder={data / 'train' / 'clean'}:{data / 'train' / 'noisy'}",
          f"--test_pairs={data / 'test' / 'clean'}:{data / 'test' / 'noisy'}"], cwd=tmp)
    plain = tmp / "plain"
    _run([EXPORT, str(run), str(plain)], cwd=tmp)
    summary = json.load(open(os.path.join(SHIPPED[0], "eval", "dns3_real", "summary.json")))  # older format
    summary["systems"] = {"Noisy": summary["systems"]["Noisy"],
                          "carded": dict(next(v for k, v in summary["systems"].items() if k != "Noisy"),
                                         n_floored=0)}
    (tmp / "summary.json").write_text(json.dumps(summary))
    carded = tmp / "carded"
    _run([EXPORT, str(plain), str(carded), "--summary", f"DNS-3 pairs (5)={tmp / 'summary.json'}",
          "--hub_id", "someone/carded", "--dataset", "someone/dns3-pairs"], cwd=tmp)
    return run, plain, carded, summary


def _card(folder):
    return ModelCard.load(os.path.join(folder, "README.md"))


def _check_card(folder, summaries):
    """Hub front matter, model-index holding each summary's scores, install, CPU / GPU /
    foreign_class usage, both citations, the example files."""
    card = _card(folder)
    assert card.data.pipeline_tag == "audio-to-audio" and card.data.library_name == "speechbrain"
    results = card.data.eval_results or []
    assert len({(r.dataset_type, r.dataset_name) for r in results}) == len(summaries)
    assert all(r.task_type == "audio-to-audio" for r in results)
    name = card.data.model_name
    for summary in summaries:
        system = summary["systems"].get(name) or next(v for k, v in summary["systems"].items() if k != "Noisy")
        scored = {(r.metric_type, r.metric_value) for r in results}
        for metric in ("pesq", "csig", "cbak", "covl", "stoi", "ssnr"):
            assert (metric, round(system[metric]["mean"], 4)) in scored, metric
    text = card.text
    for needle in ("pip install", "EnhanceSSL.from_hparams(source=model)", 'run_opts={"device": "cuda"}',
                   'pymodule_file="custom_interface.py", classname="EnhanceSSL"', "@inproceedings{hung22_interspeech",
                   "@article{speechbrain_v1", "## Limitations", "## Training data", "example.wav"):
        assert needle in text, needle
    for block in re.findall(r"```python\n(.*?)```", text, re.S):  # every snippet is valid Python
        compile(block, f"{folder}/README.md", "exec")
    example = sf.info(os.path.join(folder, "example.wav"))
    assert example.samplerate == 16000 and example.frames <= 5 * 16000
    assert sf.info(os.path.join(folder, "example_enhanced.wav")).frames == example.frames
    return card


def _foreign_class_matches_enhance_ssl(folder):
    from speechbrain.inference.interfaces import foreign_class

    example = os.path.join(folder, "example.wav")
    foreign = foreign_class(source=folder, pymodule_file="custom_interface.py", classname="EnhanceSSL")
    direct = EnhanceSSL.from_hparams(folder)
    a, b = foreign.enhance_file(example), direct.enhance_file(example)
    stored = torch.from_numpy(sf.read(os.path.join(folder, "example_enhanced.wav"), dtype="float32")[0])
    assert torch.equal(a, b)  # the same code path through foreign_class
    # the stored output was rendered on the CI stack; other torch versions differ in the
    # last float bits (torch 2.4.1: 8.9e-8, ~140 dB below the signal)
    torch.testing.assert_close(a, stored, atol=1e-6, rtol=0)


@pytest.mark.parametrize("folder", SHIPPED, ids=os.path.basename)
def test_shipped_folder_is_a_hub_model_folder(folder, offline):
    summaries = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(folder, "eval", "*", "summary.json")))]
    assert summaries, "shipped models keep their evaluation summaries"
    _check_card(folder, summaries)
    _foreign_class_matches_enhance_ssl(folder)


def test_export_without_summary_parses(exported):
    _, plain, _, _ = exported
    card = _card(plain)
    assert card.data.pipeline_tag == "audio-to-audio" and not card.data.eval_results
    assert "Not evaluated" in card.text and "small simulated set" not in card.text  # limits fit this model
    assert not (plain / "README.md").read_text().count("results: []")


def test_exported_card_with_summary(exported, offline):
    _, _, carded, summary = exported
    card = _check_card(carded, [summary])
    assert card.data.datasets == ["someone/dns3-pairs"]
    assert 'model = "someone/carded"' in card.text
    _foreign_class_matches_enhance_ssl(str(carded))


def test_export_round_trip_equals_the_training_time_model(exported, offline):
    run, plain, _, _ = exported
    trained = load_model(str(run))  # the recipe folder's best checkpoint, built from its hparams
    folder = EnhanceSSL.from_hparams(str(plain))
    wavs = [torch.from_numpy(sf.read(p, dtype="float32")[0]) for p in sorted(glob.glob(os.path.join(MINI_SET, "noisy_*", "*.wav")))[:4]]
    n = max(len(w) for w in wavs)
    batch = torch.stack([torch.nn.functional.pad(w, (0, n - len(w))) for w in wavs])
    lengths = torch.tensor([len(w) / n for w in wavs])
    assert torch.equal(trained.enhance_batch(batch, lengths), folder.enhance_batch(batch, lengths))
    # the YAML came from the constructor arguments: the smoke config as given, not a config dump
    text = (plain / "hyperparams.yaml").read_text()
    assert "!new:speechbrain_sslse.model.EnhancementModel" in text and "vocab_size" not in text
    # the recipe read the pairs by their own names (relative path, "/" -> "_")
    test = json.load(open(run / "test.json"))
    assert sorted(test) == ["group0_utt_0015", "group0_utt_0072", "group0_utt_0523", "group1_utt_0016", "group1_utt_0398"]
    assert all(e["clean_wav"].replace("clean", "noisy") == e["noisy_wav"] for e in test.values())


class _Wide(EnhancementModel):
    def __init__(self, width: int = 64):
        super().__init__(None, input="spectrum", hidden_size=width, num_layers=1)


def test_yaml_is_built_from_constructor_arguments(tmp_path, offline):
    torch.manual_seed(0)
    ssl = SSLEncoder(config=tiny_config("hubert"), mode="partial", output="last", layers=[0, 2],
                     feature_grad_mult=0.5)
    model = EnhancementModel(ssl, input="ssl", hidden_size=32, num_layers=1)
    assert ssl.init_args["layers"] == [0, 2] and model.init_args["hidden_size"] == 32
    folder = save_model_folder(model, str(tmp_path / "m"))
    hparams = load_hyperpyyaml(open(os.path.join(folder, "hyperparams.yaml")))
    rebuilt = hparams["enhancer"]
    assert {k: v for k, v in rebuilt.init_args.items() if k != "ssl_encoder"} == \
        {k: v for k, v in model.init_args.items() if k != "ssl_encoder"}
    assert rebuilt.ssl.init_args == ssl.init_args
    x = torch.randn(2, 8000) * 0.1
    with torch.no_grad():
        expected = model.eval().enhance(x)
    loaded = EnhanceSSL.from_hparams(folder)
    assert torch.equal(loaded.enhance_batch(x), expected)
    # a subclass that does not record its own arguments cannot be written wrongly
    with pytest.raises(TypeError, match="capture_init"):
        inference_yaml(_Wide())
    _Wide.__init__ = capture_init(_Wide.__init__)
    assert "!new:test_model_folder._Wide\n  width: 64" in inference_yaml(_Wide())


def test_frozen_hub_encoder_is_named_not_copied(tiny_folders, tmp_path):
    model = EnhancementModel(SSLEncoder(source=tiny_folders["wavlm"], cache_dir="/somewhere"), input="cross")
    text = inference_yaml(model, ssl_source="owner/tiny-wavlm")
    assert "source: owner/tiny-wavlm" in text and "cache_dir: null" in text and "config: null" in text
    save_model_folder(model, str(tmp_path / "m"))
    assert not any(k.startswith("ssl.model.") for k in torch.load(tmp_path / "m" / "enhancer.ckpt"))


def test_re_export_keeps_unchanged_weights_byte_identical(tmp_path):
    """... and an unchanged example output (its float WAV header holds a timestamp)."""
    model = EnhancementModel(None, input="spectrum", hidden_size=16, num_layers=1)
    ckpt, enhanced = tmp_path / "m" / "enhancer.ckpt", tmp_path / "m" / "example_enhanced.wav"
    clip = os.path.join(MINI_SET, "noisy_testset_wav", "0015.wav")
    save_model_folder(model, str(tmp_path / "m"), example=clip)
    before, mtime, output = ckpt.read_bytes(), ckpt.stat().st_mtime_ns, enhanced.read_bytes()
    time.sleep(1.1)  # the header's timestamp counts seconds
    save_model_folder(model, str(tmp_path / "m"), example=clip)
    assert ckpt.read_bytes() == before and ckpt.stat().st_mtime_ns == mtime
    assert enhanced.read_bytes() == output and sorted(os.listdir(tmp_path / "m")) == sorted([*FILES,
        "example.wav", "example_enhanced.wav"])
    enhanced.write_bytes(b"not audio")  # unreadable: written anew, no temporary file left
    save_model_folder(model, str(tmp_path / "m"), example=clip)
    assert enhanced.read_bytes() != b"not audio" and not any(n.startswith(".") for n in os.listdir(tmp_path / "m"))
    with torch.no_grad():
        model.masker.out.bias.add_(1.0)
    with pytest.raises(ConfigError, match="holds another model"):  # never replaced by accident
        save_model_folder(model, str(tmp_path / "m"))
    assert ckpt.read_bytes() == before
    save_model_folder(model, str(tmp_path / "m"), replace=True)
    assert ckpt.read_bytes() != before


def test_export_never_overwrites_what_is_not_its_own(exported, tmp_path):
    """export.py refuses a training folder (even its own recipe folder) and a folder of
    other files, leaving them byte-identical; another model's folder is replaced only with
    --replace, without inheriting that model's card sections, and what is left of it is named."""
    run, plain, _, _ = exported
    train_copy = tmp_path / "run"
    shutil.copytree(run, train_copy)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "README.md").write_text("my notes")
    shutil.copy(os.path.join(MINI_SET, "noisy_testset_wav", "0015.wav"), mine / "example.wav")
    for target, why in ((train_copy, "is a training folder"), (mine, "not a model folder")):
        before = {p: open(p, "rb").read() for p in glob.glob(str(target / "**" / "*"), recursive=True) if os.path.isfile(p)}
        res = subprocess.run([sys.executable, EXPORT, str(run), str(target)], env=ENV, capture_output=True, text=True)
        assert res.returncode == 2 and why in res.stderr, res.stderr[-2000:]
        assert {p: open(p, "rb").read() for p in before} == before
    other = tmp_path / "other"
    shutil.copytree(SHIPPED[0], other)
    res = subprocess.run([sys.executable, EXPORT, str(plain), str(other)], env=ENV, capture_output=True, text=True)
    assert res.returncode == 2 and "holds another model" in res.stderr, res.stderr[-2000:]
    assert (other / "enhancer.ckpt").read_bytes() == open(os.path.join(SHIPPED[0], "enhancer.ckpt"), "rb").read()
    old_training = re.search(r"\n## Training data\n(.+?)\n## ", (other / "README.md").read_text(), re.S).group(1).strip()
    assert len(old_training) > 50
    res = _run([EXPORT, str(plain), str(other), "--replace", "--example", ""], cwd=tmp_path)
    assert old_training not in (other / "README.md").read_text()
    assert (other / "enhancer.ckpt").read_bytes() == (plain / "enhancer.ckpt").read_bytes()
    assert "still holds eval from the model it replaced" in res.stderr


def test_nothing_imports_from_recipes():
    """recipes/ holds command-line scripts that are run, never imported: the library, the
    tests, the benchmarks and the other scripts use speechbrain_sslse, and no sys.path
    line reaches recipes/."""
    scripts = sorted(os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(ROOT, "recipes", "*", "*.py")))
    assert {"export", "prepare_vctk", "results_table", "simulate_vbd", "train"} <= set(scripts)
    names = "|".join(scripts)
    pattern = re.compile(rf"^\s*(import ({names})\b|from ({names}) import)", re.M)
    files = {d: glob.glob(os.path.join(ROOT, d, "*.py")) for d in ("tests", "benchmarks", "speechbrain_sslse")}
    files["recipes"] = glob.glob(os.path.join(ROOT, "recipes", "*", "*.py"))
    for folder, paths in files.items():
        for path in paths:
            text = open(path, encoding="utf-8").read()
            assert not pattern.search(text), path
            for line in re.findall(r"^.*sys\.path\s*(?:\.\w+\(|\+=|=).*$", text, re.M):  # changes to sys.path
                assert folder != "recipes" and "recipe" not in line.lower(), (path, line)
    assert "recipes" not in open(os.path.join(ROOT, "benchmarks", "long_file.py")).read().split("CHILD")[0]


def test_card_scores_are_the_models_own_row(tmp_path):
    """A summary from a side-by-side run holds other systems too: the card's model-index takes
    the row named exactly as the model and refuses a summary without one, instead of
    reporting a peer's (or fold models') scores as the model's."""
    folder = tmp_path / "mine"
    save_model_folder(EnhancementModel(None, input="spectrum", hidden_size=16, num_layers=1), str(folder))
    base = json.load(open(glob.glob(os.path.join(ROOT, "pretrained", "*", "eval", "*", "summary.json"))[0]))
    noisy = base["systems"]["Noisy"]

    def scaled(factor):
        return {k: dict(v, mean=v["mean"] * factor) if isinstance(v, dict) and "mean" in v else v
                for k, v in noisy.items()}

    def export(systems):
        path = tmp_path / "summary.json"
        path.write_text(json.dumps(dict(base, systems=systems)))
        return subprocess.run([sys.executable, EXPORT, str(folder), str(folder), "--example", "",
                               "--summary", f"side by side={path}"], cwd=tmp_path, env=ENV,
                              capture_output=True, text=True, timeout=600)

    res = export({"Noisy": noisy, "NSNet2": scaled(2.0), "mine": scaled(1.5), "mine (2 folds)": scaled(1.2)})
    assert res.returncode == 0, res.stderr[-2000:]
    pesq = [r.metric_value for r in _card(folder).data.eval_results if r.metric_type == "pesq"]
    assert pesq == [round(noisy["pesq"]["mean"] * 1.5, 4)]
    for systems in ({"Noisy": noisy, "NSNet2": scaled(2.0), "DeepFilterNet3": scaled(1.5)},
                    {"Noisy": noisy, "NSNet2": scaled(2.0)}, {"Noisy": noisy, "mine (2 folds)": scaled(1.2)}):
        res = export(systems)
        assert res.returncode != 0 and "no row named 'mine'" in res.stderr, systems.keys()


def test_a_flac_example_ships_as_a_real_wav(tmp_path, offline):
    """``example.wav`` is a WAV whatever the example's format: a FLAC is decoded and
    written as WAV (same samples), a WAV is copied byte for byte."""
    data, rate = sf.read(os.path.join(MINI_SET, "noisy_testset_wav", "0015.wav"), dtype="float32")
    sf.write(tmp_path / "a.flac", data, rate)
    model = EnhancementModel(None, input="spectrum", hidden_size=16, num_layers=1)
    folder = save_model_folder(model, str(tmp_path / "m"), example=str(tmp_path / "a.flac"))
    info = sf.info(os.path.join(folder, "example.wav"))
    assert info.format == "WAV" and info.samplerate == rate
    assert abs(sf.read(os.path.join(folder, "example.wav"))[0] - sf.read(tmp_path / "a.flac")[0]).max() < 1e-6
    wav = os.path.join(MINI_SET, "noisy_testset_wav", "0015.wav")
    folder = save_model_folder(model, str(tmp_path / "w"), example=wav)
    assert open(os.path.join(folder, "example.wav"), "rb").read() == open(wav, "rb").read()


def test_ssl_source_stands_in_for_the_hub_encoder_a_folder_names(tiny_folders, tmp_path, offline):
    """A model folder whose frozen encoder is a hub id loads offline with ``ssl_source`` (the
    commands' --ssl-source): it was ignored for exported folders, so the error's own advice
    did not help. Folders without a hub encoder ignore it."""
    torch.manual_seed(0)
    model = EnhancementModel(SSLEncoder(source=tiny_folders["wavlm"]), input="cross").eval()
    folder = save_model_folder(model, str(tmp_path / "m"), ssl_source="owner/tiny-wavlm")
    with pytest.raises(ConfigError, match="owner/tiny-wavlm"):
        load_model(folder)
    x = torch.randn(1, 16000) * 0.1
    with torch.no_grad():
        expected = model.enhance(x)
    torch.testing.assert_close(load_model(folder, ssl_source=tiny_folders["wavlm"]).enhance_batch(x), expected,
                               atol=1e-5, rtol=0)
    load_model(os.path.join(ROOT, "pretrained", "sslse-log1p-sim"), ssl_source=tiny_folders["wavlm"])


def _section(folder, title):
    """The body of a card section (``## title``), as the Hub shows it."""
    return re.search(rf"\n## {title}\n(.+?)\n## ", (folder / "README.md").read_text(), re.S).group(1).strip()


def test_re_export_with_results_drops_the_not_evaluated_limitation(exported, tmp_path):
    """The README's flow (export, evaluate, re-export onto itself with --summary): the kept
    Limitations must not still say "Not evaluated" next to a Results table; a line the user
    added to the card stays."""
    _, plain, _, summary = exported
    folder = tmp_path / "m"
    shutil.copytree(plain, folder)
    card = (folder / "README.md").read_text()
    (folder / "README.md").write_text(card.replace("\n## Files\n", "- My own caveat.\n\n## Files\n"))
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    _run([EXPORT, str(folder), str(folder), "--name", "carded", "--summary", f"DNS-3 pairs (5)={tmp_path / 'summary.json'}"],
         cwd=tmp_path)
    limitations = _section(folder, "Limitations")
    assert "Not evaluated" not in limitations and "Measured only on the test sets under Results" in limitations
    assert limitations.endswith("- My own caveat.") and _card(folder).data.eval_results


def test_replace_without_example_removes_the_replaced_models_example(exported, tmp_path):
    """--replace --example '': the replaced model's example_enhanced.wav is that model's output,
    so it must not ship as the new model's (nor its example.wav); the output says so."""
    _, plain, _, _ = exported
    other = tmp_path / "other"
    save_model_folder(EnhancementModel(None, input="spectrum", hidden_size=16, num_layers=1), str(other),
                      example=os.path.join(MINI_SET, "noisy_testset_wav", "0015.wav"))
    res = _run([EXPORT, str(plain), str(other), "--replace", "--example", ""], cwd=tmp_path)
    assert not (other / "example.wav").exists() and not (other / "example_enhanced.wav").exists()
    assert "removed example.wav, example_enhanced.wav" in res.stderr, res.stderr[-2000:]
    assert "example.wav" not in (other / "README.md").read_text()


def test_re_export_keeps_the_users_example_and_its_note(exported, tmp_path, offline):
    """Re-exporting onto itself without --example keeps the folder's own clip and its note
    (re-enhanced, so example_enhanced.wav is this model's output), not the default clip."""
    _, plain, _, _ = exported
    folder, clip = tmp_path / "m", os.path.join(MINI_SET, "noisy_testset_wav", "0015.wav")
    _run([EXPORT, str(plain), str(folder), "--example", clip, "--example_note", "my own kitchen recording"], cwd=tmp_path)
    (folder / "example_enhanced.wav").unlink()
    _run([EXPORT, str(folder), str(folder)], cwd=tmp_path)
    assert (folder / "example.wav").read_bytes() == open(clip, "rb").read()
    assert "`example.wav` is my own kitchen recording;" in _section(folder, "Example")
    stored = torch.from_numpy(sf.read(folder / "example_enhanced.wav", dtype="float32")[0])
    torch.testing.assert_close(EnhanceSSL.from_hparams(str(folder)).enhance_file(str(folder / "example.wav")), stored,
                               atol=1e-6, rtol=0)
    # --example '' on the same model: the earlier export's example files go too (the card names none)
    res = _run([EXPORT, str(folder), str(folder), "--example", ""], cwd=tmp_path)
    assert not (folder / "example.wav").exists() and not (folder / "example_enhanced.wav").exists()
    assert "removed example.wav, example_enhanced.wav of the earlier export" in res.stderr, res.stderr[-2000:]


def test_export_of_a_model_folder_into_a_new_folder_keeps_its_card(tmp_path, offline):
    """A shipped model folder exported into a new folder: its card's Training data and
    Limitations come along, as they would on a re-export onto itself (its Results need their
    --summary files, as the output says)."""
    source = os.path.join(ROOT, "pretrained", "sslse-log1p-sim")
    new = tmp_path / "copy"
    res = _run([EXPORT, source, str(new)], cwd=tmp_path)
    assert "no --summary: the card's measured results" in res.stderr  # the Results are not, and it says so
    for title in ("Training data", "Limitations"):
        assert _section(new, title) == _section(Path(source), title), title
    assert "Not described at export" not in (new / "README.md").read_text()
    assert "Not evaluated:" not in (new / "README.md").read_text()


def test_card_refuses_scores_measured_with_other_weights(tmp_path):
    """``sslse-evaluate`` records which weights it measured (``weights``); export refuses a
    summary of other weights (another seed's run has the same row name, a run trained or
    averaged further has another best checkpoint) instead of putting its scores on this
    model's card. Summaries without the record (older ones) still export."""
    folder = tmp_path / "mine"
    torch.manual_seed(0)
    model = EnhancementModel(None, input="spectrum", hidden_size=16, num_layers=1)
    save_model_folder(model, str(folder))
    other = EnhancementModel(None, input="spectrum", hidden_size=16, num_layers=1)
    base = json.load(open(glob.glob(os.path.join(ROOT, "pretrained", "*", "eval", "*", "summary.json"))[0]))
    systems = {"Noisy": base["systems"]["Noisy"], "mine": base["systems"]["Noisy"]}

    def export(**meta):
        path = tmp_path / "summary.json"
        path.write_text(json.dumps(dict(base, systems=systems, **meta)))
        return subprocess.run([sys.executable, EXPORT, str(folder), str(folder), "--example", "",
                               "--summary", f"test={path}"], cwd=tmp_path, env=ENV,
                              capture_output=True, text=True, timeout=600)

    res = export(weights=other.weights_digest())
    assert res.returncode != 0 and "other weights" in res.stderr, res.stderr[-2000:]
    assert model.weights_digest() == load_model(str(folder)).mods.enhancer.weights_digest()
    for meta in ({"weights": model.weights_digest()}, {}):
        res = export(**meta)
        assert res.returncode == 0, res.stderr[-2000:]
    # benchmarks/peers.py records one digest per --model row
    res = export(weights={"mine": other.weights_digest(), "Noisy": None})
    assert res.returncode != 0 and "other weights" in res.stderr, res.stderr[-2000:]
    for digests in ({"mine": model.weights_digest()}, {"someone else": other.weights_digest()}):
        res = export(weights=digests)
        assert res.returncode == 0, res.stderr[-2000:]


def test_a_new_example_never_writes_through_a_linked_example(tmp_path):
    """example.wav in the folder a link to a recording of the user's: exporting with another
    --example replaces the link, it does not copy the new clip's bytes into that recording."""
    clips = sorted(glob.glob(os.path.join(MINI_SET, "noisy_testset_wav", "*.wav")))
    mine = tmp_path / "my_recording.wav"
    shutil.copyfile(clips[0], mine)
    before = mine.read_bytes()
    folder = tmp_path / "model"
    model = EnhancementModel(None, input="spectrum", hidden_size=16, num_layers=1)
    save_model_folder(model, str(folder))
    os.symlink(mine, folder / "example.wav")
    save_model_folder(model, str(folder), example=clips[1])
    assert mine.read_bytes() == before
    assert (folder / "example.wav").read_bytes() == open(clips[1], "rb").read()
