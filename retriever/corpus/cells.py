"""Cell text of a spreadsheet as the corpus takes it: list cells split into items, links kept as Markdown.

Pure functions of strings, so that the rules are tested with literals (tests/test_spreadsheet.py).

A list cell (paraphrases, tags, negatives) holds one item a line. A cell of a single line may instead
separate its items with ``；`` ``;`` ``|`` ``｜`` or ``、``. The enumeration comma ``、`` also joins words
inside one question (``社保、医保怎么转`` is one question about two things), so in paraphrases and
negatives a one-line cell is split at ``、`` only when its parts are alike: every part reads as a
question (``怎么注销、注销要多久``) or none does (``注销流程、注销入口``, keywords). A cell where only some
parts read as questions is kept whole, with a note to the editor. Tags are words: always split.
"""
from __future__ import annotations

import re
from urllib.parse import quote

# Separators of a one-line list cell, besides the enumeration comma.
LIST_SEPARATORS = re.compile("[;；|｜]")
ENUMERATION_COMMA = "、"
# Any of these makes a text read as a question: question marks and particles, question words.
_QUESTION_MARKERS = re.compile(r"[?？吗呢么]|怎|如何|什么|啥|哪|谁|多少|多久|多长|几|能否|能不能|可否|可不可以|可以|"
                               r"是否|是不是|有没有|为何|为什么|要不要|需不需要")
# =HYPERLINK("url") or =HYPERLINK("url", "text"), as Excel, WPS and LibreOffice write it (any case, ; or ,).
_HYPERLINK_FORMULA = re.compile(r'^=\s*HYPERLINK\(\s*"([^"]+)"\s*(?:[,;]\s*"((?:[^"]|"")*)"\s*)?\)\s*$', re.IGNORECASE)


def reads_as_question(text: str) -> bool:
    """Whether ``text`` has a question mark, particle or word (怎么, 如何, 吗, 哪里...)."""
    return bool(_QUESTION_MARKERS.search(text))


def split_list_cell(text: str, words: bool = False) -> tuple[list[str], bool]:
    """(items of a list cell, whether a ``、`` was kept as part of an item where it might separate items).

    ``words``: the cell holds words (tags), split at every ``、``.
    """
    if "\n" in text:
        parts = text.split("\n")
    elif LIST_SEPARATORS.search(text):
        parts = LIST_SEPARATORS.split(text)
    elif ENUMERATION_COMMA in text:
        parts = text.split(ENUMERATION_COMMA)
        questions = [reads_as_question(part) for part in parts if part.strip()]
        if not words and any(questions) and not all(questions):
            return [text.strip()], True  # one question naming several things
    else:
        parts = [text]
    return [part.strip() for part in parts if part.strip()], False


def has_list_separator(item: str) -> bool:
    """Whether a one-line cell holding only ``item`` could be split into several items."""
    return bool(LIST_SEPARATORS.search(item)) or ENUMERATION_COMMA in item


def markdown_link(text: str, url: str) -> str:
    """``[text](url)``; the bare URL when the text is the URL itself (or empty)."""
    url = quote(url.strip(), safe=":/?#[]@!$&'*+,;=%~-._")  # a space or ")" would end a Markdown link early
    label = text.strip()
    if not label or label == url or label == url.rstrip("/"):
        return url
    return "[" + label.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]") + f"]({url})"


def hyperlink_formula(formula: str) -> str | None:
    """The Markdown link of a ``=HYPERLINK("url", "text")`` formula; None for any other formula."""
    found = _HYPERLINK_FORMULA.match(formula.strip())
    if not found:
        return None
    url, label = found.group(1), (found.group(2) or "").replace('""', '"')
    return markdown_link(label, url)
