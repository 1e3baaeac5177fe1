"""The `clipsearch` command group: library errors become one-line messages and exit codes."""


from __future__ import annotations

import os

import click

from clipsearch.errors import ClipSearchError

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
