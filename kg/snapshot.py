"""KG snapshot: the frozen, id-indexed copy of the graph that embeddings (``kg.embeddings``) and retrieval (``retrieval.index``) read.

Directory layout (written atomically, all UTF-8 TSV with a header row)::

    entities.tsv    id  name  type          ids 0..E-1 in name order
    relations.tsv   id  name                ids 0..R-1 in name order
    triples.tsv     head  relation  tail    integer ids, sorted
    attributes.tsv  entity  key  value      literal attributes (entity id)
    manifest.json   counts, per-file SHA-256 and ``checksum`` (SHA-256 over the four files)

``checksum`` identifies the snapshot: artifacts derived from it record it and refuse to load against another.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from kgutil.io import atomic_path, sha256_files
from kg.records import Attribute, Triple

if TYPE_CHECKING:  # reading a snapshot needs no graph driver
    from kg.store import GraphStore

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
FILES = ("entities.tsv", "relations.tsv", "triples.tsv", "attributes.tsv")
_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_UNESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}


class SnapshotError(ValueError):
    """A snapshot directory that is missing, corrupted or not the one expected."""


def escape(text: str) -> str:
    """TSV-safe text: backslash, tab and newlines escaped (reversed by :func:`unescape`)."""
    if not any(c in text for c in _ESCAPES):
        return text
    return "".join(_ESCAPES.get(c, c) for c in text)


def unescape(text: str) -> str:
    if "\\" not in text:
        return text
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            out.append(_UNESCAPES.get(text[i + 1], text[i + 1]))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


@dataclass
class Snapshot:
    """An exported KG held in memory. ``triples`` is an ``int64 [N, 3]`` array of (head, relation, tail) ids."""

    path: Path
    entity_names: list[str]
    entity_types: list[str | None]
    relation_names: list[str]
    triples: np.ndarray
    attributes: list[tuple[int, str, str]]
    checksum: str
    manifest: dict[str, Any]

    @property
    def num_entities(self) -> int:
        return len(self.entity_names)

    @property
    def num_relations(self) -> int:
        return len(self.relation_names)

    def entity_id(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.entity_names)}

    @classmethod
    def load(cls, path: Path, *, verify: bool = True) -> "Snapshot":
        """Read a snapshot directory; with ``verify`` the file checksums must match the manifest."""
        path = Path(path)
        manifest_path = path / "manifest.json"
        if not manifest_path.is_file():
            raise SnapshotError(f"{path}: not a KG snapshot (no manifest.json); export one with build_kg.py --export")
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if manifest.get("format_version") != FORMAT_VERSION:
            raise SnapshotError(f"{manifest_path}: format_version {manifest.get('format_version')} != {FORMAT_VERSION}")
        if verify:
            actual = sha256_files([path / f for f in FILES])
            if actual != manifest["checksum"]:
                raise SnapshotError(f"{path}: files do not match manifest checksum (corrupted or edited)")
        entities = [line.split("\t") for line in _data_lines(path / "entities.tsv")]
        relations = [line.split("\t") for line in _data_lines(path / "relations.tsv")]
        tokens = "\n".join(_data_lines(path / "triples.tsv")).split()
        triples = np.asarray(tokens, dtype=np.int64).reshape(-1, 3)
        attributes = []
        for line in _data_lines(path / "attributes.tsv"):
            eid, key, value = line.split("\t")
            attributes.append((int(eid), unescape(key), unescape(value)))
        snap = cls(
            path=path,
            entity_names=[unescape(e[1]) for e in entities],
            entity_types=[unescape(e[2]) or None for e in entities],
            relation_names=[unescape(r[1]) for r in relations],
            triples=triples,
            attributes=attributes,
            checksum=manifest["checksum"],
            manifest=manifest,
        )
        if len(snap.entity_names) != manifest["counts"]["entities"] or len(triples) != manifest["counts"]["triples"]:
            raise SnapshotError(f"{path}: counts differ from manifest.json")
        return snap


def _data_lines(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").split("\n")
    return [line for line in lines[1:] if line]


def export_snapshot(store: GraphStore, out: Path, *, progress: bool = True, source: str = "") -> dict[str, Any]:
    """Write the store's graph as a snapshot directory at ``out`` (atomically); returns the manifest."""
    start = time.perf_counter()
    entities: dict[str, str | None] = {}
    for name, typ in tqdm(store.stream_values("MATCH (e:Entity) RETURN e.name, e.type"),
                          desc="export entities", unit="ent", disable=not progress):
        entities[name] = typ
    triples = tqdm(store.stream_values("MATCH (h:Entity)-[r:REL]->(t:Entity) RETURN h.name, r.name, t.name"),
                   desc="export triples", unit="tri", disable=not progress)
    attributes = store.stream_values("MATCH (e:Entity)-[:HAS_ATTRIBUTE]->(a:Attribute) RETURN e.name, a.key, a.value")
    manifest = write_snapshot(out, entities, triples, attributes, source=source)
    log.info("exported snapshot %s (%d entities, %d triples) in %.1f s", out, manifest["counts"]["entities"],
             manifest["counts"]["triples"], time.perf_counter() - start)
    return manifest


