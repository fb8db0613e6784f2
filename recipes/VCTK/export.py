#!/usr/bin/env python3
"""Turn a trained recipe folder (or a model folder) into a Hugging Face Hub model folder.

    python recipes/VCTK/export.py results/smoke/999 results/my_model --name smoke \
        --summary "mini test=results/eval/summary.json"

``--name`` is the model's row in the summaries (``sslse-evaluate`` names a recipe folder
by its experiment, here ``smoke``).

The folder itself (inference ``hyperparams.yaml`` built from the model's constructor
arguments, ``enhancer.ckpt``, ``layer_weights.json``, ``custom_interface.py`` for SpeechBrain's
``foreign_class``, ``example.wav`` and ``example_enhanced.wav``) is written by
``speechbrain_sslse.model_folder.save_model_folder``; this script adds the model card
(``README.md``: Hub front matter with ``model-index``, install line, usage, results, training
data, limitations, citations). A frozen hub encoder is named by its hub id, not copied.

Re-exporting the same model (an ``enhancer.ckpt`` holding the same tensors, which is not
rewritten) keeps its card's "Training data" and "Limitations" sections unless --training /
--limitations are given (the lines this script wrote that depend on --summary, such as "Not
evaluated", are rewritten), and its example clip with its note unless --example is given (the
clip is enhanced again); other files (``eval/``) stay. Exporting a model folder with a card
into another folder carries that card's sections and example over the same way. A folder
holding another model is replaced only with --replace (its card's sections are not carried
over; with --example '' its example files are removed; files such as ``eval/`` are named as
left from it); a training folder or a folder of other files is refused.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys

import yaml

from speechbrain_sslse import __version__
from speechbrain_sslse.errors import ConfigError
from speechbrain_sslse.evaluation import LABELS, NOISY, markdown_table
from speechbrain_sslse.inference import folder_ssl_source, load_model
from speechbrain_sslse.model_folder import EXAMPLE, EXAMPLE_ENHANCED, FILES, export_target, save_model_folder

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_EXAMPLE = os.path.join(ROOT, "tests", "samples", "mini_vbd", "noisy_testset_wav", "0398.wav")
DEFAULT_EXAMPLE_NOTE = ("a real noisy recording, clip 0398 of the DNS Challenge 3 synthetic test set (real speech "
                        "and real noise; CC BY 4.0), taken from the speechbrain-sslse repository's "
                        "`tests/samples/mini_vbd` (licence notes in its `LICENSE.md`)")
TASK = {"type": "audio-to-audio", "name": "Speech Enhancement"}  # Hub task id
MODES = {"frozen": "frozen", "partial": "fine-tuned with its CNN frozen, PF", "entire": "fine-tuned entirely, EF",
         "scratch": "trained from scratch, TFS"}

CITATIONS = r"""```bibtex
@inproceedings{hung22_interspeech,
  author    = {Kuo-Hsuan Hung and Szu-wei Fu and Huan-Hsin Tseng and Hsin-Tien Chiang and Yu Tsao and Chii-Wann Lin},
  title     = {{Boosting Self-Supervised Embeddings for Speech Enhancement}},
  booktitle = {Proc. Interspeech 2022},
  year      = {2022},
  doi       = {10.21437/Interspeech.2022-10002},
  note      = {arXiv:2204.03339}
}

@article{speechbrain_v1,
  author  = {Mirco Ravanelli and Titouan Parcollet and Adel Moumen and Sylvain de Langen and Cem Subakan and Peter Plantinga and Yingzhi Wang and Pooneh Mousavi and Luca Della Libera and Artem Ploujnikov and Francesco Paissan and Davide Borra and Salah Zaiem and Zeyu Zhao and Shucong Zhang and Georgios Karakasidis and Sung-Lin Yeh and Pierre Champion and Aku Rouhe and Rudolf Braun and Florian Mai and Juan Zuluaga-Gomez and Seyed Mahed Mousavi and Andreas Nautsch and Ha Nguyen and Xuechen Liu and Sangeet Sagar and Jarod Duret and Salima Mdhaffar and Ga{\"e}lle Laperri{\`e}re and Mickael Rouvier and Renato De Mori and Yannick Est{\`e}ve},
  title   = {Open-Source Conversational AI with SpeechBrain 1.0},
  journal = {Journal of Machine Learning Research},
  year    = {2024},
  volume  = {25},
  number  = {333},
  url     = {http://jmlr.org/papers/v25/24-0991.html}
}

@misc{speechbrain,
  title         = {{SpeechBrain}: A General-Purpose Speech Toolkit},
  author        = {Mirco Ravanelli and Titouan Parcollet and Peter Plantinga and Aku Rouhe and Samuele Cornell and Loren Lugosch and Cem Subakan and Nauman Dawalatabad and Abdelwahab Heba and Jianyuan Zhong and Ju-Chieh Chou and Sung-Lin Yeh and Szu-Wei Fu and Chien-Feng Liao and Elena Rastorgueva and Fran{\c{c}}ois Grondin and William Aris and Hwidong Na and Yan Gao and Renato De Mori and Yoshua Bengio},
  year          = {2021},
  eprint        = {2106.04624},
  archivePrefix = {arXiv},
  primaryClass  = {eess.AS}
}
```"""

BODY = """# {name}

