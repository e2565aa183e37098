"""The registry of MRC model families (``--model-type``), in the class-resolver style of PyKEEN.

A family is a :class:`mrc.model.BaselineMRC` subclass registered under a name, with an optional pydantic class
for its own settings (``ModelConfig.fusion``). ``baseline`` is built in; other families register through the
``kgmrc.models`` entry-point group (``cmedbert = "fusion.cmedbert:CMedBERT"`` in this project's
``pyproject.toml``), so this package imports none of them, and a plug-in package adds a family by declaring one.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mrc.model import BaselineMRC

GROUP = "kgmrc.models"


@cache
def _entry_points() -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def family_names() -> list[str]:
    """Every registered family: the CLI's ``--model-type`` choices (no family is imported to list them)."""
    return sorted({"baseline", *_entry_points()})


def model_class(model_type: str) -> type[BaselineMRC]:
    """The class registered as ``model_type``."""
    if model_type == "baseline":
        from mrc.model import BaselineMRC

        return BaselineMRC
    ep = _entry_points().get(model_type)
    if ep is None:
        raise ValueError(f"unknown model type {model_type!r}; registered: {', '.join(family_names())} "
                         f"(families register in the {GROUP!r} entry-point group; reinstall the package after "
                         "adding one)")
    return ep.load()  # type: ignore[attr-defined, no-any-return]
