"""Text normalisation shared by index build and query time.

Both sides must call :func:`normalize`: a vector built from one spelling of a
text and queried with another is a silent recall loss.
"""
from __future__ import annotations

import functools
import re
import unicodedata

import opencc

from .errors import QueryError

# CJK ideographs (basic, extension A, compatibility) that a pinyin reading may follow.
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TONED_VOWELS = "āáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜńňǹḿ"
# "級(jí)": parenthesised pinyin with at least one tone mark, glued to a CJK character.
# Untoned words in brackets ("(APP)", "(注销手续)") are content and stay.
_GLUED_PINYIN = re.compile(
    rf"(?<=[{_CJK}])\((?=[a-zü{_TONED_VOWELS}]*[{_TONED_VOWELS}])[a-zü{_TONED_VOWELS}]+\)"
)
_WHITESPACE = re.compile(r"\s+")
# Characters that show nothing but make two equal-looking texts differ: zero-width space/joiners,
# word joiner and invisible operators, BOM, soft hyphen, bidi marks and embeddings/isolates.
# Pasted from web pages and chat apps, they split ids and hide empty questions.
INVISIBLE_CHARACTERS = frozenset(
    "\u00ad\u061c\u180e\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
    "\u2060\u2061\u2062\u2063\u2064\u2066\u2067\u2068\u2069\ufeff"
)
_DROP_INVISIBLE = dict.fromkeys(map(ord, INVISIBLE_CHARACTERS))


@functools.lru_cache(maxsize=1)
def _to_simplified() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def strip_glued_pinyin(text: str) -> str:
    """Remove pinyin readings such as ``(jí)`` that directly follow a Chinese character."""
    return _GLUED_PINYIN.sub("", text)


def remove_invisible(text: str) -> str:
    """``text`` without the characters of :data:`INVISIBLE_CHARACTERS`."""
    return text.translate(_DROP_INVISIBLE)


def normalize(text: str) -> str:
    """Return the canonical form of ``text`` used for embedding and lexical matching.

    Invisible characters removed, NFKC (full-width to half-width), glued pinyin
    removed, traditional to simplified (OpenCC ``t2s``), whitespace runs
    collapsed to one space.
    """
    text = unicodedata.normalize("NFKC", remove_invisible(text))
    text = strip_glued_pinyin(text)
    text = _to_simplified().convert(text)
    return _WHITESPACE.sub(" ", text).strip()


class QueryTooLong(QueryError):
    """A query longer than the limit, as sent or once normalised (NFKC expands: ㌀ becomes アパート)."""

    def __init__(self, length: int, limit: int) -> None:
        super().__init__(f"the query has {length} characters (as sent, or once normalised); the limit is {limit}")
        self.length, self.limit = length, limit


def query_length(query: str) -> int:
    """What a query's length limit bounds: the longer of the text as sent and as the model reads it."""
    return max(len(query), len(normalize(query)))


def check_query_length(query: str, limit: int, *, truncate: bool = False) -> str:
    """``query`` when its :func:`query_length` is within ``limit``; else :class:`QueryTooLong`, or with
    ``truncate`` its longest prefix that is within the limit (for clients that cannot shorten it: Dify).

    The one length check of every route (``/v1/search``, ``/v1/classify``, feedback, ``/retrieval``, MCP).
    """
    length = query_length(query)
    if length <= limit:
        return query
    if not truncate:
        raise QueryTooLong(length, limit)
    low, high = 0, min(len(query), limit)  # a prefix of at most `limit` characters as sent
    while low < high:  # the longest prefix within the limit once normalised too
        middle = (low + high + 1) // 2
        if query_length(query[:middle]) <= limit:
            low = middle
        else:
            high = middle - 1
    return query[:low]
