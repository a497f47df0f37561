"""Request and response schemas: pydantic models that validate requests and generate /openapi.json.

Limits come from the :class:`~retriever.config.ServiceConfig`, so the models are made per app.
JSON bodies are validated strictly (``"5"`` is not an integer); query strings leniently
(everything there is text). Validation errors map to the API's stable error codes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError
from typing_extensions import Annotated

from ..config import ServiceConfig
from ..normalize import INVISIBLE_CHARACTERS, QueryTooLong, check_query_length
from ..scoring import MODES

SAFE_INTEGER = 2 ** 53  # the integers every JSON parser (JavaScript too) holds exactly

Mode = Literal["hybrid", "dense", "lexical"]
assert set(Mode.__args__) == set(MODES)
# What the document calls text with something to search: a character that is neither whitespace (str.isspace)
# nor invisible (normalisation removes those). Documented as a pattern, enforced by _not_blank. Spelled out
# character by character: a regex engine's \s differs (ECMA's leaves out U+0085 and U+001C..U+001F).
_BLANK = sorted({chr(c) for c in range(0x3001) if chr(c).isspace()} | INVISIBLE_CHARACTERS)
VISIBLE_TEXT = "[^" + "".join(f"\\u{ord(c):04x}" for c in _BLANK) + "]"


def _not_blank(value: str) -> str:
    if all(c.isspace() or c in INVISIBLE_CHARACTERS for c in value):
        raise ValueError("must not be blank")
    return value


def normalized_within(limit: int):
    """A validator: the text must stay within ``limit`` characters once normalised too.

    NFKC expands some characters (㌀ becomes アパート), and the model reads the normalised text:
    the limit must bound that, not only what was sent.
    """

    def check(value: str) -> str:
        try:
            return check_query_length(value, limit)  # the one length check of every route
        except QueryTooLong as exc:
            raise PydanticCustomError("normalized_too_long",
                                      "{length} characters once normalised; the limit is {limit}",
                                      {"length": exc.length, "limit": limit}) from None

    return check


def _integral_float_to_int(value: Any) -> Any:
    """JSON Schema's ``integer`` admits 44.0; a strict int field would not."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def integer(minimum: int, maximum: int) -> Any:
    """An integer as JSON Schema means it (44 and 44.0, never "44" or true), within bounds.

    The bounds come before the validator, or pydantic documents them as unknown keywords.
    """
    return Annotated[int, Field(ge=minimum, le=maximum), BeforeValidator(_integral_float_to_int)]


MAX_FILTER_VALUES = 20
# A category or tag to filter on: what a corpus may hold (corpus.py limits labels to 100 characters).
Label = Annotated[str, Field(min_length=1, max_length=100)]
CATEGORY_HELP = "only entries in this category, or in any of these; ranking and decision within them"
TAGS_HELP = "only entries carrying all of these tags; ranking and decision within them"


@dataclass(frozen=True)
class RequestSchemas:
    search: type[BaseModel]
    inquiry: type[BaseModel]
    classify: type[BaseModel]


