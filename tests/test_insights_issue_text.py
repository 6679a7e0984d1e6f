"""Reading issue reports as a maintainer does: each rule of :mod:`.issue_text` on a report
written the way people file them."""

from __future__ import annotations

from deskside.insights.analysis.classify import prepare_text
from deskside.insights.analysis.issue_text import readable_text, structure_tokens, title_of

BUG_TEMPLATE = """Crash when exporting a board with 300+ cards

<!-- Before filing: please search existing issues and fill in every section. -->

### Describe the bug
Exporting the "Roadmap Q3" board to PDF closes the desktop app without a message.

### Steps to reproduce
1. Open a board with more than 300 cards
2. File > Export > PDF

### Expected behavior
A PDF file.

### Screenshots
N/A

**Environment**
- OS: Windows 11
- App version: 4.12.0

- [x] I searched existing issues
- [ ] I tried the nightly build
"""


def test_template_comments_are_dropped() -> None:
    kept = readable_text(BUG_TEMPLATE)
    assert "Before filing" not in kept
    assert "Exporting the" in kept
    multiline = "Title\n\n<!--\nDescribe your problem here.\nInclude logs.\n-->\nIt hangs."
    assert readable_text(multiline) == "Title\n\nIt hangs."


def test_bot_and_boilerplate_lines_are_dropped() -> None:
    report = (
        "Sync never finishes\n\n"
        "This issue was imported from the old tracker (#1182).\n"
        "Sync stays at 99 % on the second laptop.\n"
        "This issue has been automatically marked as stale because it has had no recent "
        "activity. It will be closed if no further activity occurs.\n"
        "Sent from my iPhone"
    )
    kept = readable_text(report)
    assert "Sync stays at 99 %" in kept
    assert "imported" not in kept
    assert "stale" not in kept
    assert "iPhone" not in kept


def test_quoted_replies_are_dropped() -> None:
    report = (
        "Still broken in 2.3\n\n"
        "> Could you try 2.3? It should be fixed there.\n"
        "> -- maintainer\n\n"
        "Tried it, the upload still fails with the same message."
    )
    kept = readable_text(report)
    assert "Could you try" not in kept
    assert "the upload still fails" in kept


def test_long_stack_traces_keep_their_first_frames() -> None:
    frames = "\n".join(
        f"    at com.acme.sync.Worker.step{n}(Worker.java:{100 + n})" for n in range(12)
    )
    report = f"NPE on sync\n\njava.lang.NullPointerException: token is null\n{frames}\nThanks"
    kept = readable_text(report)
    assert "NullPointerException: token is null" in kept
    assert "step0(" in kept and "step1(" in kept
    assert "step2(" not in kept and "step11(" not in kept
    assert "tracetoken" in kept
    python = (
        "Traceback (most recent call last):\n"
        + "".join(f'  File "/app/lib/m{n}.py", line {n}, in f{n}\n' for n in range(6))
        + "KeyError: 'region'"
    )
    kept = readable_text(f"KeyError on start\n\n{python}")
    assert "m0.py" in kept and "m5.py" not in kept and "KeyError: 'region'" in kept


def test_long_code_blocks_keep_their_first_lines_and_error_lines() -> None:
    log = "\n".join(f"INFO step {n} done" for n in range(40)) + "\nERROR disk quota exceeded"
    prepared = prepare_text(f"Backup fails\n\n```\n{log}\n```\nAny idea?")
    assert "step 0 done" in prepared
    assert "step 30 done" not in prepared
    assert "ERROR disk quota exceeded" in prepared
    assert "Any idea?" in prepared


def test_the_title_is_the_first_line() -> None:
    assert title_of(BUG_TEMPLATE) == "Crash when exporting a board with 300+ cards"
    assert title_of("\n\n  How do I pin a card?  \n\nbody") == "How do I pin a card?"
    assert title_of("") == ""


def test_headers_and_the_answers_under_them_are_tokens() -> None:
    tokens = structure_tokens(readable_text(BUG_TEMPLATE))
    assert "h_describe_the_bug" in tokens
    assert "h_steps_to_reproduce" in tokens
    assert "h_environment" in tokens  # a bold line is a header too
    assert "a_expected_behavior_a_pdf_file" in tokens  # a short answer, word for word
    assert "a_describe_the_bug_text" in tokens  # a longer one, as "text"
    assert "a_screenshots_none" in tokens  # N/A, -, nothing: "none"


def test_an_empty_section_and_a_colon_header() -> None:
    report = (
        "Feature: tags on cards\n\n"
        "Is your feature request related to a problem?\n\n"
        "Describe the solution you'd like:\n"
        "Coloured tags I can filter on.\n"
        "Alternatives considered:\n"
        "-\n"
    )
    tokens = structure_tokens(report)
    assert "h_is_your_feature_request_related" in tokens
    assert "a_is_your_feature_request_related_none" in tokens
    assert "h_describe_the_solution_you_d" in tokens
    assert "a_alternatives_considered_none" in tokens


def test_key_value_lines_are_a_key_and_its_answer() -> None:
    report = (
        "Editor freezes\n\n"
        "Does this happen with all plugins disabled?: Yes\n"
        "- Version: 1.86.0\n"
        "- OS: macOS 14.2"
    )
    tokens = structure_tokens(report)
    assert "k_does_this_happen_with_all" in tokens
    assert "a_does_this_happen_with_all_yes" in tokens
    assert "a_version_0_0_0" in tokens  # numbers are one word "0"


def test_checkboxes_and_whether_they_are_ticked() -> None:
    tokens = structure_tokens(readable_text(BUG_TEMPLATE))
    assert "cb_x_i_searched_existing_issues" in tokens
    assert "cb_o_i_tried_the_nightly_build" in tokens
    assert tokens.count("cb_x") == 1 and tokens.count("cb_o") == 1


def test_what_a_report_carries_and_how_long_it_is() -> None:
    assert "length_short" in structure_tokens("crash on startup")
    assert "length_short" in structure_tokens("Help\n\nhow do I reset my password")
    assert "length_long" in structure_tokens("Slow\n\n" + "It takes minutes to load. " * 80)
    carrying = structure_tokens(
        "Upload fails\n\n![image](https://user-images.example/1.png)\n```\nError: 413\n```"
    )
    assert {"has_image", "has_code"} <= set(carrying)
    lines = "\n".join(f"    at a.B.c{n}(B.java:{n})" for n in range(5))
    assert "has_trace" in structure_tokens(readable_text(f"NPE\n\nNullPointerException\n{lines}"))


def test_lines_inside_code_are_not_structure() -> None:
    report = "Config question\n\n```yaml\n### not a header\nregion: eu-west\n```\nIs that right?"
    tokens = structure_tokens(report)
    assert not any(t.startswith(("h_", "k_")) for t in tokens)
