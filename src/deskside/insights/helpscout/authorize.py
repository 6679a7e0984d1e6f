"""How ``deskside connect helpscout`` gets Help Scout's authorisation in ``oauth`` mode: the
authorize URL is shown (and opened in a browser), then Help Scout's redirect is answered by a
one-shot listener when ``redirect_url`` is on this machine, or pasted by the person.

Tokens, codes and secrets are never printed; the authorize URL (which holds only the app's id
and a one-time ``state``) is.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import webbrowser
from types import TracebackType
from urllib.parse import SplitResult, parse_qs, urlsplit

import typer

from deskside.console import err, out
from deskside.insights.helpscout.client import HelpScoutAPI
from deskside.insights.helpscout.connection import (
    STATE_LIFETIME,
    AuthorizationRefused,
    HelpScoutError,
)
from deskside.insights.settings import HelpScoutSettings

__all__ = ["authorize"]

_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


async def authorize(api: HelpScoutAPI, settings: HelpScoutSettings, *, open_browser: bool) -> None:
    """Have a person approve deskside in Help Scout, and complete the authorisation with
    ``api``; raises :class:`HelpScoutError` (or :class:`AuthorizationRefused`) when it fails."""
    url = await api.authorization_url()
    redirect = urlsplit(settings.redirect_url)
    if redirect.scheme == "http" and redirect.hostname in _LOOPBACK_HOSTS:
        async with _CallbackListener(redirect) as listener:
            _show(url, open_browser)
            err.print(f"Waiting for Help Scout to send the browser back to {settings.redirect_url}")
            answer = await listener.wait(STATE_LIFETIME.total_seconds())
            try:
                code, state = _code_and_state(answer, None)
                await api.complete_authorization(code, state)
            except HelpScoutError as exc:
                listener.respond(False, str(exc))
                raise
            listener.respond(True, "deskside is connected to Help Scout. You can close this tab.")
        return
    _show(url, open_browser)
    pasted = typer.prompt(
        "Paste the address Help Scout sent your browser to (or just its code)", err=True
    )
    own_state = parse_qs(urlsplit(url).query).get("state", [""])[0]
    code, state = _code_and_state(_pasted_answer(pasted), own_state)
    await api.complete_authorization(code, state)


def _show(url: str, open_browser: bool) -> None:
    err.print("Approve deskside in Help Scout at:")
    out.print(url, markup=False, highlight=False)
    if open_browser:
        with contextlib.suppress(Exception):  # no browser here: the printed URL will do
            webbrowser.open(url)


def _pasted_answer(pasted: str) -> dict[str, str]:
    text = pasted.strip()
    if "code=" in text or "error=" in text:
        query = urlsplit(text).query if "?" in text else text.lstrip("?")
        return {key: values[0] for key, values in parse_qs(query).items()}
    return {"code": text}


def _code_and_state(answer: dict[str, str], own_state: str | None) -> tuple[str, str]:
    """The code and state of Help Scout's redirect; a pasted bare code pairs with the state
    this run created (``own_state``)."""
    if "error" in answer:
        raise AuthorizationRefused(f"Help Scout did not authorise deskside ({answer['error']})")
    code = answer.get("code", "").strip()
    state = answer.get("state") or own_state
    if not code or not state:
        raise AuthorizationRefused("Help Scout's answer has no code or no state")
    return code, state


class _CallbackListener:
    """A one-shot HTTP listener on a loopback redirect URL: the first GET of its path with a
    ``code`` or an ``error`` is the answer; the browser is told how it went."""

    def __init__(self, redirect: SplitResult) -> None:
        self._host = redirect.hostname or "127.0.0.1"
        self._port = redirect.port or 80
        self._path = redirect.path or "/"
        self._server: asyncio.Server | None = None
        self._answer: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()
        self._outcome: asyncio.Future[tuple[bool, str]] = asyncio.get_running_loop().create_future()
        self._replied = asyncio.Event()

    async def __aenter__(self) -> _CallbackListener:
        try:
            self._server = await asyncio.start_server(self._serve, self._host, self._port)
        except OSError as exc:
            raise HelpScoutError(
                f"cannot listen on {self._host}:{self._port} for Help Scout's redirect "
                f"({exc.strerror or exc}): free that port, or use --no-browser with a "
                "redirect_url that is not on this machine"
            ) from None
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self._outcome.done():
            self._outcome.set_result((False, "deskside stopped waiting; try again."))
        if self._answer.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._replied.wait(), 5)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def wait(self, seconds: float) -> dict[str, str]:
        """The query of Help Scout's redirect."""
        try:
            return await asyncio.wait_for(asyncio.shield(self._answer), seconds)
        except TimeoutError:
            raise AuthorizationRefused(
                "no answer from Help Scout within 10 minutes: run `deskside connect helpscout` "
                "again"
            ) from None

    def respond(self, ok: bool, message: str) -> None:
        if not self._outcome.done():
            self._outcome.set_result((ok, message))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            method, target, *_ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            parts = urlsplit(target)
            answer = {key: values[0] for key, values in parse_qs(parts.query).items()}
            if method != "GET" or parts.path != self._path or self._answer.done():
                await _reply(writer, 404, "Not found.")
            elif "code" not in answer and "error" not in answer:
                await _reply(writer, 400, "This address is for Help Scout's redirect.")
            else:
                self._answer.set_result(answer)
                ok, message = await asyncio.shield(self._outcome)
                await _reply(writer, 200 if ok else 400, message)
                self._replied.set()
        except (OSError, ValueError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def _reply(writer: asyncio.StreamWriter, status: int, message: str) -> None:
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}[status]
    body = (
        "<!doctype html><meta charset=utf-8><title>deskside</title>"
        f"<p style='font:16px system-ui;margin:3em'>{html.escape(message)}</p>"
    ).encode()
    writer.write(
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nReferrer-Policy: no-referrer\r\n"
        "Cache-Control: no-store\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    await writer.drain()
