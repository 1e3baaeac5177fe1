"""The batch indexing pipeline: clipsearch's indexing run, with decoding in worker processes."""

from .pipeline import run

__all__ = ["run"]
