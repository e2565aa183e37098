"""The Bolt/Cypher graph store against a real server: loads, idempotence, resume, lookups, snapshot export."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kg.reader import TripleReader
from kg.records import Attribute, ReaderConfig, Triple
from kg.snapshot import Snapshot, SnapshotError, export_snapshot
from kg.store import GraphStore

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "sample_kg.tsv"
HOSTILE = ["'}) DETACH DELETE n //", 'a"b\\c', "x`y", "$rows", "MATCH (n) DETACH DELETE n", "名\t字"]


def counts(store: GraphStore) -> tuple[int, int, int]:
    s = store.stats()
    return s["entities"], s["triples"], s["attributes"]


def sample_records() -> list:
    return list(TripleReader(ReaderConfig(literal_relations=["易感人群", "传播途径", "治疗周期", "治愈率"]))
                .read([SAMPLE]))


def test_load_is_idempotent_and_counts_match(store: GraphStore) -> None:
    records = sample_records()
    n_triples = sum(isinstance(r, Triple) for r in records)
    n_attrs = sum(isinstance(r, Attribute) for r in records)
    names = {n for r in records if isinstance(r, Triple) for n in (r.head, r.tail)}
    names |= {r.entity for r in records if isinstance(r, Attribute)}
    first = store.load(records, progress=False)
    assert (first.triples, first.attributes) == (n_triples, n_attrs)
    assert counts(store) == (len(names), n_triples, n_attrs)
    store.load(records, progress=False)  # no journal: every row MERGEd again
    assert counts(store) == (len(names), n_triples, n_attrs)
    store.load(records, load_id="same", progress=False)
    again = store.load(records, load_id="same", progress=False)
    assert again.batches == 0 and again.skipped_batches > 0
    assert counts(store) == (len(names), n_triples, n_attrs)


def test_hostile_names_are_stored_literally(store: GraphStore) -> None:
    records = [Triple(head=h, relation=h, tail=f"{h}-tail") for h in HOSTILE]
    records.append(Attribute(entity=HOSTILE[0], key="key'}) //", value="v\" OR 1=1"))
    store.load(records, progress=False)
    assert counts(store) == (2 * len(HOSTILE), len(HOSTILE), 1)
    for name in HOSTILE:
        entity = store.entity(name)
        assert entity is not None and entity["name"] == name
        (nb,) = store.neighbours(name)
        assert (nb.name, nb.relation, nb.direction) == (f"{name}-tail", name, "out")
    assert store.entity(HOSTILE[0])["attributes"] == {"key'}) //": ["v\" OR 1=1"]}


def test_types_and_neighbours(store: GraphStore) -> None:
    store.load([Triple(head="糖尿病", relation="症状", tail="多尿", head_type="疾病", tail_type="症状"),
                Triple(head="糖尿病", relation="常用药品", tail="二甲双胍"),
                Triple(head="二甲双胍", relation="不良反应", tail="乳酸酸中毒")], progress=False)
    assert store.entity("糖尿病")["type"] == "疾病"
    one = {(n.name, n.hops) for n in store.neighbours("二甲双胍")}
    assert one == {("糖尿病", 1), ("乳酸酸中毒", 1)}
    two = {(n.name, n.hops, n.direction) for n in store.neighbours("乳酸酸中毒", hops=2)}
    assert two == {("二甲双胍", 1, "in"), ("糖尿病", 2, "in")}
    assert store.entity("不存在") is None
    with pytest.raises(ValueError):
        store.neighbours("糖尿病", hops=4)


def test_snapshot_round_trip_and_tamper_detection(store: GraphStore, tmp_path: Path) -> None:
    records = sample_records() + [Triple(head="名\t字", relation="r\\n", tail="尾\n行")]
    store.load(records, progress=False)
    manifest = export_snapshot(store, tmp_path / "snap", progress=False)
    snap = Snapshot.load(tmp_path / "snap")
    e, t, a = counts(store)
    assert (snap.num_entities, len(snap.triples), len(snap.attributes)) == (e, t, a)
    assert manifest["counts"] == {"entities": e, "relations": snap.num_relations, "triples": t, "attributes": a}
    triples = {(snap.entity_names[h], snap.relation_names[r], snap.entity_names[t]) for h, r, t in snap.triples}
    expected = {(r.head, r.relation, r.tail) for r in records if isinstance(r, Triple)}
    assert triples == expected
    assert snap.entity_names == sorted(snap.entity_names)
    assert snap.entity_types[snap.entity_id()["糖尿病"]] is None  # sample read without relation_types
    # Re-export is byte-identical (same checksum); a tampered file is refused.
    assert export_snapshot(store, tmp_path / "snap", progress=False)["checksum"] == manifest["checksum"]
    with open(tmp_path / "snap" / "triples.tsv", "a") as f:
        f.write("0\t0\t0\n")
    with pytest.raises(SnapshotError, match="checksum"):
        Snapshot.load(tmp_path / "snap")
    with pytest.raises(SnapshotError, match="not a KG snapshot"):
        Snapshot.load(tmp_path)


def test_killed_load_resumes_to_exact_counts(store: GraphStore, store_endpoint: dict, tmp_path: Path) -> None:
    """SIGKILL build_kg.py half-way through a load; the re-run ends with exactly the counts of one clean load."""
    big = tmp_path / "big.tsv"
    n = 30_000
    big.write_text("".join(f"疾病{i % 3000}\t症状\t症状{i}\n" for i in range(n)), encoding="utf-8")
    env = {**os.environ, "TEST_STORE_PASSWORD": store_endpoint["auth"][1]}
    cmd = [sys.executable, str(ROOT / "scripts" / "build_kg.py"), "--triples", str(big), "--uri",
           store_endpoint["uri"], "--user", store_endpoint["auth"][0], "--password-env", "TEST_STORE_PASSWORD",
           "--batch-size", "500", "--store", str(tmp_path / "store"), "--no-export", "--no-progress"]
    if store_endpoint["database"]:
        cmd += ["--database", str(store_endpoint["database"])]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while store.stats()["triples"] < n // 4:
        assert proc.poll() is None, "load finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = store.stats()["triples"]
    assert 0 < partial < n
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert counts(store) == (3000 + n, n, 0)
