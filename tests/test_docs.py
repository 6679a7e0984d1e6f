"""The docs' promises: the README's two commands, a README short enough to read, every config
key documented, a page for every helpdesk, right signature vectors, and links that resolve."""

from __future__ import annotations

import base64
import hmac
import re
import typing
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from deskside.config import Settings
from deskside.helpdesks import kinds as helpdesk_kinds
from deskside.sources import source_kinds

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = (ROOT / "README.md").read_text(encoding="utf-8")
CONFIGURATION = (DOCS / "configuration.md").read_text(encoding="utf-8")
PAGES = [
    ROOT / "README.md",
    ROOT / "CHANGELOG.md",
    ROOT / "benchmarks" / "README.md",
    *sorted(DOCS.rglob("*.md")),
]


def _shell_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)\n```", README, flags=re.DOTALL)


def test_readme_starts_with_demo_and_test_commands() -> None:
    demo, tests = _shell_blocks()[:2]
    assert demo.endswith("deskside demo")
    assert "pytest" in tests
    assert README.index(demo) < README.index(tests) < README.index("## ")


def test_ci_runs_exactly_the_readme_test_command() -> None:
    tests = _shell_blocks()[1]
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert tests in ci_lines


def test_readme_is_short_and_installs_from_a_checkout() -> None:
    assert len(README.splitlines()) <= 300
    assert "pip install ." in README
    assert not re.search(r"pip install (-U )?deskside\b", README), "deskside is on no index"


def _models(annotation: object) -> Iterator[type[BaseModel]]:
    """Every pydantic model an annotation can hold (through unions, lists, dicts, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    if typing.get_origin(annotation) is typing.Literal:
        return
    for argument in typing.get_args(annotation):
        yield from _models(argument)


def _config_models() -> dict[type[BaseModel], str | None]:
    """Every model of the config file, each with the helpdesk kind it belongs to (or None)."""
    found: dict[type[BaseModel], str | None] = {Settings: None}
    todo: list[tuple[type[BaseModel], str | None]] = [(Settings, None)]
    while todo:
        model, kind = todo.pop()
        for name, field in model.model_fields.items():
            for inner in _models(field.annotation):
                inner_kind = kind
                if model is Settings and name == "helpdesks":
                    inner_kind = _kind(inner)
                if inner not in found:
                    found[inner] = inner_kind
                    todo.append((inner, inner_kind))
    return found


def _kind(model: type[BaseModel]) -> str:
    kinds = typing.get_args(model.model_fields["kind"].annotation)
    assert len(kinds) == 1, f"{model.__name__}.kind is not one Literal"
    return str(kinds[0])


def _documented(name: str, text: str) -> bool:
    """As a key (`name`), a table (`[name]`, `[name.NAME]`, `[x.name]`) or `[table] name`."""
    key = re.escape(name)
    return re.search(rf"`{key}`|\.{key}\]|\[{key}[\].]|\] {key}`", text) is not None


def test_every_config_key_is_documented() -> None:
    """In docs/configuration.md; a helpdesk's own keys may be on its page instead."""
    models = _config_models()
    assert len(models) > 20, "the walk through the config models found too little"
    missing = set()
    for model, kind in models.items():
        text = CONFIGURATION
        page = DOCS / "helpdesks" / f"{kind}.md"
        if kind is not None and page.is_file():
            text += page.read_text(encoding="utf-8")
        missing |= {
            f"{model.__name__}.{name}" for name in model.model_fields if not _documented(name, text)
        }
    assert not missing, f"undocumented config keys: {sorted(missing)}"


def test_every_registered_source_kind_is_in_the_config_walk() -> None:
    """So the key check above covers a source kind a plugin registers, too."""
    walked = set(_config_models())
    missing = {kind for kind, found in source_kinds().items() if found.config not in walked}
    assert not missing, f"source kinds the config models do not reach: {missing}"


