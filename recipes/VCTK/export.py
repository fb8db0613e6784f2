#!/usr/bin/env python3
"""Turn a trained recipe folder into a self-contained model folder (Hugging Face Hub style).

    python recipes/VCTK/export.py results/sim_log1p/999 pretrained/sslse-log1p-sim \
        --summary "simulated test=pretrained/sslse-log1p-sim/eval/sim_test/summary.json"

Writes ``hyperparams.yaml`` (inference), ``enhancer.ckpt`` (masker + layer sum, plus the
SSL weights when they were trained or built from a config), ``layer_weights.json`` and a
``README.md`` model card. A frozen hub encoder is referenced by its hub id, not copied.
Load it with ``EnhanceSSL.from_hparams(source=<folder>)``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import sys

import torch
import yaml

from speechbrain_sslse.inference import load_model
from speechbrain_sslse.metrics import METRICS

_DROP_CONFIG_KEYS = {"architectures", "transformers_version", "_name_or_path", "torch_dtype", "dtype", "id2label", "label2id"}


def ssl_section(enhancer) -> dict:
    ssl = enhancer.ssl
    if ssl is None:
        return {}
    section = {"output": ssl.output, "layers": ssl.layer_ids, "mode": ssl.mode}
    if ssl.backbone_in_checkpoint:  # weights travel in enhancer.ckpt; the config rebuilds the shape
        cfg = {k: v for k, v in ssl.model.config.to_dict().items() if k not in _DROP_CONFIG_KEYS and not k.startswith("_")}
        section.update(source=None, config=cfg)
    else:
        section.update(source=ssl.source, config={})
    return section


def inference_yaml(enhancer, chunk_seconds: float = 30.0, overlap_seconds: float = 1.0) -> str:
    ssl = ssl_section(enhancer)
    lines = [
        f"# speechbrain-sslse inference hyperparameters (exported {datetime.date.today()})",
        "# Load with: EnhanceSSL.from_hparams(source=<this folder>)",
        "sample_rate: 16000",
        f"chunk_seconds: {chunk_seconds}  # longer inputs are enhanced in overlapping chunks",
        f"overlap_seconds: {overlap_seconds}",
        "batch_size: 4",
        "",
    ]
    if ssl:
        body = yaml.safe_dump({"source": ssl["source"], "config": ssl["config"], "mode": ssl["mode"],
                               "output": ssl["output"], "layers": ssl["layers"]}, sort_keys=False)
        lines += ["ssl_encoder: !new:speechbrain_sslse.lobes.SSLEncoder"]
        lines += ["    " + line for line in body.strip().splitlines()]
    else:
        lines += ["ssl_encoder: null"]
    lines += [
        "",
        "enhancer: !new:speechbrain_sslse.model.EnhancementModel",
        "    ssl_encoder: !ref <ssl_encoder>",
        f"    input: {enhancer.input}",
        f"    hidden_size: {enhancer.masker.hidden_size}",
        f"    num_layers: {enhancer.masker.blstm.num_layers}",
        "",
        "modules:",
        "    enhancer: !ref <enhancer>",
        "",
        "pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer",
        "    loadables:",
        "        enhancer: !ref <enhancer>",
        "",
    ]
    return "\n".join(lines)


CARD = """---
license: {license}
library_name: speechbrain
language: en
tags:
- speech-enhancement
- speechbrain
- self-supervised-learning
- {ssl_tag}
- pytorch
datasets:
{datasets}
metrics:
- pesq
- stoi
- csig
- cbak
- covl
model-index:
- name: {name}
  results:
{results}
---

# {name}

Mask-based speech enhancement with {what}, trained with
speechbrain-sslse (Hung et al., *Boosting Self-Supervised Embeddings
for Speech Enhancement*, Interspeech 2022): {input_desc} -> 2-layer BLSTM (256, directions
summed) -> sigmoid mask on the log1p magnitude; noisy-phase resynthesis at 16 kHz.
Trainable parameters: {params}.

## Usage

```python
from speechbrain_sslse.inference import EnhanceSSL

enhancer = EnhanceSSL.from_hparams(source="{source_hint}")
enhanced = enhancer.enhance_file("noisy.wav", "enhanced.wav")  # any rate, mono or multi-channel
```

or from the shell: `sslse-enhance noisy_folder/ -o enhanced/ --source {source_hint}`.

## Results

Measured with `sslse-evaluate` (PESQ wide-band, STOI, Hu & Loizou composite measures,
segmental SNR; mean ± 95 % confidence half-width).

{tables}

## Training data

{training}

## Limitations

