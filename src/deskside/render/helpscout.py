"""Sidebar → the HTML fragment Help Scout shows, in its sidebar style-guide markup."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jinja2 import ChainableUndefined, Environment, Template, select_autoescape
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup, escape

from deskside.card import Color, Field, FieldType, Link, Sidebar, text_lines
from deskside.layout import expression_context
from deskside.render.format import display
from deskside.render.markdown import markdown_to_html
from deskside.resolve import Profile

__all__ = ["load_template", "render_html", "render_template"]

_BADGE_CLASSES = {
    Color.GREEN: "green",
    Color.RED: "red",
    Color.ORANGE: "orange",
    Color.PURPLE: "purple",
    Color.BLUE: "blue",
    Color.GREY: "",
}


def _value_html(field: Field) -> Markup:
    """A field's value as safe HTML: markdown rendered, links opened in a new tab, rest escaped."""
    if field.type is FieldType.MARKDOWN:
        return Markup(markdown_to_html(str(field.value)))  # noqa: S704 - escaped markdown
    text = display(field)
    if field.type is FieldType.URL:
        return Markup('<a href="{0}" target="_blank" rel="noopener noreferrer">{0}</a>').format(
            text
        )
    if field.type is FieldType.EMAIL:
        return Markup(
            '<a href="mailto:{0}" target="_blank" rel="noopener noreferrer">{0}</a>'
        ).format(text)
    return Markup.escape(text)


_ENV = Environment(
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
"""What users' own templates are rendered with (besides the sandbox): the filters below."""
_ENV.filters["value_html"] = _value_html
_ENV.filters["badge_class"] = _BADGE_CLASSES.get

# The markup around the values, written once: what each piece of the sidebar becomes.
_ITEM = (
    '<li class="c-sb-list-item"><span class="c-sb-list-item__label">{} '
    '<span class="c-sb-list-item__text">{}</span></span></li>\n'
)
_LINK = (
    '<li class="c-sb-list-item"><a class="c-sb-list-item__link" href="{}" target="_blank" '
    'rel="noopener noreferrer">{}</a></li>\n'
)
_LIST = '<ul class="c-sb-list c-sb-list--two-line">\n'
_DIVIDER = '<li role="separator" class="c-sb-list-divider"></li>\n'
_SECTION = '<div class="c-sb-section c-sb-section--toggle{} is-persisted">\n'
_SECTION_TITLE = (
    '<div class="c-sb-section__title js-sb-toggle">{}{} <i class="caret sb-caret"></i></div>\n'
)
_SECTION_BODY = '<div class="c-sb-section__body">\n'
_BADGE_OPEN = {
    color: f'<span class="badge {escape(name)}">' for color, name in _BADGE_CLASSES.items()
}


def _escape(text: str) -> str:
    """``text`` HTML-escaped exactly as Jinja's autoescape does (MarkupSafe)."""
    return str(escape(text))


def render_html(sidebar: Sidebar) -> str:
    """The sidebar as Help Scout markup; every customer value is HTML-escaped."""
    if sidebar.message:
        return f'<p class="muted">{_escape(sidebar.message)}</p>'
    out: list[str] = []
    for index, card in enumerate(sidebar.cards):
        if index:
            out.append("<hr>\n")
        out.append(f"<h4>{_escape(card.title)}</h4>\n")
        if card.subtitle:
            out.append(f'<p class="muted">{_escape(card.subtitle)}</p>\n')
        if card.badges:
            badges = "".join(
                f"{_BADGE_OPEN[badge.color]}{_escape(badge.text)}</span> " for badge in card.badges
            )
            out.append(f"<p>{badges}</p>\n")
        if card.fields or card.links:
            _items(out, card.fields, card.links)
            out.append("\n")
        for section in card.sections:
            out.append(_SECTION.format("" if section.collapsed else " open"))
            icon = f'<i class="icon-{_escape(section.icon)} icon-sb"></i> ' if section.icon else ""
            out.append(_SECTION_TITLE.format(icon, _escape(section.title)))
            out.append(_SECTION_BODY)
            _items(out, section.fields, section.links)
            out.append("\n</div>\n</div>\n")
    if not sidebar.cards:
        emails = _escape(", ".join(sidebar.emails))
        found = "Could not look up" if sidebar.notes else "No customer found for"
        out.append(f'<p class="muted">{found} {emails}.</p>\n')
    out += [f'<p class="red">{_escape(note)}</p>\n' for note in sidebar.notes]
    return "".join(out).strip()


def _items(out: list[str], fields: Sequence[Field], links: Sequence[Link]) -> None:
    out.append(_LIST)
    out += [_ITEM.format(_escape(field.label), _value_html(field)) for field in fields]
    if fields and links:
        out.append(_DIVIDER)
    out += [_LINK.format(_escape(link.url), _escape(link.label)) for link in links]
    out.append("</ul>\n")


def _shown(value: Any) -> Any:
    """What ``{{ value }}`` shows in a user's template: nothing for None, text without control
    or bidi characters (as in the built-in sidebar)."""
    if value is None:
        return ""
    return text_lines(value) if type(value) is str else value


def load_template(path: Path) -> Template:
    """A user's own template file, autoescaped and sandboxed like the built-in one."""
    # As in card templates, a missing value (no record for an unknown customer) is empty.
    env = SandboxedEnvironment(
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=ChainableUndefined,
        finalize=_shown,
    )
    env.filters.update(_ENV.filters)
    return env.from_string(path.read_text(encoding="utf-8"))


def render_template(template: Template, sidebar: Sidebar, profile: Profile) -> str:
    """Render a user's template with the sidebar and what card expressions see."""
    return template.render(sidebar=sidebar, **expression_context(profile)).strip()
