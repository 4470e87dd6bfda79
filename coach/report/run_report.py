"""`coach report RUN_DIR`: one self-contained, offline HTML page for a run.

Findings first (what is wrong and what to change), then the curves the lectures tell a
person to look at: the loss as a scatter with its moving average, train/val accuracy,
the LR, update/weight ratios per layer over time (healthy near 1e-3), activation
histograms per layer at initialization and at the end, the `coach check` results and the
LR range plot. Plots are matplotlib PNGs embedded as data URIs: no network, no files
beside the page.
"""
from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

from coach.babysit.diagnose import diagnose_run, read_jsonl
from coach.babysit.findings import Finding
from coach.fmt import seconds, sig
from coach.report.figures import plot_confusion, plot_mistakes, plot_per_class
from coach.report.page import figure_uri, findings_html, img, plt, write_page
from coach.train.run import Run



def moving_average(values: list[float], window: int) -> list[float]:
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


def plot_loss(steps: list[dict[str, Any]]) -> str | None:
    pts = [(s["step"], s["loss"]) for s in steps if s.get("loss") is not None and math.isfinite(s["loss"])]
    if not pts:
        return None
    x, y = zip(*pts)
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.scatter(x, y, s=4, alpha=0.35, label="loss per logged step")
    ax.plot(x, moving_average(list(y), max(len(y) // 20, 1)), color="C3", label="moving average")
    ax.set(xlabel="step", ylabel="training loss", title="Loss")
    ax.legend()
    return figure_uri(fig)


def plot_accuracy(evals: list[dict[str, Any]]) -> str | None:
    if not evals or "val_acc" not in evals[0]:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.4))
    x = [e["epoch"] for e in evals]
    if "train_acc" in evals[0]:  # coach.watch records what the loop gave it
        ax.plot(x, [e["train_acc"] for e in evals], "o-", label="train")
    ax.plot(x, [e["val_acc"] for e in evals], "o-", label="validation")
    if "ema_val_acc" in evals[0]:
        ax.plot(x, [e["ema_val_acc"] for e in evals], "o--", label="validation (EMA weights)")
    ax.set(xlabel="epoch", ylabel="accuracy", title="Accuracy (gap = overfitting)")
    ax.legend()
    return figure_uri(fig)


def plot_lr(steps: list[dict[str, Any]]) -> str | None:
    pts = [(s["step"], s["lr"]) for s in steps if s.get("lr") is not None]
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.plot(*zip(*pts))
    ax.set(xlabel="step", ylabel="learning rate", title="Learning rate")
    return figure_uri(fig)


def plot_update_ratios(monitors: list[dict[str, Any]]) -> str | None:
    records = [m for m in monitors if m["layers"]]
    if not records:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for name in records[0]["layers"]:
        ax.plot([m["step"] for m in records], [m["layers"][name]["update_ratio"] for m in records], label=name)
    ax.axhline(1e-3, color="k", ls="--", lw=1, label="1e-3 (healthy)")
    ax.set(yscale="log", xlabel="step", ylabel="||dW|| / ||W||", title="Update / weight ratio per layer")
    ax.legend(fontsize=6)
    return figure_uri(fig)


def plot_activations(acts: dict[str, Any], title: str) -> str | None:
    if not acts:
        return None
    n = len(acts)
    fig, axes = plt.subplots(1, n, figsize=(min(2.2 * n, 11), 2.2), squeeze=False)
    for ax, (name, a) in zip(axes[0], acts.items()):
        lo, hi = a["range"]
        bins = len(a["hist"])
        width = (hi - lo) / max(bins, 1) or 1e-6
        ax.bar([lo + (i + 0.5) * width for i in range(bins)], a["hist"], width=width)
        ax.set_title(f"{name}\nmean {a['mean']:.2g} std {a['std']:.2g}", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9, y=1.12)
    return figure_uri(fig)


def plot_gradients(layers: dict[str, Any], title: str) -> str | None:
    """Histograms of log10 |gradient| per weight tensor, on one shared axis (monitors, check)."""
    layers = {n: g for n, g in layers.items() if g.get("grad_hist") or g.get("hist")}
    if not layers:
        return None
    n = len(layers)
    fig, axes = plt.subplots(1, n, figsize=(min(2.2 * n, 11), 2.2), squeeze=False, sharex=True)
    for ax, (name, g) in zip(axes[0], layers.items()):
        hist = g.get("grad_hist") or g["hist"]
        lo, hi = g.get("grad_range") or g["range"]
        width = (hi - lo) / len(hist)
        ax.bar([lo + (i + 0.5) * width for i in range(len(hist))], hist, width=width, color="C1")
        zero = g.get("grad_zero", g.get("zero")) or 0.0
        ax.set_title(f"{name}" + (f"\n{zero:.0%} exactly 0" if zero else ""), fontsize=7)
        ax.tick_params(labelsize=6)
        ax.set_yticks([])
        ax.set_xlabel("log10 |grad|", fontsize=6)
    fig.suptitle(title, fontsize=9, y=1.12)
    return figure_uri(fig)


def plot_lr_range(sweep: dict[str, Any], chosen: float | None = None) -> str | None:
    if not sweep.get("lrs"):
        return None
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.plot(sweep["lrs"], sweep["losses"])
    if sweep.get("suggested_lr"):
        ax.axvline(sweep["suggested_lr"], color="C3", ls="--", label=f"suggested {sig(sweep['suggested_lr'])}")
    if chosen:
        ax.axvline(chosen, color="C2", lw=2, label=f"chosen {sig(chosen)}")
    if sweep.get("suggested_lr") or chosen:
        ax.legend()
    ax.set(xscale="log", xlabel="learning rate", ylabel="smoothed loss", title="LR range test")
    return figure_uri(fig)


def render_run(run_dir: str | Path) -> Path:
    """Write RUN_DIR/report.html and return its path."""
    run = Run.open(run_dir)
    metrics = run.metrics()
    steps = [m for m in metrics if m.get("type") == "step"]
    evals = [m for m in metrics if m.get("type") == "eval"]
    monitors = read_jsonl(run.dir / "monitors.jsonl")
    findings: list[Any] = diagnose_run(run.dir) if evals else []
    check = json.loads((run.dir / "check.json").read_text()) if (run.dir / "check.json").exists() else None
    if check:
        findings = check["findings"] + [f.to_dict() for f in findings]
    s = run.summary
    final = s.get("final", {})
    head = (f"<p class='sub'>{html.escape(str(run.dir))} &middot; status {s.get('status', 'unknown')} &middot; "
            f"{s.get('steps', 0)} steps in {seconds(s.get('time', 0))} &middot; best {s.get('best', {}).get('monitor')} "
            f"{sig(s.get('best', {}).get('value'))} &middot; final val acc {sig(final.get('val_acc', float('nan')))}</p>")
    failed = [f for f in findings if (f.code if isinstance(f, Finding) else f["code"]) == "at_chance"]
    if failed or s.get("status") == "diverged":
        why = failed[0] if failed else None
        text = (why.message if isinstance(why, Finding) else why["message"]) if why else \
            f"training diverged: {s.get('stop_reason')}"
        head = f"<p class='failed'><b>This model learned nothing usable</b>: {html.escape(text)}</p>" + head
    cfg = run.config
    title = f"coach watch: {run.spec.get('watched')}" if s.get("watched") else \
        f"coach run: {cfg.data.name}, {run.spec.get('module') or cfg.model.name}"
    parts = [f"<h1>{html.escape(title)}</h1>", head, "<h2>Findings</h2>",
             findings_html(findings), "<h2>Curves</h2><div class='grid'>",
             img(plot_loss(steps), "loss"), img(plot_accuracy(evals), "accuracy"), img(plot_lr(steps), "lr"),
             img(plot_update_ratios(monitors), "update ratios"), "</div>"]
    parts += mistakes_section(run.dir / "val-predictions.npz", run.spec["classes"], run.spec["kind"],
                              "the model as training ended")
    acts = [m for m in monitors if m["acts"]]
    if acts:
        parts += ["<h2>Activations per layer</h2>",
                  img(plot_activations(acts[0]["acts"], f"at step {acts[0]['step']} (initialization)"), "init acts"),
                  img(plot_activations(acts[-1]["acts"], f"at step {acts[-1]['step']} (end)"), "final acts")]
    grads = [m for m in monitors if any(v.get("grad_hist") for v in m["layers"].values())]
    if grads:
        parts += ["<h2>Gradients per layer</h2>",
                  img(plot_gradients(grads[0]["layers"], f"at step {grads[0]['step']} (first sample)"), "first grads"),
                  img(plot_gradients(grads[-1]["layers"], f"at step {grads[-1]['step']} (end)"), "final grads")]
    if check:
        parts += ["<h2>coach check</h2>", check_table(check["steps"]),
                  img(plot_lr_range(check["steps"].get("lr_range", {})), "lr range")]
    return write_page(run.dir / "report.html", "coach report", parts)


def mistakes_section(path: Path, names: list[str], kind: str, which: str) -> list[str]:
    """Per-class accuracy, the confusion matrix and the most confident mistakes on validation."""
    from coach.train.run import load_predictions

    p = load_predictions(path)
    if p is None:
        return []
    m = p["mistakes"]
    return [f"<h2>What it gets wrong (validation, {html.escape(which)})</h2><div class='grid'>",
            img(plot_per_class(p["pred"], p["y"], names), "per-class accuracy"),
            img(plot_confusion(p["pred"], p["y"], names), "confusion matrix"), "</div>",
            img(plot_mistakes(p["mistake_x"], p["y"][m], p["pred"][m], p["conf"][m], names, kind),
                "confident mistakes") if len(m) else
            f"<p>No mistakes on validation: all {len(p['y'])} examples right.</p>"]


def check_table(steps: dict[str, Any]) -> str:
    rows = []
    if "initial_loss" in steps:
        i = steps["initial_loss"]
        rows.append(("initial loss", f"{sig(i['loss'])} (expected {sig(i['expected'])})"))
    if "gradcheck" in steps:
        rows.append(("gradient check", f"{sig(steps['gradcheck']['max_rel_error'])} ({steps['gradcheck']['verdict']})"))
    if "overfit" in steps:
        o = steps["overfit"]
        rows.append(("overfit small sample", f"{o['train_acc']:.0%} of {o['samples']} in {o['steps']} steps"))
    for p in steps.get("lr_probe", []):
        rows.append((f"LR {sig(p['lr'])}", f"loss {sig(p['first'])} -> {sig(p['last'])}"))
    if steps.get("lr_range", {}).get("suggested_lr"):
        rows.append(("LR range test suggests", sig(steps["lr_range"]["suggested_lr"])))
    return "<table>" + "".join(f"<tr><th>{html.escape(a)}</th><td>{html.escape(b)}</td></tr>" for a, b in rows) \
        + "</table>"