Speech enhancement (denoising) of 16 kHz speech: {what} -> 2-layer BLSTM (256, directions summed)
-> sigmoid mask on the noisy log1p magnitude, resynthesised with the noisy phase. Trained with
{package}, a SpeechBrain plugin for Hung et al., *Boosting Self-Supervised
Embeddings for Speech Enhancement*, Interspeech 2022 ([arXiv:2204.03339](https://arxiv.org/abs/2204.03339)).
Parameters: {params}.

## Install

```bash
{install}
```

## Usage

`model` is this folder: its Hub id, or the path of a local copy (an absolute path works from
any directory).

CPU:

```python
from speechbrain_sslse import EnhanceSSL

model = "{source}"  # {source_note}
enhancer = EnhanceSSL.from_hparams(source=model)
enhanced = enhancer.enhance_file("noisy.wav", "enhanced.wav")  # any rate, channels and length; float WAV out
```

GPU (CUDA):

```python
import torch
from speechbrain_sslse import EnhanceSSL

model = "{source}"  # {source_note}
enhancer = EnhanceSSL.from_hparams(source=model, run_opts={{"device": "cuda"}})
enhanced = enhancer.enhance_file("noisy.wav", "enhanced.wav")
noisy = torch.randn(2, 32000) * 0.1  # or a padded batch of 16 kHz signals in [-1, 1]
batch = enhancer.enhance_batch(noisy, torch.tensor([1.0, 0.5]))  # relative lengths, as in SpeechBrain
```

With SpeechBrain's `foreign_class` (the class is named by this folder's `custom_interface.py`;
the speechbrain-sslse package must be installed):

```python
from speechbrain.inference.interfaces import foreign_class

model = "{source}"  # {source_note}
enhancer = foreign_class(source=model, pymodule_file="custom_interface.py", classname="EnhanceSSL")
enhancer.enhance_file("noisy.wav", "enhanced.wav")
```

Shell (files, folders or globs; `--device cuda` for a GPU):

```bash
sslse-enhance noisy.wav more_noisy/ -o enhanced/ --source "{source}"
```

Inputs at other rates are resampled to 16 kHz and back, each channel is enhanced on its own and
long files go through {chunk:g} s chunks with a {overlap:g} s cross-fade.

{example}## Results

{results}

## Training data

{training}

## Limitations

{limitations}

## Files

| file | what |
| --- | --- |
| `hyperparams.yaml` | inference hyperparameters (written from the model's constructor arguments) |
| `enhancer.ckpt` | {ckpt} |
| `layer_weights.json` | {weights} |
| `custom_interface.py` | SpeechBrain `foreign_class` entry point (`EnhanceSSL`) |
{example_files}
## Citation

{citations}
"""


# -- inputs ------------------------------------------------------------------------
class _TagTolerant(yaml.SafeLoader):
    """Reads a recipe's hyperparams.yaml for its plain settings; tagged values become None."""


_TagTolerant.add_multi_constructor("!", lambda loader, suffix, node: None)


def recipe_settings(folder: str) -> dict:
    """Plain settings of a recipe folder's ``hyperparams.yaml`` ({} for a model folder)."""
    path = os.path.join(folder, "hyperparams.yaml")
    if not os.path.isdir(os.path.join(folder, "save")) or not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            settings = yaml.load(f, Loader=_TagTolerant)
    except yaml.YAMLError:
        return {}
    return settings if isinstance(settings, dict) else {}


def read_summary(path: str) -> dict:
    """An ``sslse-evaluate`` summary.json, current or older format (``n_failed`` before
    ``n_floored``; no ``n``)."""
    try:
        with open(path, encoding="utf-8") as f:
            summary = json.load(f)
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: not a readable summary.json ({err})") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("systems"), dict) or not summary["systems"]:
        raise ConfigError(f"{path}: no 'systems' in this summary.json (written by sslse-evaluate?)")
    for name, system in summary["systems"].items():
        system.setdefault("n_floored", system.get("n_failed", 0))
        if "n" not in system:
            system["n"] = next((s["n"] for s in system.values() if isinstance(s, dict) and "n" in s), 0)
    return summary


def system_of(summary: dict, name: str) -> tuple[str, dict]:
    """The model's row: the one named exactly ``name``. Anything looser can put another
    system's scores on the card (a peer in a side-by-side summary, a sole row of some other
    model, or an annotated row holding fold models' scores), so it is an error instead."""
    systems = summary["systems"]
    if name in systems:
        return name, systems[name]
    raise ConfigError(f"summary has no row named {name!r} (rows: {', '.join(systems)}); "
                      "export with --name set to the model's row name")


def card_sections(text: str) -> dict[str, str]:
    """``## Title`` -> body of an existing card."""
    body = text.split("\n---\n", 1)[1] if text.startswith("---\n") else text
    sections, title = {}, None
    for line in body.splitlines():
        if line.startswith("## "):
            title = line[3:].strip()
            sections[title] = []
        elif title is not None:
            sections[title].append(line)
    return {k: "\n".join(v).strip() for k, v in sections.items()}


def card_folder(recipe_folder: str, out_folder: str, target: str) -> str | None:
    """The folder whose card describes this model: the output folder on a re-export of the
    same model, else the source when it is a model folder with a card (exporting it into a
    new folder must not lose what its card documents). Never a replaced model's card."""
    folders = ([out_folder] if target == "same" else []) + [recipe_folder]
    return next((f for f in folders if os.path.isfile(os.path.join(f, "README.md"))
                 and not os.path.isdir(os.path.join(f, "save"))), None)


def kept_example(folder: str | None, sections: dict[str, str]) -> tuple[str, str | None]:
    """The example when --example is not given: the clip the carried card's folder ships, with
    the note its card gave it (a user's own clip is not swapped for the default one); the
    default clip only where there is none."""
    clip = os.path.join(folder, EXAMPLE) if folder else ""
    if not os.path.isfile(clip):
        return DEFAULT_EXAMPLE, None
    note = re.match(rf"`{re.escape(EXAMPLE)}` is (.+?); `{re.escape(EXAMPLE_ENHANCED)}` is this model's output",
                    sections.get("Example", ""), re.S)
    return clip, note.group(1) if note else "a short noisy clip (its source was not described)"


# -- the card ------------------------------------------------------------------------
def slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower().split("(")[0]).strip("-") or "test-set"


def model_index(name: str, summaries: dict[str, dict]) -> list[dict]:
    """Hub ``model-index`` results: task audio-to-audio, one entry per test set with the
    model's mean scores (metric ids as in the summaries: pesq, stoi, ...)."""
    results = []
    for label, summary in summaries.items():
        _, system = system_of(summary, name)
        scores = [{"type": m, "value": round(float(system[m]["mean"]), 4), "name": LABELS[m]}
                  for m in LABELS if isinstance(system.get(m), dict) and math.isfinite(system[m].get("mean", math.nan))]
        if scores:
            results.append({"task": dict(TASK), "dataset": {"type": slug(label), "name": label},
                            "metrics": scores})
    return results


def front_matter(enhancer, name: str, summaries: dict[str, dict], license: str, datasets: list[str],
                 language: str) -> str:
    ssl = enhancer.ssl
    tags = ["speech-enhancement", "audio-to-audio", "speechbrain", "speechbrain-sslse", "pytorch"]
    tags += ["log1p"] if enhancer.input != "ssl" else []
    tags += ["self-supervised-learning", ssl.model_type] if ssl is not None else []
    meta = {"language": [language], "license": license, "library_name": "speechbrain",
            "pipeline_tag": "audio-to-audio", "tags": tags}
    if datasets:
        meta["datasets"] = list(datasets)
    results = model_index(name, summaries)
    if results:
        meta["metrics"] = sorted({m["type"] for r in results for m in r["metrics"]}, key=list(LABELS).index)
        meta["model-index"] = [{"name": name, "results": results}]
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=1000) + "---\n\n"


