"""Shared fixtures: a real graph store (local ArcadeDB, or any Neo4j via NEO4J_TEST_URI) and shared data paths."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

from kg import arcadedb
from kg.store import GraphStore

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("KGMRC_SHARED", ROOT.parent / "shared"))


def shared_path(*parts: str) -> Path:
    """A file under ../shared, or skip the test with the reason."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared data not available on this machine)")
    return path


@pytest.fixture(scope="session")
def store_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """uri/auth/database of the test store. Local ArcadeDB is started once and killed by PID at the end."""
    uri = os.environ.get("NEO4J_TEST_URI")
    if uri:
        yield {"uri": uri, "auth": (os.environ.get("NEO4J_TEST_USER", "neo4j"), os.environ["NEO4J_TEST_PASSWORD"]),
               "database": os.environ.get("NEO4J_TEST_DATABASE"), "pid": None}
        return
    root = tmp_path_factory.mktemp("arcadedb")
    info = arcadedb.start_server(root, heap="1g", tie_to_parent=True)
    try:
        yield {"uri": info.uri, "auth": info.auth, "database": arcadedb.DATABASE, "pid": info.pid}
    finally:
        arcadedb.stop_pid(info.pid)
        assert not arcadedb.pid_alive(info.pid), "ArcadeDB test server survived the session"


@pytest.fixture
def store(store_endpoint: dict[str, object]) -> Iterator[GraphStore]:
    """An empty graph on the session's server."""
    with GraphStore.connect(store_endpoint["uri"], store_endpoint["auth"], store_endpoint["database"],
                            batch_size=50) as graph:
        graph.clear()
        yield graph


@pytest.fixture(scope="session")
def sample_snapshot(store_endpoint: dict[str, object], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped sample KG loaded into the test store and exported as a snapshot (built once)."""
    from kgutil.cli import read_config_file
    from kg.reader import TripleReader
    from kg.records import ReaderConfig
    from kg.snapshot import export_snapshot

    reader_cfg = ReaderConfig.model_validate(read_config_file(ROOT / "configs/kg/sample.yaml")["reader"])
    out = tmp_path_factory.mktemp("sample") / "snapshot"
    with GraphStore.connect(store_endpoint["uri"], store_endpoint["auth"], store_endpoint["database"]) as graph:
        graph.clear()
        graph.load(TripleReader(reader_cfg).read([ROOT / "examples" / "sample_kg.tsv"]), progress=False)
        export_snapshot(graph, out, progress=False)
        graph.clear()
    return out


def make_tiny_encoder(out: Path, dropout: float = 0.1) -> Path:
    """A small random BERT with a character vocabulary built from the shipped samples (no download, no
    ../shared): every character of the sample KG and QA files, ASCII letters and digits, and BERT's specials."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    text = (ROOT / "examples" / "sample_mrc.json").read_text(encoding="utf-8") + \
        (ROOT / "examples" / "sample_kg.tsv").read_text(encoding="utf-8")
    chars = sorted({c.lower() for c in text if not c.isspace()} | set("abcdefghijklmnopqrstuvwxyz0123456789"))
    out.mkdir(parents=True, exist_ok=True)
    vocab = {token: i for i, token in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars])}
    tokenizer = BertTokenizerFast(vocab=vocab, do_lower_case=True, tokenize_chinese_chars=True)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=256, hidden_dropout_prob=dropout,
                        attention_probs_dropout_prob=dropout)
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random BERT with a character vocabulary, saved as a Hugging Face directory."""
    return make_tiny_encoder(tmp_path_factory.mktemp("tiny_encoder"))
