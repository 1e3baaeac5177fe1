"""The batch indexing pipelines: clipsearch's indexing run with decoding in worker processes, or on Ray."""

from clipsearch.indexer.pipeline import reindex, run, run_on_ray

__all__ = ["reindex", "run", "run_on_ray"]
