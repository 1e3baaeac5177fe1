"""Who may use the server: loopback only, unless a token is set; then the token on every request.

`check_bind` refuses, before anything loads, a non-loopback address without a token: a search
service over someone's photos must not reach the network by accident. With a token, `TokenGate`
lets through requests that carry it as `Authorization: Bearer T` or `?token=T` (for clients that
can't set headers: an <img> tag, clip-front, ClipClient); everything else gets 401. `/health`
stays open, for load balancers and orchestrators. Without a token, only requests addressed to a
loopback name are answered: a web page can't rebind its own name to 127.0.0.1 to read the answers.
"""

from __future__ import annotations

import hmac
import ipaddress
from urllib.parse import parse_qs

from clipsearch.config import TOKEN_ENV
from clipsearch.errors import InputError
from clipsearch.server.problems import error

OPEN_PATHS = frozenset({"/health"})
#: Set in the request's state when the token came in the query string: the URLs handed back
#: (a hit's image) then carry it too, since that client can't send headers.
URL_TOKEN = "url_token"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve to anything


def check_bind(host: str, token: str | None) -> None:
    """InputError, saying how to set a token, for a non-loopback `host` without one."""
    if token is not None and not token.strip():
        raise InputError(f"the token is empty: set a long random one with --token T or {TOKEN_ENV}=T")
    if token is None and not is_loopback(host):
        raise InputError(
            f"--host {host} would let anyone on the network search your photos: set a token with "
            f"--token T or {TOKEN_ENV}=T (e.g. T=$(python -c 'import secrets; print(secrets.token_urlsafe(24))')); "
            "clients then send `Authorization: Bearer T` or ?token=T. Or keep --host 127.0.0.1")


class TokenGate:
    """ASGI middleware: with a token, requests other than OPEN_PATHS must carry it, else 401; without
    one, they must be addressed to a loopback name, else 403."""

    def __init__(self, app, token: str | None):
        self.app, self._token = app, token.encode() if token else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        if self._token is None:
            if _host(scope) is None or is_loopback(_host(scope)):
                return await self.app(scope, receive, send)
            # Without a token the server is on loopback: a request naming another host is a web
            # page that rebound its own name to 127.0.0.1 to read the answers (DNS rebinding).
            return await error(403, "without a token this server answers only requests to 127.0.0.1 or "
                                    "localhost: use that address, or start it with --token")(scope, receive, send)
        bearer, query = _bearer(scope), _query_token(scope)
        if bearer is not None and hmac.compare_digest(bearer, self._token):
            return await self.app(scope, receive, send)
        if query is not None and hmac.compare_digest(query, self._token):
            # A copy: a server may share one state dict between requests.
            scope = dict(scope, state={**scope.get("state", {}), URL_TOKEN: query.decode()})
            return await self.app(scope, receive, send)
        message = ("this server needs its token: send `Authorization: Bearer T` or add ?token=T"
                   if bearer is None and query is None else "wrong token: check the one the server was started with")
        await error(401, message, {"WWW-Authenticate": "Bearer"})(scope, receive, send)


def _bearer(scope) -> bytes | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            kind, _, credentials = value.partition(b" ")
            return credentials.strip() if kind.lower() == b"bearer" else b""
    return None


def _host(scope) -> str | None:
    """The Host header's name, without the port."""
    for name, value in scope.get("headers", ()):
        if name == b"host":
            host = value.decode("latin-1")
            return host[1:host.index("]")] if host.startswith("[") and "]" in host else host.rsplit(":", 1)[0]
    return None


def _query_token(scope) -> bytes | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
    return values[-1].encode() if values else None
