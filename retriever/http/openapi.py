"""The OpenAPI 3.1 document: request schemas from the validating models, responses from the response models.

Every operation has an ``operationId``, tags, its security scheme and every status the service sends
(in the error body that route really uses), so that generated clients (tests/test_generated_client.py
runs openapi-python-client) get a model for every answer. The test suite also runs a schema-driven
fuzzer (Schemathesis) against it: what it says is what the service does.
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from ..config import ServiceConfig
from .content import openapi_paths as content_paths
from .entries import openapi_paths as entries_paths
from .feedback import FeedbackResponse, feedback_schema
from .review import openapi_paths as review_paths
from .users import openapi_paths as users_paths
from .workbench import openapi_paths as workbench_paths
from .schemas import (ClassifyResponse, CollectionsResponse, DifyError, DifyRecords, Error, Health, Ready,
                      ReloadResponse, RequestSchemas, SearchResponse)

ADMIN_TOKEN = "adminToken"
DIFY_API_KEY = "difyApiKey"
SECURITY_SCHEMES = {
    ADMIN_TOKEN: {"type": "http", "scheme": "bearer",
                  "description": "RETRIEVER_ADMIN_TOKEN, or a user's own API token (docs/accounts.md), for "
                                 "/admin/*: each route names the role it needs (no admin token and no users: 403)"},
    DIFY_API_KEY: {"type": "http", "scheme": "bearer",
                   "description": "one of RETRIEVER_API_KEYS, the API key Dify sends to POST /retrieval"},
}
TAGS = [
    {"name": "search", "description": "Search and classify in the default collection"},
    {"name": "collections", "description": "The collections served, and search in one of them"},
    {"name": "feedback", "description": "Whether an answer helped"},
    {"name": "dify", "description": "Dify's External Knowledge API"},
    {"name": "operations", "description": "Liveness, readiness, metrics, this document"},
    {"name": "admin", "description": "Administration, behind the admin token"},
    {"name": "entries", "description": "The FAQ entries of the draft corpus, and what the draft would answer"},
]
# What each error status means here; the body is the route's error form (Error, or DifyError on /retrieval).
ERROR_STATUSES = {
    400: "invalid request: the code names the field and the problem",
    401: "wrong admin token",
    403: "forbidden: the feature is off, or the key is wrong (Dify)",
    404: "unknown collection",
    408: "the body did not arrive in time",
    409: "the new index version was refused; the served one stays",
    413: "the body is too large",
    414: "the request line is too long: send long queries as POST with a JSON body",
    415: "the body is not application/json",
    429: "too many requests from this client: wait Retry-After seconds",
    431: "the request headers are too large",
    500: "the service failed to handle this request",
    503: "not ready: no index loaded yet, or the service cannot save",
}
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}
# Statuses every request may get from the server layer before or around the app (retriever/http/server.py).
_ANY_REQUEST = (431, 500)
_QUERY_STRING = (414,)  # a GET whose query string is over the request-line limit
_BODY = (408, 413, 415)  # a request with a JSON body


class _Components:
    """The document's ``components/schemas``, filled as models are referenced."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}

    def ref(self, model: type[BaseModel], name: str | None = None) -> dict:
        name = name or model.__name__
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        self.schemas.update(schema.pop("$defs", {}))
        self.schemas[name] = schema
        return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(body: dict, *statuses: int) -> dict[str, dict]:
    """The documented error responses ``statuses``, each with ``body`` as its JSON schema."""
    responses = {}
    for status in sorted(set(statuses)):
        responses[str(status)] = _json(body, ERROR_STATUSES[status])
        if status in (429, 503):
            responses[str(status)]["headers"] = _RETRY_AFTER
    return responses


def _operation(operation_id: str, tag: str, summary: str, responses: dict, **rest: Any) -> dict:
    return {"operationId": operation_id, "tags": [tag], "summary": summary, **rest, "responses": responses}


# GET searches may be cached by a proxy or browser (retriever/http/cache.py).
_CACHE_HEADERS = {
    "ETag": {"description": "weak tag of this answer (index version and request)", "schema": {"type": "string"}},
    "Cache-Control": {"description": "public, max-age=RETRIEVER_CACHE_MAX_AGE (no-cache when 0)",
                      "schema": {"type": "string"}},
}
_IF_NONE_MATCH = {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"},
                  "description": "an ETag from an earlier answer: 304 without a body if the answer is the same"}