def describe(enhancer) -> str:
    ssl = enhancer.ssl
    spectrum = "log1p magnitude spectrum (201 bins)"
    if ssl is None:
        return spectrum
    src = f"`{ssl.source}`" if ssl.source and not ssl.backbone_in_checkpoint else (
        f"`{ssl.source}`-shaped" if ssl.source else f"a {ssl.model.config.num_hidden_layers}-layer, "
        f"{ssl.output_size}-dim {ssl.model_type}-shaped")
    layers = "last layer" if ssl.output == "last" else f"learned weighted sum of {len(ssl.layer_ids)} hidden states"
    emb = f"{ssl.model_type} embeddings ({src} encoder, {MODES[ssl.mode]}; {layers})"
    return emb if enhancer.input == "ssl" else f"{spectrum} + {emb}"


def default_limitations(enhancer, evaluated: bool) -> str:
    """Limitations that hold for any model this script exports; say more with --limitations."""
    ssl = enhancer.ssl
    lines = [
        "- Measured only on the test sets under Results; how it does on speech, noise, rooms and microphones "
        "unlike its training data is unknown." if evaluated else
        "- Not evaluated: this card holds no measured scores. Score it on data like yours "
        "(`sslse-evaluate`) before relying on it.",
        "- Quality depends on the training data (see Training data); noise types it never saw may be "
        "suppressed little or leave artefacts.",
        "- 16 kHz processing: other rates are resampled in and out, so nothing above 8 kHz is kept.",
        "- A real-valued mask on the noisy magnitude with the noisy phase: no dereverberation, and speech "
        "the noise has destroyed cannot be restored.",
    ]
    if ssl is not None and not ssl.backbone_in_checkpoint:
        lines.append(f"- Loading needs the SSL encoder `{ssl.source}` (downloaded from the Hugging Face Hub, or "
                     "from its cache when offline).")
    if ssl is not None and ssl.mode == "scratch":
        lines.append("- Its SSL encoder was trained from scratch on the enhancement data, not self-supervised "
                     "pretrained.")
    return "\n".join(lines)


