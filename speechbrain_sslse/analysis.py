"""Clean-noisy (CN) distance per SSL layer vs learned layer weights (paper Sec. 3.3, Figs. 2-3).

d_l = mean over frames t of || g_l(z_clean_l(t)) - g_l(z_noisy_l(t)) ||^2 (Eq. 1), with
g_l(z) = (z - mu_l) / sigma_l. Here mu_l and sigma_l are per-channel mean and standard
deviation over the frames of layer l of *both* signals of the pair (pooled), so one
normalisation is applied to clean and noisy alike and identical inputs give exactly 0.
Curves are averaged over randomly sampled pairs (Eq. 3; per-pair curves are kept as the
"bundle") and min-max normalised to [0, 1] for plots, as in the paper.

    sslse-analyze --source results/sim_scratch_small/999 --manifest train.json --out analysis/
"""
from __future__ import annotations

import csv
import io
import json
import os
import random
from typing import Sequence

import numpy as np
import torch

from .audio import read_mono_16k
from .output_plan import write_text_atomic
from .inference import load_model, model_label
from .lobes import SSLEncoder
from .metrics import LENGTH_TOLERANCE
from .plots import minmax, pearson, plot_fig2, plot_fig3
from .progress import progress_bar

EPS = 1e-5


def cn_distance_from_states(clean: Sequence[torch.Tensor], noisy: Sequence[torch.Tensor]) -> np.ndarray:
    """Eq. 1 for one pair: per-layer distance from (frames, dim) embeddings."""
    out = []
    for zc, zn in zip(clean, noisy):
        n = min(len(zc), len(zn))
        zc, zn = zc[:n].double(), zn[:n].double()
        pooled = torch.cat([zc, zn])
        mu, sigma = pooled.mean(0), pooled.std(0, unbiased=False).clamp(min=EPS)
        out.append(float((((zc - mu) / sigma - (zn - mu) / sigma) ** 2).sum(-1).mean()))
    return np.array(out)


def cn_distances(
    encoder: SSLEncoder, pairs: Sequence[tuple[str, str]], batch_size: int = 4, device: str = "cpu",
    progress: bool | None = None,
) -> np.ndarray:
    """(pairs, layers) distances over ``encoder.layer_ids``; pairs are (clean, noisy) paths.
    Pairs run in padded batches (the encoder masks padding exactly); a pair whose lengths
    differ by more than ``LENGTH_TOLERANCE`` samples is refused (``ValueError``)."""
    encoder = encoder.to(device).eval()
    rows = []
    with progress_bar(total=len(pairs), desc="CN distance", unit="pair", enabled=progress) as bar:
        for k in range(0, len(pairs), batch_size):
            sigs = []
            for clean, noisy in pairs[k : k + batch_size]:
                c, x = read_mono_16k(clean), read_mono_16k(noisy)
                if abs(len(c) - len(x)) > LENGTH_TOLERANCE:  # not a pair: its frames would not line up
                    raise ValueError(f"{clean} ({len(c)} samples) and {noisy} ({len(x)}) differ by more than "
                                     f"{LENGTH_TOLERANCE} samples: not a clean/noisy pair of one recording")
                n = min(len(c), len(x))
                sigs += [c[:n], x[:n]]
            lengths = torch.tensor([len(s) for s in sigs])
            batch = torch.stack([torch.nn.functional.pad(s, (0, int(lengths.max()) - len(s))) for s in sigs]).to(device)
            with torch.inference_mode():
                states, frames, _ = encoder.hidden_states(batch, lengths.to(device))
            for i in range(0, len(sigs), 2):
                f = int(frames[i])
                rows.append(cn_distance_from_states([s[i, :f].cpu() for s in states], [s[i + 1, :f].cpu() for s in states]))
                bar.update(1)
    return np.stack(rows)


def sample_pairs(manifest: str, n: int, seed: int = 999) -> list[tuple[str, str]]:
    """n random (clean, noisy) pairs from a SpeechBrain JSON manifest, or from a
    ``clean_dir:noisy_dir`` pair of folders matched by file name (all if n <= 0)."""
    from .evaluation import read_manifest

    items = [(clean, noisy) for _, clean, noisy in read_manifest(manifest)]
    if 0 < n < len(items):
        items = random.Random(seed).sample(items, n)
    return items


