"""faq-retriever: semantic search over Chinese FAQ collections."""
__version__ = "0.2.0"  # the one place the release is named (pyproject.toml reads it)

from .corpus import FaqEntry, load_corpus
from .encoders import Encoder, load_encoder
from .errors import CorpusError, EncoderError, IndexLoadError, QueryError, RetrieverError
from .normalize import normalize
from .results import Hit, SearchResult
from .search import Searcher

__all__ = ["__version__", "FaqEntry", "load_corpus", "Encoder", "load_encoder", "CorpusError", "EncoderError",
           "IndexLoadError", "QueryError", "RetrieverError", "normalize", "Hit", "SearchResult", "Searcher"]
