"""The `clipsearch` command: the outermost layer, which alone prints and picks exit codes.

Like `indexer/` and `app/`, it sits on top of the library; nothing in the library imports it.
Each command group lives in its own module here and registers itself on `main`.
"""

from __future__ import annotations

import os

import click

from ..errors import ClipSearchError

EXIT_INTERRUPTED = 130


class _Group(click.Group):
    """Turns library errors into one-line messages; no traceback reaches the user."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ClipSearchError as e:
            raise click.ClickException(str(e)) from e
        except KeyboardInterrupt:
            click.echo("interrupted: what was committed is kept; run the command again to go on", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as e:  # a bug: say so plainly, keep the traceback for whoever asks for it
            if os.environ.get("CLIPSEARCH_DEBUG"):
                raise
            raise click.ClickException(f"unexpected error ({type(e).__name__}: {e}); rerun with "
                                       "CLIPSEARCH_DEBUG=1 for details and report it") from e


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="clipsearch")
def main():
    """Find photos by describing them, or by showing a similar one."""


from . import core  # noqa: E402,F401  (registers its commands on main)
from . import dupes  # noqa: E402,F401  (registers `clipsearch dupes`)
from . import maintenance  # noqa: E402,F401  (registers remove)
from . import models  # noqa: E402,F401  (the models group: list, export, import)
from . import reindex  # noqa: E402,F401  (registers reindex)
from . import texts  # noqa: E402,F401  (index-texts, texts, classify)
from . import ui  # noqa: E402,F401  (registers `clipsearch ui`)