def _present(field_schema: dict) -> dict:
    """A query parameter's schema: absent rather than null (a query string cannot say null)."""
    branches = [branch for branch in field_schema.get("anyOf", ()) if branch.get("type") != "null"]
    if not branches:
        return field_schema
    rest = {key: value for key, value in field_schema.items() if key not in ("anyOf", "default")}
    return {**rest, **branches[0]} if len(branches) == 1 else {**rest, "anyOf": branches}


def _one_or_repeated(field_schema: dict) -> dict:
    """A list parameter as a query string carries it: ``?tags=a`` (one value) or ``?tags=a&tags=b``."""
    if field_schema.get("type") != "array":
        return field_schema
    rest = {key: value for key, value in field_schema.items() if key not in ("type", "items", "maxItems")}
    array = {key: field_schema[key] for key in ("type", "items", "maxItems") if key in field_schema}
    return {**rest, "anyOf": [field_schema["items"], array]}


def _search_parameters(schemas: RequestSchemas) -> list[dict]:
    fields = schemas.search.model_json_schema()["properties"]
    return [{"name": "q" if name == "query" else name, "in": "query", "required": name == "query",
             "schema": _one_or_repeated(_present(field_schema))} for name, field_schema in fields.items()]


def _api_paths(components: _Components, schemas: RequestSchemas, config: ServiceConfig, error: dict) -> dict:
    search_body = components.ref(schemas.search, "SearchRequest")
    components.ref(schemas.inquiry, "Inquiry")
    classify_body = components.ref(schemas.classify, "ClassifyRequest")
    # Each item is validated on its own: a bad one is reported under the response's "errors" by its
    # index, and the others are answered. So any item is acceptable, and an Inquiry is what is meant.
    components.schemas["ClassifyRequest"]["properties"]["inquiries"]["items"] = {
        "anyOf": [{"$ref": "#/components/schemas/Inquiry"}, {}],
        "description": "an Inquiry; an item that is not one is reported under `errors` with its index (200)"}
    found = components.ref(SearchResponse)
    return {
        "/v1/search": {
            "get": _operation("search", "search", "Search", {
                "200": {**_json(found, "best entries first, with the decision"), "headers": _CACHE_HEADERS},
                "304": {"description": "If-None-Match named this answer's ETag: not modified",
                        "headers": _CACHE_HEADERS},
                **_errors(error, 400, 429, 503, *_QUERY_STRING, *_ANY_REQUEST)},
                parameters=[*_search_parameters(schemas), _IF_NONE_MATCH]),
            "post": _operation("searchJson", "search", "Search (JSON body)", {
                "200": _json(found, "as for GET"), **_errors(error, 400, 429, 503, *_BODY, *_ANY_REQUEST)},
                requestBody={"required": True, **_json(search_body, "")}),
        },
        "/v1/classify": {
            "post": _operation("classify", "search", f"Classify up to {config.max_batch} inquiries in one model call", {
                "200": _json(components.ref(ClassifyResponse), "per-item results and errors"),
                **_errors(error, 400, 429, 503, *_BODY, *_ANY_REQUEST)},
                requestBody={"required": True, **_json(classify_body, "")}),
        },
    }


_COLLECTION = {"name": "name", "in": "path", "required": True, "description": "a collection (GET /v1/collections)",
               "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,63}$"}}
_IN_COLLECTION = {"search": "searchCollection", "searchJson": "searchCollectionJson",
                  "classify": "classifyCollection"}


def _collection_paths(components: _Components, api: dict, error: dict) -> dict:
    """The /v1 routes for the default collection, the same per named collection, and the list of collections."""
    listing = {"/v1/collections": {"get": _operation(
        "listCollections", "collections",
        "The collections served (name, entries, version, model, mode, calibration) and the default one",
        {"200": _json(components.ref(CollectionsResponse), "collections and default"),
         **_errors(error, 429, *_ANY_REQUEST)})}}
    paths, named_paths = {}, {}
    for path, operations in api.items():
        named = path.replace("/v1/", "/v1/collections/{name}/")
        paths[path], named_paths[named] = {}, {}
        for method, operation in operations.items():
            # 404 unknown_collection: a name that is not served, or no default among several collections.
            responses = dict(sorted({**operation["responses"], **_errors(error, 404)}.items()))
            paths[path][method] = {**operation, "responses": responses}
            named_paths[named][method] = {**paths[path][method], "operationId": _IN_COLLECTION[operation["operationId"]],
                                          "tags": ["collections"], "summary": operation["summary"] + " in one collection",
                                          "parameters": [_COLLECTION, *operation.get("parameters", [])]}
    return {**paths, **listing, **named_paths}  # the default collection's routes first, as the docs page shows them


