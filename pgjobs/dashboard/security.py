"""Dashboard access: HTTP basic auth, CSRF tokens, security headers, binding."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pgjobs.errors import ConfigError

CSRF_COOKIE = "pgjobs_csrf"
CSRF_FIELD = "csrf_token"

#: No inline script or style, nothing from elsewhere, no framing.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]
_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def check_bind(host: str, password: str | None) -> None:
    """Refuse to listen beyond this machine without a password."""
    if host not in _LOCAL_HOSTS and not password:
        raise ConfigError(
            f"refusing to serve the dashboard on {host} without a password: set "
            "PGJOBS_DASHBOARD_USERNAME and PGJOBS_DASHBOARD_PASSWORD, or bind "
            "127.0.0.1"
        )


class Csrf:
    """Signed double-submit tokens: the cookie and the form field must match."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)

    def _sign(self, nonce: str) -> str:
        return hmac.new(self._key, nonce.encode(), hashlib.sha256).hexdigest()

    def new_token(self) -> str:
        nonce = secrets.token_urlsafe(24)
        return f"{nonce}.{self._sign(nonce)}"

    def valid(self, token: str | None) -> bool:
        if not token or "." not in token:
            return False
        nonce, signature = token.rsplit(".", 1)
        return hmac.compare_digest(signature, self._sign(nonce))

    def accepts(self, cookie: str | None, field: str | None) -> bool:
        return (
            cookie is not None
            and field is not None
            and hmac.compare_digest(cookie, field)
            and self.valid(cookie)
        )


def basic_auth_user(scope: Scope) -> tuple[str, str] | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            kind, _, encoded = value.decode("latin-1").partition(" ")
            if kind.lower() != "basic":
                return None
            try:
                user, _, password = (
                    base64.b64decode(encoded, validate=True).decode().partition(":")
                )
            except (binascii.Error, UnicodeDecodeError):
                return None
            return user, password
    return None


class Guard:
    """ASGI middleware: basic auth on every request (when configured) and the
    security headers on every response."""

    def __init__(
        self, app: ASGIApp, username: str | None, password: str | None
    ) -> None:
        self.app = app
        self.username = username or ""
        self.password = password

    def _allowed(self, scope: Scope) -> bool:
        if not self.password:
            return True
        given = basic_auth_user(scope)
        if given is None:
            return False
        user_ok = hmac.compare_digest(given[0].encode(), self.username.encode())
        password_ok = hmac.compare_digest(given[1].encode(), self.password.encode())
        return user_ok and password_ok

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_HEADERS]
            await send(message)

        if not self._allowed(scope):
            await send_with_headers(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"www-authenticate", b'Basic realm="pgjobs", charset="UTF-8"'),
                        (b"content-type", b"text/plain; charset=utf-8"),
                    ],
                }
            )
            await send(
                {"type": "http.response.body", "body": b"authentication required\n"}
            )
            return
        await self.app(scope, receive, send_with_headers)


def actor(scope: Scope, basic_auth: bool) -> str:
    """Who acts, for the audit trail: the basic-auth user (when the dashboard
    checks it), the host app's authenticated user, or the client address."""
    given = basic_auth_user(scope) if basic_auth else None
    if given is not None and given[0]:
        return given[0]
    user: Any = scope.get("user")
    if user is not None and getattr(user, "is_authenticated", False):
        return str(getattr(user, "display_name", user))
    client = scope.get("client")
    return f"anonymous@{client[0]}" if client else "anonymous"
