import json
import re

import pytest

from conftest import SEED_CORPUS, SEED_RAW
from retriever.corpus import corpus_checksum, load_corpus
from retriever.errors import CorpusError
from retriever.normalize import normalize

GOOD_ENTRY = """
  - id: a
    question: 注销进度如何查询?
    paraphrases: [注销进度, 怎么查注销]
    answer: 登录系统查看。
"""


def test_seed_corpus_has_six_entries_with_ten_paraphrases_each():
    entries = load_corpus(SEED_CORPUS)
    assert [e.id for e in entries] == [f"cancel-0{i}" for i in range(1, 7)]
    for entry in entries:
        assert len(entry.paraphrases) >= 10, entry.id
        assert len({normalize(p) for p in entry.paraphrases}) == len(entry.paraphrases), entry.id
    # Entries 5 and 6 share one answer and both stay.
    assert entries[4].answer == entries[5].answer


def test_seed_corpus_matches_the_raw_seed_after_cleaning():
    """Questions and answers are the raw seed's, normalised, minus link notes and the garbled stretch."""
    raw = SEED_RAW.read_text(encoding="utf-8").replace("當(dāng)?shù)厥〖?jí)", "當(dāng)地省級(jí)")
    blocks = re.split(r"^\d、", raw, flags=re.M)[1:]
    entries = load_corpus(SEED_CORPUS)
    assert len(blocks) == len(entries)
    for block, entry in zip(blocks, entries):
        question, *answer_lines = [normalize(line) for line in block.strip().splitlines()]
        answer = "\n".join(line.replace("(点击进入)", "") for line in answer_lines
                           if not line.startswith("各省级主管部门联系方式"))
        assert entry.question == question
        assert entry.answer == answer
    texts = [t for e in entries for t in (e.question, e.answer, *e.paraphrases)]
    assert not any(re.search(r"\([a-zü]*[āáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜ]", t) for t in texts)


def test_yaml_list_jsonl_and_folder_are_read(tmp_path, write_file):
    write_file("c/one.yaml", GOOD_ENTRY)
    write_file("c/two.jsonl", json.dumps({"id": "b", "question": "q", "answer": "x", "tags": ["t"]},
                                         ensure_ascii=False) + "\n\n")
    write_file("c/notes.txt", "ignored")
    entries = load_corpus(tmp_path / "c")
    assert [e.id for e in entries] == ["a", "b"]
    assert entries[0].paraphrases == ("注销进度", "怎么查注销")
    assert entries[1].tags == ("t",) and entries[1].paraphrases == ()
    assert [e.id for e in load_corpus(tmp_path / "c" / "one.yaml")] == ["a"]


def test_checksum_depends_on_content_not_layout(tmp_path, write_file):
    a = load_corpus(write_file("a.yaml", "# comment\n" + GOOD_ENTRY))
    b = load_corpus(write_file("b.yaml", "entries:\n" + GOOD_ENTRY))
    c = load_corpus(write_file("c.yaml", GOOD_ENTRY.replace("登录系统查看", "另一个答案")))
    assert corpus_checksum(a) == corpus_checksum(b) != corpus_checksum(c)


@pytest.mark.parametrize("name, text, message", [
    ("bad.yaml", "- id: a\n  question: [unclosed\n", r"bad\.yaml:\d+: invalid YAML"),
    ("bad.yaml", "- id: a\n  answer: x\n", r"bad\.yaml: entry #1 \(id 'a'\): 'question' is missing"),
    ("bad.yaml", "- id: a\n  question: q\n  answer: '   '\n", r"entry #1 \(id 'a'\): 'answer' is empty"),
    ("bad.yaml", "- id: a\n  question: '\u3000'\n  answer: x\n", r"'question' is empty"),
    ("bad.yaml", "- question: q\n  answer: x\n", r"entry #1: 'id' is missing"),
    ("bad.yaml", "- id: 7\n  question: q\n  answer: x\n", r"'id' is missing or not a non-empty string"),
    ("bad.yaml", "- id: a\n  question: q\n  answer: x\n  paraphrase: [y]\n", r"unknown field\(s\) 'paraphrase'"),
    ("bad.yaml", "- id: a\n  question: q\n  answer: x\n  paraphrases: y\n", r"'paraphrases' must be a list"),
    ("bad.yaml", "- id: a\n  question: q\n  answer: x\n  paraphrases: [y, '']\n", r"'paraphrases' item 2"),
    ("bad.yaml", "id: a\n", r"expected a list of entries"),
    ("bad.yaml", "- just text\n", r"entry #1: an entry must be a mapping"),
    ("bad.yaml", "- id: a\n  question: q\n  answer: x\n- id: a\n  question: r\n  answer: y\n",
     r"entry #2 \(id 'a'\): duplicate id 'a' \(first defined at .*bad\.yaml: entry #1"),
    ("bad.jsonl", '{"id": "a", "question": "q", "answer": "x"}\n{"id": "b",\n', r"bad\.jsonl:2: invalid JSON"),
    ("bad.yaml", "# nothing yet\n", r"the corpus has no entries"),
])
def test_bad_corpus_is_refused_naming_file_and_entry(write_file, name, text, message):
    path = write_file(name, text)
    with pytest.raises(CorpusError, match=message):
        load_corpus(path)


def test_duplicate_id_across_files_names_both(tmp_path, write_file):
    write_file("c/1.yaml", GOOD_ENTRY)
    write_file("c/2.yaml", GOOD_ENTRY)
    with pytest.raises(CorpusError, match=r"2\.yaml: entry #1 \(id 'a'\): duplicate id 'a' \(first defined at .*1\.yaml"):
        load_corpus(tmp_path / "c")


def test_missing_path_empty_folder_and_bad_encoding(tmp_path, write_file):
    with pytest.raises(CorpusError, match="no such corpus file or folder"):
        load_corpus(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="no corpus files"):
        load_corpus(tmp_path / "empty")
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("- id: a\n  question: 注销\n".encode("gbk"))
    with pytest.raises(CorpusError, match=r"latin\.yaml: not UTF-8"):
        load_corpus(latin)
