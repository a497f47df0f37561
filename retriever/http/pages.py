"""Pages for people: the search page and the embeddable search box."""
from __future__ import annotations

from flask import Blueprint, current_app

bp = Blueprint("pages", __name__)


@bp.get("/")
def page():
    """The search page: the widget on the service's own origin."""
    return current_app.send_static_file("index.html")


@bp.get("/widget.js")
def widget():
    """The embeddable search box (one script, Shadow DOM)."""
    return current_app.send_static_file("widget.js")
