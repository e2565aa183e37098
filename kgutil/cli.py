"""Shared CLI plumbing: a pydantic config from a YAML/JSON file, overridden by flags; logging setup.

Flags are generated from the config's pydantic fields (as Hugging Face's ``HfArgumentParser`` does): a dotted field
path such as ``split.fold`` becomes ``--fold`` (or a name given), with the field's type, choices (``Literal``),
default and description; a bool field becomes a switch (``--x`` when it defaults to False, ``--no-x`` when True).
"""

from __future__ import annotations

import argparse
import json
import logging
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A config file or override that does not validate."""


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML or JSON file with the config (flags override it)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config field, dotted for nested ones (e.g. reader.nfkc=false)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("neo4j").setLevel(logging.WARNING)
    logging.getLogger("torch_max_mem").setLevel(logging.ERROR)
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # its CPU-feature fallbacks read like errors at INFO


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read config: {err.strerror if isinstance(err, OSError) else err}") from err
    try:
        data = json.loads(text) if Path(path).suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot parse config: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: config must be a mapping, got {type(data).__name__}")
    return data


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """``data[a][b] = value`` for ``key`` "a.b", creating the parents."""
    *parents, leaf = key.split(".")
    for part in parents:
        data = data.setdefault(part, {})
    data[leaf] = value


FLAG_PREFIX = "config:"  # argparse dests of generated flags: "config:split.fold"


def _field(model: type[BaseModel], path: str) -> Any:
    """The pydantic FieldInfo at a dotted path (through nested models)."""
    *parents, leaf = path.split(".")
    for part in parents:
        model = _plain(model.model_fields[part].annotation)
    return model.model_fields[leaf]


def _plain(annotation: Any) -> Any:
    """``X`` from ``X | None`` / ``Optional[X]``."""
    if get_origin(annotation) in (Union, types.UnionType):
        rest = [a for a in get_args(annotation) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return annotation


def add_field_args(parser: argparse.ArgumentParser | argparse._ArgumentGroup, model: type[BaseModel],
                   fields: Sequence[str] | Mapping[str, str], prefix: str = "") -> None:
    """One flag per dotted field path of ``model``; ``fields`` maps flag name → path, or lists paths (the flag is
    the last part, with hyphens). ``prefix`` places ``model`` inside the config (e.g. ``model.fusion.``)."""
    pairs = fields.items() if isinstance(fields, Mapping) else ((f.rsplit(".", 1)[-1].rstrip("_"), f) for f in fields)
    for name, path in pairs:
        info = _field(model, path)
        flag, dest = "--" + name.replace("_", "-"), FLAG_PREFIX + prefix + path
        kind = _plain(info.annotation)
        default = None if info.is_required() else info.get_default(call_default_factory=True)
        help_text = info.description or ""
        if kind is bool:
            if default:  # the description states what true means; the switch turns it off
                flag = "--no-" + name.replace("_", "-")
                help_text = f"{prefix + path} = false (default true): {help_text}".rstrip(": ")
            parser.add_argument(flag, dest=dest, action="store_const", const=not default, default=None,
                                help=help_text)
            continue
        kwargs: dict[str, Any] = {"dest": dest, "default": None}
        if get_origin(kind) in (list, tuple):
            kwargs["nargs"] = "+"
            kind = _plain(get_args(kind)[0])
        if get_origin(kind) is Literal:
            kwargs["choices"] = list(get_args(kind))
            kind = type(kwargs["choices"][0])
        kwargs["type"] = kind if kind in (int, float, str, Path) else str
        if "choices" not in kwargs:
            kwargs["metavar"] = name.upper()
        shown = _shown(default)
        parser.add_argument(flag, help=f"{help_text} (default {shown})".lstrip() if shown else help_text, **kwargs)


def _shown(default: Any) -> str:
    """A default as one would type it on the command line ('' for none): paths as text, lists space-separated."""
    if isinstance(default, BaseModel) or default is None:
        return ""
    if isinstance(default, (list, tuple)):
        return " ".join(_shown(v) for v in default)
    return str(default)


def field_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The generated flags that were given, as dotted path → value."""
    return {k[len(FLAG_PREFIX):]: v for k, v in vars(args).items() if k.startswith(FLAG_PREFIX) and v is not None}


def parse_config(parser: argparse.ArgumentParser, model: type[M], argv: list[str] | None = None
                 ) -> tuple[argparse.Namespace, M]:
    """Parse ``argv``, set up logging and build the config; an invalid config is logged and exits with status 2."""
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    try:
        return args, build_config(model, args)
    except ConfigError as err:
        logging.getLogger(parser.prog).error("%s", err)
        raise SystemExit(2) from None


def build_config(model: type[M], args: argparse.Namespace, flags: dict[str, Any] | None = None) -> M:
    """Config = file (``--config``) ← generated flags (``add_field_args``) and ``flags`` that were given (not None)
    ← ``--set KEY=VALUE`` pairs."""
    data: dict[str, Any] = read_config_file(args.config) if getattr(args, "config", None) else {}
    for key, value in {**field_flags(args), **(flags or {})}.items():
        if value is not None:
            set_dotted(data, key, value)
    for item in getattr(args, "set", []) or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        key, raw = item.split("=", 1)
        set_dotted(data, key.strip(), yaml.safe_load(raw))
    try:
        return model.model_validate(data)
    except ValidationError as err:
        source = f" in {args.config}" if getattr(args, "config", None) else ""
        raise ConfigError(f"invalid config{source}:\n{err}") from err
