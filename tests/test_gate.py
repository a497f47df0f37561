"""The publish gate: a build that would answer the corpus's labelled queries worse than the served version is
refused (nothing published, the queries named); --force publishes anyway and the manifest records it."""
import json
import shutil

import pytest

from conftest import SEED_CORPUS
from retriever.cli import main
from retriever.editorial.editing import add_examples
from retriever.evaluation import LabelledQuery, Outcome
from retriever.gate import compare, is_right
from retriever.store import current_version, list_versions, read_manifest


def _outcome(query: str, expected: str | None, top: str, decision: str = "answer") -> Outcome:
    return Outcome(LabelledQuery(query, expected), 1 if top == expected else None, (0.95, 0.9), top, decision)


def _run(right: int, wrong: int = 0, caught: int = 0, missed: int = 0) -> list[Outcome]:
    return ([_outcome(f"q{i}", "a", "a") for i in range(right)] + [_outcome(f"w{i}", "a", "b") for i in range(wrong)]
            + [_outcome(f"o{i}", None, "a", "no_match") for i in range(caught)]
            + [_outcome(f"m{i}", None, "a") for i in range(missed)])


def _flip(outcomes: list[Outcome], query: str, top: str, decision: str = "answer") -> list[Outcome]:
    return [_outcome(o.labelled.query, o.labelled.faq_id, top, decision) if o.labelled.query == query else o
            for o in outcomes]


def test_one_labelled_query_turned_wrong_is_refused_on_a_small_set():
    before = _run(41, caught=18)
    after = _flip(before, "q3", "a", "no_match")  # its entry still first, but refused: wrong for the citizen
    report = compare(after, before, "v1")
    assert not report.passed and report.right_before - report.right_after == 1
    assert [str(c) for c in report.broken] == ["'q3' (expects a): answer a -> no_match"]
    assert "top-1 accuracy would drop by 1 query (2.4 points)" in report.message()
    assert "--force" in report.message()


def test_a_change_that_fixes_as_many_as_it_breaks_passes_and_names_both():
    before = _run(40, wrong=1, caught=18)
    after = _flip(_flip(before, "q0", "b"), "w0", "a")
    report = compare(after, before, "v1")
    assert report.passed and [c.query for c in report.broken] == ["q0"] and [c.query for c in report.fixed] == ["w0"]


@pytest.mark.parametrize("broken, passes", [(1, True), (2, False)])
def test_on_a_large_set_one_query_is_within_one_point(broken, passes):
    before = _run(200)
    after = before
    for number in range(broken):
        after = _flip(after, f"q{number}", "b")
    assert compare(after, before, "v1").passed is passes


def test_fewer_out_of_domain_queries_caught_is_refused():
    before = _run(10, caught=5)
    report = compare(_flip(before, "o2", "a", "answer"), before, "v1")
    assert not report.passed and report.reasons == ("1 fewer out-of-domain queries would be caught",)
    assert report.broken[0].expected is None and report.broken[0].after == "answer a"


def test_without_a_served_version_the_gate_only_measures():
    report = compare(_run(3, wrong=1, caught=1), None, None)
    assert report.passed and (report.right_after, report.in_domain, report.caught_after) == (3, 4, 1)
    assert "no served version" in report.summary()


def test_what_counts_as_right():
    assert is_right(_outcome("q", "a", "a", "ambiguous"))  # listed first, with a caveat
    assert not is_right(_outcome("q", "a", "a", "no_match"))
    assert is_right(_outcome("q", None, "a", "ambiguous")) and not is_right(_outcome("q", None, "a", "answer"))


def test_build_refuses_a_version_that_breaks_a_labelled_query_unless_forced(tmp_path, seed_index, capsys):
    corpus, index = tmp_path / "corpus", tmp_path / "index"
    shutil.copytree(SEED_CORPUS, corpus)
    shutil.copytree(seed_index, index)  # the served version, built from the same corpus
    served, versions = current_version(index), list_versions(index)
    # An editor's slip: a labelled query of cancel-01 made one of its negatives.
    add_examples(corpus, "cancel-01", "negative", ["注销手续的办理流程"])
    args = ["build", "--corpus", str(corpus), "--out", str(index), "--quiet"]

    assert main(args) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: publish refused: top-1 accuracy would drop by 1 query")
    assert "'注销手续的办理流程' (expects cancel-01): answer cancel-01 -> no_match" in error
    assert "Traceback" not in error
    assert current_version(index) == served and list_versions(index) == versions  # nothing published, no leftovers

    assert main(args + ["--force"]) == 0
    assert "publish gate overridden with --force" in capsys.readouterr().out
    assert current_version(index) != served
    record = read_manifest(index)["publish_gate"]
    assert record["forced"] is True and record["passed"] is False and record["served_version"] == served
    assert [c["query"] for c in record["broken"]] == ["注销手续的办理流程"]
    assert json.dumps(record, ensure_ascii=False)  # plain JSON in the manifest
