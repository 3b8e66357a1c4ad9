"""The Markdown renderer: ``report.md``, with the charts as PNG files beside it."""

from __future__ import annotations

from .blocks import Block, BulletList, Chart, Heading, Paragraph, Table


def _cell(s) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


class MarkdownRenderer:
    filename = "report.md"

    def render(self, blocks: list[Block]) -> str:
        return "\n".join(self._render[type(b)](self, b) for b in blocks)

    def heading(self, b: Heading) -> str:
        return "#" * b.level + " " + b.text + "\n"

    def paragraph(self, b: Paragraph) -> str:
        return b.text + "\n"

    def bullets(self, b: BulletList) -> str:
        return "\n".join(f"- {x}" for x in b.items) + "\n"

    def table(self, b: Table) -> str:
        lines = ["| " + " | ".join(map(_cell, b.header)) + " |", "|" + "---|" * len(b.header)]
        lines += ["| " + " | ".join(map(_cell, row)) + " |" for row in b.rows]
        return "\n".join(lines) + "\n"

    def chart(self, b: Chart) -> str:
        return f"### {b.title}\n\n![{b.title}]({b.name}.png)\n\n*{b.caption}*\n"

    _render = {Heading: heading, Paragraph: paragraph, BulletList: bullets, Table: table, Chart: chart}
