"""Dify's External Knowledge API, as Dify documents it: the request, its metadata conditions, the records.

Dify sends ``POST {endpoint}/retrieval`` with ``Authorization: Bearer {API_KEY}`` and a body
``{"knowledge_id", "query", "retrieval_setting": {"top_k", "score_threshold"}, "metadata_condition"?}``,
and reads ``{"records": [{"content", "score", "title", "metadata"}]}``. Errors are
``{"error_code", "error_msg"}``: 1001 malformed Authorization header, 1002 authorization failed,
2001 unknown knowledge id (Dify's suggested codes); ours: :data:`HTTP_ERROR_CODES`.

What Dify's releases send (api/services/external_knowledge_service.py,
``fetch_external_knowledge_retrieval``): ``top_k`` null when the dataset's retrieval model has
none, ``score_threshold`` 0.0 when the threshold is disabled, ``metadata_condition`` null or a
``MetadataCondition.model_dump()`` whose ``logical_operator`` and ``conditions`` may be null and
whose conditions may name Dify's built-in fields (:data:`DIFY_BUILT_IN_FIELDS`). Dify keeps a
response only when it is 200 and does not shorten chat messages, so all of that is accepted: a
null is the default, a built-in field is no filter here, a long query is truncated.
Pure functions: the HTTP route (retriever/http/dify.py) does the I/O.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..corpus import FaqEntry
from ..normalize import check_query_length
from ..results import SearchResult, SUGGESTION
from ..scoring import NO_MATCH

# The entry fields a condition may name, as Dify's metadata.
FIELDS = ("faq_id", "category", "tags")
TEXT_OPERATORS = ("is", "is not", "contains", "not contains", "start with", "end with", "in", "not in", "empty",
                  "not empty")
# Dify's numeric and date operators: our metadata has neither numbers nor dates.
UNSUPPORTED_OPERATORS = ("=", "≠", ">", "<", "≥", "≤", "before", "after")
# Fields Dify keeps for its own documents: our records have none of them, so they filter nothing.
DIFY_BUILT_IN_FIELDS = ("document_name", "uploader", "upload_date", "last_update_date", "source")
INVALID_BODY = 3001
# Every other status of the route, in Dify's form (a 400/413/415 body error is INVALID_BODY).
HTTP_ERROR_CODES = {400: INVALID_BODY, 404: 2001, 405: 3002, 413: INVALID_BODY, 415: INVALID_BODY, 429: 4001,
                    500: 5001, 503: 2002}


class DifyError(Exception):
    """An error answered in Dify's form with an HTTP status."""

    def __init__(self, status: int, error_code: int, error_msg: str) -> None:
        super().__init__(error_msg)
        self.status, self.error_code, self.error_msg = status, error_code, error_msg


def _invalid(message: str) -> DifyError:
    return DifyError(400, INVALID_BODY, message)


@dataclass(frozen=True)
class Condition:
    fields: tuple[str, ...]  # Dify may name one field or several: the condition holds if it holds for any
    operator: str
    values: tuple[str, ...]  # the value(s) compared with; empty for "empty" / "not empty"


@dataclass(frozen=True)
class RetrievalRequest:
    knowledge_id: str
    query: str
    top_k: int
    score_threshold: float
    logical_operator: str  # "and" | "or"
    conditions: tuple[Condition, ...]
    truncated_from: int | None = None  # the query's length when it was cut to the limit (None: not cut)


def _number(setting: dict, key: str, kind: type, low: float, high: float, default: Any) -> Any:
    value = setting.get(key)
    if value is None:  # Dify sends null for a setting its dataset does not have
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
        raise _invalid(f"retrieval_setting.{key} must be {'an integer' if kind is int else 'a number'}")
    if not low <= value <= high:
        raise _invalid(f"retrieval_setting.{key} must be between {low} and {high}")
    return kind(value)


def _values(raw: Any, operator: str, where: str) -> tuple[str, ...]:
    if operator in ("empty", "not empty"):
        return ()
    if isinstance(raw, str) and operator in ("in", "not in"):
        raw = [part.strip() for part in raw.split(",") if part.strip()]
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        raw = str(raw)
    if isinstance(raw, str):
        return (raw,)
    if isinstance(raw, list) and raw and all(isinstance(v, str) for v in raw):
        return tuple(raw)
    raise _invalid(f"{where}.value must be a string or a non-empty list of strings for '{operator}'")


def _condition(raw: Any, where: str) -> Condition | None:
    """The condition; None when it names only Dify's built-in fields, which filter nothing here."""
    if not isinstance(raw, dict):
        raise _invalid(f"{where} must be an object with name, comparison_operator and value")
    names = raw.get("name")
    names = [names] if isinstance(names, str) else names
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise _invalid(f"{where}.name must be a field name or a list of them ({', '.join(FIELDS)})")
    names = [n for n in names if n not in DIFY_BUILT_IN_FIELDS]
    if not names:
        return None
    unknown = [n for n in names if n not in FIELDS]
    if unknown:
        raise _invalid(f"{where}.name: unknown metadata field(s) {', '.join(map(repr, unknown))}; "
                       f"filter on {', '.join(FIELDS)}")
    operator = raw.get("comparison_operator")
    if operator in UNSUPPORTED_OPERATORS:
        raise _invalid(f"{where}.comparison_operator '{operator}' compares numbers or dates; "
                       f"{', '.join(FIELDS)} are text: use one of {', '.join(TEXT_OPERATORS)}")
    if operator not in TEXT_OPERATORS:
        raise _invalid(f"{where}.comparison_operator must be one of {', '.join(TEXT_OPERATORS)}")
    return Condition(tuple(names), operator, _values(raw.get("value"), operator, where))


