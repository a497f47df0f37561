"""The release, named in one place (pyproject.toml reads it; /healthz and /openapi.json report it)."""
__version__ = "0.2.0"
