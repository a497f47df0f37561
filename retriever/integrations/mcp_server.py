"""An MCP server (the official ``mcp`` SDK): FAQ search as tools for LLM agents, over stdio or streamable HTTP.

Tools: ``search_faq(query, collection?, top_k?, category?, tags?)`` and ``list_collections()``, both
read-only (``readOnlyHint``). Each returns structured content (the shapes below, published as the
tool's output schema) and a short text rendering for models that read text only. Unknown arguments
are refused with a tool error naming the ones the tool takes. A ``no_match`` result carries no
answers, only "did you mean" suggestions (questions) and the collection's own no-match message.

The transports: stdio here (:class:`FaqMCPServer`: every line answered, one it cannot read with a
JSON-RPC error), streamable HTTP in :mod:`retriever.integrations.mcp_http`.
"""
# No `from __future__ import annotations`: the SDK reads the tools' signatures, whose bounds come from
# the options at hand (a string annotation would be evaluated without them).
import inspect
import json
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol

import anyio
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from ..config import DEFAULT_TOP_K, MAX_TOP_K
from ..errors import RetrieverError
from ..filters import metadata_filter
from ..normalize import check_query_length
from ..registry import CollectionRegistry
from ..results import ALTERNATIVE, ANSWER_ROLE, SUGGESTION, SearchResult
from ..scoring import ANSWER, NO_MATCH
from ..store.collections import current_entries
from ..version import __version__

ROUTE = "mcp"  # the route label of the decision metrics and the unmatched log's ``source``
DEFAULT_NO_MATCH = "没有找到相关问题，请联系人工客服。"  # the search page's default (collection.yaml: no_match)
MAX_MESSAGE_BYTES = 64 * 1024  # one message, over either transport: the API's body limit (RETRIEVER_MAX_BODY_BYTES)

SEARCH_DESCRIPTION = (
    "在中文政务/服务常见问题库（FAQ）中检索与用户问题最匹配的标准问答。当用户询问办事流程、证书注册、"
    "政策规定等可能在 FAQ 中有现成答案的问题时调用。decision 为 answer 时可直接引用第一条（role=answer）的答案；"
    "ambiguous 时请向用户确认指的是哪一个问题；no_match 表示库中没有答案：不返回任何答案，只有 suggestions"
    "（可能相关的问题，可请用户选择），请勿编造，按 message 转人工。\n"
    "Search a Chinese FAQ collection (government hotline / service portal) for the entries that answer a "
    "citizen's question. decision 'answer': quote the answer of the hit with role 'answer'; 'ambiguous': ask "
    "which entry is meant; 'no_match': the FAQ has no answer, so no hits are returned, only suggestions "
    "(questions the user may have meant); do not make an answer up, hand over to a person as 'message' says. "
    "list_collections gives the collections and their categories and tags.")
LIST_DESCRIPTION = ("列出可检索的 FAQ 集合：名称、条目数、版本、分类（category）与标签（tags），供 search_faq 的 "
                    "collection / category / tags 参数使用。List the FAQ collections search_faq can search: name, "
                    "entries, version, and the categories and tags to filter by.")

Role = Literal["answer", "alternative", "suggestion", "candidate"]


class FaqHit(BaseModel):
    role: Role = Field(description="answer: the answer to quote; alternative: a runner-up of an answer; "
                                   "suggestion: an entry the user may have meant (ambiguous); candidate: ranked only")
    faq_id: str
    question: str = Field(description="the entry's standard question")
    answer: str = Field(description="the entry's answer as plain text: links written 文字（URL）, list items one a line")
    score: float
    confidence: float | None = Field(None, description="the judge's probability that this entry answers the query")
    matched_text: str = Field(description="the entry's text closest to the query")
    category: str | None = None
    tags: list[str] = []


class FaqSuggestion(BaseModel):
    role: Literal["suggestion"] = "suggestion"
    faq_id: str
    question: str = Field(description="a question the user may have meant; search it to get its answer")