def request_schemas(config: ServiceConfig) -> RequestSchemas:
    """The request models with this configuration's limits."""

    class SearchRequest(BaseModel):
        """A search: GET query string (``q`` for ``query``) or POST JSON body."""

        model_config = ConfigDict(extra="forbid")
        query: str = Field(min_length=1, max_length=config.max_query_chars, description="the citizen's question",
                           json_schema_extra={"pattern": VISIBLE_TEXT})
        top_k: integer(1, config.max_top_k) | None = Field(
            None, description=f"entries to return (default {config.default_top_k})")
        threshold: float | None = Field(None, ge=-1.0, le=1.0,
                                        description="no-match threshold instead of the calibrated one")
        mode: Mode | None = Field(None, description="retrieval mode instead of the index's default")
        category: Label | list[Label] | None = Field(None, description=CATEGORY_HELP)
        tags: list[Label] | None = Field(None, max_length=MAX_FILTER_VALUES, description=TAGS_HELP)
        _blank = field_validator("query")(_not_blank)
        _normalized = field_validator("query")(normalized_within(config.max_query_chars))

    class Inquiry(BaseModel):
        """One inquiry to classify."""

        model_config = ConfigDict(extra="forbid")
        id: str | Annotated[int, Field(ge=-SAFE_INTEGER, le=SAFE_INTEGER)] = Field(
            description="the caller's id, echoed back; unique within a request; integers within ±2^53")
        text: str = Field(min_length=1, max_length=config.max_query_chars, json_schema_extra={"pattern": VISIBLE_TEXT})
        _blank = field_validator("text")(_not_blank)
        _normalized = field_validator("text")(normalized_within(config.max_query_chars))

        @field_validator("id")
        @classmethod
        def _id_not_blank(cls, value):
            if isinstance(value, str):
                _not_blank(value)
            return value

    class ClassifyRequest(BaseModel):
        """Many inquiries; each item is validated on its own (an Inquiry), so one bad item fails alone."""

        model_config = ConfigDict(extra="forbid")
        # Items are validated one by one against Inquiry (the document says so; see openapi_document).
        inquiries: list[Any] = Field(min_length=1, max_length=config.max_batch)
        threshold: float | None = Field(None, ge=-1.0, le=1.0)
        category: Label | list[Label] | None = Field(None, description=CATEGORY_HELP)
        tags: list[Label] | None = Field(None, max_length=MAX_FILTER_VALUES, description=TAGS_HELP)

    return RequestSchemas(SearchRequest, Inquiry, ClassifyRequest)


# --- responses (documented, and checked against real responses in the tests) ---------------------


class HitMetadata(BaseModel):
    faq_id: str
    question: str
    category: str | None
    tags: list[str]
    matched_field: Literal["question", "paraphrase", "answer"]
    role: Literal["answer", "alternative", "suggestion", "candidate"] = Field(
        description="what this hit is to the query: the answer (decision answer, first hit), an alternative "
                    "(a runner-up of an answer), a suggestion (did you mean, decision ambiguous or no_match) "
                    "or a candidate (ranked only; never to be shown as an answer)")


class Suggestion(BaseModel):
    faq_id: str
    question: str = Field(description="the entry's standard question: offer it as 您是不是想问：…")


class Hit(BaseModel):
    faq_id: str
    question: str
    answer: str = Field(description="the entry's answer as written: it may hold a Markdown subset (paragraphs, "
                                    "lists, [links](https://...), **bold**) that the search page renders safely")
    answer_text: str = Field(description="the same answer as plain text, for channels that cannot show markup: "
                                         "links written 文字（URL）, list items one a line")
    score: float = Field(description="what ranks, in [0, 1]; see the README for its meaning per mode")
    dense_score: float | None = Field(description="cosine of query and matched_text (null in lexical mode)")
    lexical_score: float | None = Field(description="share of the query's BM25 weight found (null in dense mode)")
    confidence: float | None = Field(None, description="the judge's chance that this entry answers the query "
                                                       "(null: not judged)")
    negative_example: str | None = Field(None, description="set when the query is closer to this negative example "
                                                           "of the entry than to its questions: never the answer")
    matched_text: str
    matched_field: Literal["question", "paraphrase", "answer"]
    category: str | None
    tags: list[str]
    metadata: HitMetadata = Field(description="the hit's entry, labels and role, as retriever frameworks keep them")


class SearchResponse(BaseModel):
    query: str
    mode: Mode
    decision: Literal["answer", "ambiguous", "no_match"]
    threshold: float | None
    margin: float | None = Field(description="top-1 minus top-2 score")
    ambiguity_margin: float | None
    confidence: float | None = Field(None, description="the judge's calibrated chance that the first result is "
                                                       "right (null: no judge, another mode, or a threshold given)")
    confidence_threshold: float | None = Field(None, description="confidence under which the decision is no_match")
    path: Literal["fast", "full"] = Field(
        description="which path of a cascade answered: fast (the fast model alone, always an answer; threshold "
                            "and ambiguity_margin are then its gate's floor and margin) or full (the index's model, "
                            "hybrid, judge; always full for an index built without --fast-model)")
    results: list[Hit]
    suggestions: list[Suggestion] = Field(
        description="did you mean: up to 3 entries to offer when the decision is ambiguous, or no_match with "
                    "candidates close under the threshold; empty otherwise (never for an off-topic query)")
    index_version: str
    took_ms: float


