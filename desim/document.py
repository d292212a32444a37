"""A document as a list of blocks (headings, paragraphs, bullets, tables, images), rendered
to Markdown, to HTML and to the terminal: `desim report` and `desim compare` write one
content in each form. The HTML is a minimal template, no dependency beyond the standard
library; the text may hold the Markdown inline markup `code`, **bold** and [links](url)."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote


@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Para:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    numeric: set[int] = field(default_factory=set)   # right-aligned columns
    status: int | None = None                         # column whose text sets a row's class


@dataclass
class Image:
    alt: str
    src: str  # a file's path relative to the document, as it is (percent-encoded when written)


Block = Heading | Para | Bullets | Table | Image


def to_markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"{'#' * b.level} {b.text}")
        elif isinstance(b, Para):
            out.append(b.text)
        elif isinstance(b, Bullets):
            out.append("\n".join(f"- {item}" for item in b.items))
        elif isinstance(b, Table):
            cell = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
            lines = ["| " + " | ".join(cell(h) for h in b.header) + " |",
                     "|" + "|".join("---:" if i in b.numeric else "---"
                                    for i in range(len(b.header))) + "|"]
            lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in b.rows]
            out.append("\n".join(lines))
        else:
            # a link in <...> may hold spaces and parentheses (CommonMark); the rest of
            # what a URL reads as its own (#, %, ?, <, >) percent-encoded
            src = quote(b.src, safe="/ ()")
            src = f"<{src}>" if re.search(r"[\s()]", src) else src
            out.append(f"![{b.alt}]({src})")
    return "\n\n".join(out) + "\n"


HTML_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: sans-serif; max-width: 80em; margin: 2em auto; padding: 0 1em; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 90%; }}
th, td {{ border: 1px solid #ccc; padding: 0.2em 0.5em; vertical-align: top; }}
td.num {{ text-align: right; }}
tr.ok td {{ background: #eef8ee; }}
tr.gap td {{ background: #fdf5e6; }}
tr.bad td {{ background: #fbe9e9; font-weight: bold; }}
img {{ max-width: 100%; }}
code {{ background: #f4f4f4; }}
</style>
</head>
<body>
{body}
</body>
</html>
"""


def _inline_html(text: str) -> str:
    """The Markdown inline markup the report's text may hold as HTML: `code` spans,
    **bold** and [links](url) outside them; everything else escaped."""
    out = []
    for i, part in enumerate(re.split(r"`([^`]+)`", text)):
        if i % 2:  # inside a code span: as it is
            out.append(f"<code>{html.escape(part)}</code>")
            continue
        part = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(part))
        out.append(re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", r'<a href="\2">\1</a>', part))
    return "".join(out)


def _row_class(text: str) -> str:
    if text.startswith("within") and "update" not in text:
        return "ok"
    if text.startswith("outside (known"):
        return "gap"
    return "bad"


def to_html(blocks: list[Block], title: str) -> str:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"<h{b.level}>{_inline_html(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            out.append(f"<p>{_inline_html(b.text)}</p>")
        elif isinstance(b, Bullets):
            out.append("<ul>\n" + "\n".join(f"<li>{_inline_html(i)}</li>" for i in b.items)
                       + "\n</ul>")
        elif isinstance(b, Table):
            head = "".join(f"<th>{_inline_html(h)}</th>" for h in b.header)
            rows = []
            for row in b.rows:
                cls = f' class="{_row_class(row[b.status])}"' if b.status is not None else ""
                cells = "".join(
                    f'<td class="num">{_inline_html(c)}</td>' if i in b.numeric
                    else f"<td>{_inline_html(c)}</td>" for i, c in enumerate(row))
                rows.append(f"<tr{cls}>{cells}</tr>")
            out.append(f"<table>\n<tr>{head}</tr>\n" + "\n".join(rows) + "\n</table>")
        else:
            out.append(f'<p><img src="{html.escape(quote(b.src))}" alt="{html.escape(b.alt)}">'
                       '</p>')
    return HTML_TEMPLATE.format(title=html.escape(title), body="\n".join(out))


def print_blocks(console: Any, blocks: list[Block]) -> None:
    """The blocks on a rich console: a table's cells as plain text (their inline markup
    dropped), folded onto more lines where the terminal is narrow, never cut short (rich's
    Markdown cuts a wide table's figures with an ellipsis); the rest as Markdown."""
    from rich.markdown import Markdown
    from rich.table import Table as RichTable
    from rich.text import Text

    def plain(text: str) -> Text:
        return Text(re.sub(r"\*\*(.+?)\*\*|`([^`]+)`", lambda m: m[1] or m[2], text))

    for b in blocks:
        if isinstance(b, Table):
            table = RichTable()
            for i, head in enumerate(b.header):
                table.add_column(plain(head), overflow="fold",
                                 justify="right" if i in b.numeric else "left")
            for row in b.rows:
                table.add_row(*map(plain, row))
            console.print(table)
        elif not isinstance(b, Image):  # a picture has no place in a terminal
            console.print(Markdown(to_markdown([b])))
