"""`coach report SWEEP_DIR`: the lectures' "command center" as one offline HTML page.

Every trial's training loss and validation accuracy on shared axes, coloured by a
hyperparameter; the validation metric against each hyperparameter (log axes for log
ranges) so the good region shows; the coarse-to-fine stages; a sortable table of
trials; and warnings (best at a range edge, all trials diverged, too few trials).
"""
from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import cm, colors  # noqa: E402

from coach.babysit.diagnose import read_jsonl  # noqa: E402
from coach.errors import UserError  # noqa: E402
from coach.fmt import sig  # noqa: E402
from coach.report.page import figure_uri, img, write_page  # noqa: E402
from coach.sweep.space import parse_dim, too_few_trials  # noqa: E402

SORT_JS = """
document.querySelectorAll('table.sortable th').forEach((th, i) => th.addEventListener('click', () => {
  const body = th.closest('table').tBodies[0];
  const rows = [...body.rows];
  const dir = th.dataset.dir = th.dataset.dir === 'asc' ? 'desc' : 'asc';
  const key = r => { const t = r.cells[i].dataset.v ?? r.cells[i].textContent; const n = parseFloat(t);
                     return isNaN(n) ? t : n; };
  rows.sort((a, b) => (key(a) > key(b) ? 1 : key(a) < key(b) ? -1 : 0) * (dir === 'asc' ? 1 : -1));
  rows.forEach(r => body.appendChild(r));
}));
window.addEventListener('load', () => { document.body.dataset.plots =
  [...document.images].filter(i => i.complete && i.naturalWidth > 0).length; });
"""


def _colour(trials: list[dict[str, Any]], key: str | None, log: bool) -> Any:
    vals = [t["params"].get(key) for t in trials if key and isinstance(t["params"].get(key), (int, float))]
    if not vals:
        return lambda t: "C0", None
    lo, hi = min(vals), max(vals)
    norm = colors.LogNorm(lo, hi) if log and lo > 0 and hi > lo else colors.Normalize(lo, hi if hi > lo else lo + 1)
    cmap = cm.viridis
    return (lambda t: cmap(norm(t["params"][key])) if isinstance(t["params"].get(key), (int, float)) else "grey"), \
        cm.ScalarMappable(norm=norm, cmap=cmap)


def plot_curves(trials: list[dict[str, Any]], field: str, key: str | None, log: bool, title: str) -> str | None:
    colour, mappable = _colour(trials, key, log)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    drawn = 0
    for t in trials:
        if not t.get("run_dir") or not Path(t["run_dir"]).exists():
            continue
        recs = read_jsonl(Path(t["run_dir"]) / "metrics.jsonl")
        kind = "step" if field == "loss" else "eval"
        pts = [(r["step"], r[field]) for r in recs if r["type"] == kind and r.get(field) is not None
               and math.isfinite(r[field])]
        if pts:
            ax.plot(*zip(*pts), color=colour(t), alpha=0.7, lw=1, marker=".", ms=4)  # short trials: a few points
            drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    if field == "loss":
        ax.set_yscale("log")
    ax.set(xlabel="step", ylabel=field.replace("_", " "), title=title)
    if mappable is not None:
        fig.colorbar(mappable, ax=ax, label=key)
    return figure_uri(fig)


def plot_vs_params(trials: list[dict[str, Any]], space: dict[str, Any], monitor: str) -> str | None:
    done = [t for t in trials if t["value"] is not None and t["state"] == "COMPLETE"]
    keys = list(space)
    if not done or not keys:
        return None
    fig, axes = plt.subplots(1, len(keys), figsize=(min(4 * len(keys), 12), 3.2), squeeze=False)
    stages = sorted({t["stage"] for t in trials})
    for ax, key in zip(axes[0], keys):
        dim = parse_dim(key, space[key])
        for si, stage in enumerate(stages):
            pts = [(t["params"][key], t["value"]) for t in done if t["stage"] == stage and key in t["params"]]
            if pts:
                xs, ys = zip(*pts)
                if not dim.numeric:
                    xs = [str(x) for x in xs]
                ax.scatter(xs, ys, s=18, label=stage, marker="o^sD"[si % 4])
        if dim.log:
            ax.set_xscale("log")
        ax.tick_params(axis="x", labelsize=6, rotation=30)
        ax.set(xlabel=key, ylabel=monitor)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{monitor} against each hyperparameter (each point a trial)", fontsize=9)
    return figure_uri(fig)