class Classification(BaseModel):
    index: int = Field(description="position of the inquiry in the request")
    id: str | int
    decision: Literal["answer", "ambiguous", "no_match"]
    faq_id: str | None = Field(description="null when the decision is no_match")
    question: str | None
    score: float | None
    confidence: float | None = Field(None, description="the judge's chance that the first result is right")
    margin: float | None
    top_faq_id: str | None = Field(description="the best candidate, even when no_match")
    runner_up_faq_id: str | None
    runner_up_score: float | None
    path: Literal["fast", "full"] = Field(description="which path of a cascade answered (see the search response)")
    suggestions: list[Suggestion] = Field(description="did you mean (see the search response)")


class ItemError(BaseModel):
    index: int
    id: Any
    error: Literal["invalid_item", "unknown_field", "missing_id", "duplicate_id", "missing_text", "text_too_long"]
    message: str


class ClassifyResponse(BaseModel):
    results: list[Classification]
    errors: list[ItemError]
    counts: dict[str, int]
    threshold: float | None
    index_version: str
    took_ms: float


class Error(BaseModel):
    error: str = Field(description="a stable code, e.g. missing_query, invalid_top_k, rate_limited")
    message: str = Field(description="what is wrong, for a person")


class DifyError(BaseModel):
    """Every non-200 answer of ``POST /retrieval``, in the form Dify reads."""

    error_code: int = Field(description="1001 malformed Authorization, 1002 authorization failed, 2001 unknown "
                                        "knowledge_id, 2002 not ready, 3001 invalid body, 3002 method not allowed, "
                                        "4001 rate limited, 5001 service fault")
    error_msg: str


class DifyRecordMetadata(HitMetadata):
    matched_text: str
    decision: Literal["answer", "ambiguous", "no_match"] = Field(description="the query's decision")
    query_truncated: bool = Field(description="the query was cut to the length limit before searching")


class DifyRecord(BaseModel):
    content: str = Field(description="the entry's answer as plain text (Dify shows no Markdown): links written "
                                     "文字（URL）, list items one a line")
    score: float
    title: str = Field(description="the entry's standard question")
    metadata: DifyRecordMetadata


class DifyRecords(BaseModel):
    """Dify's External Knowledge API answer: for a no_match query only its suggestions (role), or no records."""

    records: list[DifyRecord]


class CollectionInfo(BaseModel):
    name: str
    ready: bool = Field(description="false while the collection has no loadable version (its fields are then null)")
    entries: int | None
    version: str | None = Field(description="the index version served")
    model: str | None
    mode: Mode | None
    calibration: dict[str, Any] | None = Field(description="threshold and margins learned at build")
    loaded: bool | None = Field(None, description="whether this worker holds the collection in memory now "
                                                  "(collections load on first use and unload when idle)")


class CollectionsResponse(BaseModel):
    collections: list[CollectionInfo]
    default: str | None = Field(description="what /v1/search serves; null when several collections and none "
                                            "chosen (RETRIEVER_DEFAULT_COLLECTION)")


_DEPRECATED_VERSION = "deprecated (kept for one release): "


class Health(BaseModel):
    """The process answers; facts about the index it serves, if any."""

    status: Literal["ok"]
    service_version: str = Field(description="the faq-retriever software version")
    version: str = Field(description=_DEPRECATED_VERSION + "the same as service_version",
                         json_schema_extra={"deprecated": True})
    index: dict[str, Any] | None = Field(description="the served index (version, model, entries, calibration, "
                                                     "vector_index: flat or hnsw with its build-time recall@10 and "
                                                     "the FAISS threads per search ...); null before one is loaded")


class Ready(BaseModel):
    status: Literal["ready"]
    index_version: str | None = Field(description="the index version served (null: several collections, none "
                                                  "the default)")
    version: str | None = Field(description=_DEPRECATED_VERSION + "the same as index_version",
                                json_schema_extra={"deprecated": True})


