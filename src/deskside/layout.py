"""The ``[card]`` config, and how it turns a :class:`~deskside.resolve.Profile` into a Sidebar
(compiled once by :mod:`deskside.cardbuild`)."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import Field as ConfigField
from pydantic import PrivateAttr, model_validator

from deskside.card import Color, FieldType, Sidebar
from deskside.cardbuild import (
    MAX_CARDS,
    MAX_URL_LENGTH,
    CompiledCard,
    LeftOut,
    expression_context,
)
from deskside.configtypes import ConfigModel
from deskside.expressions import Expression, MarkdownTemplate, TextTemplate
from deskside.resolve import Profile

__all__ = [
    "MAX_CARDS",
    "MAX_URL_LENGTH",
    "CardLayout",
    "LeftOut",
    "build_sidebar",
    "expression_context",
]


class FieldLayout(ConfigModel):
    """A labelled value: ``value`` is an expression, or ``template`` is text with placeholders.

    Fields whose value is empty are left out. ``type = "markdown"`` needs a ``template``: its
    text is the author's markdown, every placeholder's value is escaped.
    """

    label: str
    value: Expression | None = None
    template: str | None = None
    type: FieldType = FieldType.TEXT
    currency: str | None = ConfigField(default=None, pattern=r"^[A-Z]{3}$")
    copyable: bool = False
    """Offer a copy button where the helpdesk has one (Plain), e.g. for ids."""
    when: Expression | None = None
    _template: TextTemplate | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _value_or_template(self) -> FieldLayout:
        if (self.value is None) == (self.template is None):
            raise ValueError("set exactly one of `value` (an expression) or `template` (text)")
        if self.type is FieldType.MARKDOWN and self.template is None:
            raise ValueError('a markdown field takes `template = "**{{ app.plan }}**"`')
        if self.template is not None:
            cls = MarkdownTemplate if self.type is FieldType.MARKDOWN else TextTemplate
            self._template = cls(self.template)
        return self


class BadgeLayout(ConfigModel):
    text: TextTemplate
    color: Color = Color.GREY
    when: Expression | None = None


class LinkLayout(ConfigModel):
    """A link; ``url`` is a template (use ``| urlencode`` on values inside a path)."""

    label: TextTemplate
    url: TextTemplate
    when: Expression | None = None


class SectionLayout(ConfigModel):
    title: TextTemplate
    icon: str | None = ConfigField(default=None, pattern=r"^[a-z-]+$")
    collapsed: bool = False
    when: Expression | None = None
    fields: list[FieldLayout] = []
    links: list[LinkLayout] = []


class CardLayout(ConfigModel):
    """What an agent sees, built once per record of the ``each`` source (default: the first)."""

    each: str | None = None
    title: TextTemplate = TextTemplate("{{ email }}")
    subtitle: TextTemplate | None = None
    currency: str = ConfigField(default="USD", pattern=r"^[A-Z]{3}$")
    max_value_length: int = ConfigField(default=500, ge=20, le=10_000)
    """Longer text is cut to this many characters, ending with "…"."""
    badges: list[BadgeLayout] = []
    fields: list[FieldLayout] = []
    links: list[LinkLayout] = []
    sections: list[SectionLayout] = []
    _compiled: CompiledCard | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _compile(self) -> CardLayout:
        self._compiled = CompiledCard(self)
        return self

    def compiled(self) -> CompiledCard:
        """This layout compiled into plain Python pieces (once, when the config is loaded)."""
        compiled = (self.__pydantic_private__ or {}).get("_compiled")  # pydantic's getattr is slow
        if compiled is None or compiled.layout is not self:  # a copy
            compiled = self._compiled = CompiledCard(self)
        return compiled


def build_sidebar(
    layout: CardLayout,
    profile: Profile,
    *,
    now: datetime | None = None,
    problems: list[str] | None = None,
) -> Sidebar:
    """The sidebar for ``profile``.

    Expressions that fail are logged and appended to ``problems`` (when given), and the piece
    they belong to is left out. A piece that shows a missing value is left out too, and
    ``problems`` gets a :class:`LeftOut` line saying why (``field 'Seats' left out:
    app.seat_limit is empty``). Text is one line without control or bidi characters (a
    field's value keeps its line breaks), at most ``max_value_length`` characters; pieces past
    what one answer can hold (:func:`~deskside.render.budget.fit`) are dropped with a note.
    """
    problems = problems if problems is not None else []
    return layout.compiled().sidebar(profile, now or datetime.now(UTC), problems)
