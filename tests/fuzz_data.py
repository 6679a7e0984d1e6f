"""Hostile data for the deep fuzzer (``test_fuzz.py``): customers whose every column is under
the test's control, JSON with the awkward parts JSON allows or almost allows, and request
documents shaped after what a helpdesk publishes of its request (its OpenAPI description)."""

from __future__ import annotations

import json
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus

from hypothesis import strategies as st

# ── Hostile data ──────────────────────────────────────────────────────────────────────────────

# Whole URLs a customer record might hold (where a config uses a column as a link).
URL_PAYLOADS = [
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    " javascript:alert(1)",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    'https://evil.example/" onmouseover="alert(1)',
    "https://evil.example/<script>",
    "http://evil.example/?q=<b>&x='y'",
    "mailto:x@evil.example?subject=<b>",
    "[click](javascript:alert(1))",
    "[site](https://evil.example)",
    "![img](https://evil.example/x.png)",
    "<https://evil.example>",
    "https://evil.example",
]
PAYLOADS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '"><svg onload=alert(1)>',
    "' onmouseover='alert(1)' x='",
    '" onfocus="alert(1)" autofocus="',
    "</span></li></ul></div><script>alert(1)</script>",
    "<a href='javascript:alert(1)'>x</a>",
    *URL_PAYLOADS,
    "[ref]: https://evil.example",
    "**bold** __strong__ *em* _em_ `code` ~~del~~",
    "# heading",
    "- item",
    "> quote",
    "1. item",
    "    indented code",
    "```\nfence\n```",
    "line one\nline two\r\nline three\u2028four",
    "&lt;b&gt; &amp; &#x3C;script&#x3E; &#60;",
    "\\*not em\\* \\[x\\]",
    "{{ 7 * 191 }} {% raw %}",
    "<!-- comment --> <![CDATA[x]]>",
    "\u202eevil\u202c",
    "\x00\x01\x07\x1b[31m",
    "Zoë 🚀 日本語",
    "|a|b|\n|-|-|",
    "___",
    "=== ---",
]
_TEXT = st.text(max_size=24)
hostile_texts = st.one_of(
    st.sampled_from(PAYLOADS),
    st.lists(st.one_of(st.sampled_from(PAYLOADS), _TEXT), min_size=1, max_size=4).map("".join),
    _TEXT,
)
# Columns of any type: SQLite stores whatever it is given, so "mis-typed customer data" is real.
odd_values = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.sampled_from(
        [
            "NaN",
            "inf",
            "-1e309",
            "1e999999",
            "",
            " ",
            "9999-12-31T23:59:59-14:00",
            "0001-01-01T00:00:00+14:00",
            "2024-02-30",
            "2024-01-01",
            "yes",
            "<b>1</b>",
        ]
    ),
    hostile_texts,
)
_LOCAL = string.ascii_lowercase + string.digits + "<>\"'`&;:/()[]{}!*_~#|=+-.%$?,^\\é"
hostile_locals = st.text(st.sampled_from(_LOCAL), min_size=1, max_size=16)


@dataclass
class Customer:
    """A company and its one user, with every text column under the test's control."""

    local: str
    name: str
    company: str
    plan: str
    status: str
    modules: str
    stripe_customer_id: str
    role: str
    odd: dict[str, Any]


hostile_customers = st.builds(
    Customer,
    local=hostile_locals,
    name=hostile_texts,
    company=hostile_texts,
    plan=hostile_texts,
    status=st.one_of(st.sampled_from(["active", "past_due", "canceled"]), hostile_texts),
    modules=hostile_texts,
    stripe_customer_id=st.one_of(st.sampled_from(URL_PAYLOADS), hostile_texts),
    role=hostile_texts,
    odd=st.fixed_dictionaries(
        {},
        optional={
            key: odd_values
            for key in (
                "mrr_cents",
                "employees",
                "employee_limit",
                "trial_ends_at",
                "renews_on",
                "created_at",
                "last_seen_at",
                "is_owner",
            )
        },
    ),
)

# Fields that put customer data through every field type, and links whose URL is customer data.
EXTRA_CARD = """
[[card.fields]]
label = "Website"
type = "url"
value = "app.stripe_customer_id"

[[card.fields]]
label = "Seats"
type = "number"
value = "app.employees"

[[card.fields]]
label = "Plan notes"
type = "markdown"
template = "**{{ app.plan }}** [{{ app.name }}](https://admin.example/u/{{ app.email|urlencode }})"

[[card.links]]
label = "{{ app.name }}"
url = "{{ app.stripe_customer_id }}"
"""
ADMIN = "https://admin.example/"
# Markup an author's markdown template may produce (the "Modules" and "Plan notes" fields, and
# their links into the admin); customer data may produce none at all.
AUTHOR_MARKUP = {"strong_open", "strong_close", "link_open", "link_close"}
DEMO_EMAILS = [
    "owner@acme.example",
    "hr@acme.example",
    "lapsed@globex.example",
    "pat@initech.example",
    "mallory@evil.example",
    "ceo@umbrella.example",
    "trial@hooli.example",
    "art@vandelay.example",
]
FIXED_HOSTILE = [f"hostile{n}@fuzz.example" for n in range(len(PAYLOADS))]


