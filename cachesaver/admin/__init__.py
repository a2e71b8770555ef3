"""Looking after a store: statistics, verification, search, explain, copy and merge, delete.

Every function takes an open `AdminStore` (`cachesaver.stores.open_admin_store` opens one
from a path or a Redis URL) and returns a frozen value; nothing prints. The
``cachesaver`` command is a thin layer over this module.
"""

from cachesaver.admin._explain import Explanation, NearKey, content_of, explain
from cachesaver.admin._inspect import (
    BrokenKey,
    IdentityStats,
    KeySummary,
    StoreStats,
    VerifyReport,
    search,
    store_stats,
    verify_store,
)
from cachesaver.admin._records import CHUNK_KEYS, iter_records
from cachesaver.admin._transfer import (
    CopyReport,
    copy_store,
    import_into,
    merge_record,
    remap_manifest,
    write_manifest,
)
from cachesaver.admin._trim import KeyFilter, Selection, delete_keys, parse_duration, select_keys

__all__ = [
    "CHUNK_KEYS",
    "BrokenKey",
    "CopyReport",
    "Explanation",
    "IdentityStats",
    "KeyFilter",
    "KeySummary",
    "NearKey",
    "Selection",
    "StoreStats",
    "VerifyReport",
    "content_of",
    "copy_store",
    "delete_keys",
    "explain",
    "import_into",
    "iter_records",
    "merge_record",
    "parse_duration",
    "remap_manifest",
    "search",
    "select_keys",
    "store_stats",
    "verify_store",
    "write_manifest",
]
