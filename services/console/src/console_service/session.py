"""The session: an encrypted, authenticated cookie (Fernet) holding the project key and
the CSRF token. The console keeps nothing on its side.

Every visitor gets a session (anonymous until sign-in), so the sign-in form is CSRF
protected like every other form. The cookie is HttpOnly and SameSite=Strict; the key in
it is readable by nobody without the console's secret, and tampering makes it invalid.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, replace

from cryptography.fernet import Fernet, InvalidToken
from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE = "prelabel_console"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True)
class Session:
    """What the cookie holds."""

    csrf: str
    api_key: str | None = None
    project_id: str | None = None

    @classmethod
    def anonymous(cls) -> Session:
        """A new session with a fresh CSRF token and nobody signed in."""
        return cls(csrf=secrets.token_urlsafe(32))

    @property
    def signed_in(self) -> bool:
        """Whether a project key is held."""
        return self.api_key is not None

    def sign_in(self, api_key: str, project_id: str) -> Session:
        """The session after a sign-in (a new CSRF token: no fixation)."""
        return replace(Session.anonymous(), api_key=api_key, project_id=project_id)

    def csrf_matches(self, token: str | None) -> bool:
        """Whether a submitted token is this session's (constant time)."""
        return token is not None and hmac.compare_digest(token.encode(), self.csrf.encode())


class SessionCodec:
    """Seals and opens sessions with Fernet (AES-CBC + HMAC, with a timestamp)."""

    def __init__(self, secret: str | None, max_age_seconds: int) -> None:
        key = (
            base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest())
            if secret
            else Fernet.generate_key()
        )
        self._fernet = Fernet(key)
        self.max_age_seconds = max_age_seconds

    def seal(self, session: Session) -> str:
        """The cookie value."""
        body = {"c": session.csrf, "k": session.api_key, "p": session.project_id}
        return self._fernet.encrypt(json.dumps(body).encode()).decode()

    def open(self, value: str | None) -> Session | None:
        """The session in a cookie value; ``None`` when absent, forged or expired."""
        if not value:
            return None
        try:
            body = json.loads(self._fernet.decrypt(value.encode(), ttl=self.max_age_seconds))
            return Session(csrf=str(body["c"]), api_key=body.get("k"), project_id=body.get("p"))
        except (InvalidToken, ValueError, KeyError, TypeError):
            return None


class SessionMiddleware:
    """Opens the cookie into ``request.state.session`` and writes it back when a route
    replaced it (``set_session``) or when it was new."""

    def __init__(self, app: ASGIApp, codec: SessionCodec, *, secure: bool) -> None:
        self.app = app
        self.codec = codec
        self.secure = secure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        connection = HTTPConnection(scope)
        opened = self.codec.open(connection.cookies.get(COOKIE))
        state = scope.setdefault("state", {})
        state["session"] = opened or Session.anonymous()
        state["session_dirty"] = opened is None

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start" and state.get("session_dirty"):
                headers = MutableHeaders(scope=message)
                headers.append("set-cookie", self._cookie(state["session"], scope))
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    def _cookie(self, session: Session, scope: Scope) -> str:
        path = scope.get("root_path") or "/"
        parts = [
            f"{COOKIE}={self.codec.seal(session)}",
            f"Path={path}",
            f"Max-Age={self.codec.max_age_seconds}",
            "HttpOnly",
            "SameSite=Strict",
        ]
        if self.secure:
            parts.append("Secure")
        return "; ".join(parts)


def session_of(connection: HTTPConnection) -> Session:
    """The request's session (the middleware always sets one)."""
    session: Session = connection.state.session
    return session


def set_session(connection: HTTPConnection, session: Session) -> None:
    """Replace the request's session; the response carries the new cookie."""
    connection.state.session = session
    connection.state.session_dirty = True
