"""faq-retriever: semantic search over Chinese FAQ collections."""
from .corpus import FaqEntry, load_corpus
from .encoders import Encoder, load_encoder
from .errors import CorpusError, EncoderError, IndexLoadError, QueryError, RetrieverError
from .normalize import normalize
from .results import Hit, SearchResult
from .search import Searcher

__all__ = ["FaqEntry", "load_corpus", "Encoder", "load_encoder", "CorpusError", "EncoderError",
           "IndexLoadError", "QueryError", "RetrieverError", "normalize", "Hit", "SearchResult", "Searcher"]
