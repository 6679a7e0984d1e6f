"""Sidebar → the HTML fragment Help Scout shows, in its sidebar style-guide markup."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import ChainableUndefined, Environment, PackageLoader, Template, select_autoescape
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from deskside.card import Color, Field, FieldType, Sidebar, text_lines
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
    loader=PackageLoader("deskside.render", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENV.filters["value_html"] = _value_html
_ENV.filters["badge_class"] = _BADGE_CLASSES.get
_SIDEBAR = _ENV.get_template("helpscout.html")


def render_html(sidebar: Sidebar) -> str:
    """The sidebar as Help Scout markup; every customer value is HTML-escaped."""
    return _SIDEBAR.render(sidebar=sidebar).strip()


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
