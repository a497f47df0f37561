"""A LlamaIndex retriever over the FAQ search service: ``FaqRetriever("http://...")`` in any query engine.

Needs the ``llamaindex`` extra (``pip install 'faq-retriever[llamaindex]'``: llama-index-core only); the
service runs elsewhere (``faq-retriever serve``). Each hit is a ``NodeWithScore``: a ``TextNode`` whose
text is the entry's answer, whose ``id_`` is the entry's id and whose ``metadata`` holds ``faq_id``,
``question``, ``score``, ``decision``, ``role``... (:func:`retriever.integrations.remote.hits_of`), with
the hit's score. A ``no_match`` query gives no nodes.
"""
from __future__ import annotations

from ..errors import MissingExtraError
from .remote import FaqSearchClient, RemoteSearchError

try:
    from llama_index.core.base.base_retriever import BaseRetriever
    from llama_index.core.callbacks import CallbackManager
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
except ImportError as exc:
    raise MissingExtraError("the LlamaIndex retriever", "llamaindex", exc.name or "llama-index-core") from None

__all__ = ["FaqRetriever", "RemoteSearchError"]


class FaqRetriever(BaseRetriever):
    """Nodes for a query from the FAQ search service at ``base_url`` (``/v1/search``).

    Options as :class:`~retriever.integrations.remote.FaqSearchClient` takes them (``collection``,
    ``top_k``, ``category``, ``tags``, ``api_key``, ``timeout``, ``include_no_match``). A refused query
    or an unreachable service raises :class:`RemoteSearchError` with the service's message.
    """

    def __init__(self, base_url: str, callback_manager: CallbackManager | None = None, verbose: bool = False,
                 **options) -> None:
        self.client = FaqSearchClient(base_url, **options)
        super().__init__(callback_manager=callback_manager, verbose=verbose)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        # A language model reads the answer and the question it answers; ids and scores are for the program.
        return [NodeWithScore(node=TextNode(id_=str(hit.metadata.get("faq_id")), text=hit.text, metadata=hit.metadata,
                                            excluded_llm_metadata_keys=_not_for_the_model(hit.metadata)),
                              score=hit.score)
                for hit in self.client.search(query_bundle.query_str)]


def _not_for_the_model(metadata: dict) -> list[str]:
    """Every metadata key but the question: scores and ids would only distract the language model."""
    return [key for key in metadata if key != "question"]
