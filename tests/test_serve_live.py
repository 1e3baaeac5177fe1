"""`clipsearch serve` follows its index: rows an `index` run commits beside it are answered without a
restart, never a half-written state, and their files are shown while the run goes on."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

from support import shapes
from support.clirun import model_args
from support.server import Server


def test_rows_committed_beside_the_server_appear_without_a_restart(tiny_model, tiny_towers, shapes_index, tmp_path):
    shutil.copytree(shapes_index, tmp_path / "index")
    new = tmp_path / "new"
    shapes.write_folder(new, n_per_label=2, labels=[("green", "circle")], seed=11)
    with Server(tmp_path / "index", tiny_model) as server, server.client() as http:
        assert http.get("/health").json()["images"] == 48
        run = subprocess.Popen([sys.executable, "-m", "clipsearch.cli", "index", str(new), "--index",
                                str(tmp_path / "index"), *model_args(tiny_model, tmp_path / "index"),
                                "--workers", "1", "--quiet"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        seen, deadline = [], time.monotonic() + 300
        while time.monotonic() < deadline and (run.poll() is None or not seen or seen[-1] != 50):
            seen.append(http.get("/health").json()["images"])
            found = http.post("/search", json={"query": "a green circle", "k": 50}).json()["matches"]
            # Rows of the new folder are shown before the run ends (and records the folder as a root).
            assert all(http.get(f"/thumbnail/{m['id']}").status_code == 200 for m in found[:4])
            time.sleep(0.3)
        assert run.wait() == 0, run.stderr.read()
        assert set(seen) <= {48, 50} and seen[-1] == 50  # the old state or the new, nothing between
        top = http.post("/search", json={"query": "a green circle", "k": 4}).json()["matches"]
        ours = [m for m in top if m["path"].startswith(str(new))]
        assert len(ours) == 2
        # A file swapped for a symlink out of the indexed folders is not followed.
        (tmp_path / "secret.txt").write_text("secret")
        os.remove(ours[0]["path"])
        os.symlink(tmp_path / "secret.txt", ours[0]["path"])
        r = http.get(f"/image/{ours[0]['id']}")
        assert r.status_code == 404 and r.content != b"secret"
