"""The run search's query language: ``q`` parsed once into a small tree of our own.

Syntax: words separated by spaces must all match, in the run or across its
events; ``"a quoted phrase"`` matches the words next to each other; ``-word`` (or
``-"a phrase"``) excludes the runs that contain it. Case does not matter.

Nothing the user types reaches a database as query syntax. The text is cut into *parts*
here, by the rule both engines' tokenizers follow: runs of letters, marks and digits
(Unicode categories L*, M*, N*, Co), anything else separates. A term that is several
parts (``call_f5a04b56813c``, ``ORD-2231-X``, ``a.b@example.com``, ``/var/log/app.log``)
is a phrase of its parts: found whole, and each part is a word of its own. Each engine's
query is then built from the parts only (runs.managers: PostgreSQL ``phraseto_tsquery``
with the parts as a parameter, SQLite FTS5 MATCH with every phrase quoted), so FTS
operators, quotes and NUL in ``q`` are plain separators.

Scripts written without spaces (Japanese, Chinese, Thai...) have no words to cut: a part
with one of their letters, three or more characters long, is matched as a substring
(pg_trgm on PostgreSQL, FTS5's trigram tokenizer on SQLite); shorter ones as a word.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from . import contract

MAX_QUERY_CHARS = 500
MAX_CLAUSES = 16
# The shortest substring the trigram indexes can find.
MIN_SUBSTRING_CHARS = 3

# Letters of scripts written without spaces between words. The same ranges are in the
# search migration's SQL (PostgreSQL regex and SQLite GLOB): only text that contains one
# of them goes into the trigram indexes.
SPACELESS_RANGES = (
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x1000, 0x109F),  # Myanmar
    (0x1780, 0x17FF),  # Khmer
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x3400, 0x4DBF),  # CJK Extension A
    (0x4E00, 0x9FFF),  # CJK Unified Ideographs
    (0xF900, 0xFAFF),  # CJK Compatibility Ideographs
    (0xFF66, 0xFF9F),  # Halfwidth Katakana
)


class SearchError(ValueError):
    """A ``q`` that cannot be searched (the message says why; views make it a 400)."""


@dataclass(frozen=True)
class Clause:
    """One condition on a run: its parts in a row (a word is a one-part phrase).

    ``substring``: one part of a spaceless script, matched anywhere in the text.
    ``negated``: runs that match are excluded.
    """

    parts: tuple[str, ...]
    negated: bool = False
    substring: bool = False

    @property
    def text(self) -> str:
        """The parts as one string of words (what the engines are given)."""
        return " ".join(self.parts)

    @property
    def containment_pattern(self) -> str | None:
        """A LIKE pattern (``%part%part%``) that every text matching this word or phrase
        also matches, case aside: its words are substrings of the text, in order. A probe
        tests it before cutting the text into words, which costs ~10x more (PostgreSQL's
        to_tsvector: 250 us for a 300-byte event against 30 us for ILIKE, on the bench
        machine under load); an event without the parts is then never cut. None when a
        part has a character PostgreSQL's parser might not count as a letter (marks,
        other scripts' digits...): there it could split a part the text has in pieces."""
        if self.substring or not all(_plain_part(part) for part in self.parts):
            return None
        return "%" + "%".join(self.parts) + "%"


@dataclass(frozen=True)
class SearchQuery:
    clauses: tuple[Clause, ...]

    @property
    def required(self) -> tuple[Clause, ...]:
        return tuple(c for c in self.clauses if not c.negated)

    @property
    def excluded(self) -> tuple[Clause, ...]:
        return tuple(c for c in self.clauses if c.negated)

    def highlight_pattern(self) -> re.Pattern | None:
        """A regex finding what the required clauses match, for <mark>s (word parts
        whole, substrings anywhere), case-insensitive; None if there is nothing."""
        alternatives = []
        for clause in self.required:
            for part in clause.parts:
                if clause.substring:
                    alternatives.append(re.escape(part))
                else:
                    alternatives.append(rf"(?<![^\W_]){re.escape(part)}(?![^\W_])")
        if not alternatives:
            return None
        # Longest first, so a phrase's longer part wins over a shorter one at one place.
        alternatives.sort(key=len, reverse=True)
        return re.compile("|".join(alternatives), re.IGNORECASE)