def snapshot_from_records(records: Iterable[Triple | Attribute], out: Path, *, source: str = "") -> dict[str, Any]:
    """Write a snapshot straight from reader records, without a graph store (small KGs, tests)."""
    entities: dict[str, str | None] = {}
    triples: list[tuple[str, str, str]] = []
    attributes: list[tuple[str, str, str]] = []
    for rec in records:
        if isinstance(rec, Triple):
            for name, typ in ((rec.head, rec.head_type), (rec.tail, rec.tail_type)):
                entities[name] = typ or entities.get(name)
            triples.append((rec.head, rec.relation, rec.tail))
        else:
            entities[rec.entity] = rec.entity_type or entities.get(rec.entity)
            attributes.append((rec.entity, rec.key, rec.value))
    return write_snapshot(out, entities, triples, attributes, source=source)


def write_snapshot(out: Path, entities: dict[str, str | None], triples: Iterable[Sequence[str]],
                   attributes: Iterable[Sequence[str]], *, source: str = "") -> dict[str, Any]:
    """Assign ids (entities and relations in name order), write the files and manifest atomically."""
    names = sorted(entities)
    eid = {n: i for i, n in enumerate(names)}
    raw_triples = [(eid[h], r, eid[t]) for h, r, t in triples]
    relations = sorted({r for _, r, _ in raw_triples})
    rid = {r: i for i, r in enumerate(relations)}
    id_triples = sorted((h, rid[r], t) for h, r, t in raw_triples)
    id_attributes = sorted((eid[e], k, v) for e, k, v in attributes)
    with atomic_path(out) as tmp:
        tmp.mkdir()
        _write_tsv(tmp / "entities.tsv", ("id", "name", "type"),
                   (f"{i}\t{escape(n)}\t{escape(entities[n] or '')}" for i, n in enumerate(names)))
        _write_tsv(tmp / "relations.tsv", ("id", "name"), (f"{i}\t{escape(r)}" for i, r in enumerate(relations)))
        _write_tsv(tmp / "triples.tsv", ("head", "relation", "tail"), (f"{h}\t{r}\t{t}" for h, r, t in id_triples))
        _write_tsv(tmp / "attributes.tsv", ("entity", "key", "value"),
                   (f"{e}\t{escape(k)}\t{escape(v)}" for e, k, v in id_attributes))
        manifest = {
            "format_version": FORMAT_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "source": source,
            "counts": {"entities": len(names), "relations": len(relations), "triples": len(id_triples),
                       "attributes": len(id_attributes)},
            "files": {f: sha256_files([tmp / f]) for f in FILES},
            "checksum": sha256_files([tmp / f for f in FILES]),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
    return manifest


def _write_tsv(path: Path, header: tuple[str, ...], lines: Any) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\t".join(header) + "\n")
        for line in lines:
            f.write(line + "\n")
