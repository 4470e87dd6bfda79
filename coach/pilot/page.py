"""The autopilot session's report.html: the result first, then each stage's decision, its
reason, what it cost in seconds and what it bought on validation."""
from __future__ import annotations

import html
import json
import time
from pathlib import Path
from typing import Any, Callable

from coach.pilot.session import Session
from coach.babysit.diagnose import read_jsonl
from coach.fmt import seconds as duration_text
from coach.fmt import sig
from coach.report.figures import plot_decisions, plot_lr_vs_val, plot_timeline
from coach.report.page import findings_html, img, write_page

STAGES = (("setup", "1. Data and the plain recipe (the floor)"), ("cost", "2-3. Cost model and model size"),
          ("check", "4. Babysitter checks"), ("search", "5. Decisions, judged at the length that counts"),
          ("curves", "6. Reading the floor's curves"), ("final", "7. Final training"),
          ("choose", "8. What helps (validation split)"), ("test", "9. Test set (once)"))


# a session's pages (its own, the final run's, the sweep's) drew as long as this many loss plots:
# 24 figures, 2.4 s, where one loss plot took 0.066 s (digits as an .npz, 2-core CPU, 2026-12-07);
# an image session adds its mistakes' pictures
PAGE_IN_LOSS_PLOTS = 40


def price_pages(started: float, clock: Callable[[], float] = time.perf_counter) -> float:
    """Seconds the session's pages will take to draw on this machine now, from `started` (on
    `clock`, taken before this module's import): a loss plot drawn twice, the first paying for
    matplotlib's import and its font cache, the rest of the pages priced at the second. The end
    of a session is planned with it, so a slow or busy machine keeps more of its budget for the
    pages (a fixed allowance of 3.5 s overran a 12 s budget on a slower CI machine)."""
    from coach.report.run_report import plot_loss

    steps = [{"type": "step", "step": i, "loss": 2.0 / (1 + i / 50), "lr": 1e-3} for i in range(400)]
    plot_loss(steps)
    first = clock()
    plot_loss(steps)
    return (first - started) + (PAGE_IN_LOSS_PLOTS - 1) * (clock() - first)


def fmt(v: Any) -> str:
    """Numbers for people: 3 significant digits; counts with thousands separators."""
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return sig(v)


