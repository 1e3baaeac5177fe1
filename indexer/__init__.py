"""The batch indexing pipeline: clipsearch's indexing run, with decoding in worker processes."""

from .pipeline import reindex, run

__all__ = ["reindex", "run"]
