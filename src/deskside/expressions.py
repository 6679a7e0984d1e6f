"""Expressions and templates from the config, evaluated in Jinja2's immutable sandbox.

Two kinds of config strings exist. *Expressions* (``value``, ``when``) compute a typed value:
``app.seats_used ~ ' / ' ~ app.seats_allowed``. *Templates* (``title``, badge text, link
labels and URLs) are text with ``{{ … }}`` placeholders. Neither escapes anything: escaping
is the renderers' job, for their own target, except in markdown templates, whose placeholders
are escaped as markdown so customer data can never become a link or formatting.

A value that is not there — a NULL column, an unknown key, a source with no record — is
:class:`Missing`. It shows as nothing, never as ``None``; inside :func:`missing_values` every
missing value that was *shown* (as text, in ``~``, through a filter) is recorded, so the piece
that showed it can be left out instead of showing ``None / None`` or ``?q=``.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from datetime import UTC, date, datetime
from typing import Any

from jinja2 import ChainableUndefined, Template, TemplateSyntaxError, Undefined, nodes
from jinja2.compiler import CodeGenerator, Frame, find_undeclared
from jinja2.filters import do_urlencode
from jinja2.nodes import Concat, EvalContext
from jinja2.parser import Parser
from jinja2.runtime import Context, exported
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import missing
from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

from deskside.card import one_line
from deskside.render.markdown import escape_markdown

__all__ = [
    "Expression",
    "MarkdownTemplate",
    "Missing",
    "Scope",
    "TextTemplate",
    "encodable",
    "missing_values",
    "normalise_record",
]

log = logging.getLogger(__name__)

_SHOWN_MISSING: ContextVar[_Shown | None] = ContextVar("deskside_shown_missing", default=None)


class _Shown:
    """The missing values shown while evaluating one piece, named after the variables of
    ``context`` they belong to (``app.seat_limit``)."""

    def __init__(self, context: Mapping[str, Any]) -> None:
        self.context = context
        self.names: list[str] = []

    def add(self, name: str) -> None:
        if name not in self.names:
            self.names.append(name)

    def name(self, obj: Any, key: Any) -> str:
        if obj is missing:
            return str(key)
        for variable, value in self.context.items():
            if value is obj:
                return f"{variable}.{key}" if isinstance(key, str) else f"{variable}[{key!r}]"
            if isinstance(value, Mapping) and variable == "records":
                for source, rows in value.items():
                    if rows is obj:
                        return f"records.{source}[{key!r}]"
        return str(key)


class _Listening:
    """The context manager :func:`missing_values` returns (a class: cheaper than a generator)."""

    __slots__ = ("_shown", "_token")

    def __init__(self, context: Mapping[str, Any]) -> None:
        self._shown = _Shown(context)

    def __enter__(self) -> list[str]:
        self._token = _SHOWN_MISSING.set(self._shown)
        return self._shown.names

    def __exit__(self, *_: object) -> None:
        _SHOWN_MISSING.reset(self._token)


def missing_values(context: Mapping[str, Any]) -> _Listening:
    """Record, in the list the ``with`` block gets, the name of every missing value shown while
    the block evaluates expressions or templates over ``context`` (``["app.seat_limit"]``)."""
    return _Listening(context)


def _record(value: Any) -> None:
    """Note that ``value`` (None or undefined) was shown, when :func:`missing_values` listens."""
    shown = _SHOWN_MISSING.get()
    if shown is None:
        return
    if isinstance(value, Undefined):
        shown.add(shown.name(value._undefined_obj, value._undefined_name))
    else:
        shown.add("a value")


class Missing(ChainableUndefined):
    """A value that is not there: a NULL column, an unknown key or name, a call that gave None.

    It is false, empty and equal to None. Shown as text it is ``""`` and recorded (see
    :func:`missing_values`); testing it (``when = "app.x"``, ``app.x or 'n/a'``,
    ``app.x | default(0)``, ``app.x is none``) records nothing. Computing with it
    (``app.x + 1``) raises :class:`~jinja2.UndefinedError` saying which value is empty.
    """

    __slots__ = ()

    def __str__(self) -> str:
        _record(self)
        return ""

    def __eq__(self, other: object) -> bool:
        return other is None or isinstance(other, Undefined)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash(None)

    @property
    def _undefined_message(self) -> str:
        if self._undefined_hint:
            return self._undefined_hint
        _record(self)
        shown = _SHOWN_MISSING.get()
        if shown is None:
            return f"{self._undefined_name} is empty"
        return f"{shown.name(self._undefined_obj, self._undefined_name)} is empty"


class _CodeGenerator(CodeGenerator):
    """Jinja's code generator, with ``a ~ b`` joined by :meth:`_Environment.join_text`."""

    def visit_Concat(self, node: Concat, frame: Frame) -> None:
        self.write("environment.join_text((")
        for argument in node.nodes:
            self.visit(argument, frame)
            self.write(", ")
        self.write("))")


