"""The `ui` command: serves the Streamlit app over an index, on this machine only by default."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from clipsearch.config import Settings
from clipsearch.cli.group import main
from clipsearch.cli.options import index_option, index_root

_DEFAULTS = Settings()


def streamlit_command(script: Path, root: Path, address: str, port: int, browser: bool,
                      settings: Settings = _DEFAULTS) -> list[str]:
    """The `streamlit run` command line: bound to `address`, uploads capped, no tracebacks shown."""
    upload_mb = max(1, settings.upload_max_bytes // 1_000_000)
    return [sys.executable, "-m", "streamlit", "run", str(script),
            "--server.address", address, "--server.port", str(port),
            "--server.headless", "false" if browser else "true",
            "--server.showEmailPrompt", "false",
            "--server.maxUploadSize", str(upload_mb),
            "--server.enableXsrfProtection", "true",
            "--server.fileWatcherType", "none",
            "--client.showErrorDetails", "none",
            "--client.toolbarMode", "minimal",
            "--browser.gatherUsageStats", "false",
            "--", "--index", str(root)]


@main.command()
@index_option
@click.option("--port", type=click.IntRange(1, 65535), default=_DEFAULTS.ui_port, show_default=True,
              help="Port to serve the page on.")
@click.option("--address", default=_DEFAULTS.ui_address, show_default=True,
              help="Interface to listen on. Anything but 127.0.0.1 shows your photos to the network.")
@click.option("--no-browser", is_flag=True, help="Don't open a browser tab.")
def ui(index_dir, port, address, no_browser):
    """Search the index in a web page (Streamlit), served on this machine only by default."""
    from clipsearch.store import manifest
    from clipsearch import app

    root = index_root(index_dir)
    manifest.read(root)  # no index there: say so now, not in the browser
    script = Path(app.__file__).resolve().parent / "main.py"
    if address != _DEFAULTS.ui_address:
        click.echo(f"warning: serving on {address}: anyone who can reach it can see the indexed photos", err=True)
    click.echo(f"clipsearch ui: http://{address}:{port} (index {root}); Ctrl-C stops it", err=True)
    cmd = streamlit_command(script, root, address, port, not no_browser)
    sys.stdout.flush(), sys.stderr.flush()
    # Become Streamlit (exec, not a child): Ctrl-C and SIGTERM reach the server itself, and no
    # orphaned server outlives a stopped `clipsearch ui`.
    os.execv(cmd[0], cmd)
