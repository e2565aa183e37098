"""Validated KG records and the reader configuration."""

from __future__ import annotations

import hashlib

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Triple(BaseModel):
    """An entity–relation–entity fact. Types are optional labels (e.g. 疾病, 症状)."""

    model_config = ConfigDict(frozen=True)

    head: str = Field(min_length=1)
    relation: str = Field(min_length=1)
    tail: str = Field(min_length=1)
    head_type: str | None = None
    tail_type: str | None = None


class Attribute(BaseModel):
    """A literal-valued fact (free text, dose, number) kept on its entity instead of becoming a node."""

    model_config = ConfigDict(frozen=True)

    entity: str = Field(min_length=1)
    key: str = Field(min_length=1)
    value: str = Field(min_length=1)
    entity_type: str | None = None

    @property
    def uid(self) -> str:
        """Stable identity: the same (entity, key, value) always maps to the same attribute record."""
        raw = "\x1f".join((self.entity, self.key, self.value)).encode("utf-8")
        return hashlib.blake2b(raw, digest_size=16).hexdigest()


class Rejected(BaseModel):
    """An input line that was not loaded, and why."""

    file: str
    line: int
    reason: str
    text: str = ""

    def location(self) -> str:
        return f"{self.file}:{self.line}"


DEFAULT_STOP_ENTITIES = ["无", "暂无", "其他", "其它", "不详", "未知", "不明", "null", "none", "n/a", "nan", "-", "—"]


class ReaderConfig(BaseModel):
    """How triples files are read, normalised and filtered."""

    model_config = ConfigDict(extra="forbid")

    nfkc: bool = Field(True, description="NFKC-normalise text (full-width → half-width, compatibility forms)")
    strip: bool = Field(True, description="trim surrounding whitespace and collapse inner runs to one space")
    lowercase: bool = Field(False, description="lower-case names (useful for English KGs)")
    relation_allow: list[str] | None = Field(None, description="keep only these relations (after normalisation)")
    relation_deny: list[str] = Field(default_factory=list, description="drop these relations")
    literal_relations: list[str] = Field(
        default_factory=list, description="relations whose tails are always literal attributes"
    )
    relation_types: dict[str, tuple[str | None, str | None]] = Field(
        default_factory=dict, description="relation → (head type, tail type) for files without type columns"
    )
    detect_literals: bool = Field(True, description="route free-text / dose / numeric tails to attributes")
    literal_min_chars: int = Field(32, ge=1, description="a tail this long or longer is free text")
    min_entity_chars: int = Field(1, ge=1)
    max_entity_chars: int = Field(64, ge=1)
    stop_entities: list[str] = Field(default_factory=lambda: list(DEFAULT_STOP_ENTITIES))
    max_line_bytes: int = Field(65536, ge=16, description="longer lines are rejected unread")
    skip_header: bool = Field(True, description="skip a first row that reads head/relation/tail")

    @field_validator("relation_deny", "literal_relations", "stop_entities")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        return sorted(set(v))
