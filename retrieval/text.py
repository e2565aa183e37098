"""Text units for matching: normalisation that keeps offsets, script detection, and unit sequences.

Chinese names are compared by characters, English names by word tokens (lower-cased alphanumerics).
"""

from __future__ import annotations

import re
import unicodedata

_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def normalize_with_offsets(text: str) -> tuple[str, list[int]]:
    """NFKC + lower-case, character by character: ``(normalized, source)`` with ``source[i]`` the index in
    ``text`` of the character that produced ``normalized[i]``, so spans map back to the original text."""
    whole = unicodedata.normalize("NFKC", text).lower()
    if len(whole) == len(text) and all(a == b or _char_norm(a) == b for a, b in zip(text, whole)):
        return whole, list(range(len(text)))  # one character in, one out: the common case
    out: list[str] = []
    source: list[int] = []
    for i, ch in enumerate(text):
        norm = _char_norm(ch)
        out.append(norm)
        source.extend([i] * len(norm))
    return "".join(out), source


def _char_norm(ch: str) -> str:
    return unicodedata.normalize("NFKC", ch).lower() if ord(ch) > 127 else ch.lower()


def normalize(text: str) -> str:
    """The matching key of a name: NFKC, lower-case, inner whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def is_chinese(text: str, share: float = 0.3) -> bool:
    """True when at least ``share`` of the non-space characters are CJK ideographs."""
    chars = [c for c in text if not c.isspace()]
    return bool(chars) and sum(bool(_CJK.match(c)) for c in chars) >= share * len(chars)


def units(text: str, language: str) -> list[str]:
    """Matching units of a normalized string: characters (zh, spaces dropped) or word tokens (en)."""
    if language == "zh":
        return [c for c in text if not c.isspace()]
    return _WORD.findall(text)