class FaqSearch(BaseModel):
    collection: str
    query: str
    decision: str = Field(description="answer | ambiguous | no_match")
    confidence: float | None = Field(None, description="probability that the first hit answers the query")
    message: str | None = Field(None, description="on no_match: what to tell the user (the collection's message)")
    hits: list[FaqHit] = Field(description="best first; empty on no_match (no answers are given then)")
    suggestions: list[FaqSuggestion] = Field(description="questions to offer instead of an answer (no answers)")


class CategorySummary(BaseModel):
    name: str
    entries: int


class CollectionSummary(BaseModel):
    name: str
    ready: bool
    entries: int | None
    version: str | None
    model: str | None
    categories: list[CategorySummary] = Field(description="values for search_faq's category, with entry counts")
    tags: list[str] = Field(description="values for search_faq's tags")


class Collections(BaseModel):
    collections: list[CollectionSummary]
    default: str | None = Field(description="the collection search_faq searches when none is named; null: name one")


class DecisionMetrics(Protocol):
    """What counts decisions (retriever.http.metrics.Metrics)."""

    def count_decision(self, route: str, decision: str, path: str) -> None: ...


class UnmatchedRecorder(Protocol):
    """What logs no_match queries for the FAQ editors (retriever.http.logs.UnmatchedLog)."""

    def record(self, query: str, top_faq_id: str | None, score: float | None, threshold: float | None,
               version: str, source: str) -> Any: ...


class HitRecorder(Protocol):
    """What counts the entries that answer, for the editors' hit counts (retriever.editorial.hits.HitCounter)."""

    def record_answer(self, collection: str, faq_id: str) -> None: ...


@dataclass(frozen=True)
class ServerOptions:
    """What the tools say and bound, and where their decisions are counted and logged."""

    max_query_chars: int = 500
    default_top_k: int = DEFAULT_TOP_K
    max_top_k: int = MAX_TOP_K
    max_message_bytes: int = MAX_MESSAGE_BYTES  # a stdio line (HTTP: HttpSettings.max_body_bytes)
    no_match_message: str = DEFAULT_NO_MATCH
    metrics: DecisionMetrics | None = None
    unmatched: UnmatchedRecorder | None = None
    hits: HitRecorder | None = None


# --- the shapes: pure functions of a search result -------------------------------------------------


def shape_result(collection: str, result: SearchResult, no_match_message: str) -> FaqSearch:
    """The tool's structured content: every hit with its role; on no_match no hits, only suggestions."""
    suggestions = [FaqSuggestion(faq_id=s.faq_id, question=s.question) for s in result.suggestions]
    if result.decision == NO_MATCH:
        return FaqSearch(collection=collection, query=result.query, decision=result.decision,
                         confidence=result.confidence, message=no_match_message, hits=[], suggestions=suggestions)
    hits = [FaqHit(role=result.role(position), faq_id=h.faq_id, question=h.question, answer=h.answer_text,
                   score=round(h.score, 6), confidence=None if h.confidence is None else round(h.confidence, 6),
                   matched_text=h.matched_text, category=h.category, tags=list(h.tags))
            for position, h in enumerate(result.hits)]
    return FaqSearch(collection=collection, query=result.query, decision=result.decision,
                     confidence=result.confidence, hits=hits, suggestions=suggestions)


def render_text(found: FaqSearch) -> str:
    """The same result as text, for models that read only text content."""
    head = f"[{found.collection}] {found.decision}"
    if found.decision == NO_MATCH:
        lines = [f"{head}：{found.message}"]
        if found.suggestions:
            lines.append("可能相关的问题（不是答案，可请用户确认）：")
            lines += [f"- {s.question} ({s.faq_id})" for s in found.suggestions]
        return "\n".join(lines)
    answer = next((hit for hit in found.hits if hit.role == ANSWER_ROLE), None)
    lines = [f"{head}: {answer.question}", answer.answer] if answer else [f"{head}：请确认用户指的是哪一个问题："]
    for hit in found.hits:
        if hit is answer:
            continue
        label = "其他候选" if hit.role == ALTERNATIVE else ("可能是" if hit.role == SUGGESTION else "候选")
        lines.append(f"- {label} {hit.faq_id}: {hit.question} ({hit.score:.3f})")
        if hit.role != ALTERNATIVE:
            lines.append(f"  {hit.answer}")
    return "\n".join(lines)


