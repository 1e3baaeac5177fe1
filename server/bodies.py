"""What a request body may be: at most `serve_max_body_bytes`, and JSON whatever its Content-Type says.

clip-retrieval's ClipClient posts its JSON with no Content-Type, and `curl -d` labels it a form;
both are read as JSON (a search has no side effect, so a cross-site form post gains nothing: the
answer is not readable by the page that sent it). Only /search/image takes raw bytes.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException

from clipsearch.server.problems import error

#: POST paths whose body is not JSON.
RAW_PATHS = frozenset({"/search/image"})


class TooLarge(HTTPException):
    """A body past the limit. An HTTPException, so that FastAPI's body parsing lets it through."""

    def __init__(self, limit: int):
        super().__init__(413, f"the request body is over the {limit:,}-byte limit: send a smaller image")


class BodyLimit:
    """ASGI middleware: a body over `limit` bytes gets 413 {"error": ...}, refused by its
    Content-Length before a byte is read, else when the bytes read pass the limit."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers", ())).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.limit:
            e = TooLarge(self.limit)
            return await error(e.status_code, e.detail, {"Connection": "close"})(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise TooLarge(self.limit)
            return message

        await self.app(scope, counted, send)


class JsonBodies:
    """ASGI middleware: a POST to any path but RAW_PATHS is labelled application/json, so that its
    body is parsed as JSON (and bad JSON is a 400) whatever the client said."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] not in RAW_PATHS:
            headers = [(k, v) for k, v in scope.get("headers", ()) if k != b"content-type"]
            scope = dict(scope, headers=[*headers, (b"content-type", b"application/json")])
        await self.app(scope, receive, send)
