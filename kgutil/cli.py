"""Shared CLI plumbing: a pydantic config from a YAML/JSON file, overridden by flags; logging setup."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any, TypeVar

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


def read_config_file(path: Path) -> dict[str, Any]:
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = json.loads(text) if Path(path).suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot parse config: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: config must be a mapping, got {type(data).__name__}")
    return data


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    for part in parents:
        data = data.setdefault(part, {})
    data[leaf] = value


def build_config(model: type[M], args: argparse.Namespace, flags: dict[str, Any]) -> M:
    """Config = file (``--config``) ← ``flags`` that were given (not None) ← ``--set KEY=VALUE`` pairs."""
    data: dict[str, Any] = read_config_file(args.config) if getattr(args, "config", None) else {}
    for key, value in flags.items():
        if value is not None:
            _set_dotted(data, key, value)
    for item in getattr(args, "set", []) or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        key, raw = item.split("=", 1)
        _set_dotted(data, key.strip(), yaml.safe_load(raw))
    try:
        return model.model_validate(data)
    except ValidationError as err:
        source = f" in {args.config}" if getattr(args, "config", None) else ""
        raise ConfigError(f"invalid config{source}:\n{err}") from err
