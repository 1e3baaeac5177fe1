"""The `clipsearch` command: the outermost layer, which alone prints and picks exit codes.

Like `indexer/` and `app/`, it sits on top of the library; nothing in the library imports it.
Each command group lives in its own module here and registers itself on `main`.
"""

from clipsearch.cli.group import main

from clipsearch.cli import core  # noqa: E402,F401  (registers its commands on main)
from clipsearch.cli import dupes  # noqa: E402,F401  (registers `clipsearch dupes`)
from clipsearch.cli import maintenance  # noqa: E402,F401  (registers remove)
from clipsearch.cli import models  # noqa: E402,F401  (the models group: list, export, import)
from clipsearch.cli import ocr  # noqa: E402,F401  (registers `clipsearch ocr`)
from clipsearch.cli import reindex  # noqa: E402,F401  (registers reindex)
from clipsearch.cli import serve  # noqa: E402,F401  (registers `clipsearch serve`)
from clipsearch.cli import texts  # noqa: E402,F401  (index-texts, texts, classify)
from clipsearch.cli import ui  # noqa: E402,F401  (registers `clipsearch ui`)

__all__ = ["main"]
