"""Markdown for helpdesks that show it: escaping customer data, and turning it into safe HTML."""

from __future__ import annotations

import functools
import re

from markdown_it import MarkdownIt

__all__ = ["escape_markdown", "markdown_to_html"]

# Every ASCII punctuation character may be backslash-escaped in CommonMark; escaping all of
# them is the only way to be sure no value opens a link, emphasis, code span, HTML or list.
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029]+")

# "zero" preset: paragraphs, emphasis, links and backslash escapes only; raw HTML stays text.
_MARKDOWN = MarkdownIt("zero", {"html": False, "linkify": False}).enable(
    ["emphasis", "link", "escape", "backticks", "newline"]
)


def _open_links_in_new_tab(self, tokens, idx, options, env):  # type: ignore[no-untyped-def]
    tokens[idx].attrSet("target", "_blank")
    tokens[idx].attrSet("rel", "noopener noreferrer")
    return self.renderToken(tokens, idx, options, env)


_MARKDOWN.add_render_rule("link_open", _open_links_in_new_tab)


def escape_markdown(text: str) -> str:
    """``text`` as markdown that shows exactly ``text``: no links, formatting or HTML."""
    return _PUNCTUATION.sub(r"\\\1", _LINE_BREAKS.sub(" ", text))


@functools.lru_cache(maxsize=4096)
def markdown_to_html(source: str) -> str:
    """Render trusted-shape markdown (author's template, escaped values) as an HTML fragment.

    Raw HTML is never passed through and links to anything but http(s)/mailto are dropped by
    markdown-it's link validation.
    """
    html: str = _MARKDOWN.render(source).strip()
    if html.startswith("<p>") and html.endswith("</p>") and html.count("<p>") == 1:
        html = html[3:-4]
    return html
