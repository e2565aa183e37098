"""Atomic artifact writes and transparent (gzip or plain) binary input."""

from __future__ import annotations

import contextlib
import glob
import gzip
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Iterator

_GZIP_MAGIC = b"\x1f\x8b"


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; on success it replaces ``path`` in one rename.

    Works for files and directories; on error the temporary is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", dir=path.parent)) / path.name
    try:
        yield tmp
        if path.is_dir() and tmp.is_dir():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            if tmp.is_file():
                with open(tmp, "rb") as f:
                    os.fsync(f.fileno())
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)


def _remove_orphans(path: Path) -> None:
    """Remove temporaries of ``path`` left by processes that were killed (their PID is in the name)."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.*"):
        pid = tmp.name[len(path.name) + 2:].split(".", 1)[0]
        if tmp.is_dir() and pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def atomic_write_text(path: Path, text: str, *, mode: int | None = None) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically, optionally with file mode ``mode``."""
    with atomic_path(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if mode is None else mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        if mode is None:
            os.chmod(tmp, 0o644)


def open_binary(path: Path) -> IO[bytes]:
    """Open ``path`` for reading bytes, gunzipping when it starts with the gzip magic number."""
    with open(path, "rb") as probe:
        gzipped = probe.read(2) == _GZIP_MAGIC
    # gzip.open owns the file it opens (GzipFile(fileobj=…) would leave it open after close)
    return gzip.open(path, "rb") if gzipped else open(path, "rb")  # type: ignore[return-value]


def sha256_files(paths: list[Path]) -> str:
    """SHA-256 over the bytes of ``paths`` in order (file names included, so renames change it)."""
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).name.encode("utf-8") + b"\0")
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()
