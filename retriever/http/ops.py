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
    """Alive: the process answers. The default collection's index facts when it is loaded."""
    searcher = _default_searcher()
    # "version" was the software's here and the index's in /readyz: kept one release beside the clear names.
    return jsonify({"status": "ok", "service_version": __version__, "version": __version__,
                    "index": searcher.info() if searcher else None})


@bp.get("/readyz")
def readyz():
    """Ready: the default collection is loaded (or, with no default among several, collections are known)."""
    registry = state().collections
    ready, detail = registry.ready()
    if not ready:
        raise ApiError(503, "not_ready", detail)
    searcher = _default_searcher()
    version = searcher.version if searcher else None
    return jsonify({"status": "ready", "index_version": version, "version": version})


def _default_searcher():
    """The default collection's searcher, if it is loaded (never loads one)."""
    registry = state().collections
    holder = registry.holders().get(registry.default_name())
    return holder.current if holder else None


@bp.get("/metrics")
def metrics():
    """Prometheus text format."""
    shared = state()
    searcher = _default_searcher()
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
