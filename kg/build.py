"""One entry point for KG builds: read → filter → load into the store → export the snapshot."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kg import arcadedb
from kgutil.io import atomic_path
from kg.reader import KGInputError, TripleReader, check_inputs
from kg.records import ReaderConfig, Rejected
from kg.snapshot import export_snapshot
from kg.store import GraphStore, LoadStats, StoreConfig

log = logging.getLogger(__name__)


class BuildConfig(BaseModel):
    """``scripts/build_kg.py`` settings."""

    model_config = ConfigDict(extra="forbid")

    triples: list[Path] = Field(default_factory=list, description="TSV/CSV/JSONL(.gz) files to load")
    store: Path = Field(Path("kg_store"), description="local store directory (server data, snapshot, rejects)")
    connection: StoreConfig = Field(default_factory=StoreConfig)
    reader: ReaderConfig = Field(default_factory=ReaderConfig)
    export: bool = Field(True, description="export the snapshot after a load")
    snapshot: Path | None = Field(None, description="snapshot directory (default: STORE/snapshot)")
    rejects: Path | None = Field(None, description="rejects file (default: STORE/rejects.tsv)")
    keep_server: bool = Field(False, description="leave the local server running for later commands")
    reset: bool = Field(False, description="delete the graph before loading")
    progress: bool = True

    @property
    def snapshot_dir(self) -> Path:
        return self.snapshot or self.store / "snapshot"

    @property
    def rejects_file(self) -> Path:
        return self.rejects or self.store / "rejects.tsv"


@dataclass
class BuildResult:
    summary: dict[str, int] = field(default_factory=dict)
    load: LoadStats | None = None
    manifest: dict[str, Any] | None = None
    rejects_file: Path | None = None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["rejects_file"] = str(self.rejects_file) if self.rejects_file else None
        return out


@contextlib.contextmanager
def open_store(config: BuildConfig) -> Iterator[GraphStore]:
    """The configured remote store, or the local ArcadeDB server under ``config.store`` (a build that writes
    holds the store's writer lock, so concurrent builds on one store run one after the other)."""
    if config.connection.uri is not None:
        with GraphStore.from_config(config.connection) as store:
            yield store
        return
    writes = bool(config.triples) or config.reset
    with contextlib.ExitStack() as stack:
        if writes:
            stack.enter_context(arcadedb.writer_lock(config.store))
        info = stack.enter_context(arcadedb.local_server(config.store / "arcadedb", keep=config.keep_server))
        with GraphStore.connect(info.uri, info.auth, arcadedb.DATABASE,
                                batch_size=config.connection.batch_size,
                                max_retries=config.connection.max_retries,
                                retry_seconds=config.connection.retry_seconds,
                                alive=lambda: arcadedb.pid_alive(info.pid)) as store:
            yield store


def load_fingerprint(paths: list[Path], reader: ReaderConfig, batch_size: int) -> str:
    """Identity of a load: input bytes, reader settings and batch size (batches are deterministic given these)."""
    h = hashlib.sha256(reader.model_dump_json().encode() + f"|{batch_size}".encode())
    for path in paths:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()


def load_triples(store: GraphStore, config: BuildConfig) -> BuildResult:
    """Read, filter and load ``config.triples``; rejected rows go to the rejects file (written atomically)."""
    check_inputs(config.triples)
    reader = TripleReader(config.reader)
    load_id = load_fingerprint(config.triples, config.reader, store.batch_size)
    failure: KGInputError | None = None
    stats: LoadStats | None = None
    with atomic_path(config.rejects_file) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(["location", "reason", "text"])

        def on_reject(r: Rejected) -> None:
            writer.writerow([r.location(), r.reason, r.text])

        try:
            stats = store.load(reader.read(config.triples, on_reject), load_id=load_id, progress=config.progress)
        except KGInputError as err:  # a corrupt file part-way: keep the rejects of what was read
            failure = err
    summary = reader.summary.as_dict()
    log.info("read %(read)d rows: %(triples)d triples, %(attributes)d attributes, %(rejected)d rejected, "
             "%(duplicates)d duplicates", summary)
    if summary["rejected"]:
        log.warning("%d rows rejected; see %s", summary["rejected"], config.rejects_file)
    if failure is not None:
        raise failure
    if summary["triples"] + summary["attributes"] == 0:
        log.warning("no triples or attributes were read from %s", ", ".join(map(str, config.triples)))
    return BuildResult(summary=summary, load=stats, rejects_file=config.rejects_file)


def build_kg(store: GraphStore, config: BuildConfig) -> BuildResult:
    """Load the configured triples (if any) and export the snapshot."""
    if config.reset:
        store.clear()
    result = load_triples(store, config) if config.triples else BuildResult()
    if config.triples and config.export:
        result.manifest = export_snapshot(store, config.snapshot_dir, progress=config.progress,
                                          source=", ".join(str(p) for p in config.triples))
    return result
