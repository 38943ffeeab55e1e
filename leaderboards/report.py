"""A self-contained HTML report: titled sections of text, tables, lists and embedded PNGs.

Images are embedded as data URIs so the report can be mailed or attached as one file. Every
piece of text is HTML-escaped; tables come from pandas with escaping on.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

from ffhq_tools.atomic import write_bytes_atomic
from ffhq_tools.errors import FfhqToolsError

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { border-bottom: 2px solid #446; } h2 { margin-top: 1.6em; color: #335; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.6em 0; }
td, th { border: 1px solid #bbb; padding: 3px 7px; text-align: right; }
th { background: #eef; } figure { display: inline-block; margin: 0.5em 1em 0.5em 0; }
figcaption { font-size: 0.8em; color: #555; } img { max-width: 100%; image-rendering: pixelated; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; font-size: 0.8em; }
.note { color: #844; }
"""


@dataclass
class Section:
    title: str
    anchor: str = ""
    blocks: list[str] = field(default_factory=list)

    def text(self, paragraph: str, note: bool = False) -> Section:
        css = ' class="note"' if note else ""
        self.blocks.append(f"<p{css}>{html.escape(paragraph)}</p>")
        return self

    def items(self, entries: list[str]) -> Section:
        lis = "".join(f"<li>{html.escape(e)}</li>" for e in entries)
        self.blocks.append(f"<ul>{lis}</ul>")
        return self

    def code(self, text: str) -> Section:
        self.blocks.append(f"<pre>{html.escape(text)}</pre>")
        return self

    def table(self, frame, caption: str = "", float_format: str = "{:.4g}") -> Section:
        if caption:
            self.blocks.append(f"<p><b>{html.escape(caption)}</b></p>")
        self.blocks.append(frame.to_html(escape=True, na_rep="-",
                                         float_format=float_format.format, border=0))
        return self

    def image(self, path: str | Path, caption: str = "") -> Section:
        path = Path(path)
        if not path.is_file():
            raise FfhqToolsError(f"report image {path} does not exist")
        data = base64.b64encode(path.read_bytes()).decode()
        cap = f"<figcaption>{html.escape(caption or path.name)}</figcaption>"
        self.blocks.append(f'<figure><img alt="{html.escape(path.name)}" '
                           f'src="data:image/png;base64,{data}">{cap}</figure>')
        return self


def render_report(title: str, sections: list[Section], subtitle: str = "") -> str:
    toc = "".join(f'<li><a href="#{_anchor(s)}">{html.escape(s.title)}</a></li>'
                  for s in sections)
    body = [f"<h1>{html.escape(title)}</h1>"]
    if subtitle:
        body.append(f"<p>{html.escape(subtitle)}</p>")
    body.append(f"<ul>{toc}</ul>")
    for section in sections:
        body.append(f'<h2 id="{_anchor(section)}">{html.escape(section.title)}</h2>')
        body.extend(section.blocks)
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def write_report(path: str | Path, title: str, sections: list[Section],
                 subtitle: str = "") -> Path:
    path = Path(path)
    write_bytes_atomic(path, render_report(title, sections, subtitle).encode())
    return path


def _anchor(section: Section) -> str:
    raw = section.anchor or section.title
    return "".join(ch if ch.isalnum() else "-" for ch in raw.lower()).strip("-")