# -- sources and weights ------------------------------------------------------------
def load_encoder(source: str, layers: str = "auto",
                 ssl_source: str | None = None) -> tuple[SSLEncoder, np.ndarray | None, str]:
    """(encoder, learned weights or None, label) from a hub id / local HF folder, an exported
    model folder, a trained recipe folder (its possibly fine-tuned encoder), or a JSON/YAML
    file holding a config mapping with ``model_type`` (a random encoder, seeded).
    ``ssl_source``: local folder of the hub encoder a model folder names (offline)."""
    if os.path.isfile(source) and source.endswith((".json", ".yaml", ".yml")):
        import yaml

        torch.manual_seed(0)
        with open(source) as f:
            return SSLEncoder(config=yaml.safe_load(f), mode="frozen", layers=layers), None, model_label(source)
    if os.path.isfile(os.path.join(source, "hyperparams.yaml")):
        enhancer = load_model(source, ssl_source=ssl_source).mods.enhancer
        if enhancer.ssl is None:
            raise ValueError(f"{source}: this model has no SSL encoder (log1p only)")
        weights = enhancer.layer_weights
        return enhancer.ssl, None if weights is None else weights.numpy(), model_label(source)
    return SSLEncoder(source=source, mode="frozen", output="last", layers=layers), None, model_label(source)


def read_layer_weights(path: str) -> np.ndarray:
    """Learned weighted-sum weights from an exported folder (layer_weights.json), a recipe
    folder (best checkpoint), or a JSON file with a ``weights`` list."""
    exported = os.path.join(path, "layer_weights.json")
    if os.path.isfile(exported) and not os.path.isdir(os.path.join(path, "save")):
        path = exported
    if os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as f:
                weights = np.array(json.load(f)["weights"], dtype=float)
            if weights.ndim != 1 or not len(weights):
                raise ValueError("not a list")
        except (KeyError, TypeError, ValueError, IndexError):
            raise ValueError(f"{path}: expected JSON with a non-empty \"weights\" list of numbers "
                             "(layer_weights.json of an exported model)") from None
        return weights
    _, weights, _ = load_encoder(path)
    if weights is None:
        raise ValueError(f"{path}: no learned layer weights (last-layer or log1p-only model)")
    return weights


# -- outputs ---------------------------------------------------------------------------
def write_csv(path: str, layer_ids: Sequence[int], dist: np.ndarray, weights: np.ndarray | None) -> None:
    table = io.StringIO(newline="")
    w = csv.writer(table)
    w.writerow(["layer", "mean", "std", "mean_minmax", "weight", *[f"pair{i}" for i in range(len(dist))]])
    mean = dist.mean(0)
    norm = minmax(mean)
    for j, layer in enumerate(layer_ids):
        weight = "" if weights is None else f"{weights[j]:.6f}"
        w.writerow([layer, f"{mean[j]:.6f}", f"{dist[:, j].std():.6f}", f"{norm[j]:.6f}", weight,
                    *[f"{v:.6f}" for v in dist[:, j]]])
    write_text_atomic(path, table.getvalue())


