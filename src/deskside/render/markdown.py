"""Markdown for helpdesks that show it: escaping customer data, turning it into safe HTML, and
reading it as plain text for those that show none.

markdown-it loads the first time markdown is rendered or read, not with this module: escaping
needs none of it, and a worker whose cards show no markdown never loads the parser.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from markdown_it import MarkdownIt
    from markdown_it.token import Token

__all__ = ["escape_markdown", "markdown_name", "markdown_to_html", "markdown_to_text"]

# Every ASCII punctuation character may be backslash-escaped in CommonMark; escaping all of
# them is the only way to be sure no value opens a link, emphasis, code span, HTML or list.
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
_LINE_BREAKS = re.compile(r"[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]+")  # all str.splitlines()
# What GitHub-flavoured viewers turn into links even without markdown syntax.
_AUTOLINK = re.compile(r"://|www\.|@", re.IGNORECASE)


def _open_links_in_new_tab(self, tokens, idx, options, env):  # type: ignore[no-untyped-def]
    tokens[idx].attrSet("target", "_blank")
    tokens[idx].attrSet("rel", "noopener noreferrer")
    return self.renderToken(tokens, idx, options, env)


@functools.cache
def _markdown() -> MarkdownIt:
    """The "zero" preset: paragraphs, emphasis, links and backslash escapes only; raw HTML
    stays text; links open in a new tab."""
    from markdown_it import MarkdownIt

    parser = MarkdownIt("zero", {"html": False, "linkify": False}).enable(
        ["emphasis", "link", "escape", "backticks", "newline"]
    )
    parser.add_render_rule("link_open", _open_links_in_new_tab)
    return parser


@functools.cache
def _commonmark() -> MarkdownIt:
    """The most a markdown viewer may make of a line: CommonMark with raw HTML."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": True})


def escape_markdown(text: str) -> str:
    """``text`` as markdown that shows exactly ``text``: no links, formatting or HTML."""
    return _PUNCTUATION.sub(r"\\\1", _LINE_BREAKS.sub(" ", text))


@functools.lru_cache(maxsize=4096)
def markdown_to_html(source: str) -> str:
    """Render trusted-shape markdown (author's template, escaped values) as an HTML fragment.

    Raw HTML is never passed through and links to anything but http(s)/mailto are dropped by
    markdown-it's link validation.
    """
    html: str = _markdown().render(source).strip()
    if html.startswith("<p>") and html.endswith("</p>") and html.count("<p>") == 1:
        html = html[3:-4]
    return html


@functools.lru_cache(maxsize=4096)
def markdown_name(text: str) -> str:
    """``text`` as it is when a markdown viewer shows it as it is (``Seats used``, ``MRR
    (Stripe)``), else escaped: for a line that may be shown as markdown or as plain text."""
    if _AUTOLINK.search(text) is None and _shows_as_is(text):
        return text
    return escape_markdown(text)


def _shows_as_is(text: str) -> bool:
    tokens = _commonmark().parse(text)
    if [token.type for token in tokens] != ["paragraph_open", "inline", "paragraph_close"]:
        return False
    children = tokens[1].children or []
    return all(child.type == "text" for child in children) and (
        "".join(child.content for child in children) == text
    )


@functools.lru_cache(maxsize=4096)
def markdown_to_text(source: str) -> str:
    """What a reader sees of ``source`` as plain text: no markup and no escapes; a link is its
    label, followed by its URL in parentheses when that says more (``Docs (https://…)``)."""
    paragraphs = [
        _inline_text(token.children or [])
        for token in _markdown().parse(source)
        if token.type == "inline"
    ]
    return "\n".join(paragraph for paragraph in paragraphs if paragraph)


def _inline_text(tokens: list[Token]) -> str:
    parts: list[str] = []
    links: list[tuple[str, int]] = []  # (href, where its label starts)
    for token in tokens:
        if token.type in ("text", "text_special", "code_inline"):
            parts.append(token.content)
        elif token.type in ("softbreak", "hardbreak"):
            parts.append("\n")
        elif token.type == "link_open":
            links.append((str(token.attrs.get("href", "")), len(parts)))
        elif token.type == "link_close" and links:
            href, start = links.pop()
            label = "".join(parts[start:]).strip()
            if href and href not in (label, f"mailto:{label}"):
                parts.append(f" ({href})" if label else href)
    return "".join(parts).strip()
