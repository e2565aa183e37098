"""Read triples from TSV/CSV/JSONL files (optionally gzipped, UTF-8 with or without BOM).

Each non-blank line becomes exactly one of: a :class:`Triple`, an :class:`Attribute` (literal tail), a
duplicate (counted, dropped) or a :class:`Rejected` row carrying ``file:line`` and the reason.
File-level faults (missing, empty, binary) raise :class:`KGInputError`.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import logging
import os
import re
import unicodedata
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from kgutil.io import open_binary
from kg.records import Attribute, ReaderConfig, Rejected, Triple

log = logging.getLogger(__name__)

_SNIFF_BYTES = 8192
_BINARY_NUL_SHARE = 0.01  # this share of NUL bytes in the first 8 KiB: a binary file; fewer: lines rejected
_HEADER = ("head", "relation", "tail")
_SENTENCE_PUNCT = re.compile(r"[。；;！？!?\n]")
_NUMERIC = re.compile(r"^[\d\s.,%+\-~～/:×x*]+$")
_DOSE = re.compile(
    r"^(约|每次|每日|一日|一次|成人|儿童|口服|静脉|肌注)?\s*\d+(\.\d+)?\s*"
    r"(mg|g|kg|ml|l|μg|ug|mmol|iu|u|片|粒|次|袋|支|丸|克|毫克|毫升|微克|单位|天|日|周|月|年|岁|小时|分钟)",
    re.IGNORECASE,
)


class KGInputError(ValueError):
    """A triples file that cannot be read at all (missing, empty, binary, corrupt compression)."""


def check_inputs(paths: Iterable[Path]) -> None:
    """Fail before any work starts when an input is missing, a directory or unreadable."""
    for path in map(Path, paths):
        if path.is_dir():
            raise KGInputError(f"{path}: is a directory, expected a triples file")
        if not path.is_file():
            raise KGInputError(f"{path}: no such file")
        if not os.access(path, os.R_OK):
            raise KGInputError(f"{path}: not readable")


@dataclass
class FileSummary:
    """Counts for one input file; ``read`` = non-blank lines."""

    file: str
    read: int = 0
    triples: int = 0
    attributes: int = 0
    rejected: int = 0
    duplicates: int = 0


@dataclass
class ReadSummary:
    files: list[FileSummary] = field(default_factory=list)

    def total(self, name: str) -> int:
        return sum(getattr(f, name) for f in self.files)

    def as_dict(self) -> dict[str, int]:
        keys = ("read", "triples", "attributes", "rejected", "duplicates")
        return {k: self.total(k) for k in keys}


def input_format(path: Path) -> str:
    """``tsv``, ``csv`` or ``jsonl`` from the file name (a ``.gz`` suffix is looked through)."""
    suffixes = [s.lower() for s in Path(path).suffixes if s.lower() != ".gz"]
    last = suffixes[-1] if suffixes else ""
    if last in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if last == ".csv":
        return "csv"
    return "tsv"


class TripleReader:
    """Normalises, filters and de-duplicates records across all files it reads."""

    def __init__(self, config: ReaderConfig | None = None) -> None:
        self.config = config or ReaderConfig()
        self.summary = ReadSummary()
        self._seen: set[bytes] = set()
        self._stop = {self.normalize(s) for s in self.config.stop_entities}
        self._deny = {self.normalize(r) for r in self.config.relation_deny}
        self._allow = None if self.config.relation_allow is None else {
            self.normalize(r) for r in self.config.relation_allow
        }
        self._literal_rel = {self.normalize(r) for r in self.config.literal_relations}
        self._relation_types = {self.normalize(r): t for r, t in self.config.relation_types.items()}

    def normalize(self, text: str) -> str:
        cfg = self.config
        if cfg.nfkc:
            text = unicodedata.normalize("NFKC", text)
        if cfg.strip:
            text = " ".join(text.split())
        if cfg.lowercase:
            text = text.lower()
        return text

    def is_literal(self, relation: str, tail: str) -> bool:
        """Literal tails: listed relations, long or sentence-like text, numbers, and doses with units."""
        if relation in self._literal_rel:
            return True
        if not self.config.detect_literals:
            return False
        return (
            len(tail) >= self.config.literal_min_chars
            or bool(_SENTENCE_PUNCT.search(tail))
            or bool(_NUMERIC.match(tail))
            or bool(_DOSE.match(tail))
        )

    def _entity_problem(self, name: str) -> str | None:
        if name.lower() in self._stop:
            return "stop-word entity"
        if len(name) < self.config.min_entity_chars:
            return f"entity shorter than {self.config.min_entity_chars} chars"
        if len(name) > self.config.max_entity_chars:
            return f"entity longer than {self.config.max_entity_chars} chars"
        return None

    def read(
        self, paths: Iterable[Path], on_reject: Callable[[Rejected], None] | None = None
    ) -> Iterator[Triple | Attribute]:
        """Yield kept records of every file in order; rejected rows go to ``on_reject``."""
        for path in paths:
            yield from self._read_file(Path(path), on_reject or (lambda r: None))

    def _read_file(self, path: Path, on_reject: Callable[[Rejected], None]) -> Iterator[Triple | Attribute]:
        check_inputs([path])
        summary = FileSummary(file=str(path))
        self.summary.files.append(summary)
        fmt = input_format(path)
        lineno = 0
        try:
            with open_binary(path) as f:
                head = f.peek(_SNIFF_BYTES)[:_SNIFF_BYTES] if hasattr(f, "peek") else b""
                if not head:
                    raise KGInputError(f"{path}: file is empty")
                nuls = head.count(b"\x00")
                if nuls and nuls >= _BINARY_NUL_SHARE * len(head):
                    raise KGInputError(f"{path}: looks binary ({nuls} NUL bytes in the first {len(head)}), "
                                       "not a text file")
                for lineno, raw in enumerate(f, 1):
                    yield from self._record(path, lineno, raw, fmt, summary, on_reject)
        except (EOFError, zlib.error, gzip.BadGzipFile) as err:
            raise KGInputError(f"{path}: compressed data is truncated or corrupt after line {lineno} "
                               f"({type(err).__name__}: {err}); the rows before it were read") from err
        if summary.read == 0:
            log.warning("%s: no data rows (blank or header only)", path)

    def _record(self, path: Path, lineno: int, raw: bytes, fmt: str, summary: FileSummary,
                on_reject: Callable[[Rejected], None]) -> Iterator[Triple | Attribute]:
        """Classify one line: counted, then kept (yielded), rejected (``on_reject``) or a duplicate."""
        result = self._parse_line(path, lineno, raw, fmt)
        if result is None:
            return
        summary.read += 1
        if isinstance(result, Rejected):
            summary.rejected += 1
            on_reject(result)
            return
        if isinstance(result, Triple):
            key = "\x1f".join(("T", result.head, result.relation, result.tail))
        else:
            key = "\x1f".join(("A", result.entity, result.key, result.value))
        digest = hashlib.blake2b(key.encode("utf-8"), digest_size=16).digest()
        if digest in self._seen:
            summary.duplicates += 1
            return
        self._seen.add(digest)
        if isinstance(result, Triple):
            summary.triples += 1
        else:
            summary.attributes += 1
        if not raw.endswith(b"\n"):
            log.warning("%s:%d: the last line has no newline (truncated file?); loaded", path, lineno)
        yield result

    def _parse_line(self, path: Path, lineno: int, raw: bytes, fmt: str) -> Triple | Attribute | Rejected | None:
        def reject(reason: str, text: str = "") -> Rejected:
            return Rejected(file=str(path), line=lineno, reason=reason, text=text[:200])

        if len(raw) > self.config.max_line_bytes:
            return reject(f"line is {len(raw)} bytes, over max_line_bytes={self.config.max_line_bytes}")
        truncated = not raw.endswith(b"\n")
        nul = raw.find(b"\x00")
        if nul >= 0:
            return reject(f"NUL byte at byte {nul + 1} of the line",
                          raw.rstrip(b"\r\n")[:200].decode("utf-8", "replace").replace("\x00", "\\0"))
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            return reject(f"invalid UTF-8 at byte {err.start}", raw.rstrip(b"\r\n")[:200].decode("utf-8", "replace"))
        if lineno == 1:
            text = text.lstrip("\ufeff")
        text = text.rstrip("\r\n")
        if not text.strip():
            return None
        try:
            fields = self._split(text, fmt)
        except ValueError as err:
            return reject(str(err), text)
        if fields is None:
            return reject("wrong column count: expected 3 or 5 (head, relation, tail[, head_type, tail_type])"
                          + ("; last line has no newline, truncated?" if truncated else ""), text)
        head, relation, tail, head_type, tail_type = (self.normalize(x) if x else "" for x in fields)
        if relation in self._relation_types:
            default_head, default_tail = self._relation_types[relation]
            head_type, tail_type = head_type or default_head or "", tail_type or default_tail or ""
        if lineno == 1 and self.config.skip_header and (head, relation, tail) == _HEADER:
            return None
        if not head or not relation or not tail:
            return reject("empty head, relation or tail", text)
        if (self._allow is not None and relation not in self._allow) or relation in self._deny:
            return reject(f"relation {relation!r} filtered by allow/deny list", text)
        if problem := self._entity_problem(head):
            return reject(f"head: {problem}", text)
        try:
            if self.is_literal(relation, tail):
                return Attribute(entity=head, key=relation, value=tail, entity_type=head_type or None)
            if problem := self._entity_problem(tail):
                if self.config.detect_literals and problem.startswith("entity longer"):
                    return Attribute(entity=head, key=relation, value=tail, entity_type=head_type or None)
                return reject(f"tail: {problem}", text)
            return Triple(head=head, relation=relation, tail=tail,
                          head_type=head_type or None, tail_type=tail_type or None)
        except ValidationError as err:
            return reject(f"invalid record: {err.errors()[0]['msg']}", text)

    @staticmethod
    def _split(text: str, fmt: str) -> list[str] | None:
        """The 5 fields (types may be empty) or None on a wrong column count; ValueError on bad JSON or CSV."""
        if fmt == "jsonl":
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as err:
                raise ValueError(f"invalid JSON: {err.msg} at column {err.colno}") from err
            if not isinstance(obj, dict):
                raise ValueError("JSON line is not an object")
            missing = [k for k in _HEADER if not isinstance(obj.get(k), str)]
            if missing:
                raise ValueError(f"JSON object lacks string field(s) {', '.join(missing)}")
            return [obj["head"], obj["relation"], obj["tail"],
                    str(obj.get("head_type") or ""), str(obj.get("tail_type") or "")]
        if fmt == "csv":
            try:
                fields = next(csv.reader([text]))
            except csv.Error as err:  # e.g. a bare carriage return inside an unquoted field
                raise ValueError(f"invalid CSV: {err}") from err
        else:
            fields = text.split("\t")
        if len(fields) == 3:
            return [*fields, "", ""]
        if len(fields) == 5:
            return fields
        return None
