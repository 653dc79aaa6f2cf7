"""The report's building block, :class:`Section`, and its two renderings: self-contained HTML and Markdown."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

from ..experiments.aggregate import markdown_table

__all__ = ["Section", "render_html", "render_md", "say"]


@dataclass
class Section:
    """A titled part of the report.

    warnings : list of str, shown first and marked (a collapsed model, ...); paragraphs : list of str;
    tables : list of ``(caption, header, rows)``; figures : list of ``(name, png bytes, caption)``.
    """

    title: str
    warnings: list = field(default_factory=list)
    paragraphs: list = field(default_factory=list)
    tables: list = field(default_factory=list)
    figures: list = field(default_factory=list)


def say(log, message: str) -> None:
    """One progress line ("report: ...") on ``log`` (a text stream; None: quiet)."""
    if log is not None:
        print(f"report: {message}", file=log, flush=True)


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1200px;margin:24px auto;padding:0 20px;
color:#222}
h1{font-size:1.6em;border-bottom:2px solid #333;padding-bottom:6px}
h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:10px 0 18px;font-size:13px}
th,td{border:1px solid #ccc;padding:4px 9px;text-align:right}
th{background:#f0f2f5}td:first-child,th:first-child{text-align:left}
caption{caption-side:top;text-align:left;font-weight:600;padding:4px 0}
figure{margin:12px 0 22px}figcaption{font-size:12.5px;color:#555;max-width:900px}
img{max-width:100%;border:1px solid #eee}
p.meta{color:#666;font-size:12.5px}p.warn{color:#a00000;font-weight:600}nav a{margin-right:12px;font-size:13px}
"""


def render_html(title: str, sections: list[Section], meta: str) -> str:
    """One HTML page, figures inlined as base64 PNG (no external resource)."""
    esc = html.escape
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title>"
             f"<style>{_CSS}</style></head><body>",
             f"<h1>{esc(title)}</h1><p class='meta'>{esc(meta)}</p><nav>"]
    parts += [f"<a href='#s{i}'>{esc(s.title)}</a>" for i, s in enumerate(sections)]
    parts.append("</nav>")
    for i, s in enumerate(sections):
        parts.append(f"<section id='s{i}'><h2>{esc(s.title)}</h2>")
        parts += [f"<p class='warn'>Warning: {esc(w)}</p>" for w in s.warnings]
        parts += [f"<p>{esc(p)}</p>" for p in s.paragraphs]
        for cap, header, rows in s.tables:
            parts.append(f"<table><caption>{esc(cap)}</caption><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header)
                         + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in r) + "</tr>" for r in rows]
            parts.append("</table>")
        for name, data, cap in s.figures:
            b64 = base64.b64encode(data).decode()
            parts.append(f"<figure id='fig-{name}'><img alt='{esc(name)}' src='data:image/png;base64,{b64}'>"
                         f"<figcaption>{esc(cap)}</figcaption></figure>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def render_md(title: str, sections: list[Section], meta: str, fig_dir: Path) -> str:
    """Markdown text; the figures are written as PNG files into ``fig_dir`` and linked relative to its parent."""
    lines = [f"# {title}", "", f"_{meta}_", ""]
    fig_dir.mkdir(exist_ok=True)
    for i, s in enumerate(sections):
        lines += [f"## {s.title}", ""]
        lines += [f"**Warning:** {w}\n" for w in s.warnings]
        lines += [p + "\n" for p in s.paragraphs]
        for cap, header, rows in s.tables:
            lines += [f"**{cap}**", "", markdown_table(header, rows), ""]
        for name, data, cap in s.figures:
            fname = f"{i:02d}_{name}.png"
            (fig_dir / fname).write_bytes(data)
            lines += [f"![{name}]({fig_dir.name}/{fname})", "", f"_{cap}_", ""]
    return "\n".join(lines)

