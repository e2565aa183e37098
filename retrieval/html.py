"""The link view: text with every linked span marked by entity type, and a table of the links."""

from __future__ import annotations

from typing import Any

from kgutil.html import marked, render


def render_links(texts: dict[str, str], links: dict[str, list[dict[str, Any]]], *, index: str = "",
                 neighbours_from: str = "snapshot") -> str:
    """One page for named texts (e.g. question and passage) and their link rows (``Link.as_dict()`` plus
    ``neighbours``): spans coloured by type, overlapping links shown together, a link table per text."""
    parts = [{"name": name, "links": links.get(name, []),
              "segments": marked(text, links.get(name, []), prefix=f"{name}-")} for name, text in texts.items()]
    types = sorted({row.get("type") or "" for rows in links.values() for row in rows})
    return render("links.html.j2", parts=parts, types=types, index=index, neighbours_from=neighbours_from)
