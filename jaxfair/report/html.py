"""A self-contained HTML page: headings, text, tables and images inlined as data URIs.

The page needs no other file (it can be mailed or attached to an issue); the same figures
are also written next to it as PNG files.

Example:
  page("Dataset report", [
      Section("Counts", [Text("6 groups"), Table(["group", "n"], [["a", 3]]),
                         Image(png_bytes, "counts per group")]),
  ])
"""

from __future__ import annotations

import base64
import dataclasses
import html
from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class Text:
    text: str


@dataclasses.dataclass(frozen=True)
class Table:
    header: tuple[str, ...] | list[str]
    rows: Sequence[Sequence[object]]


@dataclasses.dataclass(frozen=True)
class Image:
    data: bytes
    alt: str
    mime: str = "image/png"


@dataclasses.dataclass(frozen=True)
class Section:
    title: str
    blocks: Sequence[Text | Table | Image]


_STYLE = """
body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.85em; }
td, th { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }
th { background: #f2f2f2; }
img { max-width: 100%; display: block; margin: 0.8em 0; }
figcaption { font-size: 0.85em; color: #555; }
"""


def _block(b: Text | Table | Image) -> str:
    if isinstance(b, Text):
        return f"<p>{html.escape(b.text)}</p>"
    if isinstance(b, Table):
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in b.header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r)
                       + "</tr>" for r in b.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    if isinstance(b, Image):
        data = base64.b64encode(b.data).decode("ascii")
        alt = html.escape(b.alt)
        return (f'<figure><img src="data:{b.mime};base64,{data}" alt="{alt}">'
                f"<figcaption>{alt}</figcaption></figure>")
    raise TypeError(f"unknown block {type(b).__name__}")


def page(title: str, sections: Sequence[Section]) -> str:
    """The whole HTML document as a string."""
    parts = [f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>"
             f"{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        parts.extend(_block(b) for b in s.blocks)
    parts.append("</body></html>\n")
    return "\n".join(parts)
