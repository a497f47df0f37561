"""Which files of a corpus folder hold entries, and which names are reserved for other uses."""
from __future__ import annotations

SHEET_SUFFIXES = (".xlsx", ".csv")
CORPUS_SUFFIXES = (".yaml", ".yml", ".jsonl") + SHEET_SUFFIXES
# Spreadsheet formats that are not read: refused with the fix rather than ignored.
UNREAD_SHEET_SUFFIXES = frozenset({".xls", ".xlsm", ".xlsb", ".ods", ".numbers", ".et"})
# Files a corpus folder may hold beside the entries: labelled queries for
# calibration, the lexical leg's synonyms (``userdict.txt`` has no corpus suffix), the
# pages' title and messages, and the workbench's candidates for new entries.
RESERVED_FILES = frozenset({"labelled.jsonl", "synonyms.yaml", "collection.yaml", "candidates.jsonl"})
