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