def _dify_paths(components: _Components) -> dict:
    dify_error = components.ref(DifyError)
    nullable = lambda kind: {"type": [kind, "null"]}  # noqa: E731 - Dify sends null for a setting it lacks
    body = {"type": "object", "required": ["knowledge_id", "query", "retrieval_setting"], "properties": {
        "knowledge_id": {"type": "string", "description": "the collection"},
        "query": {"type": "string", "description": "cut to RETRIEVER_MAX_QUERY_CHARS when longer (said in each "
                                                   "record's metadata.query_truncated)"},
        "retrieval_setting": {"type": "object", "properties": {
            "top_k": {**nullable("integer"), "description": "null: the default"},
            "score_threshold": {**nullable("number"), "description": "null: 0"}}},
        "metadata_condition": {**nullable("object"), "description": "logical_operator and/or; conditions on "
                                                                    "faq_id, category, tags (Dify's built-in "
                                                                    "fields filter nothing)"}}}
    return {"/retrieval": {"post": _operation(
        "difyRetrieval", "dify", "Dify External Knowledge API (bearer keys: RETRIEVER_API_KEYS)",
        {"200": _json(components.ref(DifyRecords), "records, best first; none when nothing answers the query"),
         **_errors(dify_error, 400, 403, 404, 429, 503, *_BODY, *_ANY_REQUEST)},
        security=[{DIFY_API_KEY: []}],
        requestBody={"required": True, "content": {"application/json": {"schema": body}}})}}


def _feedback_paths(components: _Components, config: ServiceConfig, error: dict) -> dict:
    body = components.ref(feedback_schema(config), "FeedbackRequest")
    return {"/v1/feedback": {"post": _operation(
        "sendFeedback", "feedback", "Record whether an answer helped (有帮助 / 没帮助)",
        {"201": _json(components.ref(FeedbackResponse), "recorded"),
         **_errors(error, 400, 403, 429, 503, *_BODY, *_ANY_REQUEST)},
        description="403 feedback_disabled when the service records no feedback; 503 when it cannot save it.",
        requestBody={"required": True, **_json(body, "")})}}


def _operations_paths(components: _Components, error: dict) -> dict:
    text = {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}}
    return {
        "/healthz": {"get": _operation("healthz", "operations", "Alive", {
            "200": _json(components.ref(Health), "status, versions and index facts"),
            **_errors(error, *_ANY_REQUEST)})},
        "/readyz": {"get": _operation("readyz", "operations", "Ready (an index is loaded)", {
            "200": _json(components.ref(Ready), "ready, and the index version served"),
            **_errors(error, 503, *_ANY_REQUEST)})},
        "/metrics": {"get": _operation("metrics", "operations", "Prometheus metrics (docs/metrics.md)", {
            "200": text, **_errors(error, *_ANY_REQUEST)})},
        "/openapi.json": {"get": _operation("openapiDocument", "operations", "This document", {
            "200": _json({"type": "object"}, "OpenAPI 3.1")})},
        "/admin/reload": {"post": _operation(
            "reloadIndex", "admin", "Load the current index version beside the served one and swap (the admin "
                                    "token or an admin user's API token)",
            {"200": _json(components.ref(ReloadResponse), "what each collection (and worker) serves now"),
             **_errors(error, 401, 403, 409, 429, *_ANY_REQUEST)},
            security=[{ADMIN_TOKEN: []}])},
    }


def openapi_document(schemas: RequestSchemas, config: ServiceConfig, version: str) -> dict:
    """OpenAPI 3.1 for the service, its request schemas taken from the validating models."""
    components = _Components()
    error = components.ref(Error)
    return {
        "openapi": "3.1.0",
        "info": {"title": "faq-retriever", "version": version,
                 "description": "Semantic search over a Chinese FAQ: search, batch classification, operations. "
                                "Every error is JSON ({error, message}; Dify's form on /retrieval); a method a "
                                "route does not take answers 405 with Allow."},
        "tags": TAGS,
        "paths": {**_collection_paths(components, _api_paths(components, schemas, config, error), error),
                  **_dify_paths(components), **_feedback_paths(components, config, error),
                  **_operations_paths(components, error),
                  **content_paths(components, error),
                  **users_paths(components, error),
                  **entries_paths(components, error),
                  **review_paths(components, error),
                  **workbench_paths(components, error)},
        "components": {"schemas": components.schemas, "securitySchemes": SECURITY_SCHEMES},
    }
