"""The entity index: exact-name table, jieba user dictionary and FAISS indexes over KG entity names.

Built from a KG snapshot (``kg.snapshot``) (entity ids are the snapshot's), typed from term lists where they
name the entity, else by the snapshot. Saved as one
directory, written atomically and stamped with the snapshot checksum::

    manifest.json   config, counts, snapshot checksum
    entities.tsv    id  name  type
    userdict.txt    jieba user dictionary (name freq tag) so long medical terms stay whole
    ngram.faiss     inner-product index over hashed unit n-gram vectors of the names (overlap candidates; read
                    on first use, so an index used by the exact rule alone can travel without it)
    dense.faiss     optional: normalised encoder embeddings of the names (synonyms that share few units)
"""

from __future__ import annotations

import json
import logging
import zlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal

import faiss
import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from kgutil.io import atomic_path
from kg.snapshot import Snapshot, SnapshotError, escape, unescape
from retrieval.text import is_chinese, normalize, units

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


class IndexConfig(BaseModel):
    """``scripts/build_entity_index.py`` settings."""

    model_config = ConfigDict(extra="forbid")

    language: Literal["auto", "zh", "en"] = Field("auto", description="units: characters (zh) or words (en)")
    ngram_dim: int = Field(256, ge=16, description="hashed n-gram vector size")
    ngram_order: int = Field(2, ge=1, le=3, description="unit n-grams 1..order")
    ivf_lists: int | None = Field(None, description="IVF lists (None: flat index below 50k names, else 4·√N)")
    nprobe: int = Field(16, ge=1)
    userdict_freq: int = Field(100_000, ge=1, description="jieba frequency of entity names (keeps them whole)")
    userdict_tag: str = "n"
    dicts: list[Path] = Field(default_factory=list, description="typed term lists (one term per line, or "
                                                                "name<TAB>…<TAB>type) for types and the user dict")
    dense_encoder: str | None = Field(None, description="Hugging Face encoder for a dense name index")
    dense_batch_size: int = 256
    progress: bool = True


def hashed_ngram_vectors(names: Sequence[Sequence[str]], dim: int, order: int) -> np.ndarray:
    """L2-normalised ``[N, dim]`` float32 vectors: counts of unit n-grams (1..order) hashed by CRC32."""
    rows, cols = [], []
    for i, seq in enumerate(names):
        for n in range(1, order + 1):
            for j in range(len(seq) - n + 1):
                rows.append(i)
                cols.append(zlib.crc32("\x1f".join(seq[j:j + n]).encode("utf-8")) % dim)
    out = np.zeros((len(names), dim), dtype=np.float32)
    np.add.at(out, (np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)), 1.0)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, norms, out=out, where=norms > 0)
    return out


def _term_types(paths: list[Path]) -> dict[str, str]:
    """name → type from term lists: ``name<TAB>…<TAB>type`` lines, or bare names typed by the file name
    (``xywy_liuhuanyong_disease.txt`` → ``disease``)."""
    types: dict[str, str] = {}
    for path in paths:
        default = Path(path).stem.rsplit("_", 1)[-1]
        with open(path, encoding="utf-8-sig") as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if parts[0].strip():
                    types.setdefault(normalize(parts[0]), parts[-1].strip() if len(parts) > 1 else default)
    return types


