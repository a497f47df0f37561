"""Citizens' personal data found in text and masked before the text is stored anywhere.

What is found: mainland resident ID numbers (18 digits whose ISO 7064 MOD 11-2 check digit,
province code and birth date hold; the old 15-digit form with a valid province and date),
mobile numbers (1[3-9]x, with +86 / 0086 / 86 and spaces or dashes), landline numbers with an
area code, bank card numbers (13-19 digits, a card-issuer prefix and the Luhn check), e-mail
addresses, and any extra regular expressions the operator configures. Masking keeps a little
for a person to recognise the kind (``110105********002X``, ``138****5678``,
``6222 **** **** 1234``, ``z***@example.com``) and nothing that identifies someone.

An 18-digit number whose check digit is wrong is *not* taken for an ID: the check digit is
what tells an ID from the many 18-digit business numbers (orders, waybills, invoices) that
editors need to read, and a number failing it is no one's valid ID. An operator who prefers to
mask every 18-digit number adds the extra pattern ``\\d{17}[\\dXx]``.

Pure functions of text: the HTTP logs, the batch outputs and reports call :class:`Masker`.
"""
from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from typing import Iterable

from .config import ServiceConfig

# Detection runs on a copy of the text with the same length in which every decimal digit is
# ASCII (full-width ０-９ and the like), full-width ＋－（）and the ideographic space are ASCII
# too: a span found in the copy is the same span in the original.
_FULL_WIDTH = {ord("＋"): "+", ord("－"): "-", ord("（"): "(", ord("）"): ")", ord("\u3000"): " ",
               ord("Ｘ"): "X", ord("ｘ"): "x", ord("＠"): "@", ord("．"): "."}
_FULL_WIDTH_CHARS = re.compile("[" + "".join(map(chr, _FULL_WIDTH)) + "]")
_CANDIDATE = re.compile(r"\d[\d \-()（）\u3000－]{6}|[@＠]")  # what every detector needs somewhere
_OTHER_DIGIT = re.compile(r"(?![0-9])\d")  # a decimal digit of another script (full width, Arabic-Indic ...)
_SEP = r"[ \-]?"  # one space or dash between digit groups, as people write them
_ID18 = re.compile(rf"(?<!\d)(?P<n>\d{{6}}{_SEP}\d{{8}}{_SEP}\d{{3}}[\dXx])(?![\dA-Za-z])")
_ID15 = re.compile(r"(?<!\d)(?P<n>\d{15})(?!\d)")
# Not part of a longer number, nor the digits around a decimal point or thousands separator (prices).
_CARD = re.compile(r"(?<!\d)(?<!\d[.,])(?P<n>\d{13,19}|\d{4}(?:[ \-]\d{4}){2,3}(?:[ \-]\d{1,3})?|\d{6}[ \-]\d{7,13})"
                   r"(?!\d)(?![.,]\d)")
_MOBILE = re.compile(rf"(?<![\d+])(?:(?:\+|00)?86{_SEP})?(?P<n>1[3-9]\d{_SEP}\d{{4}}{_SEP}\d{{4}})(?!\d)")
# An area code (010, 02x, 0xxx; after +86 without its 0), then a 7- or 8-digit local number.
_LANDLINE = re.compile(r"(?<![\d+])(?:(?:\+|00)86[ \-]?[(]?|[(]?0)(?:10|2\d|[3-9]\d{2})[)]?[ \-]?"
                       r"(?P<n>[1-9]\d{2,3}[ \-]?\d{4})(?!\d)")
_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])(?P<n>[A-Za-z0-9][A-Za-z0-9._%+-]{0,63})@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
                    r"\.[A-Za-z]{2,24}(?![A-Za-z0-9-])")
# First two digits of a mainland administrative division code (GB/T 2260): provinces, HK, Macao, Taiwan.
_PROVINCES = {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51, 52,
              53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83, 91}
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
MOSTLY_PERSONAL_SHARE = 0.5  # above this share of visible characters masked, a text is mostly personal data


def _ascii_shape(text: str) -> str:
    """``text`` with the same length, digits and full-width punctuation as ASCII (see above)."""
    if not _OTHER_DIGIT.search(text):
        return _FULL_WIDTH_CHARS.sub(lambda m: _FULL_WIDTH[ord(m.group())], text)  # the common case
    out = []
    for char in text:
        if char.isdecimal() and not char.isascii():
            out.append(str(unicodedata.decimal(char)))
        else:
            out.append(_FULL_WIDTH.get(ord(char), char))
    return "".join(out)


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit() or c in "Xx").upper()


def id_check_digit(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character of a resident ID's first 17 digits."""
    return _ID_CHECK[sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS)) % 11]


def _valid_birth(year: int, month: int, day: int) -> bool:
    try:
        born = date(year, month, day)
    except ValueError:
        return False
    return date(1890, 1, 1) <= born <= date.today()


def is_resident_id(number: str) -> bool:
    """An 18-digit ID whose province, birth date and check digit hold, or a 15-digit one (no check digit)."""
    number = _digits(number)
    if len(number) == 18 and number[:17].isdigit():
        return (int(number[:2]) in _PROVINCES and _valid_birth(int(number[6:10]), int(number[10:12]),
                                                               int(number[12:14]))
                and id_check_digit(number[:17]) == number[17])
    if len(number) == 15 and number.isdigit():
        return int(number[:2]) in _PROVINCES and _valid_birth(1900 + int(number[6:8]), int(number[8:10]),
                                                              int(number[10:12]))
    return False