def _metadata_condition(raw: Any) -> tuple[str, tuple[Condition, ...]]:
    if raw is None:
        return "and", ()
    if not isinstance(raw, dict):
        raise _invalid("metadata_condition must be an object with logical_operator and conditions")
    operator = raw.get("logical_operator") or "and"  # Dify's model defaults to "and" and may dump null
    if operator not in ("and", "or"):
        raise _invalid("metadata_condition.logical_operator must be 'and' or 'or'")
    conditions = raw.get("conditions")
    if conditions is None:
        return operator, ()
    if not isinstance(conditions, list):
        raise _invalid("metadata_condition.conditions must be a list")
    parsed = (_condition(c, f"metadata_condition.conditions[{i}]") for i, c in enumerate(conditions))
    return operator, tuple(c for c in parsed if c is not None)


def parse_request(body: Any, max_top_k: int, max_query_chars: int, default_top_k: int = 5) -> RetrievalRequest:
    """The request Dify sent, validated; :class:`DifyError` (400, 3001) naming the first problem.

    A query over ``max_query_chars`` (as sent or normalised) is cut to the limit, and says so in
    ``truncated_from``: Dify passes the whole chat message and drops anything but a 200.
    """
    if not isinstance(body, dict):
        raise _invalid("the body must be a JSON object with knowledge_id, query and retrieval_setting")
    knowledge_id, query, setting = body.get("knowledge_id"), body.get("query"), body.get("retrieval_setting")
    if not isinstance(knowledge_id, str) or not knowledge_id:
        raise _invalid("knowledge_id must be a non-empty string (the collection's name)")
    if not isinstance(query, str) or not query.strip():
        raise _invalid("query must be a non-empty string")
    if not isinstance(setting, dict):
        raise _invalid("retrieval_setting must be an object with top_k and score_threshold")
    logical_operator, conditions = _metadata_condition(body.get("metadata_condition"))
    searched = check_query_length(query, max_query_chars, truncate=True)
    return RetrievalRequest(knowledge_id, searched, _number(setting, "top_k", int, 1, max_top_k, default_top_k),
                            _number(setting, "score_threshold", float, 0.0, 1.0, 0.0), logical_operator, conditions,
                            len(query) if searched != query else None)


def _field_values(entry: FaqEntry, name: str) -> tuple[str, ...]:
    if name == "tags":
        return entry.tags
    value = entry.id if name == "faq_id" else entry.category
    return (value,) if value else ()


def _holds(values: Sequence[str], operator: str, wanted: Sequence[str]) -> bool:
    """Whether a field with ``values`` (one for text, several for tags) meets the condition."""
    tests: dict[str, Callable[[], bool]] = {
        "is": lambda: any(v == w for v in values for w in wanted),
        "contains": lambda: any(w in v for v in values for w in wanted),
        "start with": lambda: any(v.startswith(w) for v in values for w in wanted),
        "end with": lambda: any(v.endswith(w) for v in values for w in wanted),
        "in": lambda: any(v in wanted for v in values),
        "empty": lambda: not values,
    }
    negations = {"is not": "is", "not contains": "contains", "not in": "in", "not empty": "empty"}
    if operator in negations:
        return not tests[negations[operator]]()
    return tests[operator]()


def entry_filter(request: RetrievalRequest) -> Callable[[FaqEntry], bool] | None:
    """A predicate over entries for the request's metadata conditions (None when there are none)."""
    if not request.conditions:
        return None
    combine = all if request.logical_operator == "and" else any

    def matches(entry: FaqEntry) -> bool:
        return combine(any(_holds(_field_values(entry, name), c.operator, c.values) for name in c.fields)
                       for c in request.conditions)

    return matches


def records(result: SearchResult, score_threshold: float, truncated: bool = False) -> list[dict[str, Any]]:
    """Dify's records for a search result, each saying in ``metadata.role`` what it is to the query.

    ``answer`` decision: the answer, then alternatives. ``ambiguous``: suggestions and other
    candidates, none labelled the answer. ``no_match``: its suggestions only, or nothing (a chatbot
    must not be fed an unrelated FAQ). ``truncated``: the query was cut to the length limit.
    """
    kept = [(i, hit) for i, hit in enumerate(result.hits) if hit.score >= score_threshold]
    if result.decision == NO_MATCH:
        kept = [(i, hit) for i, hit in kept if result.role(i) == SUGGESTION]
    return [{"content": hit.answer_text, "score": round(hit.score, 6), "title": hit.question,
             "metadata": {**hit.metadata(result.role(i)), "matched_text": hit.matched_text,
                          "decision": result.decision, "query_truncated": truncated}}
            for i, hit in kept]
