"""`coach check --out DIR` and `coach report DIR` on it: the checklist's page, offline.

The findings first (most severe first), then what each step measured, the activation
and gradient histograms at initialization and the LR range test with its suggestion marked."""
from __future__ import annotations

import html
import json
from pathlib import Path

from coach.report.page import findings_html, img, write_page
from coach.report.run_report import check_table, plot_activations, plot_gradients, plot_lr_range


def render_check(folder: str | Path) -> Path:
    d = Path(folder)
    check = json.loads((d / "check.json").read_text())
    cfg = check.get("config", {})
    steps = check["steps"]
    model = cfg.get("model", {}).get("name", "")
    title = f"coach check: {cfg.get('data', {}).get('name', '')}, {'your module' if model == 'module' else model}"
    acts = {layer["name"]: {"mean": layer["mean"], "std": layer["std"], "hist": layer["hist"],
                            "range": layer["hist_range"]} for layer in steps.get("init", [])}
    parts = [f"<h1>{html.escape(title)}</h1>", "<h2>Findings</h2>", findings_html(check["findings"]),
             "<h2>The checklist</h2>", check_table(steps),
             img(plot_activations(acts, "activations at initialization"), "init acts"),
             img(plot_gradients(steps.get("init_grads", {}), "gradients at initialization (one backward pass)"),
                 "init grads"),
             img(plot_lr_range(steps.get("lr_range", {})), "lr range")]
    return write_page(d / "report.html", title, parts)