class WorkerStatus(BaseModel):
    pid: int | None
    version: str | None
    ready: bool | None
    problem: str | None


class ReloadOutcome(BaseModel):
    """One collection's reload: what it serves now; with workers, what each one serves."""

    version: str | None = Field(None, description="the version served now")
    previous: str | None = Field(None, description="the version served before")
    changed: bool | None = Field(None, description="a new version was loaded")
    workers: list[WorkerStatus] | None = Field(None, description="every worker of the server, under gunicorn")
    all_workers: bool | None = Field(None, description="every worker serves this version")
    error: str | None = Field(None, description="reload_refused: this collection kept its version (several "
                                                "collections only; one collection answers 409)")
    message: str | None = None


class ReloadResponse(ReloadOutcome):
    """One collection: its outcome. Several: one outcome (or error) per collection under ``collections``."""

    collections: dict[str, ReloadOutcome] | None = None


# --- validation errors to stable codes -------------------------------------------------------------

_SEARCH_CODES = {"top_k": "invalid_top_k", "threshold": "invalid_threshold", "mode": "invalid_mode",
                 "category": "invalid_filter", "tags": "invalid_filter"}


def _describe(error: dict) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "body"
    return f"{where}: {error['msg']}"


def query_error(error: dict, config: ServiceConfig, how: str = "") -> tuple[str, str]:
    """(code, message) for an invalid ``query`` field, the same in every request that carries one."""
    kind = error["type"]
    if kind in ("missing", "string_too_short") or (kind == "value_error" and "blank" in error["msg"]):
        return "missing_query", f"the query is missing or blank{how}"
    if kind == "string_too_long":
        return "query_too_long", f"the query has {len(error['input'])} characters; the limit is {config.max_query_chars}"
    if kind == "normalized_too_long":
        return "query_too_long", f"the query has {error['msg']}"
    return "invalid_query", f"the query must be a string: {error['msg']}"


def search_error(exc: ValidationError, config: ServiceConfig) -> tuple[str, str]:
    """(code, message) for an invalid search request."""
    error = exc.errors()[0]
    field = error["loc"][0] if error["loc"] else None
    if error["type"] == "extra_forbidden":
        return "unknown_field", f"unknown field '{field}'; allowed: query (q), top_k, threshold, mode, category, tags"
    if field == "query":
        return query_error(error, config, ": pass ?q=... or {\"query\": \"...\"}")
    return _SEARCH_CODES.get(field, "invalid_request"), _describe(error)


def inquiry_error(exc: ValidationError) -> tuple[str, str]:
    """(code, message) for one invalid inquiry of a classify request."""
    error = exc.errors()[0]
    field = error["loc"][0] if error["loc"] else None
    if error["type"] == "model_type":
        return "invalid_item", "an inquiry must be an object with 'id' and 'text'"
    if error["type"] == "extra_forbidden":
        return "unknown_field", f"unknown field '{field}'; allowed: id, text"
    if field == "id":
        return "missing_id", "'id' must be a non-empty string or an integer within ±2^53 (send larger ids as strings)"
    if error["type"] in ("string_too_long", "normalized_too_long"):
        return "text_too_long", _describe(error)
    return "missing_text", "'text' must be a non-empty string"


def classify_error(exc: ValidationError) -> tuple[str, str]:
    """(code, message) for an invalid classify request envelope."""
    error = exc.errors()[0]
    field = error["loc"][0] if error["loc"] else None
    if error["type"] == "extra_forbidden":
        return "unknown_field", f"unknown field '{field}'; allowed: inquiries, threshold, category, tags"
    if field == "threshold":
        return "invalid_threshold", _describe(error)
    if field in ("category", "tags"):
        return "invalid_filter", _describe(error)
    if error["type"] == "too_long" and field == "inquiries":
        return "too_many_inquiries", f"{error['input'] and len(error['input'])} inquiries; the limit is " \
                                     f"{error['ctx']['max_length']} a request"
    return "invalid_inquiries", "'inquiries' must be a non-empty list of {\"id\", \"text\"} objects"
