"""The HTTP layer: a Flask app factory and its blueprints, thin over the searcher."""
from .app import create_app

__all__ = ["create_app"]
