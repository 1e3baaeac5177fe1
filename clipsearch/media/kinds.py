"""What a file holds (a photo, a camera RAW, a video, or none of them), told cheaply.

One vocabulary for a file's kind, in the CLI's words: PHOTO (any raster image Pillow reads), RAW
and VIDEO. These are also the words the `kind` column stores (since schema 6), so they never change.

A name with a known suffix is a candidate at once (decoding still checks the content); any other
file is judged by its first bytes, never decoded: Pillow's own format checks (`_accept`, the test
`Image.open` itself runs first) plus the magic numbers of RAW and video containers. Formats whose
signature is too weak to trust on its own (TGA has none; PCX, XBM and a few more match ordinary
files) are recognised by their suffix only.
"""

from __future__ import annotations

import functools
import os
import stat

from clipsearch.config import IMAGE_SUFFIXES, RAW_SUFFIXES, VIDEO_SUFFIXES

PHOTO, RAW, VIDEO = "photo", "raw", "video"
#: The kinds, in the order `--type` and the UI list them.
KINDS = (PHOTO, RAW, VIDEO)
HEAD_BYTES = 64
#: Pillow formats never taken from content alone: no signature, or one ordinary files match.
_WEAK = frozenset({"TGA", "IM", "IMT", "IPTC", "PCD", "SPIDER", "DIB", "GBR", "PCX", "XBM", "FLI",
                   "EPS", "MCIDAS", "CUR"})
_ISO_VIDEO_BRANDS = (b"isom", b"iso2", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42", b"avc1", b"M4V ",
                     b"qt  ", b"3gp", b"3g2", b"dash", b"MSNV", b"XAVC", b"f4v ", b"mmp4")


def file_kind(path: str, head: bytes | None = None) -> str | None:
    """PHOTO, RAW, VIDEO or None for `path`: its suffix first, else its first bytes (read here when
    `head` is not given; None for a file that can't be read or is not a regular file)."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix in RAW_SUFFIXES:
        return RAW
    if suffix in VIDEO_SUFFIXES:
        return VIDEO
    if suffix in IMAGE_SUFFIXES:
        return PHOTO
    if head is None:
        head = read_head(path)
    return sniff(head) if head else None


def sniff(head: bytes) -> str | None:
    """The kind of file whose first bytes are `head` (HEAD_BYTES of them, or the whole file)."""
    if _raw_magic(head):
        return RAW
    if _video_magic(head):
        return VIDEO
    prefix = head[:16]
    for accept in _pillow_accepts():
        try:
            if accept(prefix):
                return PHOTO
        except Exception:  # a plugin's check on odd bytes: not its format
            continue
    return None


def read_head(path: str) -> bytes | None:
    """The first HEAD_BYTES of a regular file; None for anything else or what can't be read
    (a FIFO is never opened: reading one would block)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        with open(path, "rb") as f:
            return f.read(HEAD_BYTES)
    except (OSError, ValueError):
        return None


def file_type(path: str) -> str:
    """How a skipped file is counted: its suffix, lower case (".txt"), or "(no suffix)"."""
    suffix = os.path.splitext(os.path.basename(path))[1].lower()
    return suffix if suffix and len(suffix) <= 12 else "(no suffix)"


def _raw_magic(head: bytes) -> bool:
    return (head.startswith((b"FUJIFILMCCD-RAW", b"IIRO", b"IIRS", b"MMOR", b"IIU\x00", b"FOVb"))
            or (head[:4] == b"II*\x00" and head[8:10] == b"CR")  # Canon CR2
            or (head[4:8] == b"ftyp" and head[8:12] == b"crx "))  # Canon CR3


def _video_magic(head: bytes) -> bool:
    if head[4:8] == b"ftyp":
        return head[8:12].startswith(_ISO_VIDEO_BRANDS)
    return (head.startswith((b"\x1a\x45\xdf\xa3", b"FLV\x01", b"\x30\x26\xb2\x75\x8e\x66\xcf\x11",
                             b"\x00\x00\x01\xba"))
            or (head[:4] == b"RIFF" and head[8:12] == b"AVI "))


@functools.cache
def _pillow_accepts() -> tuple:
    from clipsearch.media.image import readable_formats

    from PIL import Image

    return tuple(Image.OPEN[f][1] for f in readable_formats() if f not in _WEAK and Image.OPEN[f][1])
