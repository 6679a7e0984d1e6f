"""The check over the whole run (``conftest.py``) that no log line shows a test customer's
address or subject: a small test session of its own, with this suite's conftest, fails and says
where, without repeating what it found."""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).parent

SESSION = """
import logging
import logging.config


def test_a_warning_names_a_customer():
    logging.getLogger("deskside.insights.worker").warning(
        "could not apply the event of %s", "customer501@example.com"
    )


def test_logging_set_up_anew_is_still_checked():
    logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
    logging.getLogger().handlers.clear()


def test_an_exception_quotes_a_subject():
    try:
        raise ValueError("Refund for order #4711")
    except ValueError:
        logging.getLogger("deskside.insights").exception("the import failed")


def test_an_extra_field_holds_an_address():
    logging.getLogger("deskside.access").error("refused", extra={"who": "ada.okafor3@acme.example"})


def test_ids_and_counts_are_fine():
    logging.getLogger("deskside.insights").warning("event 7 parked after 5 attempts")
"""


def test_a_run_whose_logs_show_a_customer_fails_and_masks_what_it_found(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(TESTS))  # fake_helpscout, services, deskside's own
    pytester.makeconftest((TESTS / "conftest.py").read_text(encoding="utf-8"))
    pytester.makepyfile(test_private=SESSION)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly")
    output = result.stdout.str()
    result.assert_outcomes(passed=5, errors=1)
    assert "3 log line(s) show a test customer's address or subject" in output
    assert (
        "logger deskside.insights.worker, during test_private.py::test_a_warning_names_a_customer"
        in output
    )
    assert "c***@example.com" in output
    assert (
        "logger deskside.insights, during test_private.py::test_an_exception_quotes_a_subject"
        in output
    )
    assert "R*** (a subject)" in output
    assert "logger deskside.access" in output and "a***@acme.example" in output
    for private in ("customer501@example.com", "Refund for order", "ada.okafor3"):
        assert private not in output
    assert "during test_private.py::test_ids_and_counts_are_fine" not in output


def test_a_run_whose_logs_show_no_customer_passes(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    pytester.makeconftest((TESTS / "conftest.py").read_text(encoding="utf-8"))
    pytester.makepyfile(
        test_clean="""
import logging


def test_counts():
    logging.getLogger("deskside.insights").warning("3 events parked, 2 customers erased")
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
