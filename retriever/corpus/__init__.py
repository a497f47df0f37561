"""The FAQ corpus: the entry schema, reading corpus folders (YAML, JSON Lines, spreadsheets), writing them."""
from .conflicts import (ConflictError, ConflictReport, check_entries, check_identical, find_identical,
                        read_conflicts)
from .exchange import ImportOutcome, export_corpus, import_to_corpus
from .layout import CORPUS_SUFFIXES, RESERVED_FILES, SHEET_SUFFIXES
from .reading import corpus_files, load_corpus
from .schema import (MAX_ANSWER_CHARS, MAX_LABEL_CHARS, MAX_NEGATIVES, MAX_PARAPHRASES, MAX_QUESTION_CHARS, MAX_TAGS,
                     AnswerVersion, EntryError, FaqEntry, corpus_checksum, parse_entry)
from .sheets import COLUMNS, export_sheet, generated_id, import_sheet, read_sheet
from .yaml_text import corpus_yaml

__all__ = [
    # conflicts.py
    "ConflictError", "ConflictReport", "check_entries", "check_identical", "find_identical", "read_conflicts",
    # exchange.py
    "ImportOutcome", "export_corpus", "import_to_corpus",
    # layout.py
    "CORPUS_SUFFIXES", "RESERVED_FILES", "SHEET_SUFFIXES",
    # reading.py
    "corpus_files", "load_corpus",
    # schema.py
    "MAX_ANSWER_CHARS", "MAX_LABEL_CHARS", "MAX_NEGATIVES", "MAX_PARAPHRASES", "MAX_QUESTION_CHARS", "MAX_TAGS",
    "AnswerVersion", "EntryError", "FaqEntry", "corpus_checksum", "parse_entry",
    # sheets.py
    "COLUMNS", "export_sheet", "generated_id", "import_sheet", "read_sheet",
    # yaml_text.py
    "corpus_yaml",
]
