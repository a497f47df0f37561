"""An MCP server (the official ``mcp`` SDK): FAQ search as tools for LLM agents, over stdio or streamable HTTP.

Tools: ``search_faq(query, collection?, top_k?, category?)`` and ``list_collections()``. Each returns
structured content (the shapes below, published as the tool's output schema) and a short text
rendering for models that read text only.
"""
from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent
from pydantic import BaseModel, Field

from ..config import DEFAULT_TOP_K, MAX_TOP_K
from ..errors import RetrieverError
from ..filters import metadata_filter
from ..registry import CollectionRegistry
from ..results import SearchResult
from ..scoring import NO_MATCH
from ..version import __version__

SEARCH_DESCRIPTION = (
    "在中文政务/服务常见问题库（FAQ）中检索与用户问题最匹配的标准问答。当用户询问办事流程、证书注册、"
    "政策规定等可能在 FAQ 中有现成答案的问题时调用。decision 为 answer 时可直接引用答案；ambiguous 时请确认；"
    "no_match 表示库中没有答案，请勿编造，应转人工。\n"
    "Search a Chinese FAQ collection (government hotline / service portal) for the entries that answer a "
    "citizen's question. Call it when the user asks how to do something the FAQ may cover. decision 'answer': "
    "quote the answer; 'ambiguous': ask which entry is meant; 'no_match': the FAQ has no answer, do not make one "
    "up, hand over to a person.")
LIST_DESCRIPTION = ("列出可检索的 FAQ 集合（名称、条目数、版本）。List the FAQ collections that search_faq can "
                    "search (name, entries, version).")


class FaqHit(BaseModel):
    faq_id: str
    question: str = Field(description="the entry's standard question")
    answer: str
    score: float
    matched_text: str = Field(description="the entry's text closest to the query")


class FaqSearch(BaseModel):
    collection: str
    query: str
    decision: str = Field(description="answer | ambiguous | no_match")
    confidence: float | None = Field(None, description="probability that the first hit answers the query")
    hits: list[FaqHit]


class CollectionSummary(BaseModel):
    name: str
    ready: bool
    entries: int | None
    version: str | None
    model: str | None


class Collections(BaseModel):
    collections: list[CollectionSummary]
    default: str


def _rendered(found: FaqSearch) -> str:
    if found.decision == NO_MATCH or not found.hits:
        return f"[{found.collection}] no_match：FAQ 中没有这个问题的答案。"
    top = found.hits[0]
    lines = [f"[{found.collection}] {found.decision}: {top.question}", top.answer]
    lines += [f"- 其他候选 {hit.faq_id}: {hit.question} ({hit.score:.3f})" for hit in found.hits[1:]]
    return "\n".join(lines)


def _shape(collection: str, result: SearchResult) -> FaqSearch:
    return FaqSearch(collection=collection, query=result.query, decision=result.decision,
                     confidence=getattr(result, "confidence", None),
                     hits=[FaqHit(faq_id=h.faq_id, question=h.question, answer=h.answer, score=round(h.score, 6),
                                  matched_text=h.matched_text) for h in result.hits])


def build_server(registry: CollectionRegistry) -> MCPServer:
    """The MCP server over the collections ``registry`` serves (hot reload included)."""
    server = MCPServer("faq-retriever", version=__version__,
                       instructions="中文 FAQ 检索 / Chinese FAQ search: use search_faq, then quote the answer.")

    @server.tool(description=SEARCH_DESCRIPTION, structured_output=True)
    def search_faq(query: Annotated[str, Field(min_length=1, max_length=500, description="用户的问题 the question")],
                   collection: str | None = None,
                   top_k: Annotated[int, Field(ge=1, le=MAX_TOP_K)] = DEFAULT_TOP_K,
                   category: str | None = None) -> Annotated[CallToolResult, FaqSearch]:
        try:
            holder = registry.holder(collection)
            searcher = holder.current
            if searcher is None:
                raise ToolError(f"collection '{collection or registry.default_name()}' is not ready yet")
            result = searcher.search(query, top_k, entry_filter=metadata_filter([category] if category else None))
        except RetrieverError as exc:
            raise ToolError(str(exc)) from None
        found = _shape(collection or registry.default_name(), result)
        return CallToolResult(content=[TextContent(type="text", text=_rendered(found))],
                              structured_content=found.model_dump(mode="json"))

    @server.tool(description=LIST_DESCRIPTION, structured_output=True)
    def list_collections() -> Annotated[CallToolResult, Collections]:
        listed = Collections(collections=[CollectionSummary(**{k: c[k] for k in CollectionSummary.model_fields})
                                          for c in registry.describe()], default=registry.default_name())
        text = "\n".join(f"{c.name}: {c.entries} entries, version {c.version}" for c in listed.collections)
        return CallToolResult(content=[TextContent(type="text", text=text or "no collections")],
                              structured_content=listed.model_dump(mode="json"))

    return server
