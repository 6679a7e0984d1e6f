"""What the customer wrote: quoted history, signatures, sign-offs and agents' replies left out."""

from __future__ import annotations

from deskside.insights.analysis.customer_text import conversation_text, message_text
from deskside.insights.models import Thread


def test_gmail_style_quote_is_dropped() -> None:
    text = (
        "Still broken, same error.\n\n"
        "On Tue, Mar 12, 2024 at 9:14 AM Support <help@example.com> wrote:\n"
        "> Could you clear your cache?\n"
        "> Best, Alex"
    )
    assert message_text(text) == "Still broken, same error."


def test_quote_header_wrapped_over_two_lines_is_dropped() -> None:
    text = (
        "Didn't help.\n\nOn Tue, Mar 12, 2024 at 9:14 AM Support Team <help@example.com>\n"
        "wrote:\n\nHave you tried logging out?"
    )
    assert message_text(text) == "Didn't help."


def test_german_quote_header_is_dropped() -> None:
    text = (
        "Geht immer noch nicht.\n\nAm 12.03.2024 um 09:14 schrieb Support <help@x.example>:\nHallo"
    )
    assert message_text(text) == "Geht immer noch nicht."


def test_outlook_original_message_block_is_dropped() -> None:
    text = (
        "Tried that, no luck.\n\n-----Original Message-----\nFrom: Support <s@x.example>\n"
        "Sent: Wednesday, May 8, 2024 10:02\nTo: Jana\nSubject: RE: Import\n\nPlease retry."
    )
    assert message_text(text) == "Tried that, no luck."


def test_outlook_header_block_without_separator_is_dropped() -> None:
    text = (
        "Thanks, that worked.\n\nFrom: Support <s@x.example>\nSent: Monday\nTo: me\n\n"
        "Here is how to fix it: …"
    )
    assert message_text(text) == "Thanks, that worked."


def test_a_sentence_starting_with_from_is_kept() -> None:
    text = "From: the dashboard, clicking Export does nothing.\nIt used to work."
    assert message_text(text) == text


def test_help_scout_reply_marker_cuts_the_history() -> None:
    text = "Yes please go ahead.\n\n## Reply above this line ##\n\nAgent: shall we refund you?"
    assert message_text(text) == "Yes please go ahead."


def test_lines_quoted_with_angle_brackets_are_dropped_but_code_is_kept() -> None:
    text = "It fails:\n```\n>>> parse('1965')\n2065\n```\n> you said it was fixed\nIt is not."
    assert message_text(text) == "It fails:\n```\n>>> parse('1965')\n2065\n```\nIt is not."


def test_signatures_are_dropped() -> None:
    assert message_text("The app freezes.\n\nSent from my iPhone") == "The app freezes."
    assert (
        message_text("Invoices show the wrong date.\n\n-- \nTom Whitfield\nWhitfield Ltd")
        == "Invoices show the wrong date."
    )


def test_sign_off_with_name_block_is_dropped() -> None:
    text = (
        "Hi,\n\nHow do I switch the owner of 200 contacts?\n\nThank you,\nAiko Tanaka\n"
        "Customer Operations\nNorthwind Traders\n+81 3 1234 5678"
    )
    assert message_text(text) == "Hi,\n\nHow do I switch the owner of 200 contacts?"
    assert message_text("Please add SEPA.\nCheers") == "Please add SEPA."


def test_a_message_that_is_only_thanks_is_kept() -> None:
    assert message_text("Thanks!") == "Thanks!"
    assert message_text("Thanks, that fixed it.\nHave a great weekend.") == (
        "Thanks, that fixed it.\nHave a great weekend."
    )


def test_a_long_last_paragraph_after_thanks_is_not_a_signature() -> None:
    text = (
        "The export is empty.\nThanks\n"
        "Also, when I open the reports page the numbers for last week are all zero, even though "
        "we had plenty of activity."
    )
    assert message_text(text) == text


def test_markdown_rule_is_not_a_signature_delimiter() -> None:
    text = "**Describe the bug**\nCrash on save\n---\n**Expected**\nNo crash"
    assert message_text(text) == text


def test_conversation_text_keeps_only_what_the_customer_wrote() -> None:
    threads = [
        Thread(author="customer", text="The PDF export is blank.\n\nSent from my iPhone"),
        Thread(author="agent", text="Would a dark mode help? We are adding one."),
        Thread(author="system", text="Assigned to Maria"),
        Thread(
            author="customer",
            text="Still blank today.\n\nOn Mon, 3 Jun 2024 at 10:02, Maria wrote:\n> dark mode",
        ),
    ]
    assert conversation_text(threads, subject="Export broken") == (
        "Export broken\n\nThe PDF export is blank.\n\nStill blank today."
    )


def test_conversation_without_customer_messages() -> None:
    assert conversation_text([Thread(author="agent", text="Hello!")]) == ""
    assert conversation_text([], subject="Hi") == "Hi"


def test_a_sentence_about_writing_is_not_a_quote_header() -> None:
    text = "On Monday I wrote about the following:\nthe export fails for big files."
    assert message_text(text) == text


def test_a_quote_the_writer_introduces_is_what_they_send() -> None:
    transcript = (
        "Live chat transcript (customer side):\n\n> hi\n> > our invoices show the wrong due date\n"
        "> since Monday"
    )
    assert message_text(transcript) == (
        "Live chat transcript (customer side):\n\nhi\nour invoices show the wrong due date\n"
        "since Monday"
    )


def test_a_quote_under_the_writers_own_words_is_still_dropped() -> None:
    reply = "Thanks, that fixed it.\n\n> Please clear the cache: Settings > Reset."
    assert message_text(reply) == "Thanks, that fixed it."
