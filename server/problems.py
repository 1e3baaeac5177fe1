"""Every failure of a request as a 4xx with a JSON {"error": ...} that says what to do next.

The server displays errors (like the CLI and the UI, and unlike the library): library errors become
400s, what isn't there 404, schema violations 422; a bug is a 500 that still answers JSON, and the
server stays up.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from clipsearch.errors import ClipSearchError, IndexDirError, InputError, ModelError

log = logging.getLogger("clipsearch.server")


class Problem(InputError):
    """A bad request with its HTTP status (404 for what doesn't exist, 413 for a body too big...)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    """Register the handlers that turn every exception into {"error": ...}."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, e: Problem):
        return error(e.status, str(e))

    @app.exception_handler(ClipSearchError)
    async def _library(request: Request, e: ClipSearchError):
        # The index or the model can't serve right now (a reindex switched models, files vanished):
        # the request may work later; anything else is the request's fault.
        status = 503 if isinstance(e, (IndexDirError, ModelError)) else 400
        return error(status, str(e))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError):
        bad_json = [err for err in e.errors() if err.get("type") == "json_invalid"]
        if bad_json:
            why = (bad_json[0].get("ctx") or {}).get("error", "malformed")
            return error(400, f"the body is not JSON ({why}): send a JSON object (see /docs)")
        return error(422, describe(e.errors()))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, e: HTTPException):
        return error(e.status_code, str(e.detail), getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def _bug(request: Request, e: Exception):
        log.exception("unexpected error serving %s", request.url.path)
        return error(500, f"unexpected error ({type(e).__name__}); the server logged it: please report it")


def describe(errors) -> str:
    """Pydantic's validation errors as one sentence naming each bad field."""
    parts = []
    for err in errors:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) + " (see /docs for the request's schema)"
