"""Hostile inputs and hostile neighbours: the store's password, concurrent builds, a foreign PID, a dying server,
corrupt files, bad datasets and predictions — each a clean error or a rejects row, never a traceback."""

from __future__ import annotations

import gzip
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT
from kg import arcadedb
from kg.build import BuildConfig, load_triples
from kg.reader import KGInputError, TripleReader
from kg.records import Triple
from kg.store import GraphStore, StoreUnavailable

SAMPLE_KG = ROOT / "examples" / "sample_kg.tsv"
SAMPLE_MRC = ROOT / "examples" / "sample_mrc.json"


def run(script: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / script), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=600, env={**os.environ, **(env or {})})


def clean_failure(proc: subprocess.CompletedProcess, *words: str) -> None:
    """Non-zero exit, no traceback, every expected word in the error output."""
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr


# -- the local store ------------------------------------------------------------------------------------------
def test_password_is_on_no_command_line(tmp_path: Path) -> None:
    password = "s3cret-Pa55word-for-this-test"
    os.environ[arcadedb.PASSWORD_ENV] = password
    try:
        with arcadedb.local_server(tmp_path, heap="512m") as info:
            cmdline = Path(f"/proc/{info.pid}/cmdline").read_bytes()
            assert password.encode() not in cmdline and b"rootPassword" not in cmdline
            assert arcadedb.is_store_server(info.pid, tmp_path)
            assert not (tmp_path / ".java_args").exists()  # the argument file lives only until Java read it
            assert password not in (tmp_path / "server.log").read_text(errors="replace")
            with GraphStore.connect(info.uri, info.auth, arcadedb.DATABASE) as store:  # and the password works
                assert store.stats()["entities"] == 0
    finally:
        del os.environ[arcadedb.PASSWORD_ENV]


