"""`clipsearch serve` follows its index: rows an `index` run commits beside it are answered without a
restart, and never a half-written state."""

from __future__ import annotations

import shutil
import time

from support import shapes
from support.clirun import Cli
from support.server import Server


def test_rows_committed_beside_the_server_appear_without_a_restart(tiny_model, shapes_index, tmp_path):
    shutil.copytree(shapes_index, tmp_path / "index")
    new = tmp_path / "new"
    shapes.write_folder(new, n_per_label=2, labels=[("green", "circle")], seed=11)
    with Server(tmp_path / "index", tiny_model) as server, server.client() as http:
        assert http.get("/health").json()["images"] == 48
        Cli(tiny_model, tmp_path / "index")("index", new, "--workers", "1", "--quiet", ok=True)
        seen, deadline = [], time.monotonic() + 120
        while time.monotonic() < deadline and (not seen or seen[-1] != 50):
            seen.append(http.get("/health").json()["images"])
            found = http.post("/search", json={"query": "a green circle", "k": 50}).json()["matches"]
            assert all(http.get(f"/thumbnail/{m['id']}").status_code == 200 for m in found[:4])
            time.sleep(0.5)
        assert set(seen) <= {48, 50} and seen[-1] == 50  # the old state or the new, nothing between
        paths = [m["path"] for m in http.post("/search", json={"query": "a green circle", "k": 4}).json()["matches"]]
        assert sum(p.startswith(str(new)) for p in paths) == 2
