"""``corpus import`` and ``corpus export``: a sheet into a corpus YAML file, a corpus out to a sheet."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..errors import CorpusError
from .conflicts import ConflictError, ConflictReport, check_entries
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
    # Texts the imported entries share with each other or with the folder's other files, and (with a model)
    # paraphrases nearer another entry: only those that involve an imported entry.
    conflicts: ConflictReport = ConflictReport(model_checked=False)
    dry_run: bool = False  # nothing was written; ``target`` and ``rejects_path`` say what would have been


CONFLICTS_FIX = ("Nothing was written. Remove or reword one of each in the sheet (or move it to the right entry) "
                 "and import again, or pass --allow-conflicts (the build then needs it too).")


def import_to_corpus(source: str | Path, out: str | Path, *, skip_bad: bool = False,
                     rejects: str | Path | None = None, progress: bool = False, dry_run: bool = False,
                     allow_conflicts: bool = False,
                     encode: Callable[[list[str]], np.ndarray] | None = None,
                     sheet: str | None = None) -> ImportOutcome:
    """Import a sheet into a corpus YAML file (``out`` is a folder, or a .yaml file to replace).

    Nothing is written unless every row is good; with ``skip_bad`` the good rows are and the others
    go to ``rejects`` (default: ``SOURCE_STEM.rejects.csv`` beside the source). A question or
    paraphrase that another entry (of the sheet or of the folder) also holds refuses the import
    (:class:`ConflictError`) unless ``allow_conflicts``. ``dry_run`` writes nothing, refuses nothing
    for bad rows or conflicts, and reports them; ``encode`` (a model's ``encode_queries``) adds the
    paraphrases it places nearer another entry. Every worksheet with a header is imported, or only the
    one named ``sheet``; ``result.warnings`` say what was skipped (title rows, other columns, worksheets).
    """
    source, out = Path(source), Path(out)
    target = _import_target(source, out)
    rejects_path = Path(rejects) if rejects else source.with_name(f"{source.stem}.rejects.csv")
    result = import_sheet(source, progress=progress, sheet=sheet)
    if not result.row_count:
        raise CorpusError(f"{source}：表头下面没有数据行；没有可导入的内容")
    if result.rejected and not skip_bad and not dry_run:
        raise CorpusError(problems_message(result, "什么都没有写入。请改正后重新导入，或加 --skip-bad 导入其余的行，"
                                                   "并把这些行列进退回文件。"))
    _refuse_id_clashes(target, source, result.entries)
    conflicts = import_conflicts(target, result.entries, encode if dry_run else None, progress, allow_conflicts)
    if dry_run:
        return ImportOutcome(target, target.exists(), result, rejects_path if result.rejected else None, conflicts,
                             dry_run=True)
    if conflicts.identical and not allow_conflicts:
        raise ConflictError(conflicts.identical, CONFLICTS_FIX)
    if result.rejected:
        if rejects_path.suffix.lower() in SHEET_SUFFIXES and \
                target.parent.resolve() in rejects_path.resolve().parents:
            raise CorpusError(f"{rejects_path}：退回文件会落在语料文件夹 {target.parent} 里，而建索引会读其中每个 "
                              f".csv；请用 --rejects 指定该文件夹之外的路径。什么都没有写入")
        write_output(rejects_path, rejects_csv(result).encode("utf-8"))
        if not result.entries:
            raise CorpusError(f"{source}：{len(result.rejected)} 行都不能导入，原因见 {rejects_path}；"
                              f"没有写入语料文件")
    replaced = target.exists()
    names = [s.name for s in result.sheets if s.name]
    sheets = f" (sheet{'s' if len(names) > 1 else ''} {', '.join(repr(n) for n in names)})" if names else ""
    comment = (f"Imported from {source.name}{sheets} by `faq-retriever corpus import`.\n"
               f"Edit the sheet and import it again, or edit this file (`corpus export` gives a sheet back).")
    write_output(target, corpus_yaml(list(result.entries), comment=comment).encode("utf-8"))
    return ImportOutcome(target, replaced, result, rejects_path if result.rejected else None, conflicts)


def import_conflicts(target: Path, imported: Iterable[FaqEntry], encode: Callable[[list[str]], np.ndarray] | None,
                     progress: bool = False, allowed: bool = False) -> ConflictReport:
    """The conflicts the import would bring into ``target``'s folder: among the imported entries, and between
    them and the folder's other corpus files (a file that does not load is the build's to report)."""
    imported = list(imported)
    ids = {entry.id for entry in imported}
    others = []
    try:
        files = corpus_files(target.parent) if target.parent.is_dir() else []
    except CorpusError:
        files = []
    for file in files:
        if file.resolve() == target.resolve():
            continue
        try:
            others += [entry for entry in load_corpus(file) if entry.id not in ids]
        except CorpusError:
            continue
    report = check_entries(imported + others, encode, progress=progress, allowed=allowed)
    return ConflictReport(tuple(c for c in report.identical if ids & set(c.entry_ids)),
                          tuple(c for c in report.closer if c.faq_id in ids or c.other_faq_id in ids),
                          allowed, report.model_checked, report.margin)


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
            clash = sorted(ids & {entry.id for entry in load_corpus(file, include_disabled=True)})
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
