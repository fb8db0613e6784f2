"""Figures people would rather see than read: CN distance vs layer weights (paper Figs.
2-3) and the learned layer weights over training. matplotlib only; no model code, so the
recipe can plot without importing the inference stack."""
from __future__ import annotations

import json
import re
from typing import Sequence

import numpy as np


def minmax(values: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] (the paper's plots); a flat curve maps to zeros."""
    values = np.asarray(values, dtype=float)
    span = values.max() - values.min()
    return (values - values.min()) / span if span > 0 else np.zeros_like(values)


def pearson(a: Sequence[float], b: Sequence[float]) -> float:
    """Pearson correlation coefficient."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_fig2(path: str, layer_ids, dist: np.ndarray, weights: np.ndarray | None, title: str) -> None:
    """Bundle of per-pair CN curves (min-max normalised), their mean, weights on a 2nd axis."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    for row in dist:
        ax.plot(layer_ids, minmax(row), color="0.75", lw=0.8)
    ax.plot(layer_ids, minmax(dist.mean(0)), color="C0", lw=2.5, label="CN distance (mean)")
    ax.set_xticks(list(layer_ids))
    ax.set_xlabel("layer")
    ax.set_ylabel("normalised CN distance")
    ax.set_ylim(-0.05, 1.05)
    if weights is not None:
        ax2 = ax.twinx()
        ax2.plot(layer_ids, weights, color="C3", marker="o", lw=2, label="learned weight")
        ax2.set_ylabel("learned layer weight", color="C3")
        r = pearson(weights, dist.mean(0))
        title += f"  (Pearson r = {r:.2f})"
    ax.set_title(title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_weight_history(jsonl_path: str, png_path: str) -> None:
    """Learned layer weights per epoch (the recipe's layer_weights.jsonl) as a heat map."""
    plt = _pyplot()
    rows = [json.loads(line) for line in open(jsonl_path) if line.strip()]
    weights = np.array([r["weights"] for r in rows])
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    image = ax.imshow(weights.T, aspect="auto", origin="lower", cmap="viridis",
                      extent=(rows[0]["epoch"] - 0.5, rows[-1]["epoch"] + 0.5, -0.5, weights.shape[1] - 0.5))
    fig.colorbar(image, ax=ax, label="softmax weight")
    ax.set_xlabel("epoch")
    ax.set_ylabel("layer (weighted-sum index)")
    ax.set_title("Learned layer weights during training")
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)


def plot_fig3(path: str, layer_ids, curves: dict[str, tuple[np.ndarray, np.ndarray | None]]) -> None:
    """Two (or more) sources side by side, e.g. before vs after fine-tuning: mean CN curves
    (solid) and, where a source has them, learned weights (dashed, right axis). The title
    names the sources (``--compare`` need not be a fine-tuning pair) and one legend below the
    axes covers both, so it hides no curve and is never empty."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    ax2 = ax.twinx() if any(w is not None for _, w in curves.values()) else None
    handles = []
    for i, (label, (dist, weights)) in enumerate(curves.items()):
        handles += ax.plot(layer_ids, minmax(dist.mean(0)), color=f"C{i}", lw=2, label=f"CN distance: {label}")
        if weights is not None and ax2 is not None:
            handles += ax2.plot(layer_ids, weights, color=f"C{i}", ls="--", marker="o", label=f"weights: {label}")
    ax.set_xticks(list(layer_ids))
    ax.set_xlabel("layer")
    ax.set_ylabel("normalised CN distance")
    if ax2 is not None:
        ax2.set_ylabel("learned layer weight")
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=8, frameon=False)
    title = "CN distance" + (" and layer weights" if ax2 is not None else "") + ": " + " vs ".join(curves)
    ax.set_title(title if len(title) <= 90 else title[:87] + "...", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def read_train_log(path: str) -> list[dict]:
    """Per-epoch rows of a recipe's ``train_log.txt`` (SpeechBrain's FileTrainLogger lines
    ``epoch: 3 - train loss: 8.9e-02 - valid loss: 4.3e-02, valid pesq: 1.61, ...``)."""
    rows = []
    for line in open(path, encoding="utf-8"):
        if not line.startswith("epoch:"):
            continue
        row = {}
        for part in line.replace(" - ", ", ").split(", "):
            key, _, value = part.partition(":")
            try:
                row[key.strip()] = float(value)
            except ValueError:
                continue
        rows.append(row)
    return rows


def read_averages(path: str) -> list[tuple[str, float]]:
    """(epochs, validation loss) of each checkpoint average a run logged
    (``average of epochs: 31-40 - valid loss: 2.6e-02, ...``)."""
    found = []
    for line in open(path, encoding="utf-8"):
        m = re.match(r"average of epochs: (\d+-\d+) - valid loss: ([-+.\deE]+)", line)
        if m:
            found.append((m.group(1), float(m.group(2))))
    return found


def plot_training_curves(train_log: str, png_path: str) -> None:
    """Training and validation loss per epoch, with validation PESQ / STOI beside them."""
    rows = read_train_log(train_log)
    if not rows:
        return
    plt = _pyplot()
    epochs = [r["epoch"] for r in rows]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    for key, label in (("train loss", "training L1 (log1p)"), ("valid loss", "validation L1 (log1p)")):
        ax.plot(epochs, [r.get(key, np.nan) for r in rows], label=label)
    best = min(rows, key=lambda r: r.get("valid loss", np.inf))
    ax.axvline(best["epoch"], color="0.6", ls="--", lw=1, label=f"best validation (epoch {best['epoch']:.0f})")
    for k, (span, loss) in enumerate(read_averages(train_log)):  # checkpoint averages, at their last epoch
        ax.plot([float(span.split("-")[-1])], [loss], "x", ms=8, color=f"C{k + 2}",
                label=f"mean of epochs {span}: {loss:.4f}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend()
    ax2.plot(epochs, [r.get("valid pesq", np.nan) for r in rows], color="C2", label="validation PESQ")
    ax2.set_ylabel("PESQ", color="C2")
    ax3 = ax2.twinx()
    ax3.plot(epochs, [r.get("valid stoi", np.nan) for r in rows], color="C3", label="validation STOI")
    ax3.set_ylabel("STOI", color="C3")
    ax2.set_xlabel("epoch")
    ax2.set_title("validation scores")
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
