"""Answers' Markdown subset: paragraphs, lists, links and bold, and the same answer as plain text.

An answer may say ``请填写[申请表](https://www.example.gov/form)`` or ``**注意**：…`` and list steps
with ``- `` or ``1. ``. The search page and the widget render that subset (retriever/http/static/widget.js,
built from DOM nodes, never HTML); channels that cannot show markup (MCP, Dify, SMS, a chatbot) get
:func:`plain_text`: ``请填写申请表（https://www.example.gov/form）`` with every URL kept.

The subset, exactly (the widget follows the same rules):

* blocks are separated by blank lines; inside a block, lines starting ``- ``, ``* ``, ``+ `` (a bullet) or
  ``1. `` ``1、`` ``1) `` (a number) are list items, the other lines paragraph text (line breaks kept);
* ``[text](url)`` is a link when the URL is absolute http, https, mailto or tel (``\\[`` ``\\]`` ``\\\\``
  escape brackets in the text, as spreadsheet import writes them); any other link stays as typed;
* ``**text**`` is bold when closed on the same block;
* nothing else is markup: HTML, entities and ``javascript:`` links are text, shown as written.

Pure functions of strings (tests/test_markup.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Union
from urllib.parse import urlsplit

SAFE_SCHEMES = ("http", "https", "mailto", "tel")
_BULLET = re.compile(r"^\s{0,3}([-*+]\s+)(.*)$")
_NUMBER = re.compile(r"^\s{0,3}(\d{1,3}(?:[.)]\s+|、\s*))(.*)$")
# An escaped character, a link, or a bold marker (links first: their text may hold anything but brackets).
_TOKEN = re.compile(r"\\([\\\[\]*])|\[((?:\\[\\\[\]]|[^\[\]\\\n])+)\]\(([^()\s]+)\)|\*\*")
_UNESCAPE = re.compile(r"\\([\\\[\]*])")


@dataclass(frozen=True)
class Link:
    label: str
    url: str


@dataclass(frozen=True)
class Bold:
    children: tuple[Inline, ...]


Inline = Union[str, Link, Bold]


@dataclass(frozen=True)
class Block:
    kind: str  # "p" (a paragraph), "ul" or "ol" (a list)
    items: tuple[tuple[Inline, ...], ...]  # a paragraph: one item (its lines, "\n" between); a list: its items
    markers: tuple[str, ...] = ()  # a list's item markers as written: "-", "1.", "2、"


def safe_url(url: str) -> str | None:
    """``url`` when it is an absolute http(s) (with a host), mailto or tel URL; None for anything else."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in SAFE_SCHEMES or any(ord(c) < 0x21 or c in "<>\"'`" for c in url):
        return None
    if parts.scheme.lower() in ("http", "https") and not parts.netloc:
        return None
    return url


def parse_inline(text: str) -> tuple[Inline, ...]:
    """The text, links and bold runs of one block's text."""
    markers = [m.start() for m in _TOKEN.finditer(text) if m.group(0) == "**"]
    out: list[Inline] = []
    stack: list[list[Inline]] = [out]
    position = 0
    for match in _TOKEN.finditer(text):
        _text(stack[-1], text[position:match.start()])
        position = match.end()
        if match.group(1) is not None:  # an escaped character
            _text(stack[-1], match.group(1))
        elif match.group(2) is not None:
            url = safe_url(match.group(3))
            if url is None:
                _text(stack[-1], match.group(0))  # an unsafe link is shown as typed
            else:
                stack[-1].append(Link(_UNESCAPE.sub(r"\1", match.group(2)), url))
        elif len(stack) > 1:  # closes the bold run
            children = tuple(stack.pop())
            stack[-1].append(Bold(children))
        elif markers.index(match.start()) + 1 < len(markers):  # opens one that a later marker closes
            stack.append([])
        else:
            _text(stack[-1], "**")
    _text(stack[-1], text[position:])
    while len(stack) > 1:  # unclosed: cannot happen (a marker opens only when another follows), kept safe
        children = stack.pop()
        _text(stack[-1], "**")
        stack[-1].extend(children)
    return tuple(out)


def _text(into: list[Inline], text: str) -> None:
    if not text:
        return
    if into and isinstance(into[-1], str):
        into[-1] += text
    else:
        into.append(text)


def _chunks(answer: str) -> list[str]:
    """The answer's blank-line separated chunks."""
    text = answer.replace("\r\n", "\n").replace("\r", "\n").strip("\n")
    return [chunk for chunk in re.split(r"\n[ \t\u3000]*\n", text) if chunk.strip()]


def _chunk_blocks(chunk: str) -> list[Block]:
    """One chunk's paragraph lines and list runs, in order."""
    blocks: list[Block] = []
    run: list[str] = []
    kind, items, markers = "p", [], []

    def close_list() -> None:
        if items:
            blocks.append(Block(kind, tuple(parse_inline(i) for i in items), tuple(markers)))
            items.clear()
            markers.clear()

    for line in chunk.split("\n"):
        found = _BULLET.match(line) or _NUMBER.match(line)
        if found is None:
            close_list()
            kind = "p"
            run.append(line)
            continue
        if run:
            blocks.append(Block("p", (parse_inline("\n".join(run)),)))
            run = []
        item_kind = "ul" if found.re is _BULLET else "ol"
        if kind != item_kind:
            close_list()
        kind = item_kind
        items.append(found.group(2))
        markers.append(found.group(1).strip())
    close_list()
    if run:
        blocks.append(Block("p", (parse_inline("\n".join(run)),)))
    return blocks


def parse_blocks(answer: str) -> tuple[Block, ...]:
    """The answer's paragraphs and lists, in order."""
    return tuple(block for chunk in _chunks(answer) for block in _chunk_blocks(chunk))


def inline_text(nodes: tuple[Inline, ...]) -> str:
    """Inline nodes as plain text: a link as ``text（url）`` (only the text when it is the address itself)."""
    parts = []
    for node in nodes:
        if isinstance(node, str):
            parts.append(node)
        elif isinstance(node, Bold):
            parts.append(inline_text(node.children))
        else:
            shown = re.sub(r"^(mailto|tel):", "", node.url, flags=re.IGNORECASE)
            same = node.label.strip() in (node.url, shown, shown.rstrip("/"))
            parts.append(node.label if same else f"{node.label}（{shown}）")
    return "".join(parts)


def plain_text(answer: str) -> str:
    """The answer for channels without markup: text as written, list markers kept, links as ``text（URL）``."""
    return "\n\n".join("\n".join(_block_text(block) for block in _chunk_blocks(chunk)) for chunk in _chunks(answer))


def _block_text(block: Block) -> str:
    if block.kind == "p":
        return inline_text(block.items[0])
    return "\n".join(f"{marker}{'' if marker.endswith('、') else ' '}{inline_text(item)}"
                     for marker, item in zip(block.markers, block.items))
