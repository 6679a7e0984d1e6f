"""``deskside probe``: call an endpoint exactly as a helpdesk would, and judge the answer.

It works against any implementation, not only deskside: the request is the helpdesk's (method,
body shape, headers, signature, timeout) and the answer is checked against the helpdesk's
protocol by that helpdesk's own :meth:`~deskside.protocols.Protocol.check_answer`.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from deskside.helpdesks import protocol_class
from deskside.protocols import Protocol, RawRequest

if TYPE_CHECKING:
    import httpx

__all__ = ["Finding", "ProbeReport", "probe"]


@dataclass(frozen=True)
class Finding:
    ok: bool
    message: str


@dataclass
class ProbeReport:
    """What was sent, what came back, and every finding about it."""

    title: str
    request_line: str
    status: int | None = None
    elapsed_ms: float = 0.0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(finding.ok for finding in self.findings)

    def passed(self, message: str) -> None:
        self.findings.append(Finding(True, message))

    def failed(self, message: str) -> None:
        self.findings.append(Finding(False, message))


async def probe(
    url: str,
    kind: str,
    secret: str,
    *,
    email: str = "test@example.com",
    bad_signature: bool = False,
    timeout_seconds: float | None = None,
    card_keys: Sequence[str] | None = None,
) -> ProbeReport:
    """Send ``kind``'s request for ``email`` to ``url`` and report on the answer.

    With ``bad_signature`` the request is signed with a wrong secret, and the endpoint passes
    only if it refuses it. ``timeout_seconds`` defaults to the helpdesk's own limit;
    ``card_keys`` go to a helpdesk whose example request takes them (Plain).
    """
    protocol = protocol_class(kind)
    signing_secret = secret + "-forged" if bad_signature else secret
    takes_keys = "card_keys" in inspect.signature(protocol.example_request).parameters
    options: dict[str, Any] = {"card_keys": card_keys} if card_keys and takes_keys else {}
    request = protocol.example_request(signing_secret, [email], **options)
    limit = timeout_seconds if timeout_seconds is not None else protocol.timeout_seconds
    target = f"{url}?{request.query.decode()}" if request.query else url
    report = ProbeReport(title=protocol.title, request_line=f"{request.method} {target}")
    import httpx  # here, not at the top: a server imports this module for its preview page

    started = time.perf_counter()
    try:
        async with httpx.AsyncClient(timeout=limit, follow_redirects=False) as client:
            response = await client.request(
                request.method,
                target,
                content=request.body or None,
                headers={"user-agent": f"deskside-probe ({protocol.title})", **request.headers},
            )
    except httpx.TimeoutException:
        report.elapsed_ms = (time.perf_counter() - started) * 1000
        report.failed(
            f"no answer within {limit:g} s: {protocol.title} would give up and show nothing"
        )
        return report
    except httpx.HTTPError as exc:
        report.failed(f"could not reach {url}: {type(exc).__name__}: {exc}")
        return report
    report.elapsed_ms = (time.perf_counter() - started) * 1000
    report.status = response.status_code
    if bad_signature:
        _judge_refusal(report, response)
    else:
        _judge_answer(report, response, protocol, request, limit)
    return report


def _judge_refusal(report: ProbeReport, response: httpx.Response) -> None:
    status = response.status_code
    if status in (401, 403):
        report.passed(f"refused the forged signature with {status}")
    elif 400 <= status < 500:
        report.failed(
            f"answered {status} to a forged signature: it should refuse with 401 or 403, "
            "before reading the body"
        )
    elif status >= 500:
        report.failed(f"answered {status} to a forged signature: a bad request must not be a 5xx")
    else:
        report.failed(f"ACCEPTED a forged signature ({status}): anyone can read customer data")


def _judge_answer(
    report: ProbeReport,
    response: httpx.Response,
    protocol: type[Protocol],
    request: RawRequest,
    limit: float,
) -> None:
    status = response.status_code
    if status != 200:
        report.failed(f"answered {status}, expected 200: {_diagnose(status, protocol)}")
        return
    report.passed("answered 200")
    try:
        document = protocol.read_answer(response.headers.get("content-type", ""), response.content)
    except ValueError as exc:
        report.failed(str(exc))
        return
    problems = protocol.check_answer(status, document, request)
    for problem in problems:
        report.failed(problem)
    if not problems:
        report.passed(f"the answer follows {protocol.title}'s protocol")
    seconds = report.elapsed_ms / 1000
    if seconds > limit:
        report.failed(f"took {seconds:.2f} s, over {protocol.title}'s limit of {limit:g} s")
    else:
        report.passed(f"answered in {report.elapsed_ms:.0f} ms (limit {limit:g} s)")


def _diagnose(status: int, protocol: type[Protocol]) -> str:
    if status in (401, 403):
        return (
            "it refused the signature: is the secret the one configured in the endpoint? "
            "(deskside logs the exact reason)"
        )
    if status == 404:
        return "nothing at that path: check the URL"
    if status == 405:
        return f"{protocol.title} sends {protocol.method}; the endpoint does not take it"
    if 300 <= status < 400:
        return f"{protocol.title} does not follow redirects: use the final URL"
    if status == 413:
        return "the endpoint refuses the body size"
    if status >= 500:
        return "the endpoint failed; its log says why"
    return "the helpdesk would show an error"
