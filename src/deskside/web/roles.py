"""Who may do what: the three roles and the one table that gives every route of the web UI and
the insights API the least role it needs (see :mod:`deskside.web.guard`, which applies it).

- **viewer** reads dashboards, topics, reports and previews;
- **editor** also relabels, renames, merges and splits topics, and exports reports to GitHub;
- **admin** also connects and disconnects Help Scout, manages people and tokens, erases data,
  reads the Setup page (it shows the helpdesks' secrets) and the audit.

A route missing from :data:`PERMISSIONS` cannot be registered: the app refuses to start.
"""

from __future__ import annotations

from deskside.members import Role

__all__ = ["PERMISSIONS", "PUBLIC", "Role", "least_role"]


PUBLIC = None
"""A route anyone may call (the login and the invitation pages)."""

_UI, _API = "/ui", "/api/insights"
V, E, A = Role.viewer, Role.editor, Role.admin

PERMISSIONS: dict[tuple[str, str], Role | None] = {
    # The insights pages' stand-ins on a server without [insights] (each answers 404); the
    # pages' own entries below take precedence where the paths are the same
    **{
        (method, f"{_UI}{section}{rest}"): V
        for section in ("/insights", "/topics", "/connection", "/reports", "/people")
        for rest in ("", "/{rest:path}")
        for method in ("GET", "POST")
    },
    # The web UI
    ("GET", _UI): PUBLIC,  # to /ui/
    ("GET", f"{_UI}/"): V,
    ("GET", f"{_UI}/login"): PUBLIC,
    ("POST", f"{_UI}/login"): PUBLIC,
    ("GET", f"{_UI}/invitation"): PUBLIC,
    ("POST", f"{_UI}/invitation"): PUBLIC,
    ("GET", f"{_UI}/sso/login"): PUBLIC,
    ("GET", f"{_UI}/sso/callback"): PUBLIC,
    ("POST", f"{_UI}/logout"): V,
    ("POST", f"{_UI}/logout/everywhere"): V,
    ("POST", f"{_UI}/workspace"): V,
    ("GET", f"{_UI}/preview"): V,
    ("POST", f"{_UI}/preview/probe"): V,
    ("GET", f"{_UI}/setup"): A,
    ("GET", f"{_UI}/insights"): V,
    ("POST", f"{_UI}/insights/conversations/{{conversation_id}}/label"): E,
    ("GET", f"{_UI}/topics"): V,
    ("GET", f"{_UI}/topics/{{topic_id}}"): V,
    ("POST", f"{_UI}/topics/{{topic_id}}/rename"): E,
    ("POST", f"{_UI}/topics/{{topic_id}}/merge"): E,
    ("POST", f"{_UI}/topics/{{topic_id}}/undo-merge"): E,
    ("POST", f"{_UI}/topics/{{topic_id}}/split"): E,
    ("GET", f"{_UI}/connection"): A,
    ("POST", f"{_UI}/connection/{{action}}"): A,
    ("GET", f"{_UI}/reports"): V,
    ("POST", f"{_UI}/reports/{{topic_id}}/export/github"): E,
    ("GET", f"{_UI}/people"): A,
    ("POST", f"{_UI}/people"): A,
    ("POST", f"{_UI}/people/{{person_id}}/{{action}}"): A,
    ("POST", f"{_UI}/tokens/{{token_id}}/revoke"): A,
    ("GET", f"{_UI}/audit"): A,
    ("GET", f"{_UI}/audit.csv"): A,
    ("GET", f"{_UI}/audit.json"): A,
    ("GET", f"{_UI}/{{path:path}}"): V,
    # The insights API
    ("GET", f"{_API}/overview"): V,
    ("GET", f"{_API}/conversations"): V,
    ("POST", f"{_API}/conversations/{{conversation_id}}/label"): E,
    ("GET", f"{_API}/topics"): V,
    ("GET", f"{_API}/topics/{{topic_id}}"): V,
    ("POST", f"{_API}/topics/{{topic_id}}/rename"): E,
    ("POST", f"{_API}/topics/{{topic_id}}/merge"): E,
    ("POST", f"{_API}/topics/{{topic_id}}/undo-merge"): E,
    ("POST", f"{_API}/topics/{{topic_id}}/split"): E,
    ("GET", f"{_API}/reports"): V,
    ("POST", f"{_API}/reports/{{topic_id}}/export/github"): E,
    ("POST", f"{_API}/forget"): A,
    ("GET", f"{_API}/audit"): A,
    # Help Scout's authorisation in the browser (Help Scout sends the browser back to the
    # callback, which the authorisation's state protects)
    ("GET", "/insights/helpscout/connect"): A,
    ("GET", "/insights/helpscout/callback"): PUBLIC,
}
"""``(method, path template)`` → the least role (or :data:`PUBLIC`). HEAD follows GET."""


def least_role(method: str, path: str) -> Role | None:
    """The least role ``method`` on the route ``path`` (as registered) needs; ``KeyError`` for
    a route the table does not name."""
    return PERMISSIONS[("GET" if method == "HEAD" else method, path)]
