"""Pages for people: the search page and the embeddable search box.

The page's title, description, no-match message and contact line come from the served corpus's
``collection.yaml`` (the corpus folder is ``RETRIEVER_CORPUS`` / ``serve --corpus``), read once
when the app is made; what it leaves out keeps a neutral default.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, fields, replace
from pathlib import Path

import jinja2
import yaml
from flask import Blueprint, current_app

from .state import EXTENSION

log = logging.getLogger(__name__)
bp = Blueprint("pages", __name__)
PAGE = "retriever_page"  # app.extensions key: the rendered search page
COLLECTION_FILE = "collection.yaml"
MAX_SETTING_CHARS = 500


@dataclass(frozen=True)
class Collection:
    """What the pages say about the FAQ collection they search."""

    title: str = "常见问题搜索"
    description: str = ""
    no_match: str = "没有找到相关问题，请联系人工客服。"
    contact: str = ""


def read_collection(corpus_dir: str | Path | None) -> Collection:
    """The settings in ``corpus_dir/collection.yaml``; defaults for what it leaves out (or when it is unreadable,
    which is logged with the fix: the pages must still be served)."""
    path = Path(corpus_dir) / COLLECTION_FILE if corpus_dir else None
    if path is None or not path.is_file():
        return Collection()
    try:
        settings = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        log.error("%s: cannot read the page settings (%s); using the defaults", path, exc)
        return Collection()
    if not isinstance(settings, dict):
        log.error("%s: expected a mapping of %s; using the defaults", path, ", ".join(f.name for f in fields(Collection)))
        return Collection()
    known = {f.name for f in fields(Collection)}
    for key in sorted(set(settings) - known, key=str):
        log.error("%s: unknown setting %r ignored; allowed: %s", path, key, ", ".join(sorted(known)))
    chosen = {}
    for key in known & set(settings):
        value = settings[key]
        if not isinstance(value, str) or len(value) > MAX_SETTING_CHARS:
            log.error("%s: '%s' must be text of at most %d characters; using the default", path, key,
                      MAX_SETTING_CHARS)
            continue
        chosen[key] = value.strip()
    return replace(Collection(), **chosen)


@bp.record_once
def _render_page(setup) -> None:
    app = setup.app
    collection = read_collection(app.extensions[EXTENSION].config.corpus_dir)
    feedback = bool(app.extensions[EXTENSION].config.feedback_log)
    template = Path(app.static_folder, "index.html").read_text(encoding="utf-8")
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    app.extensions[PAGE] = environment.from_string(template).render(collection=collection, feedback=feedback)


@bp.get("/")
def page():
    """The search page: the widget on the service's own origin, titled for the served collection."""
    return current_app.extensions[PAGE], 200, {"Content-Type": "text/html; charset=utf-8"}


@bp.get("/widget.js")
def widget():
    """The embeddable search box (one script, Shadow DOM)."""
    return current_app.send_static_file("widget.js")