def luhn_valid(number: str) -> bool:
    total = 0
    for position, digit in enumerate(reversed(number)):
        value = int(digit) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def is_bank_card(number: str) -> bool:
    """13-19 digits, an issuer prefix a payment card uses, and the Luhn check.

    The prefix keeps date-led order numbers (2024...) out: cards start 3 (Amex, JCB, Diners),
    4 (Visa), 5 and 2221-2720 (Mastercard), 6 (UnionPay 62, Discover) or 95 (older domestic cards).
    """
    number = _digits(number)
    if not (number.isdigit() and 13 <= len(number) <= 19):
        return False
    issuer = number[0] in "3456" or number.startswith("95") or 2221 <= int(number[:4]) <= 2720
    return issuer and luhn_valid(number)


@dataclass(frozen=True)
class Span:
    """Personal data at ``text[start:end]``; ``keep_head``/``keep_tail`` digits stay visible."""

    start: int
    end: int
    kind: str  # resident_id, mobile, landline, bank_card, email, pattern
    keep_head: int = 0
    keep_tail: int = 0


@dataclass(frozen=True)
class Masked:
    """A text with its personal data masked; ``mostly_personal``: most of what it said was personal data."""

    text: str
    kinds: tuple[str, ...]
    share: float  # of the visible characters, the part that was personal data
    mostly_personal: bool

    @property
    def found(self) -> bool:
        return bool(self.kinds)


def _number_spans(shape: str) -> Iterable[Span]:
    for match in _ID18.finditer(shape):
        if is_resident_id(match["n"]):
            yield Span(match.start("n"), match.end("n"), "resident_id", 6, 4)
    for match in _CARD.finditer(shape):
        if is_bank_card(match["n"]):
            yield Span(match.start("n"), match.end("n"), "bank_card", 4, 4)
    for match in _ID15.finditer(shape):
        if is_resident_id(match["n"]):
            yield Span(match.start("n"), match.end("n"), "resident_id", 6, 3)
    for match in _MOBILE.finditer(shape):
        yield Span(match.start("n"), match.end("n"), "mobile", 3, 4)
    for match in _LANDLINE.finditer(shape):
        yield Span(match.start("n"), match.end("n"), "landline", 0, 4)
    for match in _EMAIL.finditer(shape):
        yield Span(match.start("n"), match.end("n"), "email", 1, 0)


def _mask_span(text: str, span: Span) -> str:
    """The span's characters with every digit or letter masked except the first/last few kept."""
    part = text[span.start:span.end]
    if span.kind == "email":
        return part[:1] + "***"  # the length of the name is not kept either
    if span.kind == "pattern":
        return "".join(c if c.isspace() else "*" for c in part)
    positions = [i for i, c in enumerate(part) if c.isalnum()]
    hidden = set(positions[span.keep_head:len(positions) - span.keep_tail])
    return "".join("*" if i in hidden else c for i, c in enumerate(part))


def compile_patterns(patterns: Iterable[str]) -> tuple[re.Pattern, ...]:
    """Extra patterns as compiled expressions; ValueError naming the one that does not compile."""
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            raise ValueError(f"personal-data pattern {pattern!r} is not a regular expression: {exc}") from None
    return tuple(compiled)


class Masker:
    """Finds and masks personal data; ``enabled=False`` passes text through (an operator's choice)."""

    def __init__(self, patterns: Iterable[str] = (), enabled: bool = True,
                 mostly_personal_share: float = MOSTLY_PERSONAL_SHARE) -> None:
        self.enabled = enabled
        self.patterns = compile_patterns(patterns)
        self.mostly_personal_share = mostly_personal_share

    def spans(self, text: str) -> list[Span]:
        """Where personal data is in ``text``, earlier detectors first (an ID is not also a card), no overlaps."""
        # Most texts hold no run of 7+ digits and no @: one scan says so, the detectors are skipped.
        shape = _ascii_shape(text) if _CANDIDATE.search(text) else None
        found: list[Span] = []
        extra = (Span(m.start(), m.end(), "pattern") for p in self.patterns for m in p.finditer(text)
                 if m.end() > m.start())
        for span in (*(_number_spans(shape) if shape is not None else ()), *extra):
            if all(span.end <= other.start or span.start >= other.end for other in found):
                found.append(span)
        return sorted(found, key=lambda s: s.start)

    def mask(self, text: str) -> Masked:
        """``text`` with its personal data masked, what kinds were found, and whether it was mostly that."""
        if not self.enabled or not text:
            return Masked(text, (), 0.0, False)
        spans = self.spans(text)
        if not spans:
            return Masked(text, (), 0.0, False)
        pieces, at = [], 0
        for span in spans:
            pieces += [text[at:span.start], _mask_span(text, span)]
            at = span.end
        pieces.append(text[at:])
        visible = sum(1 for c in text if not c.isspace())
        personal = sum(1 for s in spans for c in text[s.start:s.end] if not c.isspace())
        share = personal / visible if visible else 0.0
        return Masked("".join(pieces), tuple(dict.fromkeys(s.kind for s in spans)), round(share, 3),
                      share > self.mostly_personal_share)

    def __call__(self, text: str) -> str:
        """``text`` masked (for callers that need only the text)."""
        return self.mask(text).text


DEFAULT_MASKER = Masker()
NO_MASKING = Masker(enabled=False)


@functools.lru_cache(maxsize=8)
def masker_for(config: ServiceConfig) -> Masker:
    """The masker the settings ask for (RETRIEVER_PII_MASKING, RETRIEVER_PII_PATTERNS[_FILE]), built once."""
    return Masker(config.pii_patterns, enabled=config.pii_masking)