def warnings_for(summary: dict[str, Any]) -> list[str]:
    out = []
    trials = summary["trials"]
    complete = [t for t in trials if t["state"] == "COMPLETE" and t["value"] is not None]
    diverged = [t for t in trials if t.get("status") == "diverged"]
    if trials and len(diverged) == len(trials):
        out.append("every trial diverged: the ranges are too high (start with a lower learning rate range)")
    dims = len(summary["space"])
    if too_few_trials(len(complete), dims):
        out.append(f"only {len(complete)} completed trials for {dims} hyperparameters (fewer than 3 per "
                   "dimension): too few to trust the best one; run more trials or search fewer dimensions")
    best = summary.get("best")
    if best and summary["stages"]:
        last_space = summary["stages"][-1]["space"]
        for key, expr in last_space.items():
            d = parse_dim(key, expr)
            if d.numeric and key in best["params"]:
                u = d.to_unit(best["params"][key])
                if u < 0.1 or u > 0.9:
                    out.append(f"the best {key} = {sig(best['params'][key])} sits at the "
                               f"{'low' if u < 0.1 else 'high'} edge of {expr}: widen the range that way")
    for st in summary["stages"]:
        out += st.get("notes", [])
    return out


def render_sweep(sweep_dir: str | Path, colour_by: str | None = None) -> Path:
    sweep = Path(sweep_dir)
    if not (sweep / "sweep.json").exists():
        raise UserError(f"{sweep}: not a sweep directory (no sweep.json)")
    summary = json.loads((sweep / "sweep.json").read_text())
    trials, space, monitor = summary["trials"], summary["space"], summary["monitor"]
    key = colour_by or next((k for k, v in space.items() if "log" in str(v)), next(iter(space), None))
    log = bool(key) and "log" in str(space.get(key, ""))
    best = summary.get("best")
    head = (f"<p class='sub'>{html.escape(str(sweep))} &middot; strategy {summary['strategy']} &middot; "
            f"{len(trials)} trials, {summary['compute_steps']} training steps, {summary['time']:.0f}s"
            + (f" &middot; best {monitor} {sig(best['value'])}" if best else "") + "</p>")
    warn = warnings_for(summary)
    parts = ["<h1>coach command center</h1>", head, "<h2>Warnings</h2>",
             "".join(f"<div class='finding warning'>{html.escape(w)}</div>" for w in warn) or "<p>None.</p>",
             "<h2>All trials</h2><div class='grid'>",
             img(plot_curves(trials, "loss", key, log, f"training loss (colour: {key})"), "loss curves"),
             img(plot_curves(trials, "val_acc", key, log, f"validation accuracy (colour: {key})"), "val curves"),
             "</div>", img(plot_vs_params(trials, space, monitor), "metric vs hyperparameters"),
             "<h2>Stages</h2>", _stages_table(summary["stages"]), "<h2>Trials</h2>", _trials_table(trials, space)]
    return write_page(sweep / "report.html", "coach sweep", parts, style="th{cursor:pointer}", script=SORT_JS)


def _stages_table(stages: list[dict[str, Any]]) -> str:
    rows = "".join(f"<tr><td>{html.escape(s['study'])}</td><td>{s['trials']}</td><td>{s['epochs']}</td>"
                   f"<td style='text-align:left'>{html.escape(', '.join(f'{k}: {v}' for k, v in s['space'].items()))}"
                   f"</td></tr>" for s in stages)
    return f"<table><tr><th>stage</th><th>trials</th><th>epochs</th><th>ranges</th></tr>{rows}</table>"


def _trials_table(trials: list[dict[str, Any]], space: dict[str, Any]) -> str:
    keys = list(space)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["stage", "trial", "state", "value", *keys])
    body = []
    for t in trials:
        cells = [t["stage"], t["number"], t.get("status") or t["state"].lower(),
                 sig(t["value"]) if t["value"] is not None else ""]
        cells += [sig(t["params"][k]) if isinstance(t["params"].get(k), float) else str(t["params"].get(k, ""))
                  for k in keys]
        body.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    return f"<table class='sortable'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
