"""The OpenAPI 3.1 document: request schemas from the validating models, responses from the response models.

The test suite runs a schema-driven fuzzer (Schemathesis) against it, so what it says is what the service does.
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from ..config import ServiceConfig
from .feedback import FeedbackResponse, feedback_schema
from .schemas import ClassifyResponse, Error, RequestSchemas, SearchResponse


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


def _errors(error: dict, *statuses: int) -> dict[str, dict]:
    return {str(status): error for status in statuses}


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


def _api_paths(components: _Components, schemas: RequestSchemas, config: ServiceConfig, error: dict) -> dict:
    search_body = components.ref(schemas.search, "SearchRequest")
    components.ref(schemas.inquiry, "Inquiry")
    classify_body = components.ref(schemas.classify, "ClassifyRequest")
    # Each item is validated on its own: a bad one is reported under the response's "errors" by its
    # index, and the others are answered. So any item is acceptable, and an Inquiry is what is meant.
    components.schemas["ClassifyRequest"]["properties"]["inquiries"]["items"] = {
        "anyOf": [{"$ref": "#/components/schemas/Inquiry"}, {}],
        "description": "an Inquiry; an item that is not one is reported under `errors` with its index (200)"}
    search_fields = schemas.search.model_json_schema()["properties"]
    parameters = [{"name": "q" if name == "query" else name, "in": "query", "required": name == "query",
                   "schema": _present(field_schema)} for name, field_schema in search_fields.items()]
    found = components.ref(SearchResponse)
    return {
        "/v1/search": {
            "get": {"summary": "Search", "parameters": [*parameters, _IF_NONE_MATCH],
                    "responses": {"200": {**_json(found, "best entries first, with the decision"),
                                          "headers": _CACHE_HEADERS},
                                  "304": {"description": "If-None-Match named this answer's ETag: not modified",
                                          "headers": _CACHE_HEADERS},
                                  **_errors(error, 400, 429, 503)}},
            "post": {"summary": "Search (JSON body)", "requestBody": {"required": True, **_json(search_body, "")},
                     "responses": {"200": _json(found, "as for GET"), **_errors(error, 400, 413, 415, 429, 503)}},
        },
        "/v1/classify": {
            "post": {"summary": f"Classify up to {config.max_batch} inquiries in one model call",
                     "requestBody": {"required": True, **_json(classify_body, "")},
                     "responses": {"200": _json(components.ref(ClassifyResponse), "per-item results and errors"),
                                   **_errors(error, 400, 413, 415, 429, 503)}},
        },
    }


_COLLECTION = {"name": "name", "in": "path", "required": True, "description": "a collection (GET /v1/collections)",
               "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,63}$"}}


def _collection_paths(api: dict, error: dict) -> dict:
    """The /v1 routes for the default collection, the same per named collection, and the list of collections."""
    listing = {"/v1/collections": {"get": {"summary": "The collections served (name, entries, version, model, mode, "
                                                      "calibration) and the default one",
                                           "responses": {"200": {"description": "collections and default"}}}}}
    paths, named_paths = {}, {}
    for path, operations in api.items():
        named = path.replace("/v1/", "/v1/collections/{name}/")
        paths[path], named_paths[named] = {}, {}
        for method, operation in operations.items():
            # 404 unknown_collection: a name that is not served, or no default among several collections.
            paths[path][method] = {**operation, "responses": {**operation["responses"], "404": error}}
            named_paths[named][method] = {**paths[path][method], "summary": operation["summary"] + " in one collection",
                                          "parameters": [_COLLECTION, *operation.get("parameters", [])]}
    paths = {**paths, **listing, **named_paths}  # the default collection's routes first, as the docs page shows them
    return paths


def _dify_paths() -> dict:
    dify_error = {"description": "Dify's error form", "content": {"application/json": {"schema": {
        "type": "object", "required": ["error_code", "error_msg"],
        "properties": {"error_code": {"type": "integer", "description": "1001 malformed Authorization, 1002 "
                                                                          "authorization failed, 2001 unknown "
                                                                          "knowledge_id, 3001 invalid body"},
                       "error_msg": {"type": "string"}}}}}}
    body = {"type": "object", "required": ["knowledge_id", "query", "retrieval_setting"], "properties": {
        "knowledge_id": {"type": "string", "description": "the collection"}, "query": {"type": "string"},
        "retrieval_setting": {"type": "object", "required": ["top_k", "score_threshold"],
                              "properties": {"top_k": {"type": "integer"}, "score_threshold": {"type": "number"}}},
        "metadata_condition": {"type": "object", "description": "logical_operator and/or; conditions on faq_id, "
                                                                "category, tags"}}}
    return {"/retrieval": {"post": {
        "summary": "Dify External Knowledge API (bearer keys: RETRIEVER_API_KEYS)", "security": [{"bearer": []}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
        "responses": {"200": {"description": "{records: [{content, score, title, metadata}]}; none for no_match"},
                      **{str(status): dify_error for status in (400, 403, 404, 413, 415, 503)}}}}}


def _feedback_paths(components: _Components, config: ServiceConfig, error: dict) -> dict:
    body = components.ref(feedback_schema(config), "FeedbackRequest")
    return {"/v1/feedback": {"post": {
        "summary": "Record whether an answer helped (有帮助 / 没帮助)",
        "description": "403 feedback_disabled unless the service records feedback (RETRIEVER_FEEDBACK_LOG).",
        "requestBody": {"required": True, **_json(body, "")},
        "responses": {"201": _json(components.ref(FeedbackResponse), "recorded"),
                      **_errors(error, 400, 403, 413, 415, 429)}}}}


def _operations_paths(error: dict) -> dict:
    return {
        "/healthz": {"get": {"summary": "Alive", "responses": {"200": {"description": "status and index facts"}}}},
        "/readyz": {"get": {"summary": "Ready (an index is loaded)",
                            "responses": {"200": {"description": "ready"}, "503": error}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text format"}}}},
        "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1"}}}},
        "/admin/reload": {"post": {"summary": "Load the current index version beside the served one and swap",
                                   "security": [{"bearer": []}],
                                   "responses": {"200": {"description": "version, previous, changed, workers (pid, "
                                                                        "version, ready, problem of each), all_workers; "
                                                                        "with several collections, one such outcome "
                                                                        "per collection under `collections`"},
                                                 **_errors(error, 401, 403, 409, 429)}}},
    }


def openapi_document(schemas: RequestSchemas, config: ServiceConfig, version: str) -> dict:
    """OpenAPI 3.1 for the service, its request schemas taken from the validating models."""
    components = _Components()
    error = _json(components.ref(Error), "a JSON error with a stable code")
    return {
        "openapi": "3.1.0",
        "info": {"title": "faq-retriever", "version": version,
                 "description": "Semantic search over a Chinese FAQ: search, batch classification, operations."},
        "paths": {**_collection_paths(_api_paths(components, schemas, config, error), error),
                  **_dify_paths(), **_feedback_paths(components, config, error), **_operations_paths(error)},
        "components": {"schemas": components.schemas,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                      "description": "RETRIEVER_ADMIN_TOKEN"}}},
    }