def category_summary(entries) -> tuple[list[CategorySummary], list[str]]:
    """The categories of ``entries`` (most entries first) and their tags (sorted)."""
    counts = Counter(entry.category for entry in entries if entry.category)
    categories = [CategorySummary(name=name, entries=count)
                  for name, count in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]
    return categories, sorted({tag for entry in entries for tag in entry.tags})


# --- the tools --------------------------------------------------------------------------------------


def _chosen_collection(registry: CollectionRegistry, collection: str | None) -> str:
    if collection:
        return collection
    default, names = registry.default_name(), registry.names()
    if default not in names:
        reason = f"this server has several ({', '.join(names)}) and no default" if len(names) > 1 else \
            f"the default collection '{default}' is not served (collections: {', '.join(names)})"
        raise ToolError(f"name a collection: {reason}; list_collections describes them")
    return default


def _checked_query(query: str, limit: int) -> None:
    try:
        query.encode("utf-8")
    except UnicodeEncodeError:
        raise ToolError("the query is not valid Unicode text (unpaired surrogates)") from None
    try:
        check_query_length(query, limit)
    except RetrieverError as exc:
        raise ToolError(str(exc)) from None


# What each parameter is, for the model choosing the arguments (Chinese first: the users ask in Chinese).
QUERY_HELP = "用户的问题（原话即可） the user's question, as asked"
COLLECTION_HELP = ("要检索的集合名（见 list_collections）；省略则用默认集合 the collection to search "
                   "(see list_collections); omitted: the default one")
TOP_K_HELP = "最多返回几条 how many entries to return at most"
CATEGORY_HELP = ("只在这个分类（或这些分类之一）中检索，分类见 list_collections only entries in this category "
                 "(or any of these), as list_collections names them")
TAGS_HELP = "只检索带有全部这些标签的条目 only entries carrying all of these tags (see list_collections)"


def _search_tool(registry: CollectionRegistry, options: ServerOptions) -> Tool:
    def search_faq(
            # The limit is checked once normalised too (check_query_length); the schema states it for clients.
            query: Annotated[str, Field(min_length=1, description=QUERY_HELP,
                                        json_schema_extra={"maxLength": options.max_query_chars})],
            collection: Annotated[str | None, Field(description=COLLECTION_HELP)] = None,
            top_k: Annotated[int, Field(ge=1, le=options.max_top_k, description=TOP_K_HELP)] = options.default_top_k,
            category: Annotated[str | list[str] | None, Field(description=CATEGORY_HELP)] = None,
            tags: Annotated[list[str] | None, Field(description=TAGS_HELP)] = None,
    ) -> Annotated[CallToolResult, FaqSearch]:
        _checked_query(query, options.max_query_chars)
        name = _chosen_collection(registry, collection)
        try:
            searcher = registry.holder(name).current
            if searcher is None:
                raise ToolError(f"collection '{name}' is not ready yet; try again shortly")
            categories = [category] if isinstance(category, str) else category
            result = searcher.search(query, top_k, entry_filter=metadata_filter(categories, tags))
        except RetrieverError as exc:
            raise ToolError(str(exc)) from None
        _note_decision(options, name, query, result, searcher.version)
        found = shape_result(name, result, options.no_match_message)
        return CallToolResult(content=[TextContent(type="text", text=render_text(found))],
                              structured_content=found.model_dump(mode="json"))

    return _read_only_tool(search_faq, "FAQ 检索 / Search the FAQ", SEARCH_DESCRIPTION)


def _note_decision(options: ServerOptions, collection: str, query: str, result: SearchResult, version: str) -> None:
    """Count the decision and the entry that answered, and log a no_match query, as the HTTP search does."""
    if options.metrics is not None:
        options.metrics.count_decision(ROUTE, result.decision, result.path)
    if options.hits is not None and result.decision == ANSWER and result.hits:
        options.hits.record_answer(collection, result.hits[0].faq_id)
    if options.unmatched is not None:
        options.unmatched.record_result(query, result, version, ROUTE)


