"""What the customer wrote: a message without the quoted history, the signature and the sign-off,
and a conversation without its agents' replies, notes and activity lines.

Everything here is a pure function of its input. The classifier sees only this text, so an agent's
quoted answer under a customer's reply cannot change what the customer is asking for.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Protocol

__all__ = ["ThreadLike", "conversation_text", "message_text"]


class ThreadLike(Protocol):
    """What :func:`conversation_text` reads of a thread (the store's ``Thread`` rows fit)."""

    @property
    def author(self) -> str:
        """``customer``, ``agent`` or ``system``."""
        ...

    @property
    def text(self) -> str:
        """The message's text, without HTML."""
        ...


# A line from which on everything is the quoted history of earlier messages.
_HISTORY_STARTS = [
    re.compile(p, re.IGNORECASE)
    for p in (
        r"^#{1,3}\s*(please\s+)?(reply|type your reply|write)\s+above\s+this\s+line\s*#{0,3}\s*$",
        r"^-{2,}\s*(original|forwarded)\s+message\s*-{2,}\s*$",
        r"^-{2,}\s*(ursprüngliche|message d'origine|mensaje original)\b.*$",
        r"^_{10,}\s*$",  # Outlook's rule above the "From:" block
        r"^begin forwarded message:?\s*$",
        r"^\*?from:\*?\s.+",  # the "From: … Sent: …" block (checked with _HEADER_BLOCK)
    )
]
# "On Mon, 3 Jun 2024 at 10:02, Support <help@x.example> wrote:" — possibly over two lines;
# also the German ("Am … schrieb Name <address>:"), French, Dutch and Spanish forms.
_WROTE = re.compile(
    r"^(on|am|le|op|el)\s.{4,300}?\s(wrote|schrieb|a écrit|schreef|escribió)"
    r"(\s[^:]{0,200}?[<@][^:]{0,200})?\s*:\s*$",
    re.IGNORECASE | re.DOTALL,
)
_HEADER_FIELD = re.compile(
    r"^\*?(from|sent|date|to|cc|subject|von|gesendet|an|betreff|de|envoyé|objet)\s*:", re.I
)
_SENT_FROM = re.compile(
    r"^(sent from|sent via|get outlook for|envoyé de|von meinem|enviado desde)\b.{0,60}$", re.I
)
_CLOSINGS = re.compile(
    r"^(best|best regards|kind regards|warm regards|warmest regards|regards|many thanks|thanks|"
    r"thank you|thanks again|thanks in advance|thx|cheers|br|sincerely|yours sincerely|"
    r"yours truly|all the best|take care|talk soon|greetings|mit freundlichen grüßen|"
    r"viele grüße|liebe grüße|grüße|cordialement|bien à vous|saludos|un saludo|pozdrawiam|"
    r"groeten|met vriendelijke groet)\b[\s,.!:-]*$",
    re.IGNORECASE,
)
_QUOTE_MARKS = re.compile(r"^\s*(>\s?)+")
_SIGNATURE_DELIMITER = re.compile(r"^--\s?$")
_MAX_NAME_BLOCK = 6  # lines after a sign-off that are taken for the name, title, phone, …
_MAX_NAME_LINE = 60


def message_text(text: str) -> str:
    """The part of one message that its writer typed for it.

    Drops everything from the first quoted-history marker on (``On … wrote:``, ``-----Original
    Message-----``, an Outlook ``From:``/``Sent:`` block, Help Scout's ``## Reply above this
    line ##``), lines quoted with ``>`` (unless the writer introduces the quote: "See below:"),
    the signature after a ``-- `` line, "Sent from my …" lines, and a closing sign-off with the
    name block below it ("Thanks,\\nAnna"). A message that is nothing but a sign-off
    ("Thanks!") is kept as it is. Line breaks are kept.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    fenced = _fenced(lines)
    lines = _cut_history(lines, fenced)
    lines = _drop_quotes(lines, fenced)
    lines = _cut_signature(lines)
    kept = "\n".join(lines).strip()
    if not kept:
        return _fallback(text)
    return re.sub(r"\n{3,}", "\n\n", kept)


def conversation_text(threads: Iterable[ThreadLike], subject: str | None = None) -> str:
    """The customer's side of a conversation: ``subject`` (when given) on the first line, then
    what the customer wrote in each of their threads (:func:`message_text`), oldest first as
    given. Agents' replies and notes and system lines are left out; ``""`` when the customer
    wrote nothing."""
    parts = [message_text(thread.text) for thread in threads if thread.author == "customer"]
    body = "\n\n".join(part for part in parts if part)
    head = (subject or "").strip()
    if head and body:
        return f"{head}\n\n{body}"
    return head or body


def _fenced(lines: list[str]) -> set[int]:
    """The indexes of lines inside Markdown code fences (never quotes or markers there)."""
    inside, found = False, set()
    for index, line in enumerate(lines):
        if line.lstrip().startswith(("```", "~~~")):
            inside = not inside
            found.add(index)
        elif inside:
            found.add(index)
    return found


def _drop_quotes(lines: list[str], fenced: set[int]) -> list[str]:
    """``lines`` without the lines quoted with ``>``, except a quote the writer introduces with a
    line of their own ending in ``:`` ("See below:", "Chat transcript:"), which is kept without
    its ``>`` marks: there the quote is what they are sending."""
    kept: list[str] = []
    introduced = False
    for index, line in enumerate(lines):
        stripped = line.strip()
        if index in fenced or not stripped.startswith(">"):
            if stripped:
                introduced = stripped.endswith(":")
            kept.append(line)
        elif introduced:
            kept.append(_QUOTE_MARKS.sub("", line))
    return kept


def _cut_history(lines: list[str], fenced: set[int]) -> list[str]:
    for index, raw in enumerate(lines):
        line = raw.strip()
        if not line or index in fenced:
            continue
        if _WROTE.match(line) or (
            index + 1 < len(lines)
            and line.lower().startswith(("on ", "am ", "le ", "op ", "el "))
            and _WROTE.match(line + " " + lines[index + 1].strip())
        ):
            return lines[:index]
        for pattern in _HISTORY_STARTS:
            if pattern.match(line):
                if line.lower().lstrip("*").startswith("from:") and not _header_block(lines, index):
                    break
                return lines[:index]
    return lines


def _header_block(lines: list[str], start: int) -> bool:
    """Whether a ``From:`` line starts a mail header block (another header field follows)."""
    following = [line.strip() for line in lines[start + 1 : start + 5] if line.strip()]
    return any(_HEADER_FIELD.match(line) for line in following)


def _cut_signature(lines: list[str]) -> list[str]:
    for index, line in enumerate(lines):
        if _SIGNATURE_DELIMITER.match(line.rstrip("\n")) and index > 0:
            lines = lines[:index]
            break
    lines = [line for line in lines if not _SENT_FROM.match(line.strip())]
    if any(line.lstrip().startswith(("```", "~~~")) for line in lines[-3:]):
        return lines  # ends in code: no sign-off to look for
    while lines and not lines[-1].strip():
        lines.pop()
    # A sign-off near the end, followed only by a short name block.
    for index in range(len(lines) - 1, max(-1, len(lines) - _MAX_NAME_BLOCK - 2), -1):
        line = lines[index].strip()
        if _CLOSINGS.match(line):
            tail = [t.strip() for t in lines[index + 1 :] if t.strip()]
            before = "\n".join(lines[:index]).strip()
            if (
                before
                and len(tail) <= _MAX_NAME_BLOCK
                and all(len(t) <= _MAX_NAME_LINE for t in tail)
            ):
                return lines[:index]
            break
    return lines


def _fallback(text: str) -> str:
    """A message that was all quote or signature: keep what is not quoted."""
    plain = [line for line in text.splitlines() if not line.lstrip().startswith(">")]
    return "\n".join(plain).strip()
