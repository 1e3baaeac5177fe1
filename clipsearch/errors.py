"""The one error hierarchy of clipsearch: every message says what to do next."""


class ClipSearchError(Exception):
    """Base of every error clipsearch raises on purpose; the CLI prints it as one line."""


class InputError(ClipSearchError, ValueError):
    """The caller gave something unusable: a missing path, an empty query, a bad option."""


class ModelError(ClipSearchError):
    """The model can't be loaded (unknown name, weights missing offline, mismatch with the index)."""


class IndexDirError(ClipSearchError):
    """The index directory is missing, unreadable, from a newer version or inconsistent."""


class LockedError(IndexDirError):
    """Another process holds the lock this one needs (it is released when that process ends)."""


class ImageError(ClipSearchError):
    """One image can't be decoded; indexing records it and goes on."""