def analyze(source: str, manifest: str, out_dir: str, n_pairs: int = 20, drop_last: int = 0, seed: int = 999,
            batch_size: int = 4, device: str = "cpu", weights_from: str | None = None,
            compare: str | None = None, ssl_source: str | None = None) -> dict:
    """Runs the analysis for ``source`` (and ``compare``, e.g. the pre-fine-tuning encoder);
    writes cn_distance_<label>.csv, summary.json, fig2_<label>.png (+ fig3_compare.png).
    Every distance is computed before an earlier analysis in ``out_dir`` is replaced, so a
    failure (a broken pair, a missing encoder) leaves that one as it was."""
    if drop_last < 0:
        raise ValueError(f"drop_last must be >= 0, got {drop_last}")
    pairs = sample_pairs(manifest, n_pairs, seed)
    results, summary = {}, {"pairs": len(pairs), "manifest": manifest, "seed": seed,
                            "normalisation": "per-channel mean/std over the pair's clean+noisy frames (pooled)",
                            "drop_last": drop_last, "sources": {}}
    loaded = {}  # every check before the heavy work and before the folder changes
    for src in [source] + ([compare] if compare else []):
        encoder, weights, label = load_encoder(src, ssl_source=ssl_source)
        if label in loaded:  # its files would overwrite the first source's
            raise ValueError(f"--source and --compare have the same label {label!r} ({source}, {compare}); "
                             "copy or rename one folder")
        if drop_last >= len(encoder.layer_ids):
            raise ValueError(f"drop_last={drop_last} leaves no layer of {len(encoder.layer_ids)}")
        if src == source and weights_from:
            weights = read_layer_weights(weights_from)
        if weights is not None and len(weights) != len(encoder.layer_ids):
            raise ValueError(f"{label}: {len(weights)} weights for {len(encoder.layer_ids)} layers")
        loaded[label] = (src, encoder, weights)
    earlier = earlier_analysis(out_dir, loaded)
    dists = {label: cn_distances(encoder, pairs, batch_size, device) for label, (_, encoder, _) in loaded.items()}
    replaced = clear_earlier_analysis(out_dir, earlier)
    if replaced:
        print(f"{out_dir}: replaced an earlier analysis ({', '.join(replaced)})")
    os.makedirs(out_dir, exist_ok=True)
    # the record first: a run killed while writing leaves files a rerun knows as an analysis's
    record = os.path.join(out_dir, "summary.json")
    write_text_atomic(record, json.dumps({**summary, "sources": {k: None for k in loaded}, "complete": False}, indent=1))
    for label, (src, encoder, weights) in loaded.items():
        dist = dists[label]
        layer_ids = list(encoder.layer_ids)
        if drop_last:
            layer_ids, dist = layer_ids[:-drop_last], dist[:, :-drop_last]
            weights = None if weights is None else weights[:-drop_last]
        write_csv(os.path.join(out_dir, f"cn_distance_{label}.csv"), layer_ids, dist, weights)
        plot_fig2(os.path.join(out_dir, f"fig2_{label}.png"), layer_ids, dist, weights, f"{label}: CN distance per layer")
        entry = {"source": src, "layers": layer_ids, "mean": dist.mean(0).tolist(), "std": dist.std(0).tolist(),
                 "mean_minmax": minmax(dist.mean(0)).tolist(),
                 "weights": None if weights is None else [float(w) for w in weights],
                 "pearson_weights_vs_cn": None if weights is None else _finite(pearson(weights, dist.mean(0)))}
        summary["sources"][label] = entry
        results[label] = (layer_ids, dist, weights)
    if compare:
        ids = next(iter(results.values()))[0]
        if all(r[0] == ids for r in results.values()):
            plot_fig3(os.path.join(out_dir, FIG3), ids, {k: (v[1], v[2]) for k, v in results.items()})
        else:  # layer k of encoders of different depths is not the same point: no figure, said so
            summary["fig3"] = ("not drawn: the sources have different layers ("
                               + "; ".join(f"{k}: {v[0]}" for k, v in results.items()) + ")")
            print(f"no {FIG3}: {summary['fig3'][len('not drawn: '):]}")
    write_text_atomic(record, json.dumps(summary, indent=1))
    return summary


FIG3 = "fig3_compare.png"


def _finite(value: float) -> float | None:
    """None for NaN (a flat weight or distance curve has no correlation): JSON has no NaN."""
    return value if np.isfinite(value) else None


def _analysis_files(labels) -> list[str]:
    return [f"cn_distance_{k}.csv" for k in labels] + [f"fig2_{k}.png" for k in labels] + [FIG3, "summary.json"]


def earlier_analysis(out_dir: str, labels) -> list[str]:
    """The files an earlier analysis wrote into ``out_dir`` (named by its summary.json),
    which a new one for ``labels`` replaces. ``ValueError`` (before any work) when the
    folder holds a summary.json that is no analysis record (an evaluation's, say) or a file
    the new analysis would write that no earlier analysis wrote: neither is overwritten."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"{out_dir}: is a file; give a folder for the analysis")
    record = os.path.join(out_dir, "summary.json")
    earlier: list[str] = []
    if os.path.exists(record):
        try:
            with open(record, encoding="utf-8") as f:
                data = json.load(f)
            if not isinstance(data["sources"], dict) or "systems" in data:  # score tables (peers.py has sources)
                raise ValueError("not an analysis record")
            earlier = _analysis_files(data["sources"])
        except (OSError, ValueError, KeyError, TypeError):
            raise ValueError(f"{record} was not written by sslse-analyze (no analysis record); "
                             "it would be overwritten: choose another --out") from None
    clash = [n for n in _analysis_files(labels) if os.path.exists(os.path.join(out_dir, n)) and n not in earlier]
    if clash:
        raise ValueError(f"{out_dir} holds {', '.join(clash)}, which no earlier analysis wrote; "
                         "they would be overwritten: choose another --out")
    return [n for n in earlier if os.path.isfile(os.path.join(out_dir, n))]


def clear_earlier_analysis(out_dir: str, names: list[str]) -> list[str]:
    """Removes the ``names`` an earlier analysis wrote (``earlier_analysis``), so none of
    them is left beside a new summary that does not list it; returns them."""
    for name in names:
        os.remove(os.path.join(out_dir, name))
    return names
