"""What every coach page shares: the style, matplotlib drawing off-screen into PNG data URIs
(no network, no files beside a page), figures and the findings list."""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from coach.atomic import atomic_write_bytes  # noqa: E402
from coach.babysit.findings import Finding  # noqa: E402

__all__ = ["STYLE", "figure_uri", "findings_html", "img", "inline", "plt", "write_page"]

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{margin-bottom:.2em} .sub{color:#666;margin-top:0}
.finding{border-left:6px solid #999;padding:.4em .8em;margin:.5em 0;background:#f7f7f7}
.finding.error{border-color:#c0392b}.finding.warning{border-color:#e67e22}.finding.info{border-color:#2980b9}
.finding code{font-weight:bold} .advice{color:#333;margin-top:.2em}
.failed{background:#fdecea;border-left:6px solid #c0392b;padding:.5em .8em}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:1em} figure{margin:0} img{max-width:100%;height:auto}
table{border-collapse:collapse} td,th{border:1px solid #ddd;padding:.2em .6em;text-align:right}
"""


def figure_uri(fig: plt.Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def findings_html(findings: list[Finding] | list[dict[str, Any]]) -> str:
    items = [f.to_dict() if isinstance(f, Finding) else f for f in findings]
    if not items:
        return "<p>No findings: nothing looks wrong.</p>"
    order = {"error": 0, "warning": 1, "info": 2}
    out = []
    for f in sorted(items, key=lambda f: order[f["severity"]]):
        out.append(f'<div class="finding {f["severity"]}"><code>{html.escape(f["code"])}</code> '
                   f'({f["severity"]}): {html.escape(f["message"])}'
                   f'<div class="advice">&rarr; {html.escape(f["advice"])}</div></div>')
    return "\n".join(out)


# after loading, the page says on its body how many of its pictures drew, how many it has and how
# wide it is (the Chromium tests read these)
LOADED = ("<script>window.addEventListener('load',()=>{const b=document.body.dataset;"
          "b.plots=[...document.images].filter(i=>i.complete&&i.naturalWidth>0).length;"
          "b.images=document.images.length;b.width=document.documentElement.scrollWidth;});</script>")


def write_page(path: Path, title: str, parts: list[str], style: str = "", script: str = "") -> Path:
    """Every coach page: the shell, the shared style (plus `style`), the parts in order (empty
    ones left out), the load report and `script`; written atomically. Returns path."""
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}{style}</style></head><body>" + "\n".join(p for p in parts if p)
            + LOADED + (f"<script>{script}</script>" if script else "") + "</body></html>")
    atomic_write_bytes(path, page.encode())
    return path


def inline(page: str, height: int = 720) -> str:
    """A whole page as a notebook shows it (`_repr_html_`): in an iframe of its own, so the page's
    style cannot leak into the notebook's, and the notebook's into the page."""
    return (f'<iframe srcdoc="{html.escape(page, quote=True)}" style="width:100%;height:{height}px;border:1px '
            'solid #ddd"></iframe>')


def img(uri: str | None, alt: str) -> str:
    return f'<figure><img class="plot" alt="{html.escape(alt)}" src="{uri}"></figure>' if uri else ""
