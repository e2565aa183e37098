"""The graph store behind one code path: the official ``neo4j`` driver, Bolt, parameterised Cypher.

Schema (the same on Neo4j 5 and ArcadeDB):
    (:Entity {name, type})-[:REL {name}]->(:Entity)             relation names are a property, never Cypher
    (:Entity)-[:HAS_ATTRIBUTE]->(:Attribute {uid, key, value})   literal tails kept off the entity graph
``Entity.name`` and ``Attribute.uid`` carry uniqueness constraints and every write is create-if-missing, so a
load repeated (or resumed after a crash) converges to the same counts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from queue import Empty, Queue
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from neo4j import Driver, GraphDatabase, ManagedTransaction
from neo4j.exceptions import ServiceUnavailable, SessionExpired, TransientError
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from kg.records import Attribute, Triple

log = logging.getLogger(__name__)
T = TypeVar("T")

SCHEMA = [
    "CREATE CONSTRAINT kgmrc_entity_name IF NOT EXISTS FOR (e:Entity) REQUIRE e.name IS UNIQUE",
    "CREATE CONSTRAINT kgmrc_attribute_uid IF NOT EXISTS FOR (a:Attribute) REQUIRE a.uid IS UNIQUE",
]
# Lookups use ``WHERE x.name = value``, never a property map ``{name: value}``: ArcadeDB resolves a string value
# that reads like a parameter ("$rows") inside a pattern map as that parameter, so such names would not match.
_CREATE_ENTITIES = (
    "UNWIND $rows AS row OPTIONAL MATCH (e:Entity) WHERE e.name = row.name "
    "WITH row, e WHERE e IS NULL CREATE (:Entity {name: row.name, type: row.type})"
)
_SET_TYPES = "UNWIND $rows AS row MATCH (e:Entity) WHERE e.name = row.name SET e.type = row.type"
_MATCH_ENDS = "UNWIND $rows AS row MATCH (h:Entity) WHERE h.name = row.h MATCH (t:Entity) WHERE t.name = row.t "
_MERGE_TRIPLES = _MATCH_ENDS + "MERGE (h)-[:REL {name: row.r}]->(t)"
_CREATE_TRIPLES = _MATCH_ENDS + "CREATE (h)-[:REL {name: row.r}]->(t)"
_JOURNAL = ("UNWIND $rows AS row CREATE (:LoadBatch {load: row.load, index: row.index, triples: row.triples, "
            "attributes: row.attributes})")
_MERGE_ATTRIBUTES = (
    "UNWIND $rows AS row MATCH (e:Entity) WHERE e.name = row.e "
    "MERGE (a:Attribute {uid: row.uid}) SET a.key = row.k, a.value = row.v "
    "MERGE (e)-[:HAS_ATTRIBUTE]->(a)"
)
_CREATE_ATTRIBUTES = (
    "UNWIND $rows AS row MATCH (e:Entity) WHERE e.name = row.e "
    "CREATE (e)-[:HAS_ATTRIBUTE]->(:Attribute {uid: row.uid, key: row.k, value: row.v})"
)
_RETRYABLE = (TransientError, ServiceUnavailable, SessionExpired)
_DRIVER_RETRY_SECONDS = 5.0  # the driver's own retry inside one managed transaction


class StoreUnavailable(RuntimeError):
    """The store stopped answering (or its server died); committed batches are kept and a re-run resumes."""


class StoreConfig(BaseModel):
    """Where the graph lives. ``uri`` None means the local ArcadeDB server under ``store``."""

    model_config = ConfigDict(extra="forbid")

    uri: str | None = Field(None, description="bolt://host:7687 or neo4j://cluster; None: local store")
    user: str = "neo4j"
    password_env: str = Field("NEO4J_PASSWORD", description="environment variable holding the password")
    database: str | None = Field(None, description="database name (None: the server default)")
    batch_size: int = Field(2000, ge=1, le=100_000)
    max_retries: int = Field(5, ge=0)
    retry_seconds: float = Field(60.0, gt=0, description="give up on an unanswering store after this long")


@dataclass
class LoadStats:
    batches: int = 0
    triples: int = 0
    attributes: int = 0
    retries: int = 0
    skipped_batches: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class Neighbour:
    name: str
    type: str | None
    relation: str
    direction: str  # "out": entity -[relation]-> name; "in": name -[relation]-> entity
    hops: int = 1


class GraphStore:
    """A KG in any Bolt/Cypher store. Use as a context manager to close the driver."""

    def __init__(self, driver: Driver, database: str | None = None, *, batch_size: int = 2000,
                 max_retries: int = 5, retry_seconds: float = 60.0,
                 alive: Callable[[], bool] | None = None) -> None:
        """``alive`` (for a local server: its PID still runs) is asked between retries, so that a dead server
        ends the work at once instead of after every retry."""
        self.driver = driver
        self.database = database
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.retry_seconds = retry_seconds
        self.alive = alive

    @classmethod
    def connect(cls, uri: str, auth: tuple[str, str], database: str | None = None, **kwargs: Any) -> "GraphStore":
        driver = GraphDatabase.driver(uri, auth=auth, max_transaction_retry_time=_DRIVER_RETRY_SECONDS)
        try:
            driver.verify_connectivity()
        except ServiceUnavailable as err:
            driver.close()
            raise StoreUnavailable(f"cannot reach the graph store at {uri}: {err}") from err
        return cls(driver, database, **kwargs)

    @classmethod
    def from_config(cls, config: StoreConfig) -> "GraphStore":
        """Connect to ``config.uri`` with the password read from ``config.password_env``."""
        if config.uri is None:
            raise ValueError("StoreConfig.uri is None: start the local store with kg.arcadedb.local_server")
        password = os.environ.get(config.password_env)
        if password is None:
            raise ValueError(f"set the password in the environment variable {config.password_env}")
        return cls.connect(config.uri, (config.user, password), config.database, batch_size=config.batch_size,
                           max_retries=config.max_retries, retry_seconds=config.retry_seconds)

    def close(self) -> None:
        self.driver.close()

    def __enter__(self) -> "GraphStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writes ---------------------------------------------------------------------------------------------
    def _with_retry(self, work: Callable[[], T]) -> tuple[T, int]:
        """Run ``work``; on transient errors retry with exponential back-off. Returns (result, retries).

        Gives up with :class:`StoreUnavailable` after ``max_retries`` retries or ``retry_seconds``, and at once when
        ``alive()`` says the server is gone.
        """
        deadline = time.monotonic() + self.retry_seconds
        for attempt in range(self.max_retries + 1):
            try:
                return work(), attempt
            except _RETRYABLE as err:
                if self.alive is not None and not self.alive():
                    raise StoreUnavailable("the graph store's server has died; committed batches are kept: "
                                           "run the same command again to resume") from err
                if attempt == self.max_retries or time.monotonic() > deadline:
                    raise StoreUnavailable(f"the graph store did not answer after {attempt + 1} attempts "
                                           f"({type(err).__name__}: {err}); committed batches are kept: "
                                           "run the same command again to resume") from err
                delay = min(0.2 * 2**attempt, 10.0)
                log.warning("transient store error (%s); retry %d in %.1f s", type(err).__name__, attempt + 1, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _write(self, statements: list[tuple[str, list[dict[str, Any]]]]) -> int:
        """Run the statements in one write transaction (with retries); returns the retry count."""

        def tx_work(tx: ManagedTransaction) -> None:
            for query, rows in statements:
                if rows:
                    tx.run(query, rows=rows).consume()

        def work() -> None:
            with self.driver.session(database=self.database) as session:
                session.execute_write(tx_work)

        return self._with_retry(work)[1]

    def ensure_schema(self) -> None:
        """Create the uniqueness constraints (and their indexes) if missing."""
        for statement in SCHEMA:
            self._with_retry(lambda s=statement: self.driver.execute_query(s, database_=self.database))

    def load(self, records: Iterable[Triple | Attribute], *, load_id: str | None = None,
             total: int | None = None, progress: bool = True) -> LoadStats:
        """MERGE ``records`` in batches of ``batch_size``, one transaction per batch.

        With a ``load_id`` (a fingerprint of inputs, reader config and batch size) each committed batch leaves a
        ``(:LoadBatch {load, index})`` journal node in its own transaction. A re-run of the same load skips the
        journaled batches, and while every edge and attribute in the store belongs to journaled batches of this
        load (a fresh or resumed load) they are CREATEd rather than MERGEd, which is twice as fast and still exact
        because the reader removes duplicates across the whole input.
        """
        stats = LoadStats()
        start = time.perf_counter()
        self.ensure_schema()
        done: set[int] = set()
        create = False
        if load_id is not None:
            rows = self._read("MATCH (b:LoadBatch {load: $load}) "
                              "RETURN b.index AS i, b.triples AS n, b.attributes AS a", load=load_id)
            done = {r["i"] for r in rows}
            edges = self._read("MATCH ()-[r:REL]->() RETURN count(r) AS n")[0]["n"]
            attrs = self._read("MATCH (a:Attribute) RETURN count(a) AS n")[0]["n"]
            create = edges == sum(r["n"] for r in rows) and attrs == sum(r["a"] or 0 for r in rows)
            if done:
                log.info("resuming load %s: %d batches already committed", load_id[:12], len(done))
        edge_query = _CREATE_TRIPLES if create else _MERGE_TRIPLES
        attribute_query = _CREATE_ATTRIBUTES if create else _MERGE_ATTRIBUTES
        known: dict[str, str | None] = {}  # entities written by this load → their type
        bar = tqdm(total=total, unit="rec", desc="loading KG", disable=not progress, smoothing=0.05)
        for index, batch in enumerate(_prefetch(_batched(records, self.batch_size))):
            bar.update(len(batch))
            if index in done:
                stats.skipped_batches += 1
                continue
            entities: dict[str, str | None] = {}
            triples: list[dict[str, str]] = []
            attributes: list[dict[str, str]] = []
            for rec in batch:
                if isinstance(rec, Triple):
                    for name, typ in ((rec.head, rec.head_type), (rec.tail, rec.tail_type)):
                        if name not in known or (typ and known[name] != typ):
                            entities[name] = typ or entities.get(name)
                    triples.append({"h": rec.head, "r": rec.relation, "t": rec.tail})
                else:
                    if rec.entity not in known or (rec.entity_type and known[rec.entity] != rec.entity_type):
                        entities[rec.entity] = rec.entity_type or entities.get(rec.entity)
                    attributes.append({"e": rec.entity, "uid": rec.uid, "k": rec.key, "v": rec.value})
            statements = [
                (_CREATE_ENTITIES, [{"name": n, "type": t} for n, t in entities.items() if n not in known]),
                (_SET_TYPES, [{"name": n, "type": t} for n, t in entities.items() if t]),
                (edge_query, triples),
                (attribute_query, attributes),
            ]
            if load_id is not None:
                statements.append((_JOURNAL, [{"load": load_id, "index": index, "triples": len(triples),
                                               "attributes": len(attributes)}]))
            stats.retries += self._write(statements)
            known.update((n, t or known.get(n)) for n, t in entities.items())
            stats.batches += 1
            stats.triples += len(triples)
            stats.attributes += len(attributes)
        bar.close()
        stats.seconds = time.perf_counter() - start
        return stats

    # -- reads ----------------------------------------------------------------------------------------------
    def _read(self, query: str, **params: Any) -> list[dict[str, Any]]:
        records, _, _ = self._with_retry(
            lambda: self.driver.execute_query(query, params, database_=self.database, routing_="r")
        )[0]
        return [r.data() for r in records]

    def entity(self, name: str) -> dict[str, Any] | None:
        """The entity called ``name`` with its attributes (``{name, type, attributes: {key: [values]}}``)."""
        rows = self._read(
            "MATCH (e:Entity) WHERE e.name = $name OPTIONAL MATCH (e)-[:HAS_ATTRIBUTE]->(a:Attribute) "
            "RETURN e.name AS name, e.type AS type, a.key AS key, a.value AS value",
            name=name,
        )
        if not rows:
            return None
        attributes: dict[str, list[str]] = {}
        for row in rows:
            if row["key"] is not None:
                attributes.setdefault(row["key"], []).append(row["value"])
        return {"name": rows[0]["name"], "type": rows[0]["type"], "attributes": attributes}

    def neighbours(self, name: str, hops: int = 1, limit: int = 50) -> list[Neighbour]:
        """Entities within ``hops`` (1–3) of ``name``, nearest first; each with the relation that reached it."""
        if not 1 <= hops <= 3:
            raise ValueError("hops must be 1, 2 or 3")
        found: dict[str, Neighbour] = {}
        frontier = [name]
        for hop in range(1, hops + 1):
            rows = self._read(
                "UNWIND $names AS src MATCH (e:Entity) WHERE e.name = src MATCH (e)-[r:REL]-(n:Entity) "
                "RETURN DISTINCT n.name AS name, n.type AS type, r.name AS relation, "
                "startNode(r) = e AS out LIMIT $limit",
                names=frontier, limit=limit * 4,
            )
            frontier = []
            for row in rows:
                if row["name"] == name or row["name"] in found:
                    continue
                found[row["name"]] = Neighbour(row["name"], row["type"], row["relation"],
                                               "out" if row["out"] else "in", hop)
                frontier.append(row["name"])
            if len(found) >= limit or not frontier:
                break
        return list(found.values())[:limit]

    def stats(self) -> dict[str, Any]:
        """Counts: entities, relations (edges), attributes, entities per type, edges per relation name."""
        by_type = self._read("MATCH (e:Entity) RETURN e.type AS type, count(*) AS n")
        by_rel = self._read("MATCH ()-[r:REL]->() RETURN r.name AS relation, count(*) AS n")
        attrs = self._read("MATCH (a:Attribute) RETURN count(a) AS n")
        return {
            "entities": sum(r["n"] for r in by_type),
            "triples": sum(r["n"] for r in by_rel),
            "attributes": attrs[0]["n"] if attrs else 0,
            "entity_types": {str(r["type"]): r["n"] for r in sorted(by_type, key=lambda r: -r["n"])},
            "relations": {r["relation"]: r["n"] for r in sorted(by_rel, key=lambda r: -r["n"])},
        }

    def stream_values(self, query: str, **params: Any) -> Iterator[list[Any]]:
        """Stream the rows of a read query as value lists without holding them all (for exports)."""
        try:
            with self.driver.session(database=self.database, default_access_mode="READ",
                                     fetch_size=10_000) as session:
                for record in session.run(query, params):
                    yield record.values()
        except _RETRYABLE as err:
            raise StoreUnavailable(f"the graph store stopped answering during a read ({err}); "
                                   "run the same command again") from err

    def clear(self) -> None:
        """Delete every Entity and Attribute (tests and ``--reset``)."""
        for label in ("LoadBatch", "Attribute", "Entity"):
            self._with_retry(lambda l=label: self.driver.execute_query(
                f"MATCH (n:{l}) DETACH DELETE n", database_=self.database))


def _prefetch(items: Iterator[T], depth: int = 4) -> Iterator[T]:
    """Produce ``items`` in a background thread so that parsing overlaps the server's work."""
    done = object()
    queue: Queue[Any] = Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                queue.put(item)
            queue.put(done)
        except BaseException as err:  # re-raised in the consumer
            queue.put(err)

    worker = threading.Thread(target=produce, name="kg-reader", daemon=True)
    worker.start()
    try:
        while (item := queue.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            with contextlib.suppress(Empty):
                queue.get_nowait()
            worker.join(timeout=0.05)


def _batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
