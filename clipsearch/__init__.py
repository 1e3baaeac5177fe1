"""clipsearch: find photos by describing them, or by showing a similar one.

Library API (the CLI, the indexer and the UI are thin layers over it):

    from clipsearch import Matcher, Request, Settings, add_paths, create_index, load_encoder
    enc = load_encoder("ViT-B-32", "laion2b_s34b_b79k")
    index = create_index("~/.local/share/clipsearch/index", enc.identity)
    add_paths(index, enc, ["~/Pictures"])
    s = Settings()
    matcher = Matcher(enc, index, max_pixels=s.max_pixels, duplicate_threshold=s.duplicate_threshold)
    for m in matcher.run(Request("a dog playing music", k=10)).matches:
        print(m.score, m.hit.path)
"""

from clipsearch.ann.index import AnnIndex
from clipsearch.ann.spec import AnnSpec, choose_spec
from clipsearch.ingest.batch import Batch, Decoded, decode_file, embed_decoded, embed_files
from clipsearch.store.records import Failure
from clipsearch.config import PRESETS, Settings, default_index_dir
from clipsearch.errors import ClipSearchError, ImageError, IndexDirError, InputError, ModelError
from clipsearch.index import Index, create_index, open_index
from clipsearch.store.records import Hit
from clipsearch.ingest.update import Summary, add_paths, remove_paths
from clipsearch.models.encoder import Encoder, ModelIdentity, load_encoder
from clipsearch.search.algebra import Term, embed_query, parse_query
from clipsearch.search.calibration import Calibrator
from clipsearch.search.classify import Classifier, Prediction, classify_files, classify_index
from clipsearch.config import BACKGROUND_PROMPTS, CLASSIFY_TEMPLATES
from clipsearch.search.matcher import Answer, Match, Matcher, Request, Understood
from clipsearch.store.filters import Filter, make_filter
from clipsearch.media.photometa import PhotoMeta
from clipsearch.ingest.textfile import read_texts
from clipsearch.collection import Collection
from clipsearch.duplicates import DuplicateGroup, Member, choose_keeper, find_duplicates, group_rows, near_groups
from clipsearch.store.records import TextHit
from clipsearch.ingest.texts import TextSummary, add_texts, check_name, collection_names, open_texts

__all__ = [
    "Batch", "ClipSearchError", "Collection", "Decoded", "Encoder", "Failure", "Hit", "ImageError", "Index",
    "IndexDirError", "InputError", "ModelError", "ModelIdentity", "PRESETS", "Settings",
    "Summary", "add_paths", "create_index", "decode_file", "default_index_dir", "embed_decoded",
    "embed_files", "load_encoder", "open_index", "remove_paths",
    # image -> text: text collections, zero-shot classification, query algebra, calibration
    "Answer", "BACKGROUND_PROMPTS", "CLASSIFY_TEMPLATES", "Calibrator", "Classifier", "Match", "Matcher",
    "Request",
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
