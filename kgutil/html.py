"""Self-contained HTML pages: one Jinja2 environment (autoescaped) and marked-text segments.

Marked text is cut at every span boundary (Python code-point offsets, so CJK, full-width and emoji text stay
exact) into segments that each carry the labels of every span covering them; overlapping and nested spans thus
need no nesting of elements. A page embeds its CSS and script: nothing is fetched when it is viewed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from kgutil.io import atomic_write_text

_ENV = Environment(loader=PackageLoader("kgutil", "templates"), autoescape=select_autoescape(["j2", "html"]),
                   undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


@dataclass(frozen=True)
class Segment:
    """A run of text and the labels of the spans that cover all of it (empty: plain text)."""

    text: str
    start: int
    labels: tuple[str, ...] = ()


def segments(text: str, spans: Iterable[tuple[int, int, str]]) -> list[Segment]:
    """``text`` cut at the boundaries of ``spans`` (start, end, label); spans may overlap or nest.

    Spans are clipped to the text; empty ones are dropped. Concatenating the segments gives ``text`` back.
    """
    clipped = [(max(0, a), min(len(text), b), label) for a, b, label in spans]
    clipped = [s for s in clipped if s[0] < s[1]]
    cuts = sorted({0, len(text), *(a for a, _, _ in clipped), *(b for _, b, _ in clipped)})
    out = []
    for a, b in zip(cuts, cuts[1:]):
        labels = tuple(label for x, y, label in clipped if x <= a and b <= y)
        out.append(Segment(text[a:b], a, labels))
    return out


def marked(text: str, links: list[dict[str, Any]] = (), *, answer: tuple[int, int] | None = None,
           gold: Iterable[tuple[int, int]] = (), sentences: list[tuple[int, int]] | None = None,
           support: dict[int, float] | None = None, prefix: str = "") -> list[dict[str, Any]]:
    """The view model of marked text: one item per segment with its text, link ids (``prefix`` + index into
    ``links``, rows with start/end/text/entity/type/rule/score), answer/gold flags, and sentence index with its
    support probability when the sentence is shaded as support."""
    spans = [(int(l["start"]), int(l["end"]), f"link:{i}") for i, l in enumerate(links)]
    if answer is not None:
        spans.append((answer[0], answer[1], "answer"))
    spans += [(a, b, "gold") for a, b in gold]
    spans += [(a, b, f"sentence:{i}") for i, (a, b) in enumerate(sentences or [])]
    items = []
    for seg in segments(text, spans):
        ids = [int(label[5:]) for label in seg.labels if label.startswith("link:")]
        sentence = next((int(label[9:]) for label in seg.labels if label.startswith("sentence:")), None)
        rows = [links[i] for i in ids]
        items.append({
            "text": seg.text, "links": [f"{prefix}{i}" for i in ids], "colour": colour(rows[0].get("type")) if rows else None,
            "title": "\n".join(f"{r['text']} → {r['entity']} ({r.get('type') or '-'}, {r['rule']}, "
                                f"{float(r['score']):.2f})" for r in rows),
            "classes": [c for c in ("answer", "gold") if c in seg.labels],
            "sentence": sentence,
            "support": (support or {}).get(sentence) if sentence is not None else None})
    return items


_HUES = {"疾病": 0, "disease": 0, "症状": 30, "symptom": 30, "药物": 120, "药品": 120, "compound": 120,
         "检查": 210, "治疗": 270, "手术": 270, "科室": 180, "部位": 320, "anatomy": 320, "食物": 60}


def colour(key: str | None) -> str:
    """A stable pastel colour for an entity type: fixed hues for the common medical types, else a hash."""
    if not key:
        return "hsl(0, 0%, 85%)"
    hue = _HUES.get(key.lower(), int(hashlib.md5(key.encode("utf-8")).hexdigest()[:4], 16) % 360)
    return f"hsl({hue}, 75%, 82%)"


def render(template: str, **context: Any) -> str:
    """Render ``templates/TEMPLATE`` with ``context`` (every value escaped unless marked safe)."""
    return _ENV.get_template(template).render(colour=colour, **context)


def write_page(path: Path, html: str) -> Path:
    """Write a page atomically."""
    atomic_write_text(Path(path), html)
    return Path(path)
