"""The LangChain and LlamaIndex retrievers, with the real packages, against a real server of the seed index."""
from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from conftest import REPO, SEED_CORPUS, free_port
from retriever.corpus import load_corpus
from retriever.integrations.remote import RemoteSearchError, hits_of

langchain_core = pytest.importorskip("langchain_core")  # both are in requirements-dev.txt: CI runs these
llama_index = pytest.importorskip("llama_index.core")

from retriever.integrations.langchain import FaqRetriever as LangChainRetriever  # noqa: E402
from retriever.integrations.llamaindex import FaqRetriever as LlamaIndexRetriever  # noqa: E402

ANSWERS = {entry.id: entry.answer for entry in load_corpus(SEED_CORPUS)}
QUERY = "一建注销怎么弄"
OUT_OF_DOMAIN = "今天天气怎么样"


@pytest.fixture(scope="module")
def url(server):
    return f"http://127.0.0.1:{server}"


def test_langchain_documents_are_answers_with_their_entry(url):
    documents = LangChainRetriever(base_url=url, top_k=3).invoke(QUERY)
    assert 1 <= len(documents) <= 3
    first = documents[0]
    assert first.id == "cancel-01" and first.page_content == ANSWERS["cancel-01"]
    assert first.metadata["faq_id"] == "cancel-01" and first.metadata["decision"] == "answer"
    assert first.metadata["question"] == "注销手续操作流程是怎样的?" and first.metadata["rank"] == 1
    assert first.metadata["role"] == "answer" and 0 < first.metadata["score"] <= 1
    assert [d.metadata["rank"] for d in documents] == list(range(1, len(documents) + 1))
    assert all(d.page_content == ANSWERS[d.metadata["faq_id"]] for d in documents)


def test_langchain_async_and_in_a_chain(url):
    from langchain_core.runnables import RunnableLambda

    retriever = LangChainRetriever(base_url=url, top_k=2)
    documents = asyncio.run(retriever.ainvoke(QUERY))
    assert documents[0].metadata["faq_id"] == "cancel-01"
    chain = retriever | RunnableLambda(lambda docs: "\n\n".join(d.page_content for d in docs))
    assert chain.invoke(QUERY).startswith(ANSWERS["cancel-01"])


def test_no_match_gives_nothing_unless_asked(url):
    assert LangChainRetriever(base_url=url).invoke(OUT_OF_DOMAIN) == []
    kept = LangChainRetriever(base_url=url, include_no_match=True, top_k=2).invoke(OUT_OF_DOMAIN)
    assert len(kept) == 2 and {d.metadata["decision"] for d in kept} == {"no_match"}
    assert all(d.metadata["role"] != "answer" for d in kept)


def test_filters_and_collection_reach_the_service(url):
    documents = LangChainRetriever(base_url=url, category="注销注册", top_k=5).invoke(QUERY)
    assert documents and {d.metadata["category"] for d in documents} == {"注销注册"}
    with pytest.raises(RemoteSearchError, match=r"answered 404: .*nope") as caught:
        LangChainRetriever(base_url=url, collection="nope").invoke(QUERY)
    assert caught.value.status == 404


def test_refused_and_unreachable_are_errors_with_the_reason(url):
    with pytest.raises(RemoteSearchError, match=r"answered 400: query_too_long: ") as caught:
        LangChainRetriever(base_url=url).invoke("问" * 5000)
    assert caught.value.status == 400
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(RemoteSearchError, match=r"cannot reach the FAQ search service at http://127\.0\.0\.1:\d+/v1/"):
        LangChainRetriever(base_url=dead, timeout=2).invoke(QUERY)


def test_llamaindex_nodes_carry_score_and_entry(url):
    from llama_index.core.schema import MetadataMode

    nodes = LlamaIndexRetriever(url, top_k=3).retrieve(QUERY)
    assert 1 <= len(nodes) <= 3
    first = nodes[0]
    assert first.node.node_id == "cancel-01" and first.node.text == ANSWERS["cancel-01"]
    assert first.score == first.node.metadata["score"] and first.node.metadata["decision"] == "answer"
    shown = first.node.get_content(metadata_mode=MetadataMode.LLM)
    assert "注销手续操作流程是怎样的?" in shown and "score" not in shown and ANSWERS["cancel-01"] in shown
    assert asyncio.run(LlamaIndexRetriever(url, top_k=1).aretrieve(QUERY))[0].node.node_id == "cancel-01"
    assert LlamaIndexRetriever(url).retrieve(OUT_OF_DOMAIN) == []


def test_llamaindex_query_engine_uses_the_retriever(url):
    from llama_index.core.llms.mock import MockLLM
    from llama_index.core.query_engine import RetrieverQueryEngine

    engine = RetrieverQueryEngine.from_args(LlamaIndexRetriever(url, top_k=2), llm=MockLLM())
    response = engine.query(QUERY)
    assert response.source_nodes[0].node.node_id == "cancel-01"


def test_hits_from_an_older_service_without_metadata():
    body = {"decision": "answer", "confidence": 0.9, "results": [
        {"faq_id": "a", "question": "Q", "answer": "A", "score": 0.8, "tags": []},
        {"faq_id": "b", "question": "R", "answer": "B", "score": 0.5, "metadata": {"role": "alternative", "x": 1}}]}
    first, second = hits_of(body)
    assert (first.text, first.score, first.metadata["role"], first.metadata["query_confidence"]) == ("A", 0.8, "answer",
                                                                                                    0.9)
    assert second.metadata == {"role": "alternative", "x": 1, "faq_id": "b", "question": "R", "score": 0.5,
                               "decision": "answer", "query_confidence": 0.9, "rank": 2}
    assert hits_of({"decision": "no_match", "results": body["results"]}) == []


@pytest.mark.parametrize("module, extra", [("langchain", "langchain"), ("llamaindex", "llamaindex")])
def test_without_the_extra_the_error_names_it(module, extra):
    blocked = {"langchain": "langchain_core", "llamaindex": "llama_index"}[module]
    code = (f"import sys; sys.modules[{blocked!r}] = None\n"
            f"from retriever.errors import MissingExtraError\n"
            f"try:\n    import retriever.integrations.{module}\n"
            f"except MissingExtraError as exc:\n    print(exc)")
    printed = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert f"pip install 'faq-retriever[{extra}]'" in printed.stdout, printed.stderr