def test_two_concurrent_builds_on_one_store_end_with_exact_counts(tmp_path: Path) -> None:
    store = tmp_path / "store"
    args = ["--triples", str(SAMPLE_KG), "--config", str(ROOT / "configs/kg/sample.yaml"), "--store", str(store),
            "--no-progress", "--batch-size", "100"]
    procs = [subprocess.Popen([sys.executable, str(ROOT / "scripts/build_kg.py"), *args], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    for proc, (_out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
        assert "Traceback" not in err
    assert sum("is busy: pid" in err for _, err in outputs) == 1  # the second waited for the first
    summary = json.loads(outputs[0][0])["summary"]
    stats = json.loads(run("build_kg.py", "--store", str(store), "--stats").stdout)
    assert stats["triples"] == summary["triples"] and stats["attributes"] == summary["attributes"]
    manifest = json.loads((store / "snapshot" / "manifest.json").read_text())
    assert manifest["counts"]["triples"] == summary["triples"]
    assert arcadedb.read_state(store / "arcadedb") is None  # the last user stopped the server
    assert not list((store / "arcadedb" / "leases").glob("*"))


def test_stop_refuses_a_foreign_pid(tmp_path: Path) -> None:
    store = tmp_path / "store"
    (store / "arcadedb").mkdir(parents=True)
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        (store / "arcadedb" / "server.json").write_text(json.dumps(
            {"pid": sleeper.pid, "bolt_port": 1, "http_port": 2, "password": "x"}))
        clean_failure(run("build_kg.py", "--store", str(store), "--stop"), "is not the ArcadeDB server")
        assert sleeper.poll() is None  # not signalled
        assert not (store / "arcadedb" / "server.json").exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_stop_refuses_while_another_process_uses_the_store(tmp_path: Path) -> None:
    with arcadedb.local_server(tmp_path, keep=True, heap="512m") as info:
        user = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom kg import arcadedb\n"
                                 "with arcadedb.local_server(sys.argv[1]):\n print('in', flush=True)\n"
                                 " time.sleep(60)\n", str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        try:
            assert user.stdout.readline().strip() == "in"
            with pytest.raises(arcadedb.StoreBusyError, match=f"in use by pid {user.pid}"):
                arcadedb.stop_server(tmp_path)
            assert arcadedb.pid_alive(info.pid)
        finally:
            user.send_signal(signal.SIGTERM)
            user.wait(timeout=60)
    assert arcadedb.stop_server(tmp_path) and not arcadedb.pid_alive(info.pid)


def test_a_dead_server_is_noticed_within_seconds(tmp_path: Path) -> None:
    with arcadedb.local_server(tmp_path, heap="512m") as info:
        with GraphStore.connect(info.uri, info.auth, arcadedb.DATABASE, batch_size=10,
                                alive=lambda: arcadedb.pid_alive(info.pid)) as store:
            store.ensure_schema()
            os.kill(info.pid, signal.SIGKILL)
            while arcadedb.pid_alive(info.pid):
                time.sleep(0.05)
            start = time.monotonic()
            records = (Triple(head=f"e{i}", relation="r", tail=f"e{i + 1}") for i in range(100))
            with pytest.raises(StoreUnavailable, match="run the same command again to resume"):
                store.load(records, progress=False)
            assert time.monotonic() - start < 15


# -- triples files --------------------------------------------------------------------------------------------
def test_truncated_gzip_keeps_the_rejects_read_and_says_where(tmp_path: Path, store: GraphStore) -> None:
    rows = "".join(f"病{i}\t症状\t症{i}\n" if i % 50 else f"坏行{i}\n" for i in range(1, 6001))
    data = gzip.compress(rows.encode())
    path = tmp_path / "cut.tsv.gz"
    path.write_bytes(data[: int(len(data) * 0.6)])
    config = BuildConfig(triples=[path], store=tmp_path, progress=False)
    with pytest.raises(KGInputError, match=r"cut.tsv.gz: compressed data is truncated or corrupt after line \d+"):
        load_triples(store, config)
    rejects = config.rejects_file.read_text(encoding="utf-8").splitlines()
    assert len(rejects) > 10 and all(r.startswith(f"{path}:") for r in rejects[1:])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".rejects")]


def test_cli_errors_for_missing_directory_and_corrupt_inputs(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    clean_failure(run("build_kg.py", "--triples", str(tmp_path / "nope.tsv"), "--store", store), "nope.tsv: no such")
    clean_failure(run("build_kg.py", "--triples", str(tmp_path), "--store", store), "is a directory")
    assert not (tmp_path / "store" / "arcadedb" / "server.json").exists()  # failed before starting a server
    bad = tmp_path / "bad.tsv.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00garbage-not-deflate")
    clean_failure(run("build_kg.py", "--triples", str(bad), "--store", store, "--no-progress"),
                  "bad.tsv.gz: compressed data is truncated or corrupt")
    clean_failure(run("train_mrc.py", "--config", str(tmp_path / "none.yaml")), "none.yaml: cannot read config")


def test_line_defects_become_single_line_rejects(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "t.tsv"
    body = "".join(f"病{i}\t症状\t症{i}\n" for i in range(2000))  # > 8 KiB before the NUL: not "binary"
    path.write_bytes(body.encode() + "病x\t症状\t症\x00y\n".encode() + b"\xff\xfe\tbad\tutf8\r\n"
                     + "病z\t症状\t症z".encode())
    reader = TripleReader()
    rejects: list = []
    with caplog.at_level(logging.WARNING):
        kept = list(reader.read([path], rejects.append))
    assert [r.reason.split(" at")[0] for r in rejects] == ["NUL byte", "invalid UTF-8"]
    assert all("\n" not in r.text and "\r" not in r.text for r in rejects)
    assert len(kept) == 2001 and "no newline (truncated file?)" in caplog.text
    summary = reader.summary.as_dict()
    assert summary["read"] == summary["triples"] + summary["attributes"] + summary["rejected"] + summary["duplicates"]


@pytest.mark.parametrize("content", ["\n\n  \n", "head\trelation\ttail\n"])
def test_blank_or_header_only_files_warn(tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "empty.tsv"
    path.write_text(content, encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        assert list(TripleReader().read([path])) == []
    assert "no data rows" in caplog.text


def test_temporaries_of_killed_writers_are_removed(tmp_path: Path) -> None:
    from kgutil.io import atomic_write_text

    orphan = tmp_path / ".rejects.tsv.999999999.abcd"
    orphan.mkdir()
    mine = tmp_path / f".rejects.tsv.{os.getpid()}.live"
    mine.mkdir()
    atomic_write_text(tmp_path / "rejects.tsv", "x")
    assert not orphan.exists() and mine.exists()


# -- predict.py / evaluate.py ---------------------------------------------------------------------------------
def test_predict_cli_rejects_bad_data_and_models_cleanly(tmp_path: Path) -> None:
    out = str(tmp_path / "p.json")
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"data": []}))
    clean_failure(run("predict.py", "--model", str(tmp_path), "--data", str(empty), "--out", out), "holds no questions")
    clean_failure(run("predict.py", "--model", str(tmp_path), "--data", str(SAMPLE_MRC)), "--data needs --out")
    clean_failure(run("predict.py", "--model", str(tmp_path / "none"), "--data", str(SAMPLE_MRC), "--out", out),
                  str(tmp_path / "none"))
    assert not Path(out).exists()


def test_tune_postprocessing_cli_rejects_unlabelled_data_and_non_models_cleanly(tmp_path: Path) -> None:
    unlabelled = json.loads(SAMPLE_MRC.read_text(encoding="utf-8"))
    for qa in (qa for d in unlabelled["data"] for para in d["paragraphs"] for qa in para["qas"]):
        qa["answers"] = []
    (tmp_path / "q.json").write_text(json.dumps(unlabelled, ensure_ascii=False), encoding="utf-8")
    clean_failure(run("tune_postprocessing.py", "--model", str(tmp_path), "--data", str(tmp_path / "q.json")),
                  "no question has an answer to tune on")
    clean_failure(run("tune_postprocessing.py", "--model", str(tmp_path), "--data", str(SAMPLE_MRC)),
                  "not a kgmrc model directory")
    clean_failure(run("tune_postprocessing.py", "--model", str(tmp_path), "--data", str(SAMPLE_MRC),
                      "--sentence-weights"), "expected at least one argument")


def test_evaluate_cli_rejects_bad_predictions_and_data_cleanly(tmp_path: Path) -> None:
    preds = tmp_path / "p.json"
    for value, words in (({"x": 12}, "question x: answer is int"), ({"x": [1]}, "question x: answer is list")):
        preds.write_text(json.dumps(value))
        clean_failure(run("evaluate.py", "--data", str(SAMPLE_MRC), "--predictions", str(preds)), str(preds), *words)
    preds.write_bytes(b"\xff\xfe{}")
    clean_failure(run("evaluate.py", "--data", str(SAMPLE_MRC), "--predictions", str(preds)), str(preds), "UTF-8")
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"data": []}))
    preds.write_text("{}")
    clean_failure(run("evaluate.py", "--data", str(empty), "--predictions", str(preds)), "holds no questions")
    clean_failure(run("evaluate.py", "--data", str(tmp_path), "--predictions", str(preds)), "is a directory")
    preds.write_text(json.dumps({"nobody": "x", "no-one": None}))
    clean_failure(run("evaluate.py", "--data", str(SAMPLE_MRC), "--predictions", str(preds), "--against",
                      str(preds)), str(preds), "predicts none of the 13 questions")
    ok = run("evaluate.py", "--data", str(SAMPLE_MRC), "--predictions", str(preds))
    assert ok.returncode == 0 and "2 prediction ids are not in" in ok.stderr
    assert json.loads(ok.stdout)["metric"] == "cmrc"