{limitations}
"""


def _results_yaml(summaries: dict[str, dict], name: str) -> str:
    out = []
    for label, summary in summaries.items():
        system = summary["systems"].get(name) or next(v for k, v in summary["systems"].items() if k != "Noisy")
        out += [
            "  - task:",
            "      type: speech-enhancement",
            "      name: Speech Enhancement",
            "    dataset:",
            f"      name: {json.dumps(label)}",
            f"      type: {re.sub(r'[^a-z0-9]+', '-', label.lower().split('(')[0]).strip('-')}",
            "    metrics:",
        ]
        for m in METRICS:
            out += [f"    - type: {m}", f"      value: {system[m]['mean']:.4f}", f"      name: {m.upper()}"]
    return "\n".join(out) if out else "  []"


def model_card(enhancer, name: str, summaries: dict[str, dict], training: str, limitations: str,
               license: str = "apache-2.0", datasets: list[str] | None = None, source_hint: str | None = None) -> str:
    from speechbrain_sslse.evaluation import markdown_table

    ssl = enhancer.ssl
    what = "log1p spectra only" if ssl is None else f"{ssl.model_type} embeddings ({ssl.output}, {ssl.mode})"
    input_desc = {"spectrum": "log1p magnitude (201 bins)", "ssl": "SSL embeddings", "cross": "log1p magnitude + SSL embeddings"}[enhancer.input]
    tables = "\n\n".join(f"**{label}**\n\n{markdown_table(s['systems'])}" for label, s in summaries.items()) or "Not evaluated yet."
    params = f"{sum(p.numel() for p in enhancer.parameters()) / 1e6:.2f} M"
    return CARD.format(
        license=license, ssl_tag="log1p" if ssl is None else ssl.model_type,
        datasets="\n".join(f"- {d}" for d in (datasets or ["simulated"])), name=name,
        results=_results_yaml(summaries, name), what=what, input_desc=input_desc, params=params,
        source_hint=source_hint or f"pretrained/{name}", tables=tables, training=training, limitations=limitations,
    )


DEFAULT_LIMITATIONS = (
    "- Trained on a small simulated set (a few hundred utterances, 7 noise recordings) on a CPU: "
    "far from the paper's VoiceBank-DEMAND models; expect modest gains and artefacts on unseen noise.\n"
    "- 16 kHz processing; other rates are resampled in and out.\n"
    "- English read speech only; no dereverberation; masks cannot restore removed speech."
)


def export(recipe_folder: str, out_folder: str, name: str | None = None, summaries: dict[str, str] | None = None,
           training: str = "", limitations: str = DEFAULT_LIMITATIONS, ssl_source: str | None = None,
           datasets: list[str] | None = None) -> str:
    enhancer = load_model(recipe_folder, ssl_source=ssl_source).mods.enhancer
    return save_model_folder(enhancer, out_folder, name, summaries, training, limitations, datasets)


def save_model_folder(enhancer, out_folder: str, name: str | None = None, summaries: dict[str, str] | None = None,
                      training: str = "", limitations: str = DEFAULT_LIMITATIONS,
                      datasets: list[str] | None = None) -> str:
    """Writes the model folder for an in-memory ``EnhancementModel``."""
    name = name or os.path.basename(os.path.normpath(out_folder))
    os.makedirs(out_folder, exist_ok=True)
    torch.save(enhancer.checkpoint_state_dict(), os.path.join(out_folder, "enhancer.ckpt"))
    with open(os.path.join(out_folder, "hyperparams.yaml"), "w") as f:
        f.write(inference_yaml(enhancer))
    weights = enhancer.layer_weights
    with open(os.path.join(out_folder, "layer_weights.json"), "w") as f:
        json.dump({"layers": enhancer.ssl.layer_ids if enhancer.ssl else [],
                   "weights": weights.tolist() if weights is not None else []}, f, indent=1)
    loaded = {label: json.load(open(path)) for label, path in (summaries or {}).items()}
    with open(os.path.join(out_folder, "README.md"), "w") as f:
        f.write(model_card(enhancer, name, loaded, training or "See the recipe folder's hyperparams.yaml.",
                           limitations, datasets=datasets, source_hint=out_folder))
    return out_folder


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipe_folder", help="trained recipe output folder (hyperparams.yaml + save/)")
    ap.add_argument("out_folder")
    ap.add_argument("--name")
    ap.add_argument("--summary", action="append", default=[], metavar="LABEL=summary.json",
                    help="evaluation summaries to put in the model card (repeatable)")
    ap.add_argument("--training", default="", help="training-data paragraph for the card (text or @file)")
    ap.add_argument("--limitations", default="", help="limitations section for the card (text or @file)")
    ap.add_argument("--dataset", action="append", default=None, help="dataset tags for the card")
    ap.add_argument("--ssl_source", help="local folder for a hub encoder when offline")
    args = ap.parse_args(argv)
    summaries = dict(s.split("=", 1) for s in args.summary)
    def text(value: str) -> str:
        return open(value[1:]).read().strip() if value.startswith("@") else value

    out = export(args.recipe_folder, args.out_folder, args.name, summaries, text(args.training),
                 text(args.limitations) or DEFAULT_LIMITATIONS, ssl_source=args.ssl_source, datasets=args.dataset)
    print(f"exported -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
