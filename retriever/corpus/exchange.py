"""``corpus import`` and ``corpus export``: a sheet into a corpus YAML file, a corpus out to a sheet."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..errors import CorpusError
from .layout import SHEET_SUFFIXES
from .reading import corpus_files, load_corpus
from .schema import FaqEntry
from .sheets import ImportResult, export_sheet, import_sheet, problems_message, rejects_csv, write_output
from .yaml_text import corpus_yaml


@dataclass(frozen=True)
class ImportOutcome:
    target: Path
    replaced: bool  # the target existed before
    result: ImportResult
    rejects_path: Path | None  # written only when rows were skipped


def import_to_corpus(source: str | Path, out: str | Path, *, skip_bad: bool = False,
                     rejects: str | Path | None = None, progress: bool = False) -> ImportOutcome:
    """Import a sheet into a corpus YAML file (``out`` is a folder, or a .yaml file to replace).

    Nothing is written unless every row is good; with ``skip_bad`` the good rows are and the others
    go to ``rejects`` (default: ``SOURCE_STEM.rejects.csv`` beside the source).
    """
    source, out = Path(source), Path(out)
    target = _import_target(source, out)
    rejects_path = Path(rejects) if rejects else source.with_name(f"{source.stem}.rejects.csv")
    result = import_sheet(source, progress=progress)
    if not result.sheet.rows:
        raise CorpusError(f"{source}: no rows below the header; nothing to import")
    if result.rejected and not skip_bad:
        raise CorpusError(problems_message(result, "Nothing was written. Fix them and import again, or pass "
                                                   "--skip-bad to import the other rows and list these in a rejects file."))
    _refuse_id_clashes(target, source, result.entries)
    if result.rejected:
        if rejects_path.suffix.lower() in SHEET_SUFFIXES and \
                target.parent.resolve() in rejects_path.resolve().parents:
            raise CorpusError(f"{rejects_path}: the rejects file would be in the corpus folder {target.parent}, where "
                              f"a build reads every .csv; pass --rejects with a path outside it. Nothing was written")
        write_output(rejects_path, rejects_csv(result).encode("utf-8"))
        if not result.entries:
            raise CorpusError(f"{source}: none of its {len(result.rejected)} rows can be imported; why is in "
                              f"{rejects_path}; no corpus file was written")
    replaced = target.exists()
    sheet = f" (sheet '{result.sheet.name}')" if result.sheet.name else ""
    comment = (f"Imported from {source.name}{sheet} by `python -m retriever corpus import`.\n"
               f"Edit the sheet and import it again, or edit this file (`corpus export` gives a sheet back).")
    write_output(target, corpus_yaml(list(result.entries), comment=comment).encode("utf-8"))
    return ImportOutcome(target, replaced, result, rejects_path if result.rejected else None)


def _import_target(source: Path, out: Path) -> Path:
    if out.suffix.lower() in (".yaml", ".yml"):
        return out
    if out.exists() and not out.is_dir():
        raise CorpusError(f"{out}: --out must be a folder or a .yaml file")
    return out / f"{source.stem}.yaml"


def _refuse_id_clashes(target: Path, source: Path, entries: Iterable[FaqEntry]) -> None:
    """Refuse an import whose ids another corpus file of the target folder defines: the folder would not build."""
    try:
        files = corpus_files(target.parent) if target.parent.is_dir() else []
    except CorpusError:
        return
    ids = {entry.id for entry in entries}
    for file in files:
        if file.resolve() == target.resolve():
            continue
        try:
            clash = sorted(ids & {entry.id for entry in load_corpus(file)})
        except CorpusError:
            continue  # that file's own problems are the build's to report
        if not clash:
            continue
        if file.resolve() == source.resolve():
            raise CorpusError(f"{source} is itself in the corpus folder {target.parent}, and a build reads it directly: "
                              f"no import is needed (or move the sheet out of that folder)")
        shown = ", ".join(f"'{i}'" for i in clash[:5]) + (f" and {len(clash) - 5} more" if len(clash) > 5 else "")
        fix = (f"to replace that file, pass --out {file}" if file.suffix.lower() in (".yaml", ".yml")
               else "move one of them out of the folder")
        raise CorpusError(f"{file} already defines {shown}: with {target.name} beside it, {target.parent} would not "
                          f"build (duplicate ids); {fix}. Nothing was written")


def export_corpus(corpus: str | Path, out: str | Path, headers: str = "en") -> list[FaqEntry]:
    """Write the corpus at ``corpus`` to the sheet ``out`` (.xlsx or .csv); returns the entries written."""
    entries = load_corpus(corpus)
    export_sheet(entries, out, headers=headers)
    return entries
