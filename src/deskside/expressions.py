"""Expressions and templates from the config, evaluated in Jinja2's immutable sandbox.

Two kinds of config strings exist. *Expressions* (``value``, ``when``) compute a typed value:
``app.seats_used ~ ' / ' ~ app.seats_allowed``. *Templates* (``title``, badge text, link
labels and URLs) are text with ``{{ … }}`` placeholders. Neither escapes anything: escaping
is the renderers' job, for their own target, except in markdown templates, whose placeholders
are escaped as markdown so customer data can never become a link or formatting.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime
from typing import Any

from jinja2 import ChainableUndefined, Template, TemplateSyntaxError, Undefined
from jinja2.environment import TemplateExpression
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

from deskside.render.markdown import escape_markdown

__all__ = [
    "Expression",
    "MarkdownTemplate",
    "Scope",
    "TextTemplate",
    "encodable",
    "normalise_record",
]

log = logging.getLogger(__name__)

_ENV = ImmutableSandboxedEnvironment(undefined=ChainableUndefined, autoescape=False)
# A NULL column shows nothing, not "None", in text built from a template.
_TEXT_ENV = ImmutableSandboxedEnvironment(
    undefined=ChainableUndefined,
    autoescape=False,
    finalize=lambda value: "" if value is None else value,
)
_SINGLE_PLACEHOLDER = re.compile(r"\s*\{\{\s*(.*?)\s*\}\}\s*", re.DOTALL)
_MARKDOWN_ENV = ImmutableSandboxedEnvironment(
    undefined=ChainableUndefined,
    autoescape=False,
    finalize=lambda value: escape_markdown("" if value is None else str(value)),
)


class _Compiled:
    """A config string compiled once at load time; pydantic validates it from ``str``."""

    source: str

    @classmethod
    def __get_pydantic_core_schema__(
        cls, _source: type[Any], _handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(
            cls, core_schema.str_schema(), serialization=core_schema.to_string_ser_schema()
        )

    def __str__(self) -> str:
        return self.source

    # Compiled once and never changed: copies (pydantic copies defaults) may share it.
    def __copy__(self) -> _Compiled:
        return self

    def __deepcopy__(self, _memo: dict[int, Any]) -> _Compiled:
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source!r})"


class Expression(_Compiled):
    """A Jinja2 expression such as ``app.plan == 'pro'``; evaluates to a Python value."""

    def __init__(self, source: str) -> None:
        self.source = source
        if "{{" in source or "{%" in source:
            inner = _SINGLE_PLACEHOLDER.fullmatch(source)
            example = inner.group(1) if inner and "}}" not in inner.group(1) else "app.plan"
            raise ValueError(
                f"this is an expression, not a template: write `{example}`, "
                f"not `{{{{ {example} }}}}`"
            )
        try:
            self._compiled = _ENV.compile_expression(source, undefined_to_none=True)
        except TemplateSyntaxError as exc:
            raise ValueError(f"invalid expression {source!r}: {exc.message}") from None

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        """The expression's value, ``None`` when undefined; raises what the expression raises."""
        if isinstance(context, Scope):
            return context.evaluate(self._compiled)
        return self._compiled(**context)


class TextTemplate(_Compiled):
    """Text with ``{{ … }}`` placeholders, rendered to a plain (unescaped) string."""

    _env = _TEXT_ENV

    def __init__(self, source: str) -> None:
        self.source = source
        try:
            self._template = self._env.from_string(source)
        except TemplateSyntaxError as exc:
            raise ValueError(f"invalid template {source!r}: {exc.message}") from None
        # Most config text is constant ("Trial expired") or one placeholder ("{{ app.plan }}");
        # those skip building a template context, which costs ten times more.
        self._constant = None if "{" in source else source.strip()
        single = _SINGLE_PLACEHOLDER.fullmatch(source)
        self._single = None
        if single and not any(mark in single.group(1) for mark in ("{{", "}}", "{%", "{#")):
            self._single = _ENV.compile_expression(single.group(1), undefined_to_none=True)

    def render(self, context: Mapping[str, Any]) -> str:
        """The rendered text, stripped; raises what the template raises."""
        if self._constant is not None:
            return self._constant
        if self._single is not None:
            if isinstance(context, Scope):
                value = context.evaluate(self._single)
            else:
                value = self._single(**context)
            return "" if value is None else self._finalize(str(value)).strip()
        if isinstance(context, Scope):
            return context.render(self._template).strip()
        return self._template.render(**context).strip()

    @staticmethod
    def _finalize(text: str) -> str:
        return text


