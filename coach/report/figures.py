"""Pictures the run page and the autopilot page share: what the model gets wrong (per-class
accuracy, the confusion matrix, the most confident mistakes), where a session's time went,
and validation accuracy against the learning rate. Each returns a PNG data URI (or None
when there is nothing to draw), like every page's plots."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from coach.fmt import seconds, sig
from coach.report.page import figure_uri, plt


def confusion(pred: np.ndarray, y: np.ndarray, classes: int) -> np.ndarray:
    """counts[true, predicted]."""
    return np.bincount(y * classes + pred, minlength=classes * classes).reshape(classes, classes)


def _short(names: list[str], n: int = 10) -> list[str]:
    return [str(c)[:n] for c in names]


def plot_per_class(pred: np.ndarray, y: np.ndarray, names: list[str]) -> str | None:
    if not len(y):
        return None
    cm = confusion(pred, y, len(names))
    acc = np.diag(cm) / np.maximum(cm.sum(1), 1)
    fig, ax = plt.subplots(figsize=(6, 3.4))
    order = np.argsort(acc)
    ax.barh(range(len(names)), acc[order], color=["C3" if a < acc.mean() else "C0" for a in acc[order]])
    ax.set_yticks(range(len(names)), [_short(names)[i] for i in order], fontsize=7)
    ax.axvline((pred == y).mean(), color="k", ls="--", lw=1, label=f"overall {sig(float((pred == y).mean()))}")
    ax.set(xlim=(max(0.0, float(acc.min()) - 0.05), 1.0), xlabel="validation accuracy",
           title="Per-class accuracy (worst at the bottom)")
    ax.legend(fontsize=7, loc="lower right")
    return figure_uri(fig)


def plot_confusion(pred: np.ndarray, y: np.ndarray, names: list[str]) -> str | None:
    if not len(y):
        return None
    k = len(names)
    cm = confusion(pred, y, k)
    rows = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    im = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), _short(names), rotation=60, fontsize=7)
    ax.set_yticks(range(k), _short(names), fontsize=7)
    if k <= 12:
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=6,
                            color="white" if rows[i, j] > 0.5 else "black")
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix (validation; row-normalized colour)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    return figure_uri(fig)


def plot_mistakes(x: np.ndarray, true: np.ndarray, pred: np.ndarray, conf: np.ndarray, names: list[str],
                  kind: str) -> str | None:
    """The most confident mistakes: thumbnails for images, small line plots for signals and vectors."""
    n = len(x)
    if not n:
        return None
    cols = min(8, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.45 * cols, 1.7 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= n:
            ax.axis("off")
            continue
        if kind == "image":
            img = x[i].transpose(1, 2, 0) if x[i].shape[0] in (3, 4) else x[i][0]
            lo, hi = float(img.min()), float(img.max())
            ax.imshow((img - lo) / (hi - lo or 1.0), cmap=None if img.ndim == 3 else "gray")
        else:
            ax.plot(x[i].reshape(-1), lw=0.8)
        ax.set_title(f"true {str(names[true[i]])[:9]}\npred {str(names[pred[i]])[:9]} {conf[i]:.0%}", fontsize=6,
                     color="C3")
    fig.suptitle("The most confident mistakes (validation)", fontsize=9)
    fig.tight_layout()
    return figure_uri(fig)


def plot_timeline(stages: list[tuple[str, float | None, float]], budget: float) -> str | None:
    """One bar per stage: seconds used, and the seconds planned for it where the plan set them."""
    if not stages:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 0.45 * len(stages) + 1.2))
    names = [s[0] for s in stages]
    ys = np.arange(len(stages))[::-1]
    used = [s[2] for s in stages]
    planned = [s[1] if s[1] is not None else 0.0 for s in stages]
    ax.barh(ys + 0.18, planned, height=0.34, color="#bbb", label="planned")
    ax.barh(ys - 0.18, used, height=0.34, color="C0", label="used")
    for y, u in zip(ys, used):
        ax.text(u, y - 0.18, " " + seconds(u), va="center", fontsize=7)
    ax.set_yticks(ys, names, fontsize=8)
    ax.set(xlabel="seconds", title=f"Where the time went ({seconds(sum(used))} of a {seconds(budget)} budget)")
    ax.legend(fontsize=7, loc="lower right")
    return figure_uri(fig)


def plot_lr_vs_val(points: list[dict[str, Any]], chosen_lr: float | None) -> str | None:
    """Validation accuracy against the learning rate (log axis), coloured by model width; trials
    that were stopped (pruned, or lost their rung) are grey; the chosen LR is marked."""
    pts = [p for p in points if p.get("lr") and p.get("val") is not None and math.isfinite(p["val"])]
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.4))
    widths = sorted({p["width"] for p in pts})
    cmap = plt.get_cmap("viridis")
    colour = {w: cmap(i / max(len(widths) - 1, 1)) for i, w in enumerate(widths)}
    for w in widths:
        live = [p for p in pts if p["width"] == w and not p.get("stopped")]
        if live:
            ax.scatter([p["lr"] for p in live], [p["val"] for p in live], color=colour[w], s=22,
                       label=f"width {w}", zorder=3)
    grey = [p for p in pts if p.get("stopped")]
    if grey:
        ax.scatter([p["lr"] for p in grey], [p["val"] for p in grey], color="#bbb", s=18, label="stopped / pruned")
    if chosen_lr:
        ax.axvline(chosen_lr, color="C3", ls="--", lw=1, label=f"chosen LR {sig(chosen_lr)}")
    ax.set(xscale="log", xlabel="learning rate", ylabel="validation accuracy",
           title="Validation accuracy vs learning rate")
    ax.legend(fontsize=7)
    return figure_uri(fig)


def plot_decisions(arms: dict[str, list[tuple[float, float]]], predicted: dict[str, float], final: float,
                   realized: float | None = None) -> str | None:
    """Each arm's validation accuracy at the lengths it was trained to completion (points), the
    fitted curve carried to the final training's length (dashed) and its prediction there; the
    final model's own validation accuracy when it is known (a star). arms: name -> [(seconds, acc)]."""
    if not arms:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for i, (name, pts) in enumerate(arms.items()):
        xs, ys = zip(*pts)
        ax.plot(xs, ys, "o-", color=f"C{i}", label=name)
        if name in predicted:
            ax.plot([xs[-1], final], [ys[-1], predicted[name]], "--", color=f"C{i}", lw=1)
            ax.plot([final], [predicted[name]], "s", color=f"C{i}", mfc="none")
    if realized is not None:
        ax.plot([final], [realized], "*", color="k", ms=12, label=f"the final model {sig(realized)}")
    ax.set_xscale("log")
    ax.set(xlabel="seconds of training (each run to the end of its own schedule)", ylabel="validation accuracy",
           title="Decisions: measured runs, extrapolated to the final length")
    ax.legend(fontsize=7, loc="lower right")
    return figure_uri(fig)
