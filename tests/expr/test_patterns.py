"""LIKE and regexp patterns: parsing and canonical spelling."""

from __future__ import annotations

import re

import pytest

from rlm_pipeline.errors import ExpressionError
from rlm_pipeline.expr.patterns import canonical_regex, parse_like

LIKE = [
    ("a%", "a%", r"(?s)\Aa.*\z"),
    ("%a\\_b%", "%a\\_b%", r"(?s)\A.*a\x{5F}b.*\z"),
    ("100\\%", "100\\%", r"(?s)\A100\x{25}\z"),
    ("a%%b", "a%b", r"(?s)\Aa.*b\z"),
    ("日_", "日_", r"(?s)\A日.\z"),
]


@pytest.mark.parametrize(("pattern", "canonical", "regex"), LIKE)
def test_like(pattern: str, canonical: str, regex: str) -> None:
    parsed = parse_like(pattern)
    assert parsed.canonical == canonical
    assert parsed.regex == regex


def test_like_other_escape() -> None:
    assert parse_like("a!_b!!", "!").canonical == "a\\_b!"


@pytest.mark.parametrize("pattern", ["a\\b", "a\\", "x" * 1001])
def test_like_rejected(pattern: str) -> None:
    with pytest.raises(ExpressionError):
        parse_like(pattern)


REGEX = [
    ("^abc$", "^abc\\z"),
    ("a.c", "a[^\\x{0A}]c"),
    ("\\d+\\.\\d*", "[0-9]+\\x{2E}[0-9]*"),
    ("[a-z_-]", "[a-z\\x{5F}\\x{2D}]"),
    ("[^\\s]", "[^\\x{09}-\\x{0D}\\x{20}]"),
    ("\\W", "[^0-9A-Za-z\\x{5F}]"),
    ("(?:ab|cd){2,3}?", "(?:ab|cd){2,3}?"),
    ("é|日本", "é|日本"),
    ("a b", "a\\x{20}b"),
    ("[a-z&&b]", "[a-z\\x{26}\\x{26}b]"),  # no class set operations: & is a character
]


@pytest.mark.parametrize(("pattern", "canonical"), REGEX)
def test_regex_canonical(pattern: str, canonical: str) -> None:
    out = canonical_regex(pattern)
    assert out == canonical
    # Python's re reads \x{..} differently; check the meaning with a translation
    py = re.sub(r"\\x\{([0-9A-F]+)\}", lambda m: re.escape(chr(int(m.group(1), 16))), out)
    re.compile(py.replace("\\z", "\\Z"))


@pytest.mark.parametrize(
    "pattern",
    ["(a+)+", "(a*)*b", "a{2", "a{5,2}", "a{2000}", "(?i)a", "(?=a)", "(?P<x>a)", "\\1", "\\b",
     "\\p{L}", "\\x41", "[[:alpha:]]", "[z-a]", "[]", "*a", "a)", "(a", "[a", "a**",
     "a*+", "\\"],
)  # fmt: skip
def test_regex_rejected(pattern: str) -> None:
    with pytest.raises(ExpressionError, match="regexp not allowed"):
        canonical_regex(pattern)
