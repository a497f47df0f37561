"""The search API seen from another program: one HTTP call, hits as (text, score, metadata).

The LangChain and LlamaIndex retrievers (:mod:`.langchain`, :mod:`.llamaindex`) are thin wrappers over
:class:`FaqSearchClient`; it needs only the standard library, so it runs wherever the caller's
framework runs, far from the index and its model.

What a hit becomes: the text is the entry's answer (what a language model should read); the metadata
keeps the entry's id and standard question, the score, the query's decision and confidence, and the
hit's own ``metadata`` object from the service (its role: answer, alternative, suggestion...), when
the service sends one. By default a ``no_match`` decision gives no hits: the service says no entry
answers, and unrelated answers would mislead the model (``include_no_match=True`` keeps them).
"""
from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from ..errors import RetrieverError

NO_MATCH = "no_match"
# Hit fields copied into the metadata, beside the query's decision and the hit's own metadata object.
HIT_FIELDS = ("faq_id", "question", "score", "confidence", "category", "tags", "matched_text", "matched_field")


class RemoteSearchError(RetrieverError):
    """The search service cannot be reached, or refused the query (the message is the service's)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RemoteHit:
    text: str  # the entry's answer
    score: float | None
    metadata: dict[str, Any]


@dataclass(frozen=True)
class FaqSearchClient:
    """POSTs queries to ``/v1/search`` (or a collection's) of the service at ``base_url``.

    ``api_key``: sent as ``Authorization: Bearer``, for a service that counts rate limits per key.
    """

    base_url: str
    collection: str | None = None
    top_k: int | None = None
    category: str | list[str] | None = None
    tags: list[str] | None = None
    api_key: str | None = None
    timeout: float = 10.0
    include_no_match: bool = False
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def search_url(self) -> str:
        base = self.base_url.rstrip("/")
        if self.collection:
            return f"{base}/v1/collections/{urllib.parse.quote(self.collection, safe='')}/search"
        return f"{base}/v1/search"

    def search(self, query: str) -> list[RemoteHit]:
        """The hits for ``query``, best first; a refused query or an unreachable service is a RemoteSearchError."""
        body = {"query": query, "top_k": self.top_k, "category": self.category, "tags": self.tags}
        return hits_of(self._post({k: v for k, v in body.items() if v is not None}), self.include_no_match)

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json", "Accept": "application/json", **self.headers}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.search_url, data=json.dumps(body).encode("utf-8"), headers=headers,
                                         method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            raise RemoteSearchError(f"{self.search_url} answered {exc.code}: {_service_message(exc)}",
                                    exc.code) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RemoteSearchError(f"cannot reach the FAQ search service at {self.search_url}: {reason}") from None
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise RemoteSearchError(f"{self.search_url} did not answer with JSON: is it the FAQ search service?") \
                from None


def hits_of(body: dict[str, Any], include_no_match: bool = False) -> list[RemoteHit]:
    """The hits of a ``/v1/search`` response body (pure: tested with literals)."""
    decision = body.get("decision")
    if decision == NO_MATCH and not include_no_match:
        return []
    hits = []
    for rank, hit in enumerate(body.get("results") or []):
        # The service's own per-hit metadata (role...), when this version sends it; the fields below win.
        metadata = dict(hit.get("metadata") or {})
        metadata.update({name: hit.get(name) for name in HIT_FIELDS if name in hit})
        metadata.update(decision=decision, query_confidence=body.get("confidence"), rank=rank + 1)
        if "role" not in metadata:  # an older service: what its decision says of this hit
            metadata["role"] = "answer" if decision == "answer" and rank == 0 else "candidate"
        hits.append(RemoteHit(text=hit.get("answer") or "", score=hit.get("score"), metadata=metadata))
    return hits


def _service_message(error: urllib.error.HTTPError) -> str:
    """The service's JSON error message ({"error", "message"}), else the HTTP reason."""
    try:
        body = json.loads(error.read().decode("utf-8"))
        return f"{body.get('error')}: {body.get('message')}"
    except Exception:  # not our service's JSON: the status line says enough
        return str(error.reason)
