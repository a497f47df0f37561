"""The OpenAPI 3.1 document: request schemas from the validating models, responses from the response models."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from ..config import ServiceConfig
from .schemas import ClassifyResponse, Error, RequestSchemas, SearchResponse


def openapi_document(schemas: RequestSchemas, config: ServiceConfig, version: str) -> dict:
    """OpenAPI 3.1 for the service, its request schemas taken from the validating models."""
    components: dict[str, Any] = {}

    def ref(model: type[BaseModel], name: str | None = None) -> dict:
        name = name or model.__name__
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(schema.pop("$defs", {}))
        components[name] = schema
        return {"$ref": f"#/components/schemas/{name}"}

    def json_content(schema: dict) -> dict:
        return {"content": {"application/json": {"schema": schema}}}

    error = {"description": "a JSON error with a stable code", **json_content(ref(Error))}
    search_body = ref(schemas.search, "SearchRequest")
    ref(schemas.inquiry, "Inquiry")
    classify_body = ref(schemas.classify, "ClassifyRequest")
    components["ClassifyRequest"]["properties"]["inquiries"]["items"] = {"$ref": "#/components/schemas/Inquiry"}
    search_fields = schemas.search.model_json_schema()["properties"]
    parameters = [{"name": "q" if name == "query" else name, "in": "query", "required": name == "query",
                   "schema": field_schema} for name, field_schema in search_fields.items()]
    return {
        "openapi": "3.1.0",
        "info": {"title": "faq-retriever", "version": version,
                 "description": "Semantic search over a Chinese FAQ: search, batch classification, operations."},
        "paths": {
            "/v1/search": {
                "get": {"summary": "Search", "parameters": parameters,
                        "responses": {"200": {"description": "best entries first, with the decision",
                                              **json_content(ref(SearchResponse))},
                                      "400": error, "429": error, "503": error}},
                "post": {"summary": "Search (JSON body)", "requestBody": {"required": True, **json_content(search_body)},
                         "responses": {"200": {"description": "as for GET", **json_content(ref(SearchResponse))},
                                       "400": error, "413": error, "415": error, "429": error, "503": error}},
            },
            "/v1/classify": {
                "post": {"summary": f"Classify up to {config.max_batch} inquiries in one model call",
                         "requestBody": {"required": True, **json_content(classify_body)},
                         "responses": {"200": {"description": "per-item results and per-item errors",
                                               **json_content(ref(ClassifyResponse))},
                                       "400": error, "413": error, "415": error, "429": error, "503": error}},
            },
            "/healthz": {"get": {"summary": "Alive", "responses": {"200": {"description": "status and index facts"}}}},
            "/readyz": {"get": {"summary": "Ready (an index is loaded)",
                                "responses": {"200": {"description": "ready"}, "503": error}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text format"}}}},
            "/admin/reload": {"post": {"summary": "Load the current index version beside the served one and swap",
                                       "security": [{"bearer": []}],
                                       "responses": {"200": {"description": "version, previous, changed"},
                                                     "401": error, "403": error, "409": error}}},
        },
        "components": {"schemas": components,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                      "description": "RETRIEVER_ADMIN_TOKEN"}}},
    }
