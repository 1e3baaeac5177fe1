"""clipsearch: find photos by describing them, or by showing a similar one.

Library API (the CLI, the indexer and the UI are thin layers over it):

    from clipsearch import load_encoder, create_index, open_index, add_paths, Searcher
    enc = load_encoder("ViT-B-32", "laion2b_s34b_b79k")
    index = create_index("~/.local/share/clipsearch/index", enc.identity)
    add_paths(index, enc, ["~/Pictures"])
    hits = Searcher(enc, index, Settings().max_pixels).by_text("a dog playing music", k=10)
"""

from .batch import Batch, Decoded, Failure, decode_file, embed_decoded, embed_files
from .config import PRESETS, Settings, default_index_dir
from .errors import ClipSearchError, ImageError, IndexDirError, InputError, ModelError
from .index import Hit, Index, create_index, open_index
from .indexing import Summary, add_paths, remove_paths
from .model import Encoder, ModelIdentity, load_encoder
from .search import Searcher

__all__ = [
    "Batch", "ClipSearchError", "Decoded", "Encoder", "Failure", "Hit", "ImageError", "Index",
    "IndexDirError", "InputError", "ModelError", "ModelIdentity", "PRESETS", "Searcher", "Settings",
    "Summary", "add_paths", "create_index", "decode_file", "default_index_dir", "embed_decoded",
    "embed_files", "load_encoder", "open_index", "remove_paths",
]
