"""Error types with messages a user can act on; mapped to HTTP statuses / exit codes at the edges."""


class RetrieverError(Exception):
    """Base class: every expected failure of the retriever is one of these."""


class CorpusError(RetrieverError):
    """The FAQ corpus cannot be read or breaks the schema."""


class IndexLoadError(RetrieverError):
    """An index folder is missing, damaged, or built for another model."""


class EncoderError(RetrieverError):
    """The embedding model cannot be loaded or used."""


class QueryError(RetrieverError):
    """A query is unusable (for example empty once normalised)."""


class MissingExtraError(RetrieverError):
    """A feature needs an optional extra that is not installed; the message names the pip command."""

    def __init__(self, feature: str, extra: str, missing: str) -> None:
        super().__init__(f"{feature} needs the optional '{extra}' extra ({missing} is not installed): "
                         f"pip install 'faq-retriever[{extra}]'")
        self.extra = extra


def require_extra(module: str, feature: str, extra: str):
    """``module`` imported, or a :class:`MissingExtraError` naming ``extra`` when it is not installed."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(feature, extra, exc.name or module) from None
