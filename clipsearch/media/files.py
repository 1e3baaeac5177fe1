"""Finding image files under the folders a user names, and telling files apart (stat key, content hash)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from clipsearch.config import MEDIA_SUFFIXES
from clipsearch.errors import InputError
from clipsearch.media.kinds import file_kind, file_type, read_head

#: (size, mtime) of a file that can't be stat'ed: failures keyed by it are retried once it can be.
NO_STAT = (-1, 0.0)
_CHUNK = 1 << 20


@dataclass
class Scan:
    """What a walk found: candidate paths (images, RAW, videos: absolute, sorted), the files that are
    none of these (by content), and the folders it could not enter."""

    paths: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # folders: (path, reason)
    not_media: list[tuple[str, str]] = field(default_factory=list)  # files: (path, type), sorted


def scan(roots: list[str | Path], suffixes=MEDIA_SUFFIXES) -> Scan:
    """Walk `roots` recursively (files given directly are taken as they are).

    A file with one of `suffixes` is a candidate; any other is judged by its first bytes
    (kinds.file_kind), never decoded. InputError if a root doesn't exist. Symlinked directories are
    not followed (no loops); unreadable directories are reported in `skipped`, not fatal. Paths
    that are not valid UTF-8 come back as os.fsdecode gives them (surrogate escapes).
    """
    out = Scan()
    for root in check_roots(roots):
        if root.is_file():
            out.paths.append(str(root))
            continue
        onerror = lambda e: out.skipped.append((e.filename, e.strerror or str(e)))  # noqa: E731
        for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
            dirnames.sort()
            for f in filenames:
                path = os.path.join(dirpath, f)
                if os.path.splitext(f)[1].lower() in suffixes:
                    out.paths.append(path)
                elif (head := read_head(path)) and file_kind(path, head):
                    out.paths.append(path)
                else:
                    out.not_media.append((path, _skip_type(path, head)))
    out.paths = sorted(set(out.paths))
    out.not_media = sorted(set(out.not_media))
    return out


def local_paths(roots) -> list[str]:
    """Paths and pyarrow-filesystem URIs as local paths: file:// URIs become paths, plain paths stay.

    Other schemes (s3://, gs://…) raise InputError: the decoders read files by path, so such a
    bucket must be mounted on every node (s3fs, gcsfuse) and indexed by its mount path.
    """
    out = []
    for r in map(str, roots):
        if "://" not in r:
            out.append(r)
            continue
        from pyarrow import fs

        try:
            filesystem, path = fs.FileSystem.from_uri(r)
        except Exception as e:  # pyarrow raises ArrowInvalid / ValueError / OSError by scheme
            raise InputError(f"{r} is not a path or URI clipsearch can read ({e}): check it") from e
        if not isinstance(filesystem, fs.LocalFileSystem):
            raise InputError(f"{r}: only paths and file:// URIs can be indexed; mount the bucket on "
                             "every node (s3fs, gcsfuse) and index the mount path")
        out.append(path)
    return out


def _skip_type(path: str, head: bytes | None) -> str:
    """How a file that is not an image is counted: its suffix; "(unreadable)" when no byte of it
    could be read to tell (permissions, a dangling link, a FIFO)."""
    return "(unreadable)" if head is None else file_type(path)


def check_roots(roots) -> list[Path]:
    """The roots, resolved; InputError naming the first one that doesn't exist."""
    if not roots:
        raise InputError("no folder given: name one or more photo folders, e.g. `clipsearch index ~/Pictures`")
    resolved = []
    for r in roots:
        p = Path(r).expanduser()
        try:
            p.stat()
        except OSError as e:
            reason = "does not exist" if isinstance(e, FileNotFoundError) else f"can't be read ({e.strerror})"
            raise InputError(f"{display_path(str(r))} {reason}: check the path") from e
        resolved.append(p.resolve())
    return resolved


def under(path: str, folders) -> bool:
    """Whether `path` is one of `folders` or inside one of them (by name, nothing resolved)."""
    return any(path == f or path.startswith(f.rstrip(os.sep) + os.sep) for f in folders)


def stat_key(path: str) -> tuple[int, float]:
    """(size, mtime) of `path`, NO_STAT if it can't be stat'ed: a file changed when its key changes."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return NO_STAT
    return st.st_size, st.st_mtime


def content_hash(path: str) -> str:
    """Hex BLAKE2b-128 of the file's bytes (OSError if it can't be read): recognises moved files."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def display_path(path: str) -> str:
    """`path` as printable UTF-8: bytes that aren't valid UTF-8 are shown as \\xNN."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return os.fsencode(path).decode("utf-8", "backslashreplace")
