"""The autopilot session's report.html: the result first, then each stage's decision, its
reason, what it cost in seconds and what it bought on validation."""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from coach.autopilot.session import Session
from coach.fmt import seconds as duration_text
from coach.report.run_report import STYLE, findings_html

STAGES = (("setup", "1. Data and the plain recipe (the floor)"), ("cost", "2-3. Cost model and model size"),
          ("check", "4. Babysitter checks"), ("search", "5. Search (successive halving in seconds)"),
          ("curves", "6. Reading the winner's curves"), ("final", "7. Final training"),
          ("choose", "8. What helps (validation split)"), ("test", "9. Test set (once)"))


def fmt(v: Any) -> str:
    """Numbers for people: 3 significant digits."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    return f"{v:.3g}" if isinstance(v, float) else f"{v:,}"


def table(head: list[str], rows: list[list[Any]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def stage_details(s: Session, name: str, info: dict[str, Any]) -> list[str]:
    parts = []
    if name == "cost" and info.get("costs"):
        parts.append(table(["width", "parameters", "s / step", "chosen"],
                           [[c["width"], c["params"], c["step"], "yes" if c["width"] == info["width"] else ""]
                            for c in info["costs"]]))
    if name in ("check", "curves") and info.get("findings"):
        parts.append(findings_html(info["findings"]))
    if name == "search" and (s.out / "sweep" / "sweep.json").exists():
        import json
        sweep = json.loads((s.out / "sweep" / "sweep.json").read_text())
        keys = list(sweep["space"])
        parts.append(table(["rung", "trial", *keys, "val acc", "seconds", "epochs", "status"],
                           [[t["stage"], t["number"], *[t["params"].get(k, "unchanged" if t["number"] == 0 else "")
                                                         for k in keys],
                             f"{t['value']:.4f}" if t["value"] is not None else "", t.get("seconds", 0.0),
                             t.get("epochs", 0.0), t["status"]] for t in sweep["trials"]]))
        if info.get("outcome"):
            parts.append(f"<p>{html.escape(info['outcome'])}</p>")
        parts.append("<p><a href='sweep/report.html'>command center: every trial's curves</a></p>")
    if name == "choose" and info.get("candidates"):
        parts.append(table(["candidate", "val acc", "views"],
                           [[c["name"], f"{c['acc']:.4f}", c["views"]] for c in info["candidates"]]))
    if name == "final" and (s.out / "final" / "summary.json").exists():
        parts.append("<p><a href='final/report.html'>the final run's report: curves, monitors, findings</a></p>")
    return parts


def render_session(s: Session) -> Path:
    from coach.report import render, render_run

    st = s.state["stages"]
    parts = [f"<h1>coach autopilot: {html.escape(str(s.state.get('data')))}</h1>"]
    if st.get("test", {}).get("failed"):
        parts.append(f"<p class='failed'><b>This model learned nothing usable</b>: "
                     f"{html.escape(st['test']['failed'])}</p>")
    if "test" in st:
        params = st.get("final", {}).get("summary", {}).get("params", "")
        parts.append(f"<p class='sub'>test accuracy <b>{st['test']['test_acc']:.4f}</b> &middot; "
                     f"{duration_text(s.state.get('elapsed', s.elapsed()))} of a {duration_text(s.budget)} budget "
                     f"&middot; model {fmt(params)} parameters, "
                     f"in <a href='final/report.html'>final/</a></p>")
    timeline = [[title.split(". ", 1)[1], st[name].get("seconds", 0.0)] for name, title in STAGES if name in st]
    if timeline:
        parts.append("<h2>Where the time went</h2>" + table(["stage", "seconds"], timeline))
    for name, title in STAGES:
        if name not in st:
            continue
        parts.append(f"<h2>{title}</h2><p>{html.escape(st[name].get('decision', ''))}</p>")
        parts += stage_details(s, name, st[name])
    if (s.out / "sweep" / "sweep.json").exists():
        render(s.out / "sweep")
    if (s.out / "final" / "summary.json").exists():
        render_run(s.out / "final")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>coach autopilot</title><style>{STYLE}</style>"
            "</head><body>" + "\n".join(parts) + "</body></html>")
    path = s.out / "report.html"
    path.write_text(page)
    return path