def carried_limitations(kept: str, enhancer, evaluated: bool) -> str:
    """A kept Limitations section with this script's lines that depend on --summary rewritten
    ("Not evaluated" <-> "Measured only on the test sets under Results"), in place: a line
    written for the old card must not contradict this one's Results. Other lines stay."""
    now = default_limitations(enhancer, evaluated).splitlines()
    then = default_limitations(enhancer, not evaluated).splitlines()
    swap = {old: new for old, new in zip(then, now) if old != new}
    return "\n".join(swap.get(line, line) for line in kept.splitlines())


def default_training(settings: dict) -> str:
    if not settings:
        return "Not described at export (see the recipe folder this model came from)."
    keys = [k for k in ("experiment", "data_folder", "number_of_epochs", "batch_size", "lr", "valid_split")
            if settings.get(k) is not None]
    listed = ", ".join(f"{k} `{settings[k]}`" for k in keys)
    return (f"Trained with speechbrain-sslse's `recipes/VCTK/train.py` ({listed}); full settings: the recipe "
            f"folder's `hyperparams.yaml`. The data itself was not described at export (`--training`).")


def model_card(enhancer, name: str, summaries: dict[str, dict], training: str, limitations: str,
               license: str = "apache-2.0", datasets: list[str] | None = None, hub_id: str | None = None,
               code_url: str | None = None, example_note: str | None = None, chunk: float = 30.0,
               overlap: float = 1.0, language: str = "en") -> str:
    ssl = enhancer.ssl
    total = sum(p.numel() for p in enhancer.parameters())
    in_ssl = sum(p.numel() for p in ssl.model.parameters()) if ssl is not None else 0
    params = f"{total / 1e6:.2f} M" + (f" ({in_ssl / 1e6:.2f} M of them in the SSL encoder)" if in_ssl else "")
    tables = "\n\n".join(f"**{label}**\n\n{markdown_table(s['systems'])}" for label, s in summaries.items())
    results = ("Measured with `sslse-evaluate` (PESQ wide-band, Hu & Loizou composite measures CSIG / CBAK / "
               "COVL, STOI, segmental SNR; mean ± 95 % confidence half-width; `floored`: utterances a metric "
               "could not score, counted at its floor).\n\n" + tables) if tables else (
        "Not evaluated at export. Score it with `sslse-evaluate` and re-export with `--summary LABEL=summary.json`.")
    if code_url:
        install = f'pip install "speechbrain-sslse @ git+{code_url}"'
    else:
        install = ("# the speechbrain-sslse package (Python >= 3.10; brings torch, SpeechBrain 1.1, transformers),\n"
                   f"# version {__version__} or later, from a checkout of its repository:\n"
                   "pip install /path/to/speechbrain-sslse")
    source = hub_id or f"/path/to/{name}"
    source_note = "Hub id, or the path of a local copy of this folder" if hub_id else \
        "this folder (absolute path), or its Hub id once uploaded"
    example, example_files = "", ""
    if example_note:
        example = (f"## Example\n\n`{EXAMPLE}` is {example_note}; `{EXAMPLE_ENHANCED}` is this model's output for "
                   "it, written through `EnhanceSSL.enhance_file` when the folder was exported. To hear the "
                   "difference on your machine:\n\n```python\nimport os\nfrom speechbrain_sslse import EnhanceSSL\n\n"
                   f'model = "{source}"  # {source_note}\n'
                   "EnhanceSSL.from_hparams(source=model).enhance_file(os.path.join(model, "
                   f'"{EXAMPLE}"), "{EXAMPLE_ENHANCED}")  # a local folder\n```\n\n')
        example_files = (f"| `{EXAMPLE}` | a short noisy input (see Example) |\n"
                         f"| `{EXAMPLE_ENHANCED}` | its enhanced version (float WAV) |\n")
    ckpt = "masker" + (" + layer weights and norms" if ssl is not None and ssl.output == "weighted_sum" else "")
    if ssl is not None:
        ckpt += " + SSL encoder weights" if ssl.backbone_in_checkpoint else f" (the frozen encoder comes from `{ssl.source}`)"
    weights = "learned softmax weight of each SSL hidden state" if ssl is not None and ssl.layer_weights is not None \
        else "empty: no weighted layer sum in this model"
    body = BODY.format(
        name=name, what=describe(enhancer), package=f"[speechbrain-sslse]({code_url})" if code_url else "speechbrain-sslse",
        params=params,
        install=install, source=source, source_note=source_note, chunk=chunk, overlap=overlap, example=example,
        results=results, training=training, limitations=limitations, ckpt=ckpt, weights=weights,
        example_files=example_files, citations=CITATIONS)
    return front_matter(enhancer, name, summaries, license, datasets or [], language) + body