_ONLY_EMPHASIS = re.compile(r"[\s*_]*")


class MarkdownTemplate(TextTemplate):
    """Markdown written by the config author; every placeholder's value is markdown-escaped."""

    _env = _MARKDOWN_ENV

    def render(self, context: Mapping[str, Any]) -> str:
        """As :meth:`TextTemplate.render`; blank when nothing but emphasis markers is left."""
        text = super().render(context)
        # "**{{ m }}**" with a blank m is "****" or "** **": markdown shows a horizontal rule.
        return "" if _ONLY_EMPHASIS.fullmatch(text) else text

    @staticmethod
    def _finalize(text: str) -> str:
        return escape_markdown(text)


_SCOPE_TEMPLATE = _ENV.from_string("")


class Scope(Mapping[str, Any]):
    """Variables that many expressions are evaluated over (one card's).

    Jinja builds a fresh render context for every expression it evaluates, which costs more
    than most expressions; a scope builds it once and lets each expression run in it.
    """

    def __init__(self, variables: Mapping[str, Any]) -> None:
        self._variables = dict(variables)
        self._context = _SCOPE_TEMPLATE.new_context(dict(self._variables))

    def evaluate(self, expression: TemplateExpression) -> Any:
        """What ``expression(**variables)`` returns, without a new render context."""
        template = getattr(expression, "_template", None)
        if template is None:  # a Jinja without the attribute: the public (slower) way
            return expression(**self._variables)
        for _ in template.root_render_func(self._context):
            pass
        value = self._context.vars.pop("result", None)
        return None if isinstance(value, Undefined) else value

    def render(self, template: Template) -> str:
        """What ``template.render(**variables)`` returns, without a new render context."""
        if not hasattr(template, "root_render_func"):  # pragma: no cover - other Jinja
            return template.render(**self._variables)
        known = set(self._context.vars)
        try:
            return str(template.environment.concat(template.root_render_func(self._context)))
        finally:
            for name in set(self._context.vars) - known:  # a {% set %} stays in its template
                del self._context.vars[name]

    def __getitem__(self, key: str) -> Any:
        return self._variables[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._variables)

    def __len__(self) -> int:
        return len(self._variables)


def is_blank(value: Any) -> bool:
    """Whether a value shows nothing: ``None``, undefined or an empty/whitespace string."""
    return (
        value is None
        or isinstance(value, Undefined)
        or (isinstance(value, str) and not value.strip())
    )


_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?"
)


def normalise_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A source record as expressions see it.

    ISO 8601 date strings become :class:`date` and datetime strings become aware
    :class:`datetime` (naive ones are taken as UTC), so ``app.trial_ends_at < now`` works the
    same on SQLite (which stores text) as on PostgreSQL. Text that is not valid Unicode has the
    broken characters replaced. Nested mappings and lists are normalised too.
    """
    return {str(key): _normalise_value(value) for key, value in record.items()}


def encodable(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8 (a lone surrogate cannot)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _normalise_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and not encodable(value):
        # A lone surrogate (JSON "\ud800") could not be written into any answer.
        value = value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, str) and 10 <= len(value) <= 35:
        if _DATE.fullmatch(value):
            try:
                return date.fromisoformat(value)
            except ValueError:
                return value
        if _DATETIME.fullmatch(value):
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                return value
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if isinstance(value, Mapping):
        return normalise_record(value)
    if isinstance(value, list):
        return [_normalise_value(item) for item in value]
    return value
