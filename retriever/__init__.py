"""faq-retriever: semantic search over Chinese FAQ collections."""
from .corpus import FaqEntry, load_corpus
from .encoders import Encoder, load_encoder
from .errors import CorpusError, EncoderError, IndexLoadError, QueryError, RetrieverError
from .normalize import normalize
from .results import Hit, SearchResult
from .search import Searcher
from .version import __version__

__all__ = ["__version__", "FaqEntry", "load_corpus", "Encoder", "load_encoder", "CorpusError", "EncoderError",
           "IndexLoadError", "QueryError", "RetrieverError", "normalize", "Hit", "SearchResult", "Searcher"]