def _list_tool(registry: CollectionRegistry) -> Tool:
    seen: dict[str, tuple[str, tuple[list[CategorySummary], list[str]]]] = {}  # name -> (version, its summary)

    def labels(name: str) -> tuple[list[CategorySummary], list[str]]:
        """A collection's categories and tags: from its loaded index, or read from disk (listing loads nothing)."""
        try:
            searcher = registry.holders()[name].current if registry.loaded(name) else None
            version, entries = (searcher.version, searcher.index.entries) if searcher is not None \
                else current_entries(registry.root(name))
        except (RetrieverError, KeyError):  # removed or broken since it was listed
            return [], []
        if version is None:
            return [], []
        if name not in seen or seen[name][0] != version:
            seen[name] = (version, category_summary(entries))
        return seen[name][1]

    def list_collections() -> Annotated[CallToolResult, Collections]:
        summaries = []
        for described in registry.describe():
            categories, tags = labels(described["name"])
            summaries.append(CollectionSummary(**{k: described[k] for k in ("name", "ready", "entries", "version",
                                                                            "model")},
                                               categories=categories, tags=tags))
        default = registry.default_name()
        listed = Collections(collections=summaries, default=default if default in registry.names() else None)
        text = "\n".join(f"{c.name}: {c.entries} entries, version {c.version}; categories: "
                         f"{', '.join(f'{k.name} ({k.entries})' for k in c.categories) or 'none'}"
                         for c in listed.collections)
        return CallToolResult(content=[TextContent(type="text", text=text or "no collections")],
                              structured_content=listed.model_dump(mode="json"))

    return _read_only_tool(list_collections, "FAQ 集合与分类 / List collections", LIST_DESCRIPTION)


def _read_only_tool(fn: Callable[..., Any], title: str, description: str) -> Tool:
    """A tool that only reads; its input schema says no other arguments are allowed (refused by
    :func:`refuse_unknown_arguments`, as the SDK itself would ignore them)."""
    tool = Tool.from_function(fn, description=description, structured_output=True,
                              annotations=ToolAnnotations(title=title, read_only_hint=True, destructive_hint=False,
                                                          idempotent_hint=True, open_world_hint=False))
    tool.parameters["additionalProperties"] = False
    return tool


def refuse_unknown_arguments(tools: list[Tool]):
    """Server middleware: a ``tools/call`` naming an argument the tool does not take is answered with a
    tool error listing the arguments it takes (the SDK would drop them silently)."""
    accepted = {tool.name: tuple(inspect.signature(tool.fn).parameters) for tool in tools}

    async def middleware(ctx, call_next):
        params = ctx.params or {}
        arguments = params.get("arguments")
        if ctx.method == "tools/call" and params.get("name") in accepted and isinstance(arguments, dict):
            takes = accepted[params["name"]]
            unknown = [name for name in arguments if name not in takes]
            if unknown:
                allowed = ", ".join(takes) or "no arguments"
                text = (f"unknown argument{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}: "
                        f"{params['name']} takes {allowed}")
                return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)
        return await call_next(ctx)

    return middleware


def build_server(registry: CollectionRegistry, options: ServerOptions | None = None) -> "FaqMCPServer":
    """The MCP server over the collections ``registry`` serves (hot reload included)."""
    options = options or ServerOptions()
    tools = [_search_tool(registry, options), _list_tool(registry)]
    server = FaqMCPServer("faq-retriever", version=__version__, tools=tools,
                          instructions="中文 FAQ 检索 / Chinese FAQ search: list_collections for the collections and "
                                       "their categories, search_faq, then quote the answer (never on no_match).")
    server.middleware.append(refuse_unknown_arguments(tools))
    server.max_message_bytes = options.max_message_bytes
    return server


# --- stdio: every line answered ---------------------------------------------------------------------


