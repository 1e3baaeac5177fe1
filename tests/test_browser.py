"""End to end in a real browser: `clipsearch ui` on a free localhost port, driven by Playwright.

Needs Debian's chromium (`apt-get install -y chromium`) and playwright from PyPI (the `test` extra);
a Playwright browser download is not used. Missing either is a failure, never a skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from support import shapes

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WAIT_MS = int(os.environ.get("UI_WAIT_MS", 120_000))  # the first query loads the model on a busy 2-core machine
RESULTS = "img[alt$='.png']"  # result thumbnails carry their file name as alt text


def _chromium() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.access(path, os.X_OK):
        pytest.fail("Chromium is missing: install Debian's package with `apt-get install -y chromium`")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp*) with a socket listening on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, p = local.split(":")
            if state == "0A" and int(p, 16) == port:
                found.add(addr)
    return found


@pytest.fixture
def server(ui_index, tmp_path):
    """`clipsearch ui` serving the shapes index; yields its URL, stops it afterwards."""
    port = _free_port()
    log = (tmp_path / "server.log").open("w")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "clipsearch.cli", "ui", "--index", str(ui_index),
                             "--port", str(port), "--no-browser"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, tmp_path / "server.log")
        yield url, port
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _wait_healthy(url: str, proc, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"clipsearch ui exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"clipsearch ui did not answer in {timeout:.0f} s:\n{log.read_text()}")


def _wait_results(page, title: str, first: str) -> list[str]:
    """Wait until the page shows `title` with a grid whose best result starts with `first`, nothing stale."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.get_by_text(title, exact=True).wait_for(timeout=WAIT_MS)
        page.wait_for_function(
            """([sel, first]) => {
                const imgs = [...document.querySelectorAll(sel)];
                return imgs.length > 0 && imgs[0].alt.startsWith(first) && imgs.every(i => i.complete)
                    && !document.querySelector('[data-stale="true"]');
            }""", arg=[RESULTS, first], timeout=WAIT_MS)
    except PlaywrightTimeout:
        state = page.evaluate("""(sel) => ({
            results: [...document.querySelectorAll(sel)].map(i => [i.alt, i.complete]),
            stale: document.querySelectorAll('[data-stale="true"]').length,
            text: document.body.innerText.slice(0, 1500)})""", RESULTS)
        pytest.fail(f"waiting for {title!r} with {first}* first: the page shows {state}")
    return page.eval_on_selector_all(RESULTS, "imgs => imgs.map(i => i.alt)")


def test_search_by_text_and_by_upload_in_a_real_browser(server, tmp_path, capsys):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is missing: pip install -e '.[test]'")
    url, port = server
    assert _listening_addresses(port) == {"0100007F"}, "the UI must listen on 127.0.0.1 only"
    query_image = tmp_path / "query.png"
    shapes.draw("green", "triangle", seed=4242).save(query_image)  # not in the index
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.goto(url)
            box = page.get_by_label("Describe what you are looking for")
            box.wait_for(timeout=WAIT_MS)
            box.fill("a red circle")
            box.press("Enter")  # cold: loads the model and the index
            _wait_results(page, "Images matching “a red circle”", "red_circle_")
            box.fill("a blue square")
            start = time.perf_counter()
            box.press("Enter")
            names = _wait_results(page, "Images matching “a blue square”", "blue_square_")
            warm = time.perf_counter() - start
            assert len(names) == 10  # the best one is a blue square: _wait_results waited for it
            page.locator("input[type=file]").set_input_files(str(query_image))
            assert len(_wait_results(page, "Images like query.png", "green_triangle_")) == 10
            page.screenshot(path=str(tmp_path / "results.png"), full_page=True)
        finally:
            browser.close()
    (tmp_path / "warm_query_seconds.txt").write_text(f"{warm:.3f}\n")
    with capsys.disabled():
        print(f"\nwarm query (text typed -> grid rendered): {warm:.2f} s; screenshot {tmp_path / 'results.png'}")
