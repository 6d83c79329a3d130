"""LIKE and regular-expression patterns, rewritten into one pinned meaning.

Engines disagree on both (NOTES.md): Spark treats ``\\`` as LIKE's default
escape while DuckDB and Polars do not; Java, RE2 (DuckDB) and Rust (Polars)
regexes differ on ``.``, ``$``, ``\\w`` and more.  So a pattern (always a string
literal) is parsed here into a small canonical form and written back out for
each engine:

* LIKE: ``%`` any run of characters (newlines too), ``_`` exactly one
  character, ``\\`` escapes ``%``, ``_`` or ``\\`` (or the ``ESCAPE`` character).
* regexp: a portable subset - literals, ``.`` (any character but a newline),
  classes ``[a-z]`` / ``[^0-9]``, ``\\d \\w \\s`` (ASCII only) and their negations,
  groups ``( )`` / ``(?: )``, ``|``, quantifiers ``* + ? {n} {n,} {n,m}``, anchors
  ``^`` (start) and ``$`` (end of text).  Matching is a search (the pattern may
  match anywhere), case-sensitive.

Every non-alphanumeric ASCII character is written as ``\\x{HH}``, an escape
that Java, RE2 and Rust all read the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlm_pipeline.errors import ExpressionError

__all__ = [
    "LikePattern",
    "MAX_PATTERN_CHARS",
    "canonical_regex",
    "parse_like",
]

MAX_PATTERN_CHARS = 1_000
MAX_REPEAT = 1_000

_ANY_RUN = object()
_ANY_ONE = object()

_LIKE_HINT = (
    "in LIKE, % matches any text, _ one character; write \\% \\_ \\\\ for the characters themselves"
)
_RE_HINT = (
    "use the portable regexp subset: literals, . [a-z] [^0-9] \\d \\w \\s ( ) (?: ) | "
    "* + ? {n,m} ^ $; escape other punctuation with \\"
)


@dataclass(frozen=True)
class LikePattern:
    """A parsed LIKE pattern.

    Attributes
    ----------
    parts
        ``"%"`` for any run, ``"_"`` for one character, or a literal character
        (as a 1-tuple, so ``("%",)`` is a literal percent sign).

    Examples
    --------
    >>> p = parse_like("a\\\\_%")
    >>> p.canonical
    'a\\\\_%'
    >>> p.regex
    '(?s)\\\\Aa\\\\x{5F}.*\\\\z'
    """

    parts: tuple[str | tuple[str], ...]

    @property
    def canonical(self) -> str:
        """The pattern with ``\\`` as its escape character."""
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, tuple):
                out.append("\\" + part[0] if part[0] in "%_\\" else part[0])
            else:
                out.append(part)
        return "".join(out)

    @property
    def regex(self) -> str:
        """An anchored regex with the same meaning (for Polars)."""
        out = ["(?s)\\A"]
        for part in self.parts:
            if isinstance(part, tuple):
                out.append(_literal(part[0]))
            else:
                out.append(".*" if part == "%" else ".")
        out.append("\\z")
        return "".join(out)

    def lower(self) -> LikePattern:
        """The same pattern with its literal characters lower-cased (for ILIKE)."""
        return LikePattern(
            tuple((p[0].lower(),) if isinstance(p, tuple) else p for p in self.parts)
        )


def _literal(char: str) -> str:
    if char.isascii() and not char.isalnum():
        return f"\\x{{{ord(char):02X}}}"
    return char


def parse_like(pattern: str, escape: str = "\\") -> LikePattern:
    """Parse a LIKE pattern whose escape character is ``escape``.

    Raises
    ------
    ExpressionError
        The escape character ends the pattern or precedes something other
        than ``%``, ``_`` or itself; or the pattern is too long.

    Examples
    --------
    >>> parse_like("100!%", "!").canonical
    '100\\\\%'
    """
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ExpressionError(
            f"LIKE pattern longer than {MAX_PATTERN_CHARS} characters",
            fragment=pattern[:80],
            hint="use a shorter pattern",
        )
    if len(escape) != 1:
        raise ExpressionError(
            "ESCAPE must be exactly one character", fragment=escape, hint=_LIKE_HINT
        )
    parts: list[str | tuple[str]] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == escape:
            if i + 1 >= len(pattern) or pattern[i + 1] not in ("%", "_", escape):
                raise ExpressionError(
                    f"in a LIKE pattern {escape!r} must be followed by %, _ or {escape!r}",
                    fragment=pattern[:80],
                    hint=_LIKE_HINT,
                )
            parts.append((pattern[i + 1],))
            i += 2
            continue
        if char in "%_":
            if not (char == "%" and parts and parts[-1] == "%"):
                parts.append(char)
        else:
            parts.append((char,))
        i += 1
    return LikePattern(tuple(parts))


_CLASS_SHORTHANDS = {
    "d": "0-9",
    "w": "0-9A-Za-z\\x{5F}",
    "s": "\\x{09}-\\x{0D}\\x{20}",
}


class _RegexReader:
    """A recursive-descent reader for the portable regexp subset."""

    def __init__(self, pattern: str) -> None:
        self.src = pattern
        self.pos = 0

    def fail(self, what: str) -> ExpressionError:
        near = self.src[max(0, self.pos - 10) : self.pos + 10]
        return ExpressionError(
            f"regexp not allowed: {what} at position {self.pos}",
            fragment=near or self.src[:80],
            hint=_RE_HINT,
        )

    def peek(self) -> str | None:
        return self.src[self.pos] if self.pos < len(self.src) else None

    def take(self) -> str:
        char = self.src[self.pos]
        self.pos += 1
        return char

    def read(self) -> str:
        out = self.alternation(depth=0)
        if self.pos != len(self.src):
            raise self.fail("unbalanced ')'")
        return out

    def alternation(self, depth: int) -> str:
        branches = [self.sequence(depth)]
        while self.peek() == "|":
            self.take()
            branches.append(self.sequence(depth))
        return "|".join(branches)

    def sequence(self, depth: int) -> str:
        out: list[str] = []
        while self.peek() not in (None, "|", ")"):
            atom, has_repeat = self.atom(depth)
            quant = self.quantifier()
            if quant and has_repeat:
                raise self.fail("nested repetition such as (a+)+")
            if quant and atom in ("^", "\\z"):
                raise self.fail("a quantifier after an anchor")
            out.append(atom + quant)
        return "".join(out)

    def atom(self, depth: int) -> tuple[str, bool]:
        char = self.take()
        if char == "(":
            if depth >= 20:
                raise self.fail("groups nested too deeply")
            prefix = "("
            if self.peek() == "?":
                if self.src[self.pos : self.pos + 2] != "?:":
                    raise self.fail("(? other than (?: (flags, look-around, named groups)")
                self.pos += 2
                prefix = "(?:"
            start = self.pos
            inner = self.alternation(depth + 1)
            if self.peek() != ")":
                raise self.fail("unclosed '('")
            self.take()
            body = self.src[start : self.pos - 1]
            has_repeat = any(q in body for q in "*+?{")
            return prefix + inner + ")", has_repeat
        if char == "[":
            return self.char_class(), False
        if char == ".":
            return "[^\\x{0A}]", False
        if char == "^":
            return "^", False
        if char == "$":
            return "\\z", False
        if char == "\\":
            return self.escape(in_class=False), False
        if char in "*+?{":
            raise self.fail(f"{char!r} with nothing to repeat (escape it as \\{char})")
        if char in "]}":
            raise self.fail(f"unescaped {char!r} (write \\{char})")
        return _literal(char), False

    def escape(self, *, in_class: bool) -> str:
        if self.peek() is None:
            raise self.fail("a trailing backslash")
        char = self.take()
        if char.lower() in _CLASS_SHORTHANDS:
            body = _CLASS_SHORTHANDS[char.lower()]
            if char.isupper():
                if in_class:
                    raise self.fail(f"\\{char} inside [ ]")
                return f"[^{body}]"
            return body if in_class else f"[{body}]"
        if char in "tnrfv":
            code = {"t": 9, "n": 10, "r": 13, "f": 12, "v": 11}[char]
            return f"\\x{{{code:02X}}}"
        if char.isascii() and not char.isalnum():
            return _literal(char)
        raise self.fail(
            f"the escape \\{char} (back-references, \\b, \\p, \\x, \\u are not portable)"
        )

    def class_char(self) -> str:
        char = self.take()
        if char == "\\":
            return self.escape(in_class=True)
        if char == "[":
            raise self.fail("'[' inside [ ] (write \\[)")
        return _literal(char)

    def char_class(self) -> str:
        out = ["["]
        if self.peek() == "^":
            self.take()
            out.append("^")
        items = 0
        while True:
            char = self.peek()
            if char is None:
                raise self.fail("unclosed '['")
            if char == "]":
                self.take()
                break
            first_raw = char
            first = self.class_char()
            if self.peek() == "-" and self.src[self.pos + 1 : self.pos + 2] not in ("]", ""):
                if first_raw == "\\" and len(first) > 8:
                    raise self.fail("a range starting at a class like \\d")
                self.take()
                end_raw = self.peek()
                last = self.class_char()
                if end_raw == "\\" and len(last) > 8:
                    raise self.fail("a range ending at a class like \\d")
                lo, hi = _char_of(first), _char_of(last)
                if lo > hi:
                    raise self.fail("a range out of order")
                out.append(f"{first}-{last}")
            else:
                out.append(first)
            items += 1
        if items == 0:
            raise self.fail("an empty class []")
        out.append("]")
        return "".join(out)

    def quantifier(self) -> str:
        char = self.peek()
        if char is None or char not in "*+?{":
            return ""
        self.take()
        quant = char
        if char == "{":
            end = self.src.find("}", self.pos)
            body = self.src[self.pos : end] if end >= 0 else ""
            bounds = body.split(",")
            ok = end >= 0 and 1 <= len(bounds) <= 2 and bounds[0].isdigit()
            ok = ok and (len(bounds) == 1 or bounds[1] == "" or bounds[1].isdigit())
            if not ok:
                raise self.fail("a '{' that is not a repeat {n}, {n,} or {n,m} (write \\{)")
            numbers = [int(b) for b in bounds if b]
            if max(numbers) > MAX_REPEAT or (len(numbers) == 2 and numbers[0] > numbers[1]):
                raise self.fail(f"a repeat count above {MAX_REPEAT} or out of order")
            self.pos = end + 1
            quant = "{" + body + "}"
        if self.peek() == "?":
            self.take()
            quant += "?"
        following = self.peek()
        if following is not None and following in "*+?{":
            raise self.fail("two quantifiers in a row")
        return quant


def _char_of(text: str) -> int:
    if text.startswith("\\x{"):
        return int(text[3:-1], 16)
    return ord(text)


def canonical_regex(pattern: str) -> str:
    """Rewrite a regexp from the portable subset into its canonical spelling.

    The result means the same thing to Java (Spark), RE2 (DuckDB) and Rust
    (Polars).

    Raises
    ------
    ExpressionError
        The pattern uses something outside the subset.

    Examples
    --------
    >>> canonical_regex(r"^a.c\\d+$")
    '^a[^\\\\x{0A}]c[0-9]+\\\\z'
    """
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ExpressionError(
            f"regexp longer than {MAX_PATTERN_CHARS} characters",
            fragment=pattern[:80],
            hint="use a shorter pattern",
        )
    return _RegexReader(pattern).read()
