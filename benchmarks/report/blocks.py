"""The report as data: a list of blocks, each a small dataclass. The content (``content.py``)
builds them from results; one renderer per format (``markdown.py``, ``html.py``) turns them into
text, as hyperfine keeps one exporter per format. A new format is a new renderer, nothing else."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Heading:
    level: int  # 1, 2 or 3
    text: str


@dataclass
class Paragraph:
    text: str


@dataclass
class BulletList:
    items: list[str]


@dataclass
class Table:
    header: list[str]
    rows: list[list]


@dataclass
class Chart:
    name: str  # file stem of its PNG
    title: str
    caption: str
    png: bytes = field(default=b"", repr=False)


Block = Heading | Paragraph | BulletList | Table | Chart