@dataclass
class EntityIndex:
    """Loaded index; ``names[i]``/``types[i]`` describe snapshot entity ``i``."""

    path: Path
    names: list[str]
    types: list[str | None]
    language: str
    config: IndexConfig
    snapshot_checksum: str
    snapshot_path: Path | None
    dense: faiss.Index | None = None
    exact: dict[str, tuple[int, ...]] = field(default_factory=dict)
    name_units: list[tuple[str, ...]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.exact:
            table: dict[str, list[int]] = defaultdict(list)
            for i, name in enumerate(self.names):
                table[normalize(name)].append(i)
            self.exact = {k: tuple(v) for k, v in table.items()}  # tuples of ints: not tracked by the GC
        if not self.name_units:
            self.name_units = [tuple(units(normalize(n), self.language)) for n in self.names]

    @property
    def userdict(self) -> Path:
        return self.path / "userdict.txt"

    @cached_property
    def ngram(self) -> faiss.Index:
        """The n-gram index of the overlap rule, read on first use."""
        path = self.path / "ngram.faiss"
        if not path.is_file():
            raise SnapshotError(f"{path}: missing; the overlap rule needs it (rebuild the index with "
                                "scripts/build_entity_index.py, or link by the exact rule alone: linker.overlap false)")
        ngram = faiss.read_index(str(path))
        if hasattr(ngram, "nprobe"):
            ngram.nprobe = self.config.nprobe
        return ngram

    def query_vectors(self, texts: list[str]) -> np.ndarray:
        return hashed_ngram_vectors([units(normalize(t), self.language) for t in texts], self.config.ngram_dim,
                                    self.config.ngram_order)

    @classmethod
    def load(cls, path: Path, *, snapshot_checksum: str | None = None) -> "EntityIndex":
        """Read an index directory; with ``snapshot_checksum`` refuse an index built from another snapshot."""
        path = Path(path)
        manifest_path = path / "manifest.json"
        if not manifest_path.is_file():
            raise SnapshotError(f"{path}: not an entity index (no manifest.json); build one with "
                                "scripts/build_entity_index.py")
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if manifest.get("format_version") != FORMAT_VERSION:
            raise SnapshotError(f"{manifest_path}: format_version {manifest.get('format_version')} unsupported")
        if snapshot_checksum is not None and manifest["snapshot_checksum"] != snapshot_checksum:
            raise SnapshotError(
                f"{path}: index was built from snapshot {manifest['snapshot_checksum'][:12]}…, not from "
                f"{snapshot_checksum[:12]}…; rebuild it with scripts/build_entity_index.py")
        names, types = [], []
        with open(path / "entities.tsv", encoding="utf-8") as f:
            next(f)
            for line in f:
                _, name, typ = line.rstrip("\n").split("\t")
                names.append(unescape(name))
                types.append(unescape(typ) or None)
        dense = faiss.read_index(str(path / "dense.faiss")) if (path / "dense.faiss").exists() else None
        return cls(path=path, names=names, types=types, language=manifest["language"],
                   config=IndexConfig.model_validate(manifest["config"]),
                   snapshot_checksum=manifest["snapshot_checksum"],
                   snapshot_path=Path(manifest["snapshot_path"]) if manifest.get("snapshot_path") else None,
                   dense=dense)


def build_index(snapshot: Snapshot, config: IndexConfig, out: Path) -> EntityIndex:
    """Build and save the index for ``snapshot`` at ``out`` (atomically), then load it back."""
    names = snapshot.entity_names
    language = config.language
    if language == "auto":
        sample = names[:: max(1, len(names) // 2000)]
        language = "zh" if sum(is_chinese(n) for n in sample) >= 0.5 * len(sample) else "en"
    term_types = _term_types(config.dicts)
    # curated term lists first: a KG's relation-implied types are noisier (CMeKG types body parts as 症状)
    types = [term_types.get(normalize(n)) or t for n, t in zip(names, snapshot.entity_types)]
    name_units = [units(normalize(n), language) for n in names]
    log.info("indexing %d entity names (%s units)", len(names), language)
    vectors = hashed_ngram_vectors(name_units, config.ngram_dim, config.ngram_order)
    n_lists = config.ivf_lists if config.ivf_lists is not None else (
        0 if len(names) < 50_000 else int(4 * np.sqrt(len(names))))
    if n_lists:
        quantizer = faiss.IndexFlatIP(config.ngram_dim)
        ngram = faiss.IndexIVFFlat(quantizer, config.ngram_dim, n_lists, faiss.METRIC_INNER_PRODUCT)
        ngram.train(vectors)
        ngram.nprobe = config.nprobe
    else:
        ngram = faiss.IndexFlatIP(config.ngram_dim)
    ngram.add(vectors)
    dense = None
    if config.dense_encoder:
        from retrieval.dense import encode_names

        emb = encode_names(names, config.dense_encoder, batch_size=config.dense_batch_size,
                           progress=config.progress)
        dense = faiss.IndexFlatIP(emb.shape[1])
        dense.add(emb)
    with atomic_path(out) as tmp:
        tmp.mkdir()
        with open(tmp / "entities.tsv", "w", encoding="utf-8") as f:
            f.write("id\tname\ttype\n")
            for i, (n, t) in enumerate(zip(names, types)):
                f.write(f"{i}\t{escape(n)}\t{escape(t or '')}\n")
        words = {normalize(n) for n in names} | set(term_types)
        with open(tmp / "userdict.txt", "w", encoding="utf-8") as f:
            for w in tqdm(sorted(words), desc="user dictionary", disable=not config.progress):
                if len(w) >= 2 and " " not in w:
                    f.write(f"{w} {config.userdict_freq} {config.userdict_tag}\n")
        faiss.write_index(ngram, str(tmp / "ngram.faiss"))
        if dense is not None:
            faiss.write_index(dense, str(tmp / "dense.faiss"))
        manifest = {"format_version": FORMAT_VERSION, "snapshot_checksum": snapshot.checksum,
                    "snapshot_path": str(Path(snapshot.path).resolve()),
                    "language": language, "num_entities": len(names), "ivf_lists": n_lists,
                    "typed_entities": sum(t is not None for t in types),
                    "config": json.loads(config.model_dump_json())}
        (tmp / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
    return EntityIndex.load(out, snapshot_checksum=snapshot.checksum)
