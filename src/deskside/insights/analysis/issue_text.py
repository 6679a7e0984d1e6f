"""Reading an issue report the way a maintainer does: what the classifier sees of it.

- :func:`readable_text`: the report without what nobody reads — template comments
  (``<!-- … -->``), bot and boilerplate lines (imported-from, stale and CLA notices), quoted
  replies and signatures (:func:`~.customer_text.message_text`) — and with long stack traces
  cut to their first frames.
- :func:`title_of`: its title, the first line (``deskside classify`` and the examples files put
  the title, then a blank line, then the body; a conversation's subject comes first too).
- :func:`structure_tokens`: the issue template's structure as words of their own — a header
  line (``### Describe the bug``, ``**Expected behavior**``, ``Steps to reproduce:``), the short
  answer under a header or after ``Key:`` (``N/A``, ``Yes``, empty), checkboxes and whether they
  are ticked, and whether the report has code, a trace, a screenshot or no body.

Pure functions of their input, no I/O.
"""

from __future__ import annotations

import re

from deskside.insights.analysis.customer_text import message_text

__all__ = ["readable_text", "structure_tokens", "title_of"]

_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)
_BOILERPLATE = re.compile(
    r"(imported from|migrated from|this issue (has been|was) (automatically|marked)|"
    r"marked as stale|will be closed (if|in|automatically)|no (recent|further) activity|"
    r"contributor license agreement|\bcla\b.*\b(sign|signed)\b|i am a bot|beep boop|"
    r"this (comment|message|issue) was (generated|posted|created) (automatically|by)|"
    r"^\s*(sent from my|get outlook for)\b)",
    re.IGNORECASE,
)
_FRAME = re.compile(
    r"""^\s*(
        at\s+\S+.*(\(.*\)|:\d+(:\d+)?\)?)       # Java, JavaScript, C#
      | File\s+".*",\s+line\s+\d+.*               # Python
      | \#\d+\s+(0x[0-9a-f]+|\S+\s+\(|\S+::)\S*.* # gdb, PHP
      | \d+:\s+(0x[0-9a-f]+|[\w:<>]+::)\S*.*      # Rust backtraces
      | [\w./-]+\.(go|rs|c|cpp|swift|kt):\d+.*    # Go, Rust, C file:line
      | goroutine\s+\d+\s+\[.*
      | \.{3}\s*\d+\s+more
    )\s*$""",
    re.IGNORECASE | re.VERBOSE,
)
_KEPT_FRAMES = 2
_HEADER = re.compile(r"^\s*(#{1,6}\s+(?P<hash>.+?)|\*\*(?P<bold>[^*]{2,80})\*\*:?)\s*:?\s*$")
_COLON_HEADER = re.compile(r"^\s*(?P<key>[A-Za-z][\w /?'()-]{1,60}?)\s*[:?]\s*$")
_KEY_VALUE = re.compile(
    r"^\s*(?:[-*]\s+)?(?:\*\*)?(?P<key>[A-Za-z][\w /()'-]{1,60}?[?]?)(?:\*\*)?\s*:\s*(?:\*\*)?"
    r"(?P<value>\S.{0,40}?)\s*$"
)
_CHECKBOX = re.compile(r"^\s*[-*]\s+\[(?P<mark>[ xX])\]\s*(?P<text>.*)$")
_SLUG_WORDS = 5
_ANSWER_WORDS = 3
_NONE_ANSWERS = {"", "n/a", "na", "none", "-", "--", "no", "nope", "nothing", "tbd", "?", "."}


def readable_text(text: str) -> str:
    """``text`` without template comments, boilerplate lines, quotes and signatures, with each
    run of stack-trace frames outside code fences cut to its first two frames and a
    ``tracetoken`` line."""
    text = _COMMENT.sub("", text)
    lines = [line for line in text.split("\n") if not _BOILERPLATE.search(line)]
    text = message_text("\n".join(lines))
    return "\n".join(_cut_frames(text.split("\n")))


def title_of(text: str) -> str:
    """The first non-empty line of ``text`` (at most 300 characters)."""
    for line in text.split("\n"):
        if line.strip():
            return line.strip()[:300]
    return ""


def structure_tokens(text: str) -> list[str]:
    """The template structure of a report (see the module docstring) as tokens: ``h_<header>``,
    ``a_<header>_<answer>`` for an answer of up to three words (``a_<header>_none`` for
    "N/A", "-", nothing), ``cb_x_<words>``/``cb_o_<words>`` per checkbox, and ``has_code``,
    ``has_trace``, ``has_image``, ``length_short``, ``length_medium``, ``length_long``."""
    lines = text.split("\n")
    tokens: list[str] = []
    tokens.append(f"length_{_size(text.strip())}")
    if "```" in text or "~~~" in text:
        tokens.append("has_code")
    if "tracetoken" in text or "traceback" in text.lower():
        tokens.append("has_trace")
    if "![" in text or re.search(r"\.(png|jpe?g|gif)\b", text, re.IGNORECASE):
        tokens.append("has_image")
    inside = False
    header: str | None = None
    answer: list[str] = []
    rest = lines[1:]
    for index, line in enumerate(rest):
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            inside = not inside
            continue
        if inside:
            continue
        found = _header_of(stripped)
        if found is not None and not (
            stripped.endswith("?") and not any(r.strip() for r in rest[index + 1 :])
        ):
            if header is not None:
                tokens.append(_answer_token(header, answer))
            header, answer = found, []
            tokens.append(f"h_{found}")
            continue
        box = _CHECKBOX.match(stripped)
        if box:
            mark = "o" if box["mark"] == " " else "x"
            tokens += [f"cb_{mark}", f"cb_{mark}_{_slug(box['text'])}"]
            continue
        pair = _KEY_VALUE.match(stripped)
        if pair and not stripped.lower().startswith(("http", "error", "exception")):
            key = _slug(pair["key"])
            tokens += [f"k_{key}", _answer_token(key, pair["value"].split())]
            continue
        if header is not None and stripped:
            answer += stripped.split()
    if header is not None:
        tokens.append(_answer_token(header, answer))
    return tokens


def _size(text: str) -> str:
    """How long the whole report is (not its body: a support conversation has a subject line
    too, and one line of a body is as short as one line without a title)."""
    return "short" if len(text) < 200 else "long" if len(text) > 1500 else "medium"


def _header_of(line: str) -> str | None:
    match = _HEADER.match(line)
    if match:
        return _slug(match["hash"] or match["bold"])
    match = _COLON_HEADER.match(line)
    if match and len(match["key"].split()) <= 8:
        return _slug(match["key"])
    return None


def _answer_token(header: str, words: list[str]) -> str:
    answer = " ".join(words).strip().strip("*_`").lower()
    if answer in _NONE_ANSWERS or answer.startswith(("n/a", "see above")):
        return f"a_{header}_none"
    if len(words) > _ANSWER_WORDS:
        return f"a_{header}_text"
    return f"a_{header}_{_slug(answer)}"


def _slug(text: str) -> str:
    words = re.findall(r"[a-z]+|\d+", text.lower())
    return "_".join("0" if w.isdigit() else w for w in words[:_SLUG_WORDS]) or "x"


def _cut_frames(lines: list[str]) -> list[str]:
    kept: list[str] = []
    run = 0
    inside = False
    for line in lines:
        if line.lstrip().startswith(("```", "~~~")):
            inside = not inside
        if not inside and _FRAME.match(line):
            run += 1
            if run <= _KEPT_FRAMES:
                kept.append(line)
            elif run == _KEPT_FRAMES + 1:
                kept.append("tracetoken")
            continue
        run = 0
        kept.append(line)
    return kept
