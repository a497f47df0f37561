"""A corpus as YAML text that reads back equal (what ``corpus import`` and the workbench write)."""
from __future__ import annotations

import json
import re

import yaml

from .schema import FaqEntry

# Written by hand rather than by yaml.dump, which took 7 s for 50,000 entries (its Python resolver
# and representer run per scalar); every scalar falls back to a JSON-style double-quoted string,
# which YAML reads exactly, unless a plain or literal form is certain to read back the same.
# YAML's printable characters less the line breaks other than "\n" (a reader would fold them) and the BOM.
_YAML_RAW = re.compile("[\t\n\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]*")
_NOT_RAW_IN_JSON = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")
_PLAIN_NEVER_FIRST = frozenset("-?:,[]{}#&*!|>'\"%@`")
_IMPLICIT = yaml.resolver.Resolver.yaml_implicit_resolvers  # first character -> [(tag, regexp)]
_BLOCK_INDENT = "    "


def _yaml_scalar(text: str, flow: bool = False) -> str:
    """``text`` as a YAML scalar that reads back equal: plain, a literal block (``|-``), or double-quoted."""
    raw = _YAML_RAW.fullmatch(text) is not None
    if raw and not flow and "\n" in text and not text.endswith("\n") and text == text.strip() and \
            not any(line.startswith((" ", "\t")) for line in text.split("\n")):
        return "|-\n" + "\n".join(_BLOCK_INDENT + line if line else "" for line in text.split("\n"))
    if raw and _plain_reads_back(text, flow):
        return text
    quoted = json.dumps(text, ensure_ascii=False)  # JSON escapes are YAML double-quoted escapes
    return _NOT_RAW_IN_JSON.sub(lambda match: f"\\u{ord(match.group()):04x}", quoted)


def _plain_reads_back(text: str, flow: bool) -> bool:
    if not text or text != text.strip() or "\n" in text or "\t" in text or text[0] in _PLAIN_NEVER_FIRST:
        return False
    if ": " in text or " #" in text or text.endswith(":") or (flow and not _PLAIN_NEVER_FIRST.isdisjoint(text)):
        return False
    return not any(regexp.match(text) for _, regexp in _IMPLICIT.get(text[0], ()))  # true, 1.5, null, ~ ...


def corpus_yaml(entries: list[FaqEntry], comment: str = "") -> str:
    """The entries as a corpus YAML document (``entries:`` mapping) that :func:`load_corpus` reads back equal."""
    lines = [f"# {line if _YAML_RAW.fullmatch(line) else ascii(line)}".rstrip() for line in comment.splitlines()]
    lines.append("entries:")
    for entry in entries:
        lines.append(f"- id: {_yaml_scalar(entry.id)}")
        if entry.category is not None:
            lines.append(f"  category: {_yaml_scalar(entry.category)}")
        if entry.tags:
            lines.append(f"  tags: [{', '.join(_yaml_scalar(tag, flow=True) for tag in entry.tags)}]")
        lines.append(f"  question: {_yaml_scalar(entry.question)}")
        for key in ("paraphrases", "negatives"):
            if getattr(entry, key):
                lines.append(f"  {key}:")
                lines += [f"  - {_yaml_scalar(text)}" for text in getattr(entry, key)]
        lines.append(f"  answer: {_yaml_scalar(entry.answer)}")
        lines += _dated_lines(entry)
    return "\n".join(lines) + "\n"


def _dated_lines(entry: FaqEntry) -> list[str]:
    """``valid_from`` / ``valid_until`` and ``answer_versions``, when the entry has them (quoted dates read back as text)."""
    lines = [f"  {key}: {_yaml_scalar(getattr(entry, key))}" for key in ("valid_from", "valid_until")
             if getattr(entry, key)]
    if entry.answer_versions:
        lines.append("  answer_versions:")
        for version in entry.answer_versions:
            lines.append(f"  - from: {_yaml_scalar(version.valid_from)}")
            lines.append(f"    answer: {_yaml_scalar(version.answer).replace(chr(10) + _BLOCK_INDENT, chr(10) + _BLOCK_INDENT + '  ')}")
    return lines
