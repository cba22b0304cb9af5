"""Conversions between the three content formats: markdown → HTML, HTML → text, text → HTML."""

from __future__ import annotations

import html
import re
from functools import cache
from html.parser import HTMLParser
from typing import TYPE_CHECKING

from commsync.model import Format

if TYPE_CHECKING:
    from markdown_it import MarkdownIt

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!<>|~])")
_BLOCKS = {
    "p",
    "div",
    "table",
    "tr",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "ul",
    "ol",
    "blockquote",
    "pre",
    "hr",
}


@cache
def _markdown() -> MarkdownIt:
    """The markdown renderer, imported when first used (15-20 ms that `plan` and `validate`,
    which render no content, do not pay)."""
    from markdown_it import MarkdownIt

    # Operators may write raw HTML inside markdown emails; notices are sanitised afterwards.
    return MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])


def markdown_to_html(text: str) -> str:
    return str(_markdown().render(text))


def escape_markdown(value: str) -> str:
    """A value that markdown shows literally (`*Bob*` stays `*Bob*`)."""
    return _MD_SPECIAL.sub(r"\\\1", value)


def text_to_html(text: str) -> str:
    paragraphs = [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    return "".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>\n" for p in paragraphs)


def to_html(content: str, fmt: Format) -> str:
    if fmt == Format.MARKDOWN:
        return markdown_to_html(content)
    if fmt == Format.TEXT:
        return text_to_html(content)
    return content


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0
        self.links: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "script", "head", "title"):
            self.skip += 1
        elif tag == "br":
            self.parts.append("\n")
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag in _BLOCKS:
            self.parts.append("\n\n")
        if tag == "a":
            self.links.append(dict(attrs).get("href"))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script", "head", "title"):
            self.skip = max(0, self.skip - 1)
        elif tag in _BLOCKS:
            self.parts.append("\n\n")
        elif tag == "a" and self.links:
            href = self.links.pop()
            if href and not href.startswith(("#", "mailto:")):
                self.parts.append(f" ({href})")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(re.sub(r"\s+", " ", data))


def html_to_text(markup: str) -> str:
    """A readable plain-text version of an HTML fragment or document."""
    parser = _TextExtractor()
    parser.feed(markup)
    parser.close()
    text = "".join(parser.parts)
    lines = [line.strip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def to_text(content: str, fmt: Format) -> str:
    """The plain-text alternative: markdown reads well as it is; HTML is converted."""
    if fmt == Format.HTML:
        return html_to_text(content)
    return content.strip() + "\n"
