"""The local ArcadeDB store: start, reuse, clean stop (also on Ctrl-C), password handling, no orphans."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from kg import arcadedb
from kg.store import GraphStore


def test_reuse_keep_and_stop(tmp_path: Path) -> None:
    with arcadedb.local_server(tmp_path, keep=True, heap="512m") as first:
        with GraphStore.connect(first.uri, first.auth, arcadedb.DATABASE) as store:
            assert store.stats()["entities"] == 0
    assert arcadedb.pid_alive(first.pid)
    with arcadedb.local_server(tmp_path, heap="512m") as second:
        assert second.pid == first.pid  # reused, and not stopped by this block: it did not start it
    assert arcadedb.pid_alive(first.pid)
    assert (tmp_path / "server.json").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / ".root_password").stat().st_mode & 0o777 == 0o600
    assert arcadedb.stop_server(tmp_path) and not arcadedb.pid_alive(first.pid)
    # A restart on the same data keeps the generated password (ArcadeDB stored it at creation).
    with arcadedb.local_server(tmp_path, heap="512m") as third:
        with GraphStore.connect(third.uri, third.auth, arcadedb.DATABASE) as store:
            store.ensure_schema()
    assert not arcadedb.pid_alive(third.pid) and arcadedb.read_state(tmp_path) is None


def test_ctrl_c_stops_the_server(tmp_path: Path) -> None:
    script = ("import sys, time\nfrom kg import arcadedb\n"
              "with arcadedb.local_server(sys.argv[1], heap='512m') as info:\n"
              "    print(info.pid, flush=True)\n    time.sleep(120)\n")
    # a job started in the background (`make test &`) inherits SIGINT ignored; a terminal's Ctrl-C reaches a
    # process whose SIGINT is at its default, so the child gets that
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    pid = int(proc.stdout.readline())
    assert arcadedb.pid_alive(pid)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    deadline = time.monotonic() + 30
    while arcadedb.pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not arcadedb.pid_alive(pid)


def test_server_dies_with_a_killed_parent(tmp_path: Path) -> None:
    """A one-shot process killed with SIGKILL leaves no orphan: the server is tied to its parent."""
    script = ("import sys, time\nfrom kg import arcadedb\n"
              "info = arcadedb.start_server(sys.argv[1], heap='512m', tie_to_parent=True)\n"
              "print(info.pid, flush=True)\ntime.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    pid = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 30
    while arcadedb.pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not arcadedb.pid_alive(pid)
    assert json.loads((tmp_path / "server.json").read_text())["pid"] == pid
    assert arcadedb.read_state(tmp_path) is None  # a dead recorded server is not reused
