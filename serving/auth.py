"""Optional API-key authentication: a constant-time check and a plain ASGI middleware.

The key is compared with `hmac.compare_digest` and never logged, echoed or stored elsewhere;
a rejected call gets 401 with a body naming the header only.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Collection, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def api_key_ok(expected: str | None, presented: str | None) -> bool:
    """Whether a call may pass: no key configured, or the presented key matches it exactly.

    Args:
        expected: the configured key (None or empty: authentication is off).
        presented: the header's value (None when absent).
    """
    if not expected:
        return True
    if presented is None:
        return False
    return hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8"))


def header_value(scope: Scope, header: str) -> str | None:
    """A request header from an ASGI scope (names compared case-insensitively)."""
    wanted = header.lower().encode("latin-1")
    for name, value in scope.get("headers", ()):
        if name.lower() == wanted:
            return bytes(value).decode("latin-1")
    return None


class ApiKeyMiddleware:
    """Reject calls to protected paths without the right key (401); pass everything else.

    Args:
        app: the wrapped ASGI app.
        api_key: the expected key (empty: the middleware lets everything through).
        header: the header carrying the key.
        protected: paths that need the key (health, readiness and metrics stay open).
        on_reject: called with the path of each rejected call (a metric), never with the key.
    """

    def __init__(
        self,
        app: ASGIApp,
        api_key: str = "",
        header: str = "X-API-Key",
        protected: Collection[str] = (),
        on_reject: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        self._key = api_key
        self.header = header
        self.protected = frozenset(p.rstrip("/") or "/" for p in protected)
        self.on_reject = on_reject
        self._body = json.dumps(
            {"error": f"missing or wrong API key: send it in the {header} header"}
        ).encode()

    def __repr__(self) -> str:
        return f"ApiKeyMiddleware(header={self.header!r}, protected={sorted(self.protected)})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._key:
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", "")).rstrip("/") or "/"
        if path not in self.protected or api_key_ok(self._key, header_value(scope, self.header)):
            await self.app(scope, receive, send)
            return
        if self.on_reject is not None:
            self.on_reject(path)
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(self._body)).encode()),
                    (b"www-authenticate", f'ApiKey header="{self.header}"'.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": self._body})
