"""A LangChain retriever over the FAQ search service: ``FaqRetriever(base_url=...)`` in any chain.

Needs the ``langchain`` extra (``pip install 'faq-retriever[langchain]'``: langchain-core only); the
service runs elsewhere (``faq-retriever serve``). Each hit is a ``Document`` whose ``page_content`` is
the entry's answer and whose ``metadata`` holds ``faq_id``, ``question``, ``score``, ``decision``,
``role``... (:func:`retriever.integrations.remote.hits_of`). A ``no_match`` query gives no documents.
"""
from __future__ import annotations

from typing import Any

from ..errors import MissingExtraError
from .remote import FaqSearchClient, RemoteSearchError

try:
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
except ImportError as exc:
    raise MissingExtraError("the LangChain retriever", "langchain", exc.name or "langchain-core") from None

__all__ = ["FaqRetriever", "RemoteSearchError"]


class FaqRetriever(BaseRetriever):
    """Documents for a query from the FAQ search service at ``base_url`` (``/v1/search``).

    ``collection``: a named collection; ``top_k``: entries asked for (default: the service's);
    ``category`` / ``filter_tags``: only such entries; ``api_key``: for a service with API keys;
    ``include_no_match``: keep the hits of a no_match query. A refused query or an unreachable service
    raises :class:`RemoteSearchError` (a ``RetrieverError``) with the service's message.
    """

    base_url: str
    collection: str | None = None
    top_k: int | None = None
    category: str | list[str] | None = None
    filter_tags: list[str] | None = None  # not ``tags``: BaseRetriever's tags label callback runs
    api_key: str | None = None
    timeout: float = 10.0
    include_no_match: bool = False

    def _client(self) -> FaqSearchClient:
        return FaqSearchClient(self.base_url, collection=self.collection, top_k=self.top_k, category=self.category,
                               tags=self.filter_tags, api_key=self.api_key, timeout=self.timeout,
                               include_no_match=self.include_no_match)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun,
                                **_: Any) -> list[Document]:
        return [Document(page_content=hit.text, metadata=hit.metadata, id=hit.metadata.get("faq_id"))
                for hit in self._client().search(query)]
