"""The batch indexing pipelines: clipsearch's indexing run with decoding in worker processes, or on Ray."""

from .pipeline import run, run_on_ray

__all__ = ["run", "run_on_ray"]
