"""The FastAPI application: the native API, clip-retrieval's endpoints, /health, /docs, the gates.

`make_app(service, token=...)` joins them over one `Service`; the same app runs under uvicorn
(`runner.py`) or as the ingress of Ray Serve shards (`rayserve.py`).
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.security import HTTPBearer
from starlette.middleware.cors import CORSMiddleware

from clipsearch.server import clipback, problems, routes
from clipsearch.server.auth import URL_TOKEN, TokenGate
from clipsearch.server.bodies import BodyLimit, JsonBodies
from clipsearch.server.service import Service

DESCRIPTION = """Search a clipsearch index over HTTP.

The native API (`/search`, `/search/image`, `/classify`, `/info`, `/image/{id}`, `/thumbnail/{id}`)
runs the same query method as `clipsearch query` and the UI. `/knn-service`, `/indices-list` and
`/metadata` answer as clip-retrieval's `clip back` does, for ClipClient and clip-front.
With a token, send `Authorization: Bearer T` (or `?token=T`); `/health` is always open.
Bad input gets a 4xx with `{"error": "..."}`."""


def make_app(service: Service, *, token: str | None = None, cors_origins: tuple[str, ...] = (),
             live: bool = True) -> FastAPI:
    """The app over `service`; with `live`, its index is watched for commits while the app runs."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if live:
            service.live.start()
        yield
        service.live.stop()

    guards = [Depends(HTTPBearer(auto_error=False, description="the server's --token"))] if token else []
    app = FastAPI(title="clipsearch", description=DESCRIPTION, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.service = service
    app.include_router(routes.router, dependencies=guards)
    app.include_router(clipback.router, dependencies=guards)
    problems.install(app)

    @app.get("/health", summary="200 once the server answers queries (needs no token)")
    async def health() -> dict:
        return {"status": "ok", "images": service.state.images, "generation": service.live.generation}

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request):
        url_token = request.scope.get("state", {}).get(URL_TOKEN)
        spec = app.openapi_url + (f"?token={quote(url_token)}" if url_token else "")
        return get_swagger_ui_html(openapi_url=spec, title="clipsearch API")

    app.add_middleware(JsonBodies)
    app.add_middleware(BodyLimit, limit=service.settings.serve_max_body_bytes)
    app.add_middleware(TokenGate, token=token)  # outside the limit: no token, no body read
    if cors_origins:  # clip-front served from another origin; never "*" by default: see README "Serve".
        # Outside the gate, so that a browser's preflight (which carries no token) is answered.
        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    return app
