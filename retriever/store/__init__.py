"""The index store: building versions, loading and checking them, and the versions of an index root."""
from .build import build_index, embed_texts, entry_texts, is_up_to_date, record_artifacts
from .layout import CURRENT, MANIFEST, VERSIONS, FaqIndex, IndexedText
from .load import check_compatible, check_fast_compatible, load_index
from .versions import current_version, list_versions, prune_versions, publish, read_manifest, resolve_version_dir, rollback

__all__ = [
    # build.py
    "build_index", "embed_texts", "entry_texts", "is_up_to_date", "record_artifacts",
    # layout.py
    "CURRENT", "MANIFEST", "VERSIONS", "FaqIndex", "IndexedText",
    # load.py
    "check_compatible", "check_fast_compatible", "load_index",
    # versions.py
    "current_version", "list_versions", "prune_versions", "publish", "read_manifest", "resolve_version_dir",
    "rollback",
]