def test_every_helpdesk_has_its_page() -> None:
    kinds = {kind for kind in _config_models().values() if kind is not None}
    assert kinds == set(helpdesk_kinds()), "the config walk misses a registered helpdesk"
    assert {"helpscout", "therethere", "helper", "plain", "card"} <= kinds
    pages = {page.stem for page in (DOCS / "helpdesks").glob("*.md")}
    assert kinds <= pages, f"helpdesks without a page in docs/helpdesks/: {kinds - pages}"
    index = (DOCS / "helpdesks" / "README.md").read_text(encoding="utf-8")
    unlisted = {kind for kind in kinds if f"]({kind}.md)" not in index}
    assert not unlisted, f"helpdesks docs/helpdesks/README.md does not list: {unlisted}"


def test_demo_config_is_the_documented_example() -> None:
    assert "examples/demo/deskside.toml" in README
    assert (ROOT / "examples" / "demo" / "deskside.toml").is_file()


def _hex(digest: bytes) -> bytes:
    return digest.hex().encode()


_SCHEMES: dict[str, tuple[str, Callable[[bytes], bytes]]] = {
    "sha1-base64": ("sha1", base64.b64encode),
    "sha256-base64": ("sha256", base64.b64encode),
    "sha256-hex": ("sha256", _hex),
}


def _vectors() -> list[list[str]]:
    text = (DOCS / "protocols.md").read_text(encoding="utf-8")
    table = text.split("## 8. Signature vectors", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip("|").split(" | ") for line in table.splitlines() if line.startswith("| ")]
    cells = [[cell.strip().strip("`") for cell in row] for row in rows[1:]]
    return [row for row in cells if set(row[0]) != {"-"}]


@pytest.mark.parametrize("row", _vectors(), ids=lambda row: row[1])
def test_signature_vectors_in_the_wire_reference(row: list[str]) -> None:
    """Recomputed with Python's hmac, independently of deskside's signing code."""
    _section, _helpdesk, scheme, secret, message, signature = row
    digest, encode = _SCHEMES[scheme]
    expected = encode(hmac.new(secret.encode(), message.encode(), digest).digest()).decode()
    assert signature == expected


def test_the_wire_reference_has_every_vector() -> None:
    assert len(_vectors()) >= 8


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.DOTALL)
    slugs: set[str] = set()
    for heading in re.findall(r"^#{1,6} (.+)$", text, flags=re.MULTILINE):
        slug, n = _slug(heading), 1
        while slug in slugs:
            slug, n = f"{_slug(heading)}-{n}", n + 1
        slugs.add(slug)
    return slugs


def _has_anchor(page: Path, anchor: str) -> bool:
    return not anchor or anchor in _anchors(page)


def _links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.DOTALL)
    text = re.sub(r"`[^`]*`", "", text)
    return re.findall(r"\]\(([^)\s]+)\)", text)


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    assert page.is_file(), f"{page.relative_to(ROOT)} is missing"
    broken = []
    for link in _links(page):
        if re.match(r"[a-z]+:", link):
            continue
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists() or (target.suffix == ".md" and not _has_anchor(target, anchor)):
            broken.append(link)
    assert not broken, f"{page.relative_to(ROOT)}: links to nothing: {broken}"


def test_pages_are_reachable_from_the_readme() -> None:
    """Every docs page is linked from the README or from a page the README links to."""
    seen, todo = set(), [ROOT / "README.md"]
    while todo:
        page = todo.pop()
        if page in seen or page.suffix != ".md" or not page.is_file():
            continue
        seen.add(page)
        for link in _links(page):
            if not re.match(r"[a-z]+:", link) and link.partition("#")[0]:
                target = (page.parent / link.partition("#")[0]).resolve()
                todo.extend(sorted(target.glob("*.md")) if target.is_dir() else [target])
    unreachable = [str(page.relative_to(ROOT)) for page in PAGES if page not in seen]
    assert not unreachable, f"pages no link leads to: {unreachable}"
