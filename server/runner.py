"""Running the app under uvicorn on a socket bound here, so that the real port (for --port 0) is known."""

from __future__ import annotations

import socket
from typing import Callable


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); port 0 picks a free one. OSError if it can't."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host.strip("[]"), port))
    sock.listen(2048)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def run(app, sock: socket.socket, on_ready: Callable[[str], None] = lambda url: None) -> None:
    """Serve `app` on `sock` until SIGINT/SIGTERM; `on_ready(url)` once it accepts requests."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets)
            if not self.should_exit:
                on_ready(url_of(sock))

    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5,
                            proxy_headers=False)
    Server(config).run(sockets=[sock])
