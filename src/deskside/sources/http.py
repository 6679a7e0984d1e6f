"""``kind = "http"``: the customer's record from a JSON API."""

from __future__ import annotations

import asyncio
import json
import re
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import jmespath
import jmespath.exceptions
from pydantic import Field, field_validator

from deskside.configtypes import Secret
from deskside.errors import SourceError
from deskside.lookup import Lookup
from deskside.sources.base import Record, Source, SourceConfig

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import httpcore
    import httpx

__all__ = ["SOURCE", "HttpSource", "HttpSourceConfig"]

_PLACEHOLDER = re.compile(r"\{(emails?)\}")


class HttpSourceConfig(SourceConfig):
    """A URL template, optional headers and body, and a JMESPath to the record.

    ``{email}`` in the URL makes one request per address (results are combined); ``{emails}``
    makes one request with the addresses comma-separated. Values are percent-encoded.
    """

    kind: Literal["http"]
    url: str
    method: Literal["GET", "POST"] = "GET"
    headers: dict[str, Secret] = {}
    body: dict[str, Any] | None = None
    """JSON sent with POST; string values ``"{email}"``/``"{emails}"`` become the addresses
    (a list; within longer text, comma-separated)."""
    record: str | None = None
    """JMESPath to the record(s) in the response, e.g. ``data.users``; default: the whole body."""
    timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    verify_tls: bool = True
    max_answer_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    """The largest answer read (after decompression): a bigger one is an error, read no
    further, so that no API can fill a worker's memory."""

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError("the URL must start with https:// (or http:// on a private network)")
        return url

    @field_validator("record")
    @classmethod
    def _valid_path(cls, path: str | None) -> str | None:
        if path is not None:
            try:
                jmespath.compile(path)
            except jmespath.exceptions.ParseError as exc:
                raise ValueError(f"invalid JMESPath {path!r}: {exc}") from None
        return path


class HttpSource(Source):
    """Calls the API with httpx and picks the record(s) out of its JSON answer.

    404 means "not found"; any other non-2xx status, a timeout or a non-JSON body is an error.
    """

    kind = "http"
    config_model = HttpSourceConfig

    def __init__(self, name: str, config: HttpSourceConfig) -> None:
        super().__init__(name, config)
        self._config = config
        import httpx  # here, not at the top: the registry imports this module for every config

        self._record = jmespath.compile(config.record) if config.record else None
        transport = httpx.AsyncHTTPTransport(verify=config.verify_tls)
        # httpx's transport turns requests, answers and errors into httpx's; the connections
        # under it are _KeptConnections', not its own pool's. A proxy the environment names
        # is still reached through httpx's own transport for it.
        pool = _KeptConnections(httpx.create_ssl_context(verify=config.verify_tls))
        transport._pool = pool  # type: ignore[assignment]  # the same interface
        self._client = httpx.AsyncClient(
            transport=transport,
            timeout=config.timeout_seconds,
            verify=config.verify_tls,
            headers={key: value.get_secret_value() for key, value in config.headers.items()},
            follow_redirects=False,
        )
        # What the client would merge into each request, merged once: its headers (httpx's
        # defaults and the config's) and its timeouts.
        self._headers = httpx.Headers(self._client.headers)
        self._extensions = {"timeout": self._client.timeout.as_dict()}
        self._url = _PLACEHOLDER.split(config.url)  # text, placeholder name, text, …
        self._per_address = "{email}" in config.url

    async def fetch(self, lookup: Lookup) -> list[Record]:
        if not self._per_address or len(lookup.emails) == 1:  # no task needed for one request
            batches = [await self._request(list(lookup.emails))]
        else:
            batches = await asyncio.gather(*(self._request([e]) for e in lookup.emails))
        if len(batches) == 1 and len(batches[0]) <= 1:
            return batches[0]
        unique: dict[str, Record] = {}
        for record in (r for batch in batches for r in batch):
            unique.setdefault(json.dumps(record, sort_keys=True, default=str), record)
        return list(unique.values())

    async def _request(self, emails: list[str]) -> list[Record]:
        import httpx

        values = {"email": emails[0], "emails": ",".join(emails)}
        url = "".join(
            quote(values[part], safe="") if i % 2 else part for i, part in enumerate(self._url)
        )
        body = _fill(self._config.body, emails) if self._config.body is not None else None
        try:  # httpx times each read; the whole answer must come within the timeout too
            async with asyncio.timeout(self._config.timeout_seconds):
                content = await self._send(
                    httpx.Request(
                        self._config.method,
                        url,
                        headers=self._headers,
                        json=body,
                        extensions=self._extensions,
                    )
                )
        except (httpx.TimeoutException, TimeoutError):
            raise SourceError(f"no answer within {self._config.timeout_seconds:g} s") from None
        except httpx.HTTPError as exc:
            raise SourceError(f"request failed: {type(exc).__name__}") from exc
        if content is None:
            return []
        try:
            document = json.loads(content)
        except ValueError:
            raise SourceError("the API did not answer JSON") from None
        found = self._record.search(document) if self._record else document
        return _as_records(found)

    async def _send(self, request: httpx.Request) -> bytes | None:
        """The body of a 2xx answer to ``request``; None for 404, :class:`SourceError` for
        any other status (a redirect too: none is followed).

        What ``AsyncClient.send`` does less what a source has no use for: the request goes
        straight to the client's transport for its URL (its connection pool, or the proxy the
        environment names), without the client's auth and redirect machinery, event hooks,
        request log line (:mod:`deskside.logs` silences it anyway: it holds the address) and
        cookie jar (an API's cookies are not carried from one customer's lookup to the next).
        """
        transport = self._client._transport_for_url(request.url)
        response = await transport.handle_async_request(request)
        limit = self._config.max_answer_bytes
        try:  # read whatever the status (up to the limit), so that the connection is reused
            content = bytearray()
            async for chunk in response.aiter_bytes():  # decoded as its Content-Encoding says
                content += chunk
                if len(content) > limit:
                    raise SourceError(f"the API answered more than {limit:,} bytes")
        finally:
            await response.aclose()
        if response.status_code == 404:
            return None
        if not response.is_success:
            raise SourceError(f"HTTP {response.status_code} from the API")
        return bytes(content)

    async def aclose(self) -> None:
        await self._client.aclose()


