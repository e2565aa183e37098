"""Benchmark helpers: peak RSS of this process and of another PID, and the JSON result writer."""

from __future__ import annotations

import argparse
import json
import logging
import platform
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from kgutil.io import atomic_write_text

if TYPE_CHECKING:
    from mrc.crossval import CVConfig

RESULTS = Path(__file__).resolve().parent / "results"
SHARED = Path(__file__).resolve().parent.parent.parent / "shared"


def peak_rss_mb() -> float:
    """Peak resident set size of this process (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def process_peak_rss_mb(pid: int) -> float:
    """Peak RSS (VmHWM) of another process (MB), 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def parse_cv_args(parser: argparse.ArgumentParser, argv: list[str] | None,
                  overrides: Callable[[argparse.Namespace], dict[str, Any]] = lambda args: {}
                  ) -> tuple[argparse.Namespace, CVConfig | None]:
    """A cross-validation bench's flags and its ``mrc.crossval.CVConfig`` (``--config`` required; flags override
    it through ``overrides(args)``); the config is None, with the reason logged, when it is invalid."""
    from kgutil.cli import ConfigError, add_common_args, build_config, setup_logging
    from mrc.crossval import CVConfig

    add_common_args(parser)
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    if args.config is None:
        parser.error("--config is required (configs/cv/*.yaml)")
    try:
        return args, build_config(CVConfig, args, overrides(args))
    except ConfigError as err:
        logging.getLogger(parser.prog).error("%s", err)
        return args, None


def write_result(name: str, figures: dict[str, Any]) -> Path:
    """Print ``figures`` and write them with machine facts to ``bench/results/NAME.json``."""
    payload = {
        "benchmark": name,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": psutil.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
                    "python": platform.python_version()},
        **figures,
    }
    text = json.dumps(payload, ensure_ascii=False, indent=2)
    print(text)
    path = RESULTS / f"{name}.json"
    atomic_write_text(path, text + "\n")
    return path


def build_snapshot(triples: Path, kg_config: Path, work: Path) -> Path:
    """Load ``triples`` with ``kg_config`` into a fresh local store under ``work``; return the snapshot path."""
    from kg.build import BuildConfig, build_kg, open_store
    from kgutil.cli import read_config_file

    config = BuildConfig.model_validate({**read_config_file(kg_config), "triples": [triples],
                                         "store": work / "store", "progress": False})
    with open_store(config) as store:
        build_kg(store, config)
    return config.snapshot_dir
