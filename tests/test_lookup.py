"""Normalising the addresses a helpdesk sends: one list every source looks up."""

from __future__ import annotations

import pytest

from deskside.lookup import MAX_EMAILS, Lookup, normalise_emails


def test_trims_lower_cases_and_deduplicates_in_order() -> None:
    raw = ["  Fred@Example.COM ", "f.smith@example.org", "fred@example.com", "FRED@EXAMPLE.COM"]
    assert normalise_emails(raw) == ("fred@example.com", "f.smith@example.org")


def test_plus_address_is_followed_by_its_base_address() -> None:
    raw = ["owner+test@acme.example", "hr@acme.example"]
    assert normalise_emails(raw) == (
        "owner+test@acme.example",
        "owner@acme.example",
        "hr@acme.example",
    )


def test_plus_folding_keeps_the_first_position_of_an_address_sent_twice() -> None:
    raw = ["owner@acme.example", "hr+x@acme.example", "owner+y@acme.example", "hr@acme.example"]
    assert normalise_emails(raw) == (
        "owner@acme.example",
        "hr+x@acme.example",
        "hr@acme.example",
        "owner+y@acme.example",
    )


def test_plus_folding_can_be_turned_off() -> None:
    assert normalise_emails(["owner+test@acme.example"], fold_plus=False) == (
        "owner+test@acme.example",
    )


def test_a_local_part_that_is_only_a_tag_is_not_folded() -> None:
    assert normalise_emails(["+tag@acme.example"]) == ("+tag@acme.example",)


@pytest.mark.parametrize(
    "junk",
    [
        None,
        5,
        ["a@b.example"],
        {"email": "a@b.example"},
        "",
        "   ",
        "not-an-address",
        "@acme.example",
        "owner@",
        "owner@localhost",
        "owner@.example.",
        "own er@acme.example",
        "owner@acme.example\nBcc: x@evil.example",
        "owner\x00@acme.example",
        "owner\ud800@acme.example",
        "a" * 320 + "@acme.example",
    ],
    ids=repr,
)
def test_anything_that_is_not_an_address_is_dropped(junk: object) -> None:
    assert normalise_emails([junk, "real@acme.example"]) == ("real@acme.example",)


def test_unicode_addresses_are_kept() -> None:
    assert normalise_emails(["Zoë@Exämple.example"]) == ("zoë@exämple.example",)


def test_the_number_of_addresses_is_capped() -> None:
    raw = [f"user{n}@acme.example" for n in range(MAX_EMAILS + 15)]
    assert normalise_emails(raw) == tuple(raw[:MAX_EMAILS])


def test_the_cap_counts_folded_addresses() -> None:
    raw = [f"user+{n}@acme{n}.example" for n in range(MAX_EMAILS)]
    emails = normalise_emails(raw)
    assert len(emails) == MAX_EMAILS
    assert emails[:4] == (raw[0], "user@acme0.example", raw[1], "user@acme1.example")


def test_nothing_usable_gives_an_empty_tuple() -> None:
    assert normalise_emails([None, "", "nope"]) == ()


def test_lookup_email_is_the_first_address() -> None:
    lookup = Lookup(emails=normalise_emails(["B@x.example", "a@x.example"]))
    assert lookup.email == "b@x.example"
    assert lookup.emails == ("b@x.example", "a@x.example")