# -- export --------------------------------------------------------------------------
def export(recipe_folder: str, out_folder: str, name: str | None = None, summaries: dict[str, str] | None = None,
           training: str = "", limitations: str = "", ssl_source: str | None = None,
           datasets: list[str] | None = None, hub_id: str | None = None, code_url: str | None = None,
           example: str | None = None, example_note: str | None = None, license: str = "apache-2.0",
           replace: bool = False, ssl_hub_id: str | None = None) -> str:
    """Loads ``recipe_folder`` (a trained recipe folder, or a model folder) and writes
    ``out_folder`` with its card; returns ``out_folder``. ``replace``: ``out_folder`` may
    hold another model, which is replaced (``model_folder.export_target``). ``example``:
    None keeps the carried folder's clip (see ``kept_example``), "" ships none."""
    name = name or os.path.basename(os.path.normpath(out_folder))
    loaded = {label: read_summary(path) for label, path in (summaries or {}).items()}
    interface = load_model(recipe_folder, ssl_source=ssl_source)
    enhancer = interface.mods.enhancer
    digest = enhancer.weights_digest()
    for label, summary in loaded.items():  # scores of other weights must not go on this card
        measured = summary.get("weights")
        if isinstance(measured, dict):  # one digest per --model row (benchmarks/peers.py)
            measured = measured.get(name)
        if measured not in (None, digest):
            raise ConfigError(f"--summary {label}: measured with other weights than the model exported here "
                              f"(summary.json of {summary.get('model', 'another model')}: another checkpoint, "
                              "seed or a later training); evaluate this model again")
    settings = recipe_settings(recipe_folder)
    hub_ssl = settings.get("ssl_source") if ssl_source else None  # what the recipe named, not the local copy
    if ssl_source and not settings:  # a model folder: the name its own hyperparams.yaml gives
        hub_ssl = folder_ssl_source(recipe_folder)
    ssl = enhancer.ssl
    if ssl is not None and not ssl.backbone_in_checkpoint:  # a frozen encoder is named, not shipped
        named = ssl_hub_id or (hub_ssl if isinstance(hub_ssl, str) else None) or ssl.init_args.get("source")
        if not ssl_hub_id and isinstance(named, str) and os.path.exists(os.path.expanduser(named)):
            raise ConfigError(f"the frozen SSL encoder would be named by the local path {named}: the folder "
                              "would not load on another machine; pass --ssl_hub_id OWNER/NAME (the hub id "
                              "of that encoder)")
        hub_ssl = named
    target = export_target(out_folder, enhancer)
    if target == "other" and not replace:
        raise ConfigError(f"{out_folder} holds another model (its enhancer.ckpt differs); pass --replace to "
                          "replace it, with --training / --limitations for the new model's card")
    carried = card_folder(recipe_folder, out_folder, target)
    kept = card_sections(open(os.path.join(carried, "README.md"), encoding="utf-8").read()) if carried else {}
    kept_training = kept.get("Training data")
    if kept_training == default_training({}):  # the placeholder: regenerated, maybe from the recipe's settings
        kept_training = None
    training = training or kept_training or default_training(settings)
    limitations = (limitations or carried_limitations(kept.get("Limitations", ""), enhancer, bool(loaded))
                   or default_limitations(enhancer, bool(loaded)))
    if example is None:
        example, note = kept_example(carried, kept)
        example_note = example_note or note
    # --example '': no example of an earlier export may stay beside a card that names none
    stale = [f for f in (EXAMPLE, EXAMPLE_ENHANCED) if target in ("same", "other") and not example
             and os.path.isfile(os.path.join(out_folder, f))]
    if example and not example_note:
        example_note = DEFAULT_EXAMPLE_NOTE if os.path.abspath(example) == DEFAULT_EXAMPLE else f"`{os.path.basename(example)}`"
    chunk = float(getattr(interface.hparams, "chunk_seconds", 30.0))
    overlap = float(getattr(interface.hparams, "overlap_seconds", 1.0))
    card = model_card(enhancer, name, loaded, training, limitations, license, datasets, hub_id, code_url,
                      example_note if example else None, chunk, overlap)
    save_model_folder(enhancer, out_folder, card=card, example=example or None,
                      ssl_source=hub_ssl if isinstance(hub_ssl, str) else None, chunk_seconds=chunk,
                      overlap_seconds=overlap, batch_size=int(getattr(interface.hparams, "batch_size", 4)),
                      replace=replace)
    if not loaded and kept.get("Results", "").startswith("Measured"):  # said, so no one loses them unaware
        print(f"note: no --summary: the card's measured results ({carried}/README.md) are not carried over; "
              "give their --summary files again to keep them", file=sys.stderr)
    for f in stale:  # (save_model_folder has removed a replaced model's already)
        if os.path.isfile(os.path.join(out_folder, f)):
            os.remove(os.path.join(out_folder, f))
    if stale:
        whose = "the model it replaced" if target == "other" else "the earlier export"
        print(f"note: removed {', '.join(stale)} of {whose} (--example '' ships none)", file=sys.stderr)
    if target == "other":
        left = sorted(set(os.listdir(out_folder)) - {*FILES, EXAMPLE, EXAMPLE_ENHANCED, "README.md"})
        if left:
            print(f"note: {out_folder} still holds {', '.join(left)} from the model it replaced", file=sys.stderr)
    return out_folder


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipe_folder", help="trained recipe output folder (hyperparams.yaml + save/), or a model folder")
    ap.add_argument("out_folder", help="the model folder to write (may be recipe_folder itself for a model folder)")
    ap.add_argument("--name", help="model name (default: the out_folder's name)")
    ap.add_argument("--summary", action="append", default=[], metavar="LABEL=summary.json",
                    help="evaluation summary (sslse-evaluate) for the card's results and model-index (repeatable)")
    ap.add_argument("--training", default="", help="training-data section of the card (text or @file)")
    ap.add_argument("--limitations", default="", help="limitations section of the card (text or @file)")
    ap.add_argument("--dataset", action="append", default=None, metavar="HUB_DATASET_ID",
                    help="Hub id of a dataset the model was trained on (repeatable)")
    ap.add_argument("--hub_id", help="owner/name the folder will have on the Hub (used in the usage snippets)")
    ap.add_argument("--code_url", help="git URL of the speechbrain-sslse repository (for the install line)")
    ap.add_argument("--example", help="short noisy file shipped as example.wav ('' for none; default: the clip "
                                      "the folder, or the model folder exported, already ships, else a DNS-3 clip)")
    ap.add_argument("--example_note", help="what the example file is, for the card")
    ap.add_argument("--license", default="apache-2.0")
    ap.add_argument("--ssl_source", help="local folder for a hub encoder when offline (the card keeps the hub id "
                                         "the recipe named)")
    ap.add_argument("--ssl_hub_id", help="hub id to write for a frozen encoder the recipe loaded from a local "
                                         "folder (required then: a local path would not load elsewhere)")
    ap.add_argument("--replace", action="store_true",
                    help="out_folder holds another model: replace it (its card's sections are not carried over)")
    args = ap.parse_args(argv)
    bad = [s for s in args.summary if "=" not in s]
    if bad:
        ap.error(f"--summary takes LABEL=path/to/summary.json, got {bad[0]!r}")
    summaries = [s.rsplit("=", 1) for s in args.summary]  # a label may hold "=", a path rarely does
    labels = [label for label, _ in summaries]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:  # a dict would keep only the last one, silently
        ap.error(f"--summary label given twice: {twice[0]!r}")

    def text(value: str) -> str:
        return open(value[1:], encoding="utf-8").read().strip() if value.startswith("@") else value

    try:
        out = export(args.recipe_folder, args.out_folder, args.name, dict(summaries),
                     text(args.training), text(args.limitations), ssl_source=args.ssl_source, datasets=args.dataset,
                     hub_id=args.hub_id, code_url=args.code_url, example=args.example,
                     example_note=args.example_note, license=args.license, replace=args.replace,
                     ssl_hub_id=args.ssl_hub_id)
    except (ConfigError, OSError, ValueError) as err:  # (an unreadable --example is an AudioError, a ValueError)
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"exported -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
