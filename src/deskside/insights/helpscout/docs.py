"""Help Scout Docs: the titles of a help center's published articles, for the classifier.

The Docs API (``https://docsapi.helpscout.net/v1``) takes the user's Docs API key by HTTP
basic auth, with ``X`` as the password. Its lists come in pages,
``{"collections": {"page": 1, "pages": 3, "items": [...]}}``; here every collection is read,
then every published article of each (``GET /v1/collections/{id}/articles?status=published``),
and each article's ``name`` is its title. Hand the titles to
:meth:`~deskside.insights.analysis.classify.Classifier.use_article_titles`: a customer message that
closely matches one becomes likelier to be labelled ``docs``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

__all__ = ["DOCS_API_URL", "DocsAPIError", "fetch_article_titles"]

DOCS_API_URL = "https://docsapi.helpscout.net"
_MAX_PAGES = 100


class DocsAPIError(RuntimeError):
    """The Docs API could not be read; the message says why (refused key, status, network)."""


async def fetch_article_titles(
    api_key: str,
    *,
    base_url: str = DOCS_API_URL,
    client: httpx.AsyncClient | None = None,
    request_timeout: float = 15.0,
) -> list[str]:
    """The titles of every published article in every collection, in the API's order, without
    duplicates. Raises :class:`DocsAPIError` on a refused key (401/403), another error status,
    an answer that is not the expected JSON, or a network failure."""
    if not api_key:
        raise DocsAPIError("no Help Scout Docs API key")
    own = client is None
    http = client or httpx.AsyncClient(timeout=request_timeout)
    auth = httpx.BasicAuth(api_key, "X")
    root = base_url.rstrip("/") + "/v1"
    try:
        titles: dict[str, None] = {}
        async for collection in _items(http, auth, f"{root}/collections", "collections", {}):
            identifier = collection.get("id")
            if not isinstance(identifier, str | int):
                continue
            url = f"{root}/collections/{identifier}/articles"
            async for article in _items(http, auth, url, "articles", {"status": "published"}):
                name = article.get("name")
                if isinstance(name, str) and name.strip():
                    titles.setdefault(name.strip(), None)
        return list(titles)
    except httpx.HTTPError as exc:
        raise DocsAPIError(f"Help Scout Docs API: {type(exc).__name__}: {exc}") from exc
    finally:
        if own:
            await http.aclose()


async def _items(
    client: httpx.AsyncClient,
    auth: httpx.Auth,
    url: str,
    key: str,
    params: dict[str, str],
) -> AsyncIterator[dict[str, Any]]:
    """Every item of a paged Docs API list."""
    page = 1
    while page <= _MAX_PAGES:
        response = await client.get(url, params={**params, "page": str(page)}, auth=auth)
        if response.status_code in (401, 403):
            raise DocsAPIError(f"Help Scout Docs API refused the API key ({response.status_code})")
        if response.status_code != 200:
            raise DocsAPIError(f"Help Scout Docs API: {url} answered {response.status_code}")
        try:
            envelope = response.json()[key]
            items = envelope["items"]
            pages = int(envelope.get("pages") or 1)
        except (ValueError, KeyError, TypeError) as exc:
            raise DocsAPIError(f"Help Scout Docs API: unexpected answer from {url}") from exc
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict):
                yield item
        if page >= pages:
            return
        page += 1