class _KeptConnections:
    """HTTP/1.1 connections to the APIs a source calls: one per request in flight, and up to
    ``keep`` idle ones per API kept for the next requests, the most recently used first.

    What httpcore's pool does, without its costs under load: it looks at every connection for
    every request (quadratic, with a hundred requests in flight per worker), and a request
    cancelled while it waits for a connection can leave one that is never used again. Here
    no request waits: there is no limit but the worker's admission control, and a connection
    is handed out or opened at once.
    """

    def __init__(self, ssl_context: Any, keep: int = 256, idle_seconds: float = 5.0) -> None:
        self._ssl_context = ssl_context
        self._keep = keep
        self._idle_seconds = idle_seconds
        self._idle: dict[tuple[bytes, bytes, int], list[httpcore.AsyncHTTPConnection]] = {}

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        import httpcore

        origin = request.url.origin
        idle = self._idle.setdefault((origin.scheme, origin.host, origin.port), [])
        connection = None
        while idle and connection is None:
            candidate = idle.pop()
            if candidate.is_idle() and not candidate.has_expired():  # not closed by the API
                connection = candidate
            else:
                await candidate.aclose()
        if connection is None:
            connection = httpcore.AsyncHTTPConnection(
                origin, ssl_context=self._ssl_context, keepalive_expiry=self._idle_seconds
            )
        try:
            response = await connection.handle_async_request(request)
        except BaseException:
            await connection.aclose()
            raise
        return httpcore.Response(
            response.status,
            headers=response.headers,
            content=_Returned(response.stream, connection, idle, self._keep),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        for idle in self._idle.values():
            while idle:
                await idle.pop().aclose()

    async def __aenter__(self) -> _KeptConnections:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()


class _Returned:
    """An answer's body; once it is closed, its connection goes back to ``idle`` if it can
    carry another request and fewer than ``keep`` wait there, else it is closed."""

    def __init__(
        self,
        stream: Any,
        connection: httpcore.AsyncHTTPConnection,
        idle: list[httpcore.AsyncHTTPConnection],
        keep: int,
    ) -> None:
        self._stream = stream
        self._connection = connection
        self._idle = idle
        self._keep = keep

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            if self._connection.is_idle() and len(self._idle) < self._keep:
                self._idle.append(self._connection)
            else:
                await self._connection.aclose()


def _fill(value: Any, emails: list[str]) -> Any:
    if value == "{emails}":
        return emails
    if isinstance(value, str):
        joined = {"email": emails[0], "emails": ",".join(emails)}
        return _PLACEHOLDER.sub(lambda m: joined[m.group(1)], value)
    if isinstance(value, dict):
        return {key: _fill(item, emails) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, emails) for item in value]
    return value


def _as_records(found: Any) -> list[Record]:
    if found is None:
        return []
    if isinstance(found, dict):
        return [found]
    if isinstance(found, list):
        return [item if isinstance(item, dict) else {"value": item} for item in found]
    return [{"value": found}]


SOURCE = HttpSource
"""This module's source kind (see :mod:`deskside.sources`)."""
