"""Operations: liveness, readiness, Prometheus metrics, the OpenAPI document and its docs page."""
from __future__ import annotations

from pathlib import Path

import flask_swagger_ui
from flask import Blueprint, current_app, jsonify, send_from_directory
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..version import __version__
from .errors import ApiError
from .openapi import openapi_document
from .state import state

bp = Blueprint("ops", __name__)
# Swagger UI 5 (renders OpenAPI 3.1) as shipped in the flask-swagger-ui package: no CDN.
SWAGGER_UI = Path(flask_swagger_ui.__file__).parent / "dist"


@bp.get("/healthz")
def healthz():
    """Alive: the process answers. Index facts when one is loaded."""
    searcher = state().holder.current
    return jsonify({"status": "ok", "version": __version__, "index": searcher.info() if searcher else None})


@bp.get("/readyz")
def readyz():
    """Ready: an index is loaded and can answer."""
    searcher = state().holder.current
    if searcher is None:
        raise ApiError(503, "not_ready", "no index is loaded yet")
    return jsonify({"status": "ready", "version": searcher.version})


@bp.get("/metrics")
def metrics():
    """Prometheus text format."""
    shared = state()
    searcher = shared.holder.current
    if searcher is not None:
        shared.metrics.set_index(searcher.version, searcher.index.manifest.get("model", ""))
    for name, holder in shared.collections.holders().items():  # every collection's reloads, not the default's only
        shared.metrics.set_reloads(name, holder.outcomes)
    return generate_latest(shared.metrics.registry), 200, {"Content-Type": CONTENT_TYPE_LATEST}


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3.1 document, from the models that validate requests."""
    shared = state()
    return jsonify(openapi_document(shared.schemas, shared.config, __version__))


@bp.get("/docs")
def docs():
    """Swagger UI over /openapi.json."""
    return current_app.send_static_file("docs.html")


@bp.get("/docs/<path:name>")
def docs_assets(name: str):
    return send_from_directory(SWAGGER_UI, name)
