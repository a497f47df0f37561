"""Entry filters: which entries a search may answer with (pure predicates over :class:`FaqEntry`).

Ranking, top-k and the decision are computed within the entries a filter keeps, never by
filtering a top-k afterwards, so a filter returns every hit that exists.
"""
from __future__ import annotations

from typing import Callable, Iterable

from .corpus import FaqEntry

EntryFilter = Callable[[FaqEntry], bool]


def metadata_filter(categories: Iterable[str] | None = None, tags: Iterable[str] | None = None) -> EntryFilter | None:
    """Entries in any of ``categories`` and carrying all of ``tags``; None when neither is given."""
    wanted_categories = frozenset(categories or ())
    wanted_tags = frozenset(tags or ())
    if not wanted_categories and not wanted_tags:
        return None

    def keeps(entry: FaqEntry) -> bool:
        return (not wanted_categories or entry.category in wanted_categories) and wanted_tags <= set(entry.tags)

    return keeps
