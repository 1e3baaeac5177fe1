"""`clipsearch ui`: how it starts Streamlit (loopback by default, XSRF on) and how it refuses bad input."""

from __future__ import annotations

from pathlib import Path

from support.clirun import Cli
from clipsearch.cli.ui import streamlit_command


def _opt(cmd: list[str], name: str) -> str:
    return cmd[cmd.index(name) + 1]


def test_streamlit_binds_to_loopback_with_xsrf_and_capped_uploads():
    cmd = streamlit_command(Path("app/main.py"), Path("/idx"), "127.0.0.1", 8600, browser=False)
    assert cmd[1:5] == ["-m", "streamlit", "run", "app/main.py"]
    assert _opt(cmd, "--server.address") == "127.0.0.1" and _opt(cmd, "--server.port") == "8600"
    assert _opt(cmd, "--server.enableXsrfProtection") == "true"
    assert _opt(cmd, "--client.showErrorDetails") == "none"
    assert _opt(cmd, "--server.headless") == "true"
    assert 1 <= int(_opt(cmd, "--server.maxUploadSize")) <= 50
    assert cmd[-3:] == ["--", "--index", "/idx"]


def test_ui_defaults_to_loopback_in_help(tiny_model):
    result = Cli(tiny_model, None)("ui", "--help")
    assert result.exit_code == 0 and "127.0.0.1" in result.output


def test_ui_without_an_index_says_what_to_do(tiny_model, tmp_path):
    error = Cli(tiny_model, tmp_path / "none").fails("ui")
    assert "no index at" in error and "clipsearch index" in error


def test_ui_rejects_a_bad_port(tiny_model, tmp_path):
    result = Cli(tiny_model, tmp_path)("ui", "--port", "70000")
    assert result.exit_code == 2 and "70000" in result.output