# ── JSON with the awkward parts JSON allows or almost allows ─────────────────────────────────


@dataclass(frozen=True)
class Raw:
    """A JSON token written as is: ``NaN``, ``1e309``, a 5,000-digit number, deep nesting."""

    text: str


class Pairs(tuple[tuple[str, Any], ...]):
    """An object written with exactly these keys, duplicates included."""


def dumps(value: Any, *, ascii_only: bool, spaced: bool) -> str:
    """``value`` as JSON text (``Raw`` verbatim, ``Pairs`` with their duplicate keys)."""
    comma, colon = (", ", ": ") if spaced else (",", ":")

    def write(node: Any) -> str:
        if isinstance(node, Raw):
            return node.text
        if isinstance(node, Pairs | dict):
            items = node if isinstance(node, Pairs) else node.items()
            return "{" + comma.join(f"{write(k)}{colon}{write(v)}" for k, v in items) + "}"
        if isinstance(node, list):
            return "[" + comma.join(write(item) for item in node) + "]"
        return json.dumps(node, ensure_ascii=ascii_only)

    return write(value)


_SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, exclude_categories=[])
_ANY_CHAR = st.one_of(
    st.characters(exclude_categories=[]), _SURROGATES, st.sampled_from('\x00\n"\\')
)
texts = st.one_of(
    st.text(_ANY_CHAR, max_size=20),
    st.sampled_from(PAYLOADS),
    st.builds(
        lambda piece, n: piece * n,
        st.sampled_from(["a", "<", "é", "\\", "\x00", "🚀", "\ud800"]),
        st.integers(1_000, 12_000),
    ),
)
numbers = st.one_of(
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(
        [
            Raw("1e309"),
            Raw("-1e309"),
            Raw("NaN"),
            Raw("Infinity"),
            Raw("-Infinity"),
            Raw("1" * 5000),
            Raw("-0"),
            Raw("1e-999999"),
            Raw("123456789012345678901234567890"),
        ]
    ),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
deep = st.builds(
    lambda shape, depth: Raw(shape[0] * depth + "1" + shape[1] * depth),
    st.sampled_from([("[", "]"), ('{"a":', "}"), ('{"customer":', "}")]),
    st.integers(10, 3_000),
)
values = st.one_of(
    st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(st.text(max_size=8), inner, max_size=4),
            st.lists(st.tuples(st.sampled_from(["email", "id", "a"]), inner), max_size=4).map(
                Pairs
            ),
        ),
        max_leaves=12,
    ),
    deep,
)

known_emails = st.sampled_from(DEMO_EMAILS + FIXED_HOSTILE)
emails = st.one_of(
    known_emails,
    known_emails.map(str.upper),
    known_emails.map(lambda email: f" \t{email}\n"),
    known_emails.map(lambda email: email.replace("@", "+tag@", 1)),
    st.emails(),
    st.sampled_from(["", "@", "a@b", "a@b.", "@x.example", "x" * 400 + "@x.example"]),
    st.sampled_from(["test@example.com", "a\ud800@x.example", "a\u00a0b@x.example"]),
    texts,
)


