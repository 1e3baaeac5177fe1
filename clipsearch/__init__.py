"""clipsearch: find photos by describing them, or by showing a similar one.

Library API (the CLI, the indexer and the UI are thin layers over it):

    from clipsearch import load_encoder, create_index, open_index, add_paths, Searcher
    enc = load_encoder("ViT-B-32", "laion2b_s34b_b79k")
    index = create_index("~/.local/share/clipsearch/index", enc.identity)
    add_paths(index, enc, ["~/Pictures"])
    hits = Searcher(enc, index, Settings().max_pixels).by_text("a dog playing music", k=10)
"""

from .ann import AnnIndex, AnnSpec, choose_spec
from .batch import Batch, Decoded, Failure, decode_file, embed_decoded, embed_files
from .config import PRESETS, Settings, default_index_dir
from .errors import ClipSearchError, ImageError, IndexDirError, InputError, ModelError
from .index import Hit, Index, create_index, open_index
from .ingest import Summary, add_paths, remove_paths
from .model import Encoder, ModelIdentity, load_encoder
from .search import Searcher
from .algebra import Term, embed_query, parse_query
from .calibration import Calibrator
from .classify import Classifier, Prediction, classify_files, classify_index
from .config import BACKGROUND_PROMPTS, CLASSIFY_TEMPLATES
from .matcher import Match, Matcher, Understood
from .filters import Filter, make_filter
from .photometa import PhotoMeta
from .textfile import read_texts
from .collection import Collection
from .duplicates import DuplicateGroup, Member, choose_keeper, find_duplicates, group_rows, near_groups
from .store import TextHit
from .texts import TextSummary, add_texts, check_name, collection_names, open_texts

__all__ = [
    "Batch", "ClipSearchError", "Collection", "Decoded", "Encoder", "Failure", "Hit", "ImageError", "Index",
    "IndexDirError", "InputError", "ModelError", "ModelIdentity", "PRESETS", "Searcher", "Settings",
    "Summary", "add_paths", "create_index", "decode_file", "default_index_dir", "embed_decoded",
    "embed_files", "load_encoder", "open_index", "remove_paths",
    # image -> text: text collections, zero-shot classification, query algebra, calibration
    "BACKGROUND_PROMPTS", "CLASSIFY_TEMPLATES", "Calibrator", "Classifier", "Match", "Matcher",
    "Prediction", "Term", "TextHit", "TextSummary", "add_texts", "check_name",
    "classify_files", "classify_index", "collection_names", "embed_query", "open_texts", "parse_query",
    "read_texts",
    # filters over the photos' metadata
    "Filter", "PhotoMeta", "Understood", "make_filter",
    # the ANN index (FAISS Flat / IVF-PQ)
    "AnnIndex", "AnnSpec", "choose_spec",
    # duplicates: exact (content hash) and near (cosine) groups, with a suggested keeper
    "DuplicateGroup", "Member", "choose_keeper", "find_duplicates", "group_rows", "near_groups",
]
