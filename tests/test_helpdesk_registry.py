"""The helpdesk registry's listing order: the established helpdesks first, the generic endpoint
last, as each module declares with ``list_order`` (a default for the others and for plugins),
read without importing the module; the Preview and Setup pages and the demo follow it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deskside import helpdesks
from deskside.helpdesks import (
    DEFAULT_LIST_ORDER,
    in_list_order,
    kinds,
    protocol_classes,
    read_light,
)
from deskside.protocols.base import Protocol
from deskside.protocols.generic import Generic
from deskside.service import SidebarService
from deskside.signing import Scheme
from deskside.web.preview import desk_setups, preview
from helpers import demo_settings

pytestmark = pytest.mark.anyio

ESTABLISHED = ["helpscout", "therethere", "helper", "plain"]


def test_the_established_helpdesks_come_first_and_the_generic_endpoint_last() -> None:
    listed = list(kinds())
    assert listed[: len(ESTABLISHED)] == ESTABLISHED
    assert listed[-1] == Generic.kind
    assert list(protocol_classes()) == listed
    orders = [(helpdesk.list_order, kind) for kind, helpdesk in kinds().items()]
    assert orders == sorted(orders)  # then by kind among equals: a deterministic order


def test_list_order_is_read_without_importing_and_matches_the_class() -> None:
    for kind, helpdesk in kinds().items():
        assert helpdesk.list_order == getattr(
            protocol_classes()[kind], "list_order", DEFAULT_LIST_ORDER
        ), kind


SOURCE = """
from deskside.protocols.base import Protocol
from deskside.signing import Scheme

class Acme(Protocol):
    kind = "acme"
    title = "Acme Desk"
    signature_header = "x-acme-signature"
    scheme = Scheme.SHA256_HEX
{extra}

HELPDESK = Acme
"""


@pytest.mark.parametrize(
    ("extra", "order"),
    [("", DEFAULT_LIST_ORDER), ("    list_order = 5", 5), ("    list_order = -1", -1)],
)
def test_a_class_that_sets_no_list_order_gets_the_default(extra: str, order: int) -> None:
    light = read_light(SOURCE.format(extra=extra), "acme_desk")
    assert light is not None
    assert (light.kind, light.method, light.list_order) == ("acme", "POST", order)


@pytest.mark.parametrize(
    "extra",
    ['    list_order = "first"', "    list_order = True", "    list_order = ORDER"],
)
def test_a_list_order_that_is_no_int_literal_means_importing_the_module(extra: str) -> None:
    assert read_light(SOURCE.format(extra=extra), "acme_desk") is None


def test_a_class_with_another_base_is_read_by_importing_it() -> None:
    """Its base may set what its body leaves out, ``list_order`` included."""
    source = SOURCE.format(extra="").replace("class Acme(Protocol)", "class Acme(Generic)")
    assert read_light(source, "acme_desk") is None


class _EntryPoint:
    def __init__(self, value: str, loaded: Any) -> None:
        self.value, self.loaded = value, loaded

    def load(self) -> Any:
        return self.loaded


@pytest.fixture
def plugin(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[Protocol]]:
    """A third-party helpdesk that sets no ``list_order``, installed as an entry point."""

    class Zendesque(Protocol):
        kind = "zendesque"
        title = "Zendesque"
        signature_header = "x-zendesque-signature"
        scheme = Scheme.SHA256_HEX

    entry = _EntryPoint("zendesque_plugin:Zendesque", Zendesque)
    monkeypatch.setattr(helpdesks, "_plugins", lambda: [("zendesque_plugin", entry)])
    kinds.cache_clear()
    protocol_classes.cache_clear()
    yield Zendesque
    kinds.cache_clear()
    protocol_classes.cache_clear()


def test_a_plugin_without_list_order_comes_after_the_established_before_the_generic(
    plugin: type[Protocol],
) -> None:
    listed = list(kinds())
    assert kinds()["zendesque"].list_order == DEFAULT_LIST_ORDER
    assert protocol_classes()["zendesque"] is plugin
    assert list(protocol_classes()) == listed
    assert listed[: len(ESTABLISHED)] == ESTABLISHED
    assert listed[-2:] == ["zendesque", Generic.kind]


def test_the_preview_and_setup_pages_list_configured_helpdesks_in_that_order(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> None:
    """The demo config has ``[helpdesks.card]`` before the tables the demo adds."""
    service = SidebarService(demo_settings(monkeypatch, tmp_path, database))
    configured = [protocol.kind for protocol in service.protocols]
    assert configured != list(kinds())  # the config's own order differs
    assert [desk.kind for desk in desk_setups(service, "https://deskside.example", None)] == list(
        kinds()
    )
    assert [protocol.kind for protocol in in_list_order(service.protocols)] == list(kinds())


async def test_the_preview_lists_them_in_that_order(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> None:
    service = SidebarService(demo_settings(monkeypatch, tmp_path, database))
    try:
        result = await preview(service, ["owner@acme.example"])
    finally:
        await service.aclose()
    assert [desk.kind for desk in result.desks] == list(kinds())