def shaped(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """An object whose documented keys are each missing, fitting, or any JSON value, plus extra
    keys; or no object at all."""
    documented = st.fixed_dictionaries(
        {}, optional={key: st.one_of(fitting, values) for key, fitting in fields.items()}
    )
    extra = st.dictionaries(st.text(max_size=8), values, max_size=2)
    return st.one_of(
        st.builds(lambda more, known: {**more, **known}, extra, documented),
        documented,
        values,
    )


JUNK_BODIES = [
    b"",
    b" ",
    b"null",
    b"[]",
    b'"x"',
    b"{",
    b"{}}",
    b'{"a":1,}',
    b"{'email': 'owner@acme.example'}",
    b'{"email":"owner@acme.example"',
    b"\xef\xbb\xbf{}",
    b"\xff\xfe{\x00}\x00",
    b'{"email":"\\ud800"}',
    b'{"email":"\\u0000owner@acme.example"}',
    b"\x00" * 64,
]
CODECS = ["utf-8", "utf-8", "utf-8", "utf-8-sig", "utf-16", "utf-32"]

_RAW_SAFE = "".join(c for c in string.printable if c not in "%&#" and not c.isspace())

ENCODERS: dict[str, Callable[[str], str]] = {
    # Python's urlencode; JavaScript's URLSearchParams (keeps "*"); quote(), which keeps "@"
    # and writes a space as %20; and a client that escapes only what it must.
    "python": lambda text: quote_plus(text, errors="surrogatepass"),
    "javascript": lambda text: quote_plus(text, safe="*", errors="surrogatepass"),
    "quote": lambda text: quote(text, safe="@", errors="surrogatepass"),
    "raw": lambda text: quote(text, safe=_RAW_SAFE, errors="surrogatepass"),
}
junk_pairs = st.lists(
    st.tuples(
        st.one_of(st.sampled_from(["email", "timestamp", "time%73tamp", "", "x"]), _TEXT),
        _TEXT,
    ),
    max_size=4,
)
JUNK_FRAGMENTS = ["&&", "=", ";", "%zz", "%", "a=b=c", "&=&", "+", "%23frag", "%00", "%ff"]


# ── Requests shaped after what each helpdesk publishes ────────────────────────────────────────

ids = st.one_of(st.integers(), st.text(string.digits, max_size=25), st.sampled_from(["²", "٣"]))


def fitting(schema: Mapping[str, Any], name: str = "") -> st.SearchStrategy[Any]:
    """Values that fit a JSON-schema ``schema`` (of a field called ``name``), as a helpdesk might
    send them, hostile text included; fields named like an address get addresses."""
    if "anyOf" in schema:
        return st.one_of([fitting(option, name) for option in schema["anyOf"]])
    if "const" in schema:
        return st.just(schema["const"])
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        return shaped({key: fitting(value, key) for key, value in properties.items()})
    if kind == "array":
        item = fitting(schema.get("items", {}), name.removesuffix("s"))
        return st.lists(item, max_size=min(schema.get("maxItems", 30) + 5, 40))
    if kind == "string":
        if "email" in name.lower():
            return emails
        if "pattern" in schema:
            return st.one_of(st.from_regex(schema["pattern"], fullmatch=True), texts)
        return texts
    if kind == "integer":
        return st.one_of(ids, numbers)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    return values


def documented(openapi: Mapping[str, Any] | None) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """What a route's OpenAPI description (``add_api_route`` keyword arguments) documents of its
    request: the JSON body's schema (None: none documented) and the query parameters' schemas."""
    extra = (openapi or {}).get("openapi_extra", {})
    content = extra.get("requestBody", {}).get("content", {})
    body = content.get("application/json", {}).get("schema")
    query = {
        p["name"]: p.get("schema", {}) for p in extra.get("parameters", []) if p["in"] == "query"
    }
    return body, query


def documents(openapi: Mapping[str, Any] | None) -> st.SearchStrategy[Any]:
    """Request bodies shaped like the documented one, or, with no body documented, like the
    query parameters sent as a JSON object (a helpdesk that takes either)."""
    body, query = documented(openapi)
    if body is not None:
        return fitting(body)
    return shaped({name: fitting(schema, name) for name, schema in query.items()})


@st.composite
def bodies(draw: st.DrawFn, shape: st.SearchStrategy[Any]) -> bytes:
    """A request body: random bytes, junk, or a mis-shaped document in an odd encoding."""
    kind = draw(st.sampled_from(["bytes", "junk", "document", "document", "document"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "junk":
        return draw(st.sampled_from(JUNK_BODIES))
    text = dumps(draw(shape), ascii_only=draw(st.booleans()), spaced=draw(st.booleans()))
    return text.encode(draw(st.sampled_from(CODECS)), "surrogatepass")


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else dumps(value, ascii_only=False, spaced=False)


@st.composite
def queries(draw: st.DrawFn, parameters: Mapping[str, Mapping[str, Any]]) -> str:
    """A query string as some client might write it: the documented parameters each missing,
    fitting or anything, in any order and encoding, with junk pairs and fragments."""
    pairs = []
    for name, schema in parameters.items():
        if draw(st.integers(0, 4)):
            value = draw(st.one_of(fitting(schema, name), scalars).map(_as_text))
            pairs.append((name, value[:300]))  # within what a URL may hold
    pairs = draw(st.permutations(pairs)) + draw(junk_pairs)
    if draw(st.integers(0, 9)) == 0:
        pairs += [("f", "x")] * 21  # more fields than anyone needs
    encode = ENCODERS[draw(st.sampled_from(sorted(ENCODERS)))]
    parts = [f"{encode(k)}={encode(v)}" for k, v in pairs]
    parts += draw(st.lists(st.sampled_from(JUNK_FRAGMENTS), max_size=2))
    return "&".join(draw(st.permutations(parts)) if draw(st.booleans()) else parts)


METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "TRACE", "CONNECT"]
methods = st.one_of(
    st.sampled_from([*METHODS, "PROPFIND", "PURGE", "MKCOL", "QUERY"]),
    st.text(string.ascii_uppercase + "-_", min_size=1, max_size=12),
)

# ── Wrong credentials ────────────────────────────────────────────────────────────────────────

B64_ALPHABET = string.ascii_letters + string.digits + "+/="
not_space = st.characters(min_codepoint=0x21, max_codepoint=0xFF, exclude_characters="\x7f\x85\xa0")


def flip_case(text: str, positions: set[int]) -> str:
    """``text`` with the letters at ``positions`` (modulo their number) in the other case."""
    letters = [i for i, c in enumerate(text) if c.isalpha()]
    if not letters:
        return text
    chosen = {letters[p % len(letters)] for p in positions}
    return "".join(c.swapcase() if i in chosen else c for i, c in enumerate(text))
