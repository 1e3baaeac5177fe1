"""`clipsearch serve` in a child process on a free port of 127.0.0.1, and an HTTP client for it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

#: The token the test servers are started with.
TOKEN = "test-token-7f3a9c"
#: Seconds a server may take to load the model and open the index (a loaded 2-core machine).
START_TIMEOUT_S = 300


class Server:
    """The real CLI command, run until `stop()`: `url` once it answers, `client()` for requests."""

    def __init__(self, index_dir: Path, tiny_model, *extra: str, token: str | None = TOKEN):
        self.index_dir, self.token = Path(index_dir), token
        cmd = [sys.executable, "-m", "clipsearch.cli", "serve", "--index", str(index_dir), "--port", "0",
               "--model", str(tiny_model.config), "--pretrained", str(tiny_model.weights), *extra]
        env = {k: v for k, v in os.environ.items() if k != "CLIPSEARCH_TOKEN"}
        if token is not None:
            env["CLIPSEARCH_TOKEN"] = token
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, env=env)
        self.log: list[str] = []
        self._ready = threading.Event()
        self.url: str | None = None
        threading.Thread(target=self._read, daemon=True).start()  # drains stderr: the pipe never fills
        if not self._ready.wait(START_TIMEOUT_S) or self.url is None:
            self.stop()
            raise RuntimeError("clipsearch serve did not start:\n" + "".join(self.log))

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.log.append(line)
            if m := re.match(r"clipsearch serve: (http://\S+)", line):
                self.url = m.group(1)
                self._ready.set()
        self._ready.set()  # the process ended

    def client(self, token: str | None = "default", **kw):
        """An httpx client on this server, sending the server's token (or `token`; None: none)."""
        import httpx

        token = self.token if token == "default" else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=120, **kw)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