def table(head: list[str], rows: list[list[Any]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def stage_details(s: Session, name: str, info: dict[str, Any]) -> list[str]:
    """Each decision as a small table: the alternatives, what they measured and cost, the one chosen."""
    parts = []
    if name == "cost" and info.get("costs"):
        parts.append(table(["width", "parameters", "seconds / step", "chosen"],
                           [[c["width"], c["params"], c["step"], "yes" if c["width"] == info["width"] else ""]
                            for c in info["costs"]]))
    if name in ("check", "curves") and info.get("findings"):
        parts.append(findings_html(info["findings"]))
    if name == "search" and (s.out / "sweep" / "sweep.json").exists():
        sweep = json.loads((s.out / "sweep" / "sweep.json").read_text())
        parts.append(table(["option", "length", "seconds", "epochs", "val acc", "train acc", "status"],
                           [[t["params"].get("option", ""), t["stage"], t.get("seconds", 0.0), t.get("epochs", 0.0),
                             t["value"] if t["value"] is not None else "", t.get("train_acc", ""), t["status"]]
                            for t in sweep["trials"]]))
        j = info.get("judgement")
        if j:
            parts.append(img(decisions_figure(s, info, sweep), "decisions"))
            parts.append(table(["option", "predicted val acc at the final length", "gain over the floor",
                                "standard error", "adopted"],
                               [["floor", j["floor_acc"], "", "", ""]] +
                               [[v["option"], v["predicted_acc"], v["gain"], v["se"], "yes" if v["adopted"] else ""]
                                for v in j["verdicts"]]))
        parts.append("<p><a href='sweep/report.html'>command center: every run's curves</a></p>")
    if name == "choose" and info.get("candidates"):
        parts.append(table(["candidate", "val acc", "val loss", "views", "seconds", "chosen"],
                           [[c["name"], c["acc"], c.get("loss", ""), c["views"], c.get("seconds", ""),
                             "yes" if c["name"] == info.get("pick") else ""] for c in info["candidates"]]))
        gap = info.get("gap")
        if isinstance(gap, dict):
            parts.append(table(["train - validation accuracy", "predicted (from the decision runs)", "realized"],
                               [["the final model", f"{sig(gap['predicted'])} +- {sig(gap['predicted_se'])}",
                                 gap["realized"]]]))
    if name == "final" and (s.out / "final" / "summary.json").exists():
        parts.append("<p><a href='final/report.html'>the final run's report: curves, monitors, findings</a></p>")
    return parts


def decisions_figure(s: Session, info: dict[str, Any], sweep: dict[str, Any]) -> str | None:
    """The decision runs as curves, each arm's prediction at the final length, and where the
    final model ended (its chosen weights' validation accuracy)."""
    arms: dict[str, list[tuple[float, float]]] = {}
    lengths = info["plan"]["lengths"]
    for t in sorted(sweep["trials"], key=lambda t: t["stage"]):
        if t["value"] is not None:
            arms.setdefault(t["params"]["option"], []).append((lengths[int(t["stage"].split("-")[1]) - 1], t["value"]))
    j = info["judgement"]
    predicted = {"floor": j["floor_acc"], **{v["option"]: v["predicted_acc"] for v in j["verdicts"]}}
    pick = s.done("choose") or {}
    realized = next((c["acc"] for c in pick.get("candidates", []) if c["name"] == pick.get("pick")), None)
    return plot_decisions(arms, predicted, info["plan"]["final"], realized)


def result_block(s: Session, st: dict[str, Any]) -> list[str]:
    """The result first: test accuracy, time against the budget, model size."""
    parts = []
    if st.get("test", {}).get("failed"):
        parts.append(f"<p class='failed'><b>This model learned nothing usable</b>: "
                     f"{html.escape(st['test']['failed'])}</p>")
    if "test" in st:
        summary = st.get("final", {}).get("summary", {})
        cfg = st.get("setup", {}).get("config", {})
        width = st.get("cost", {}).get("width", cfg.get("model", {}).get("width"))
        rows = [["test accuracy", f"<b>{sig(st['test']['test_acc'])}</b> (evaluated once)"],
                ["time", f"{duration_text(s.state.elapsed)} of a {duration_text(s.budget)} "
                         "budget"],
                ["model", f"{html.escape(str(cfg.get('model', {}).get('name', '')))} width {width}, "
                          f"{fmt(summary.get('params', 0))} parameters, in <a href='final/report.html'>final/</a>"],
                ["predicts with", html.escape(str(st.get("choose", {}).get("pick", "")))],
                ["plain recipe, same time", "not run in a session (bench/autopilot.py runs it side by side)"]]
        parts.append("<table class='result'>" + "".join(f"<tr><th>{a}</th><td>{b}</td></tr>" for a, b in rows)
                     + "</table>")
    return parts


def timeline(s: Session, st: dict[str, Any]) -> str | None:
    return plot_timeline([(title.split(". ", 1)[1], st[name].get("planned"), st[name].get("seconds", 0.0))
                          for name, title in STAGES if name in st], s.budget)


def lr_points(s: Session, st: dict[str, Any]) -> list[dict[str, Any]]:
    """Validation accuracy at each learning rate tried: the checks' LR probe and the search's trials."""
    points = []
    check = s.out / "check.json"
    if check.exists():
        width = st.get("check", {}).get("checked_width")
        for p in json.loads(check.read_text())["steps"].get("lr_probe", []):
            points.append({"lr": p["lr"], "val": p.get("val_acc"), "width": width, "stopped": p.get("diverged")})
    sweep = s.out / "sweep" / "sweep.json"
    if sweep.exists():
        from coach.train.run import Run
        for t in json.loads(sweep.read_text())["trials"]:
            if t.get("run_dir") and (Path(t["run_dir"]) / "config.yaml").exists():
                cfg = Run.open(t["run_dir"]).config
                points.append({"lr": cfg.optim.lr, "val": t["value"], "width": cfg.model.width,
                               "stopped": t["status"] not in ("promoted", "complete", "completed")})
    return points


def render_session(s: Session) -> Path:
    from coach.report import render, render_run
    from coach.report.run_report import mistakes_section, plot_accuracy, plot_loss, plot_lr, plot_lr_range

    st = s.state.stages
    parts = [f"<h1>coach autopilot: {html.escape(str(s.state.data))}</h1>", *result_block(s, st),
             "<h2>Where the time went</h2>", img(timeline(s, st), "budget timeline")]
    final = s.out / "final"
    if (final / "metrics.jsonl").exists():
        metrics = read_jsonl(final / "metrics.jsonl")
        steps = [m for m in metrics if m.get("type") == "step"]
        evals = [m for m in metrics if m.get("type") == "eval"]
        parts += ["<h2>The final model's training</h2><div class='grid'>", img(plot_loss(steps), "final loss"),
                  img(plot_accuracy(evals), "final accuracy"), img(plot_lr(steps), "final lr"), "</div>"]
    chosen_lr = st.get("check", {}).get("lr")
    lr_range = json.loads((s.out / "check.json").read_text())["steps"].get("lr_range", {}) \
        if (s.out / "check.json").exists() else {}
    if lr_range or "check" in st:
        parts += ["<h2>Learning rate</h2><div class='grid'>", img(plot_lr_range(lr_range, chosen_lr), "lr range"),
                  img(plot_lr_vs_val(lr_points(s, st), chosen_lr), "val vs lr"), "</div>"]
    if (final / "model.json").exists():
        spec = json.loads((final / "model.json").read_text())
        parts += mistakes_section(s.out / "val-predictions.npz", spec["classes"], spec["kind"],
                                  "the chosen model")
    parts.append("<h2>Each decision</h2>")
    for name, title in STAGES:
        if name not in st:
            continue
        parts.append(f"<h3>{title}</h3><p>{html.escape(st[name].get('decision', ''))}</p>")
        parts += stage_details(s, name, st[name])
    if (s.out / "sweep" / "sweep.json").exists():
        render(s.out / "sweep")
    if (final / "summary.json").exists():
        render_run(final)
    return write_page(s.out / "report.html", "coach autopilot", parts)
