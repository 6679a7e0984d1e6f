"""Logging: one JSON (or text) line per record, each carrying the id of the request it belongs to.

The server's middleware puts every request's id in :data:`request_id`; :class:`RequestIdFilter`
copies it onto each record that passes a handler, so a warning a source logs in the middle of a
request names that request. :func:`logging_config` is the whole set-up, as a ``dictConfig``
that uvicorn applies in every worker process.

What is never logged: secrets, signatures, ``Authorization`` values, request bodies and query
strings (Helper's ``?email=``). The access line (:func:`log_request`) has the path only.
"""

from __future__ import annotations

import itertools
import json
import logging
import logging.config
import os
import re
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = [
    "FORMAT_ENV",
    "LEVEL_ENV",
    "JsonFormatter",
    "LogFormat",
    "RequestIdFilter",
    "TextFormatter",
    "configure",
    "configure_from_env",
    "log_request",
    "logging_config",
    "new_request_id",
    "request_id",
    "sane_request_id",
]

LogFormat = Literal["json", "text"]
FORMAT_ENV = "DESKSIDE_LOG_FORMAT"
LEVEL_ENV = "DESKSIDE_LOG_LEVEL"

request_id: ContextVar[str | None] = ContextVar("deskside_request_id", default=None)
"""The id of the request being answered, or None outside a request."""

access_log = logging.getLogger("deskside.access")

_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
_NOISY = ("httpx", "httpcore", "stripe", "aiosqlite")
"""Their request lines (``?email=…``) or debug lines (a query's parameters) carry customers'
addresses: only their problems are logged, whatever the level."""


def new_request_id() -> str:
    """32 hex digits, unique: a random prefix per process and a counter (cheaper than a
    UUID per request; request ids need to be unique, not unguessable)."""
    return f"{_id_prefix}{next(_id_counter):016x}"


def _new_id_prefix() -> None:
    global _id_prefix, _id_counter
    _id_prefix = os.urandom(8).hex()
    _id_counter = itertools.count()


_id_prefix = ""
_id_counter = itertools.count()
_new_id_prefix()
os.register_at_fork(after_in_child=_new_id_prefix)  # forked workers: each a prefix of its own


def sane_request_id(value: bytes | str | None) -> str | None:
    """``value`` when it is a short token (letters, digits, ``._:-``, at most 64), else None.

    A proxy's id (nginx ``$request_id``, a load balancer's) is kept so lines correlate across
    hops; anything else is replaced, so no caller can write arbitrary text into the logs.
    """
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    if value is None or not _SANE_ID.fullmatch(value):
        return None
    return value


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every record logged while a request is answered."""

    def filter(self, record: logging.LogRecord) -> bool:
        current = request_id.get()
        if current is not None and not hasattr(record, "request_id"):
            record.request_id = current
        return True


_RECORD_ATTRIBUTES = frozenset(
    [*vars(logging.makeLogRecord({})), "message", "asctime", "color_message"]
)
"""What every log record has (``color_message``: uvicorn's ANSI copy of the message); the rest
of a record's attributes are its extra fields."""


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message``,
    ``pid``, then the record's extra fields (``request_id``, an access line's ``status`` …;
    a value JSON has no type for as its text), ``exc_info`` and ``stack_info`` when it has them.
    Non-ASCII characters are escaped: a line is one line whatever a message holds."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for name, value in vars(record).items():
            if name not in _RECORD_ATTRIBUTES:
                line[name] = value
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger [request id]: message`` (``-`` outside a request)."""

    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s",
            defaults={"request_id": "-"},
        )


def logging_config(
    log_format: LogFormat = "json", level: str = "info", *, stream: Any = "ext://sys.stderr"
) -> dict[str, Any]:
    """The ``logging.config.dictConfig`` for deskside and uvicorn: one handler on ``stream``.

    uvicorn's own access log is switched off (it logs query strings); the middleware writes
    one line per request to ``deskside.access`` instead.
    """
    level = level.upper()
    numeric = logging.getLevelName(level)
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    quiet = logging.getLevelName(max(logging.WARNING, numeric))
    formatter = JsonFormatter if log_format == "json" else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"deskside": {"()": formatter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": stream,
                "formatter": "deskside",
                "filters": ["request_id"],
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            "uvicorn": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.error": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
            **{name: {"level": quiet} for name in _NOISY},
        },
    }


def configure(log_format: LogFormat = "json", level: str = "info") -> None:
    """Log as :func:`logging_config` says, in this process."""
    logging.config.dictConfig(logging_config(log_format, level))


def configure_from_env() -> None:
    """For app factories run by another server (gunicorn, ``uvicorn --factory``): configure
    logging from ``$DESKSIDE_LOG_FORMAT``/``$DESKSIDE_LOG_LEVEL`` (default JSON, info) unless
    something already did, and silence uvicorn's access log in any case."""
    if not logging.getLogger().handlers:
        log_format = os.environ.get(FORMAT_ENV, "json")
        configure("text" if log_format == "text" else "json", os.environ.get(LEVEL_ENV, "info"))
    logging.getLogger("uvicorn.access").disabled = True


def log_request(
    method: str,
    path: str,
    status: int,
    seconds: float,
    *,
    helpdesk: str | None,
    client: str | None,
) -> None:
    """The access line: method, path (never the query string), status, duration, helpdesk.

    Probes (``/healthz``, ``/readyz``, ``/metrics``) are logged at debug level only.
    """
    level = logging.DEBUG if path in _QUIET_PATHS else logging.INFO
    if not access_log.isEnabledFor(level):
        return
    path = _printable(path)
    milliseconds = round(seconds * 1000, 1)
    access_log.log(
        level,
        "%s %s %d %.1f ms",
        method,
        path,
        status,
        milliseconds,
        extra={
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": milliseconds,
            "helpdesk": helpdesk,
            "client": client,
        },
    )


def _printable(path: str, limit: int = 200) -> str:
    """``path`` cut to ``limit`` characters, control characters escaped (no forged lines)."""
    cut = path[:limit] + ("…" if len(path) > limit else "")
    if cut.isprintable():
        return cut
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in cut)
