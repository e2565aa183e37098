"""Local graph store: an ArcadeDB server (Bolt + Neo4j-5 Cypher) from the pinned ``arcadedb-embedded`` wheel.

The server binds to 127.0.0.1 on free ports, keeps its data under ``store_dir`` and is stopped by PID.
``store_dir/server.json`` (mode 0600) records pid, ports and the root password so that a later process can
reuse a server that is still running. The password comes from ``$KGMRC_STORE_PASSWORD`` or is generated once
per store and kept in ``store_dir/.root_password`` (mode 0600); it reaches Java through a mode-0600 argument
file (``java @file``), never through a command line or the logs.

Sharing: every process that uses the server holds a lease (``store_dir/leases/PID``); leases are taken and
released under an exclusive ``flock`` on ``store_dir/.server.lock``. The process that started a server stops it
only when no other live lease remains (it waits for them, saying so), and ``stop_server`` refuses while leases
are held and signals a PID only after checking that it is the ArcadeDB server of this very store.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from kgutil.io import atomic_write_text

log = logging.getLogger(__name__)

DATABASE = "kg"
USER = "root"
PASSWORD_ENV = "KGMRC_STORE_PASSWORD"
_STATE_FILE = "server.json"
_PASSWORD_FILE = ".root_password"
_ARG_FILE = ".java_args"
_LOCK_FILE = ".server.lock"
_WRITER_LOCK = ".writer.lock"
_LEASES = "leases"
_MAIN_CLASS = "com.arcadedb.server.ArcadeDBServer"
_PR_SET_PDEATHSIG = 1


class StoreStartError(RuntimeError):
    """The local ArcadeDB server did not come up."""


class StoreBusyError(RuntimeError):
    """The store is in use by other processes, or its recorded PID is not its server."""


@dataclass(frozen=True)
class ServerInfo:
    """How to reach a running local server."""

    pid: int
    bolt_port: int
    http_port: int
    password: str

    @property
    def uri(self) -> str:
        return f"bolt://127.0.0.1:{self.bolt_port}"

    @property
    def auth(self) -> tuple[str, str]:
        return (USER, self.password)


def _package_dir() -> Path:
    import arcadedb_embedded

    return Path(arcadedb_embedded.__file__).resolve().parent


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs and is not a zombie."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def read_state(store_dir: Path) -> ServerInfo | None:
    """The recorded server of ``store_dir`` if it is still alive and answering Bolt, else None."""
    path = Path(store_dir) / _STATE_FILE
    if not path.exists():
        return None
    info = ServerInfo(**json.loads(path.read_text(encoding="utf-8")))
    if pid_alive(info.pid) and _port_open(info.bolt_port):
        return info
    return None


def _root_password(store_dir: Path) -> str:
    """The root password: ``$KGMRC_STORE_PASSWORD``, else the one generated when the store was created.

    ArcadeDB keeps the password it was first started with, so it is stored (mode 0600) next to the data.
    """
    if env := os.environ.get(PASSWORD_ENV):
        return env
    path = store_dir / _PASSWORD_FILE
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    password = secrets.token_urlsafe(18)
    atomic_write_text(path, password, mode=0o600)
    return password


def start_server(
    store_dir: Path,
    *,
    heap: str = "4g",
    timeout_s: float = 60.0,
    tie_to_parent: bool = False,
) -> ServerInfo:
    """Start ArcadeDB with its data under ``store_dir`` and wait until Bolt answers.

    ``tie_to_parent`` makes the kernel stop the server when this process dies (tests, one-shot CLIs).
    """
    store_dir = Path(store_dir).resolve()
    store_dir.mkdir(parents=True, exist_ok=True)
    sp = _package_dir()
    java = sp / "jre" / "bin" / "java"
    if not java.exists():
        raise StoreStartError(f"bundled Java runtime not found at {java}; reinstall arcadedb-embedded")
    password = _root_password(store_dir)
    bolt_port, http_port = _free_port(), _free_port()
    while http_port == bolt_port:
        http_port = _free_port()
    arg_file = store_dir / _ARG_FILE  # read by the Java launcher at start; the password stays off argv
    atomic_write_text(arg_file, f"-Darcadedb.server.rootPassword={_java_quoted(password)}\n", mode=0o600)
    cmd = [
        str(java),
        f"@{arg_file}",
        f"-Xmx{heap}",
        "-cp",
        f"{sp / 'jars'}/*",
        f"-Darcadedb.server.rootPath={store_dir}",
        "-Darcadedb.server.httpIncomingHost=127.0.0.1",
        f"-Darcadedb.server.httpIncomingPort={http_port}",
        "-Darcadedb.server.plugins=Bolt:com.arcadedb.bolt.BoltProtocolPlugin",
        "-Darcadedb.bolt.host=127.0.0.1",
        f"-Darcadedb.bolt.port={bolt_port}",
        f"-Darcadedb.server.defaultDatabases={DATABASE}[{USER}]",
        f"-Darcadedb.bolt.defaultDatabase={DATABASE}",
        _MAIN_CLASS,
    ]
    log_path = store_dir / "server.log"
    with open(log_path, "ab") as server_log:
        proc = subprocess.Popen(
            cmd,
            cwd=store_dir,
            stdin=subprocess.DEVNULL,
            stdout=server_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the terminal reaches us, and we stop the server cleanly
            preexec_fn=_die_with_parent if tie_to_parent else None,
        )
    log.info("starting ArcadeDB (pid %d, bolt 127.0.0.1:%d, data %s)", proc.pid, bolt_port, store_dir)
    deadline = time.monotonic() + timeout_s
    while not _port_open(bolt_port):
        if proc.poll() is not None:
            tail = log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
            raise StoreStartError(f"ArcadeDB exited with code {proc.returncode}; see {log_path}:\n{tail}")
        if time.monotonic() > deadline:
            stop_pid(proc.pid)
            raise StoreStartError(f"ArcadeDB did not open Bolt port {bolt_port} within {timeout_s:.0f} s")
        time.sleep(0.1)
    arg_file.unlink(missing_ok=True)
    info = ServerInfo(pid=proc.pid, bolt_port=bolt_port, http_port=http_port, password=password)
    _wait_for_database(info, proc, deadline)
    state = store_dir / _STATE_FILE
    atomic_write_text(state, json.dumps(asdict(info)), mode=0o600)
    return info


def _wait_for_database(info: ServerInfo, proc: subprocess.Popen, deadline: float) -> None:
    """The Bolt port opens before the database exists: poll ``RETURN 1`` until it answers."""
    from neo4j import GraphDatabase
    from neo4j.exceptions import Neo4jError, ServiceUnavailable

    with GraphDatabase.driver(info.uri, auth=info.auth) as driver:
        while True:
            try:
                driver.execute_query("RETURN 1 AS ok", database_=DATABASE)
                return
            except (Neo4jError, ServiceUnavailable) as err:
                if proc.poll() is not None or time.monotonic() > deadline:
                    stop_pid(proc.pid)
                    raise StoreStartError(f"ArcadeDB database {DATABASE!r} did not open: {err}") from err
                time.sleep(0.1)


def stop_pid(pid: int, timeout_s: float = 30.0) -> None:
    """SIGTERM ``pid`` (ArcadeDB flushes and closes its databases), SIGKILL after ``timeout_s``."""
    if not pid_alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid):
        if time.monotonic() > deadline:
            log.warning("ArcadeDB pid %d ignored SIGTERM for %.0f s; killing it", pid, timeout_s)
            os.kill(pid, signal.SIGKILL)
            break
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _java_quoted(value: str) -> str:
    """``value`` as one token of a Java argument file (double-quoted, backslashes and quotes escaped)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def is_store_server(pid: int, store_dir: Path) -> bool:
    """True if ``pid`` runs the ArcadeDB server whose data lives in ``store_dir`` (checked on its command line)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    root = f"-Darcadedb.server.rootPath={Path(store_dir).resolve()}".encode()
    return _MAIN_CLASS.encode() in args and root in args


@contextlib.contextmanager
def _locked(store_dir: Path) -> Iterator[None]:
    """An exclusive ``flock`` on the store's lock file (released by the kernel if this process dies)."""
    store_dir.mkdir(parents=True, exist_ok=True)
    with open(store_dir / _LOCK_FILE, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def writer_lock(store_dir: Path) -> Iterator[None]:
    """One writer at a time on a store: a second build waits, saying for which PID, then goes on (its load then
    skips the batches the first one journaled)."""
    store_dir = Path(store_dir)
    store_dir.mkdir(parents=True, exist_ok=True)
    with open(store_dir / _WRITER_LOCK, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            owner = f.read().strip() or "another process"
            log.warning("store %s is busy: pid %s is writing to it; waiting for it to finish", store_dir, owner)
            fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            f.truncate(0)
            fcntl.flock(f, fcntl.LOCK_UN)


def _start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (tells a live lease holder from a later process with its PID)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _live_leases(store_dir: Path) -> set[int]:
    """PIDs holding a lease on the store; leases of dead processes are removed. Call under ``_locked``."""
    live: set[int] = set()
    for lease in (store_dir / _LEASES).glob("*"):
        pid = int(lease.name) if lease.name.isdigit() else -1
        if pid > 0 and pid_alive(pid) and lease.read_text(encoding="utf-8") == (_start_time(pid) or ""):
            live.add(pid)
        else:
            lease.unlink(missing_ok=True)
    return live


def _set_lease(store_dir: Path, held: bool) -> None:
    lease = store_dir / _LEASES / str(os.getpid())
    if held:
        atomic_write_text(lease, _start_time(os.getpid()) or "")
    else:
        lease.unlink(missing_ok=True)


def stop_server(store_dir: Path) -> bool:
    """Stop the server recorded in ``store_dir``; True if one was running.

    Raises :class:`StoreBusyError` while other processes hold leases, or when the recorded PID is not this
    store's ArcadeDB server (the record is then discarded and nothing is signalled).
    """
    store_dir = Path(store_dir)
    with _locked(store_dir):
        return _stop_locked(store_dir)


def _stop_locked(store_dir: Path) -> bool:
    path = store_dir / _STATE_FILE
    if not path.exists():
        return False
    others = _live_leases(store_dir) - {os.getpid()}
    if others:
        raise StoreBusyError(f"store {store_dir} is in use by pid {', '.join(map(str, sorted(others)))}; "
                             "its server stops when they finish")
    info = ServerInfo(**json.loads(path.read_text(encoding="utf-8")))
    if pid_alive(info.pid) and not is_store_server(info.pid, store_dir):
        path.unlink(missing_ok=True)
        raise StoreBusyError(f"{path}: pid {info.pid} is not the ArcadeDB server of this store; "
                             "record discarded, nothing signalled")
    was_alive = pid_alive(info.pid)
    stop_pid(info.pid)
    path.unlink(missing_ok=True)
    if was_alive:
        log.info("stopped ArcadeDB (pid %d)", info.pid)
    return was_alive


@contextlib.contextmanager
def local_server(store_dir: Path, *, keep: bool = False, heap: str = "4g") -> Iterator[ServerInfo]:
    """Reuse the running server of ``store_dir`` or start one, holding a lease while inside the block.

    On exit a server this call started (and not ``keep``) is stopped once no other process holds a lease; until
    then this call waits. SIGTERM is turned into KeyboardInterrupt for the duration so that the server is also
    stopped then.
    """
    store_dir = Path(store_dir)
    with _locked(store_dir):
        info = read_state(store_dir)
        started = info is None
        if info is None:
            info = start_server(store_dir, heap=heap, tie_to_parent=not keep)
        else:
            log.info("reusing ArcadeDB (pid %d) at %s", info.pid, info.uri)
        _set_lease(store_dir, True)

    def _on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_term) if main_thread else None
    try:
        yield info
    finally:
        try:
            _release(store_dir, stop=started and not keep)
        finally:
            if main_thread:
                signal.signal(signal.SIGTERM, previous)


def _release(store_dir: Path, *, stop: bool) -> None:
    """Drop this process's lease; with ``stop``, wait until no other lease is held, then stop the server."""
    waiting_for: set[int] = set()
    while True:
        with _locked(store_dir):
            others = _live_leases(store_dir) - {os.getpid()}
            if not stop or not others:
                _set_lease(store_dir, False)
                if stop:
                    _stop_locked(store_dir)
                return
        if others != waiting_for:
            log.warning("waiting for pid %s to finish with the store before stopping its server",
                        ", ".join(map(str, sorted(others))))
            waiting_for = others
        time.sleep(0.5)
