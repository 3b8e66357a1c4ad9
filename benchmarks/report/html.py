"""The HTML renderer: ``report.html``, self-contained (charts embedded as base64 data URIs)."""

from __future__ import annotations

import base64
import html
import re

from .blocks import Block, BulletList, Chart, Heading, Paragraph, Table

_STYLE = ("body{font-family:sans-serif;font-size:14px;max-width:1320px;margin:auto;padding:0 8px}"
          "h1{font-size:22px;margin:10px 0 4px}h2{font-size:18px;margin:14px 0 6px}h3{font-size:15px;margin:10px 0 4px}"
          "p,ul{margin:4px 0}li{margin:1px 0}table{border-collapse:collapse;font-size:12px}"
          "td,th{border:1px solid #ccc;padding:2px 5px}img{max-width:100%}.cap{font-style:italic;color:#444}")  # fmt: skip


def _inline(text: str) -> str:
    """Escaped text with the one inline mark the content uses: **bold** (Markdown's own)."""
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(text))


class HtmlRenderer:
    filename = "report.html"

    def render(self, blocks: list[Block]) -> str:
        head = f"<!doctype html><html><head><meta charset='utf-8'><title>loglab benchmark report</title><style>{_STYLE}</style></head><body>"
        return "\n".join([head, *(self._render[type(b)](self, b) for b in blocks), "</body></html>"])

    def heading(self, b: Heading) -> str:
        return f"<h{b.level}>{html.escape(b.text)}</h{b.level}>"

    def paragraph(self, b: Paragraph) -> str:
        return f"<p>{html.escape(b.text)}</p>"

    def bullets(self, b: BulletList) -> str:
        return "<ul>" + "".join(f"<li>{_inline(x)}</li>" for x in b.items) + "</ul>"

    def table(self, b: Table) -> str:
        rows = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in b.header) + "</tr>"]
        rows += ["<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in b.rows]
        return "\n".join(rows) + "\n</table>"

    def chart(self, b: Chart) -> str:
        data = base64.b64encode(b.png).decode()
        title = html.escape(b.title)
        return f"<h3>{title}</h3><img alt='{title}' src='data:image/png;base64,{data}'><p class='cap'>{html.escape(b.caption)}</p>"

    _render = {Heading: heading, Paragraph: paragraph, BulletList: bullets, Table: table, Chart: chart}