class _FunctionCodeGenerator(_CodeGenerator):
    """Jinja's code generator for one expression, written as a plain function of a render
    context that returns the expression's value. What the expression does is generated by
    Jinja's own visitors (attribute access, calls and operators through the sandbox); only
    the frame around it differs: no generator to drive, no template variable to set and read.
    """

    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        (output,) = node.body
        assert isinstance(output, nodes.Output) and len(output.nodes) == 1
        self.writeline("from jinja2.runtime import " + ", ".join(sorted(exported)))
        self.writeline("def root(context, missing=missing, environment=environment):", extra=1)
        self.indent()
        self.writeline("resolve = context.resolve_or_missing")
        self.writeline("undefined = environment.undefined")
        self.writeline("cond_expr_undefined = Undefined")
        frame = Frame(EvalContext(self.environment, self.name))
        if "self" in find_undeclared(node.body, ("self",)):  # as Jinja's own root function
            self.writeline(
                f"{frame.symbols.declare_parameter('self')} = TemplateReference(context)"
            )
        frame.symbols.analyze_node(node)
        frame.toplevel = frame.rootlevel = True
        self.enter_frame(frame)
        self.pull_dependencies(node.body)
        self.writeline("return ")
        self.visit(output.nodes[0], frame)
        self.outdent()


_Function = Callable[[Context], Any]  # a compiled expression: its value in a render context


class _Environment(ImmutableSandboxedEnvironment):
    """The immutable sandbox where a None (a NULL column, a call that returned nothing) is
    :class:`Missing`, and where None shows as nothing in ``~`` and ``urlencode``."""

    code_generator_class = _CodeGenerator

    def __init__(self, **options: Any) -> None:
        super().__init__(undefined=Missing, autoescape=False, **options)
        self.tests["none"] = lambda value: value is None or isinstance(value, Missing)
        self.filters["urlencode"] = _urlencode

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict and attribute in obj:  # a record's column: what super() reads first
            value = obj[attribute]
        else:
            value = super().getattr(obj, attribute)
        return self.undefined(obj=obj, name=attribute) if value is None else value

    def getitem(self, obj: Any, argument: Any) -> Any:
        value = super().getitem(obj, argument)
        return self.undefined(obj=obj, name=argument) if value is None else value

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        value = super().call(context, obj, *args, **kwargs)
        if value is None:  # app.get('x'): named after the method and its record
            owner = getattr(obj, "__self__", missing)
            return self.undefined(obj=owner, name=f"{getattr(obj, '__name__', 'call')}()")
        return value

    @staticmethod
    def join_text(values: Iterable[Any]) -> str:
        """``a ~ b ~ c``: each value as text, None as nothing (and recorded)."""
        return "".join([_shown_as_text(value) for value in values])

    def compile_function(self, source: str) -> _Function:
        """``source``, an expression, compiled once into a function of a render context (what
        :meth:`compile_expression` computes, with less work per call); raises
        :class:`~jinja2.TemplateSyntaxError` as it does."""
        parser = Parser(self, source, state="variable")
        try:
            expression = parser.parse_expression()
            if not parser.stream.eos:
                raise TemplateSyntaxError(
                    "chunk after expression", parser.stream.current.lineno, None, None
                )
            expression.set_environment(self)
        except TemplateSyntaxError:
            self.handle_exception(source=source)
        tree = nodes.Template([nodes.Output([expression], lineno=1)], lineno=1)
        tree.set_environment(self)
        stream = io.StringIO()
        _FunctionCodeGenerator(self, "<expression>", "<expression>", stream).visit(tree)
        namespace: dict[str, Any] = {"environment": self, "__file__": "<expression>"}
        exec(compile(stream.getvalue(), "<expression>", "exec"), namespace)  # noqa: S102 - Jinja's generated code
        function: _Function = namespace["root"]
        return function


