import json
import re
import time

import pytest
import yaml
from hypothesis import given, settings, strategies as st

from conftest import SEED_CORPUS, SEED_RAW
from retriever.corpus import corpus_checksum, corpus_yaml, load_corpus
from retriever.corpus.yaml_text import _yaml_scalar
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


# --- hardening (issue 10 item 13) ---------------------------------------------------------------

@pytest.mark.parametrize("name, text, message", [
    ("dup.yaml", "- id: a\n  question: q\n  answer: x\n  question: r\n",
     r"dup\.yaml:4: invalid YAML \(duplicate key 'question' \(first at line 2\)\)"),
    ("dup.yaml", "entries:\n- id: a\n  question: q\n  answer: x\nentries: []\n",
     r"dup\.yaml:5: invalid YAML \(duplicate key 'entries' \(first at line 1\)\)"),
    ("dup.jsonl", '{"id": "a", "question": "q", "answer": "x", "answer": "y"}\n',
     r"dup\.jsonl:1: invalid JSON \(duplicate key 'answer'\)"),
    ("zw.yaml", '- id: a\n  question: "\\u200b\\u200d\\ufeff"\n  answer: x\n', r"entry #1 \(id 'a'\): 'question' is empty"),
    ("zw.yaml", '- id: a\n  question: q\n  answer: x\n  paraphrases: ["\\u00ad"]\n', r"'paraphrases' item 1 is empty"),
    ("ids.yaml", '- id: a1\n  question: q\n  answer: x\n- id: "a1\\u200b"\n  question: r\n  answer: y\n',
     r"entry #2 \(id 'a1'\): duplicate id 'a1' \(first defined at .*ids\.yaml: entry #1"),
    ("ids.yaml", '- id: "\\u200b"\n  question: q\n  answer: x\n', r"'id' is missing or not a non-empty string"),
    ("surrogate.yaml", '- id: a\n  question: "\\ud800"\n  answer: x\n', r"surrogate\.yaml:2: invalid YAML"),
    ("surrogate.jsonl", '{"id": "a", "question": "q", "answer": "x", "tags": ["\\ud800"]}\n',
     r"surrogate\.jsonl:1 \(id 'a'\): 'tags' item 1 is not Unicode text: it holds an unpaired surrogate \(U\+D800\)"),
    ("surrogate.jsonl", '{"id": "\\udc80", "question": "q", "answer": "x"}\n', r"'id' is not Unicode text"),
    ("long.yaml", "- id: a\n  question: " + "问" * 501 + "\n  answer: x\n",
     r"'question' is 501 characters long; at most 500 are allowed"),
    ("long.yaml", "- id: a\n  question: q\n  answer: x\n  negatives: [" + "问" * 501 + "]\n",
     r"'negatives' item 1 is 501 characters long; at most 500"),
    ("long.yaml", "- id: a\n  question: " + "㌀" * 200 + "\n  answer: x\n",
     r"'question' is 800 characters long once normalised; at most 500"),
    ("long.yaml", "- id: a\n  question: q\n  answer: " + "答" * 20_001 + "\n",
     r"'answer' is 20,001 characters long; at most 20,000 are allowed \(put long material on a page"),
    ("many.yaml", "- id: a\n  question: q\n  answer: x\n  paraphrases: [" + ", ".join(f"p{i}" for i in range(201))
     + "]\n", r"'paraphrases' has 201 items; at most 200 are allowed"),
    ("long.yaml", f"- id: {'a' * 101}\n  question: q\n  answer: x\n", r"'id' is 101 characters long; at most 100"),
    ("long.yaml", f"- id: a\n  question: q\n  answer: x\n  category: {'c' * 101}\n", r"'category' is 101 characters"),
    ("numbers.yaml", "- id: a\n  question: q\n  answer: x\n  tags: [1]\n", r"'tags' item 1 is empty or not a string"),
])
def test_hostile_corpus_input_is_refused_with_a_message(write_file, name, text, message):
    with pytest.raises(CorpusError, match=message):
        load_corpus(write_file(name, text))


@pytest.mark.parametrize("field, size", [("answer", 5_000_000), ("question", 100_000)])
def test_huge_texts_are_refused_quickly(tmp_path, field, size):
    text = "注" * size
    entry = {"id": "a", "question": "q", "answer": "x", field: text}
    path = tmp_path / "huge.yaml"
    path.write_text(f"- id: a\n  question: {entry['question']}\n  answer: {entry['answer']}\n", encoding="utf-8")
    started = time.perf_counter()
    with pytest.raises(CorpusError, match=rf"'{field}' is {size:,} characters long"):
        load_corpus(path)
    assert time.perf_counter() - started < 2


def test_merge_keys_are_not_duplicates_and_blank_category_is_none(write_file):
    entries = load_corpus(write_file("anchors.yaml", """
        - &base {id: a, question: q, answer: x, category: '  '}
        - <<: *base
          id: b
        """))
    assert [(e.id, e.question, e.category) for e in entries] == [("a", "q", None), ("b", "q", None)]


def test_invisible_characters_are_ignored_in_matching_but_kept_for_display(write_file):
    entry, = load_corpus(write_file("zw.yaml", '- id: "\\u200ba"\n  question: "注销\\u200b进度"\n  answer: x\n'))
    assert entry.id == "a"
    assert entry.question == "注销\u200b进度" and normalize(entry.question) == "注销进度"


def test_written_corpus_yaml_reads_back_equal(tmp_path):
    entries = load_corpus(SEED_CORPUS)
    path = tmp_path / "copy.yaml"
    path.write_text(corpus_yaml(entries, comment="copied"), encoding="utf-8")
    assert path.read_text(encoding="utf-8").startswith("# copied\nentries:\n- id: cancel-01\n  category: 注销注册\n"
                                                        "  tags: [流程, 在线办理]\n")
    assert load_corpus(path) == entries


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(exclude_categories=("Cs",)), min_size=1)
       | st.text(st.sampled_from(list("ab 中\n\t:#-?,[]{}'\"!&*|>%@`=~<.09eE+\u2028\u0085\r\ufeff\x7f\x00yYnN")),
                 min_size=1, max_size=12))
def test_yaml_scalars_read_back_exactly(text):
    """corpus_yaml writes YAML by hand: any text, in block or flow position, must read back unchanged."""
    document = f"- k: {_yaml_scalar(text)}\n  l:\n  - {_yaml_scalar(text)}\n  f: [{_yaml_scalar(text, flow=True)}, x]\n"
    for loader in (yaml.SafeLoader, yaml.CSafeLoader):
        assert yaml.load(document, Loader=loader) == [{"k": text, "l": [text], "f": [text, "x"]}], document


def test_an_entrys_record_holds_every_field_but_its_source():
    """to_record is written field by field (speed): a field added to FaqEntry must reach the index too."""
    import dataclasses

    from retriever.corpus import FaqEntry
    from retriever.corpus.schema import AnswerVersion

    full = FaqEntry("e1", "问", "答", ("换个说法",), "类", ("标签",), ("不是这个",), False, "2026-01-01", "2026-12-31",
                    (AnswerVersion("2026-06-01", "新答"),), source="faq.yaml")
    record = full.to_record()
    assert set(record) == {f.name for f in dataclasses.fields(FaqEntry)} - {"source"}
    assert FaqEntry.from_record(json.loads(json.dumps(record))) == full
    plain = FaqEntry("e2", "问", "答")
    assert plain.to_record() == {"id": "e2", "question": "问", "answer": "答", "paraphrases": [], "category": None,
                                 "tags": []}