def is_token_char(char: str) -> bool:
    category = unicodedata.category(char)
    return category[0] in "LMN" or category == "Co"


def is_spaceless(char: str) -> bool:
    code = ord(char)
    return any(lo <= code <= hi for lo, hi in SPACELESS_RANGES)


def split_parts(text: str) -> list[str]:
    """Runs of token characters, lower-cased (the tokenizers' rule, see the module doc)."""
    parts, current = [], []
    for char in text:
        if is_token_char(char):
            current.append(char)
        elif current:
            parts.append("".join(current))
            current = []
    if current:
        parts.append("".join(current))
    return [part.lower() for part in parts]


_TOKEN = re.compile(r'(-?)"([^"]*)"?|(-?)([^\s"]+)')


def parse(q: str | None) -> SearchQuery | None:
    """The tree for ``q``; None for a blank ``q`` (no search). SearchError when ``q`` has
    no word to search for, only exclusions, is too long or has too many terms."""
    if q is None or not q.strip():
        return None
    if len(q) > MAX_QUERY_CHARS:
        raise SearchError(f"is too long (at most {MAX_QUERY_CHARS} characters)")
    q = contract.clean_text(q)
    clauses: list[Clause] = []
    for match in _TOKEN.finditer(q):
        quoted = match.group(2) is not None
        negated = bool(match.group(1) if quoted else match.group(3))
        text = match.group(2) if quoted else match.group(4)
        clauses.extend(_clauses(split_parts(text), negated))
    # A repeated clause adds nothing but another scan.
    clauses = list(dict.fromkeys(clauses))
    if not clauses:
        raise SearchError("has no word to search for (letters or digits)")
    if not any(not c.negated for c in clauses):
        raise SearchError("needs a word to find, not only exclusions (-word)")
    if len(clauses) > MAX_CLAUSES:
        raise SearchError(f"has too many terms (at most {MAX_CLAUSES})")
    return SearchQuery(tuple(clauses))


def _clauses(parts: list[str], negated: bool) -> list[Clause]:
    if not parts:
        return []
    if not any(_is_substring(part) for part in parts):
        return [Clause(tuple(parts), negated)]
    # A phrase with text of a spaceless script: each part on its own (a trigram match
    # has no word positions to put next to a word's).
    return [Clause((part,), negated, _is_substring(part)) for part in parts]


def _plain_part(part: str) -> bool:
    """Only letters (not marks or modifiers) and ASCII digits: characters every parser
    reads as part of a word."""
    return all(
        ("0" <= char <= "9") or unicodedata.category(char) in ("Lu", "Ll", "Lt", "Lo")
        for char in part
    )


def _is_substring(part: str) -> bool:
    return len(part) >= MIN_SUBSTRING_CHARS and any(is_spaceless(c) for c in part)


# --- highlighting -----------------------------------------------------------------------


def marked_segments(text: str, pattern: re.Pattern | None) -> list[tuple[str, bool]]:
    """``text`` cut into (piece, is_match) in order; runs.web.rendering escapes each piece
    and wraps the matches in <mark>: the stored text is never trusted or un-escaped."""
    if pattern is None:
        return [(text, False)] if text else []
    segments, position = [], 0
    for match in pattern.finditer(text):
        if match.end() == match.start():
            continue
        if match.start() > position:
            segments.append((text[position : match.start()], False))
        segments.append((match.group(), True))
        position = match.end()
    if position < len(text):
        segments.append((text[position:], False))
    return segments


@dataclass(frozen=True)
class Snippet:
    """About ``width`` characters around the first match of a text: where the text is
    (``output``, ``event #3``...), whether it is cut before and after, and its segments."""

    where: str
    cut_before: bool
    segments: tuple[tuple[str, bool], ...]
    cut_after: bool


def snippet(where: str, text: str, pattern: re.Pattern | None, width: int = 160):
    """The Snippet of ``text`` around its first match; None when it has none."""
    if pattern is None or not text:
        return None
    match = pattern.search(text)
    if match is None:
        return None
    start = max(match.start() - width // 3, 0)
    end = min(max(match.end(), start + width), len(text))
    # Whitespace (newlines in outputs and JSON) as single spaces: a snippet is one line.
    piece = " ".join(text[start:end].split())
    return Snippet(where, start > 0, tuple(marked_segments(piece, pattern)), end < len(text))