def _shown_as_text(value: Any) -> str:
    if value is None:
        _record(None)
        return ""
    return str(value)


def _urlencode(value: Any) -> str:
    if value is None or isinstance(value, Undefined):
        _record(value)
        return ""
    return do_urlencode(value)


def _finalize_text(value: Any) -> Any:
    """What ``{{ value }}`` shows in a text template: None as nothing (and recorded)."""
    if value is None:
        _record(None)
        return ""
    return value


_ENV = _Environment()
_TEXT_ENV = _Environment(finalize=_finalize_text)
_SINGLE_PLACEHOLDER = re.compile(r"\s*\{\{\s*(.*?)\s*\}\}\s*", re.DOTALL)
_MARKDOWN_ENV = _Environment(finalize=lambda value: _markdown_text(_shown_as_text(value)))


def _markdown_text(text: str) -> str:
    """A placeholder's value in markdown: one line without control or bidi characters, every
    punctuation character escaped. An end that such a character hid is trimmed (``**x \u202e**``
    is bold; ``**x **`` would not be); white space the value has at its ends is kept."""
    line = one_line(text)
    if text and not text[0].isspace():
        line = line.lstrip()
    if text and not text[-1].isspace():
        line = line.rstrip()
    return escape_markdown(line)


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
            self._function = _ENV.compile_function(source)
        except TemplateSyntaxError as exc:
            raise ValueError(f"invalid expression {source!r}: {exc.message}") from None

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        """The expression's value, ``None`` when missing (a missing result is recorded as
        shown, see :func:`missing_values`); raises what the expression raises."""
        value = _evaluate(self._function, context)
        if isinstance(value, Undefined):
            _record(value)
            return None
        return value


def _evaluate(function: _Function, context: Mapping[str, Any]) -> Any:
    return function((context if isinstance(context, Scope) else Scope(context)).context)


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
        self._single: _Function | None = None
        if single and not any(mark in single.group(1) for mark in ("{{", "}}", "{%", "{#")):
            self._single = _ENV.compile_function(single.group(1))

    def render(self, context: Mapping[str, Any]) -> str:
        """The rendered text, stripped; raises what the template raises. Missing values show
        as nothing (and are recorded, see :func:`missing_values`)."""
        if self._constant is not None:
            return self._constant
        if self._single is not None:
            value = _evaluate(self._single, context)
            if value is None or isinstance(value, Undefined):
                _record(value)
                return ""
            return self._finalize(str(value)).strip()
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
        return _markdown_text(text)


_SCOPE_TEMPLATE = _ENV.from_string("")


class Scope(Mapping[str, Any]):
    """Variables that many expressions are evaluated over (one card's).

    Jinja builds a fresh render context for every expression it evaluates, which costs more
    than most expressions; a scope builds it once and lets each expression run in it.
    """

    def __init__(self, variables: Mapping[str, Any]) -> None:
        self._variables = dict(variables)
        self.context = _SCOPE_TEMPLATE.new_context(dict(self._variables))
        """The render context compiled expressions run in; templates leave nothing in it."""

    def render(self, template: Template) -> str:
        """What ``template.render(**variables)`` returns, without a new render context."""
        if not hasattr(template, "root_render_func"):  # pragma: no cover - other Jinja
            return template.render(**self._variables)
        context = self.context
        try:
            return str(template.environment.concat(template.root_render_func(context)))
        finally:
            if context.vars:  # a {% set %} stays in its template
                context.vars.clear()
                context.exported_vars.clear()

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