def _request_id(message: Any) -> int | str | None:
    """The id of a request that cannot be served, when it has a usable one (the client waits for it)."""
    identifier = message.get("id") if isinstance(message, dict) else None
    if isinstance(identifier, bool) or not isinstance(identifier, (int, str)):
        return None
    try:
        json.dumps(identifier).encode("utf-8")  # an id with lone surrogates could not be written back
    except UnicodeEncodeError:
        return None
    return identifier


def refusal(line: str) -> types.JSONRPCError | None:
    """The JSON-RPC error answering a stdin ``line`` the SDK cannot read; None for a line it reads.

    Not JSON: -32700 (no id). JSON but no JSON-RPC message, or text with unpaired surrogate escapes
    (``"\\ud800"``: valid JSON, not Unicode): -32600, with the request's id when it has one, so the
    client is answered instead of waiting forever.
    """
    if not line.strip():
        return None
    try:
        types.jsonrpc_message_adapter.validate_json(line, by_name=False)
        return None
    except ValueError as exc:
        reason = exc.errors()[0]["msg"] if hasattr(exc, "errors") else str(exc)
    try:
        message = json.loads(line)
    except ValueError:
        return _error(None, types.PARSE_ERROR, f"Parse error: the line is not JSON ({reason})")
    try:
        json.dumps(message, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return _error(_request_id(message), types.INVALID_REQUEST,
                      "Invalid Request: the message holds an unpaired surrogate escape such as \\ud800 (not Unicode "
                      "text)")
    return _error(_request_id(message), types.INVALID_REQUEST,
                  f"Invalid Request: not a JSON-RPC 2.0 message ({reason})")


def _error(identifier: int | str | None, code: int, message: str) -> types.JSONRPCError:
    return types.JSONRPCError(jsonrpc="2.0", id=identifier, error=types.ErrorData(code=code, message=message[:500]))


class _CheckedLines:
    """stdin's lines for the SDK's reader: a line it cannot read is answered here (:func:`refusal`) and
    withheld, a line longer than ``max_bytes`` too (-32700), so no request goes unanswered."""

    def __init__(self, stdin: Any, max_bytes: int = MAX_MESSAGE_BYTES) -> None:  # stdin: a binary file
        self._stdin = stdin
        self._max_bytes = max_bytes
        self._replies: Any = None
        self._ready = anyio.Event()

    def answer_to(self, write_stream: Any) -> None:
        self._replies = write_stream
        self._ready.set()

    async def _reply(self, error: types.JSONRPCError) -> None:
        await self._ready.wait()
        try:
            await self._replies.send(SessionMessage(error))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass  # the server is shutting down: nobody is left to answer

    async def _readline(self, limit: int) -> bytes:
        return await anyio.to_thread.run_sync(self._stdin.readline, limit, abandon_on_cancel=True)

    async def _lines(self) -> AsyncIterator[str]:
        while True:
            raw = await self._readline(self._max_bytes + 1)
            if not raw:
                return
            if len(raw) > self._max_bytes and not raw.endswith(b"\n"):
                while (rest := await self._readline(self._max_bytes)) and not rest.endswith(b"\n"):
                    pass  # the rest of the over-long line, dropped
                await self._reply(_error(None, types.PARSE_ERROR,
                                         f"Parse error: a message longer than {self._max_bytes} bytes"))
                continue
            yield raw.decode("utf-8", errors="replace")

    async def __aiter__(self) -> AsyncIterator[str]:
        async for line in self._lines():
            error = refusal(line)
            if error is None:
                yield line
            else:
                await self._reply(error)


class FaqMCPServer(MCPServer):
    """The SDK's server, whose stdio transport answers every line (the SDK's drops what it cannot parse)."""

    max_message_bytes = MAX_MESSAGE_BYTES

    async def run_stdio_async(self) -> None:
        lines = _CheckedLines(sys.stdin.buffer, self.max_message_bytes)
        lowlevel: Server = self._lowlevel_server
        async with stdio_server(stdin=lines) as (read_stream, write_stream):
            lines.answer_to(write_stream)
            await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())
