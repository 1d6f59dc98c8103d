"""Table files out and in.

Out: every table is written to a temp file beside its target and renamed, so a crash never
leaves a half-written file that looks complete. Temp files (and prepare's staging folders) are
named after their owner, ``.{name}.{kind}-{host}-{pid}-{random}``: what a killed process left
is removed by the next writer in that folder (same host, pid no longer running), never what a
live writer or another host is still using.

In: every Parquet table actionlm reads goes through ``parquet_file`` / ``read_table`` /
``iter_batches``: a missing file, one that is not Parquet or is truncated, or one without a
column the reader needs is an ``ActionlmError`` of one line that names the file and the
problem, never an Arrow traceback.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from actionlm.errors import ActionlmError


def owned_prefix(name: str, kind: str) -> str:
    """The name prefix of a temp file or staging folder for ``name`` made by this process."""
    return f".{name}.{kind}-{socket.gethostname()}-{os.getpid()}-"


def remove_leftovers(folder: Path, kind: str, name: str = "*") -> list[Path]:
    """Remove the ``kind`` temp files / folders (of ``name``, or of any name) in ``folder``
    whose owner, a process of this host, no longer runs; return what was removed."""
    host = socket.gethostname()
    owner = re.compile(r"\..+\." + re.escape(f"{kind}-{host}-") + r"(\d+)-")
    removed = []
    for path in folder.glob(f".{glob.escape(name) if name != '*' else '*'}.{kind}-{host}-*"):
        match = owner.match(path.name)
        if match is None or is_running(int(match[1])):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path in the target's folder; rename it onto the target only on success.
    Temp files that killed writers left in that folder are removed first."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(target.parent, "tmp")
    fd, tmp = tempfile.mkstemp(prefix=owned_prefix(target.name, "tmp"), suffix=".tmp",
                               dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_parquet(table: pa.Table, target: str | os.PathLike) -> None:
    with atomic_path(target) as tmp:
        pq.write_table(table, tmp)


def write_json(obj: object, target: str | os.PathLike) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def table_metadata(table: pa.Table | pa.Schema, key: str) -> object:
    """Read one JSON value that actionlm stored in a Parquet schema's metadata."""
    schema = table.schema if isinstance(table, pa.Table) else table
    raw = (schema.metadata or {}).get(f"actionlm.{key}".encode())
    return None if raw is None else json.loads(raw)


def with_metadata(schema: pa.Schema, **values: object) -> pa.Schema:
    meta = dict(schema.metadata or {})
    meta.update({f"actionlm.{k}".encode(): json.dumps(v).encode() for k, v in values.items()})
    return schema.with_metadata(meta)


@contextmanager
def reading(path: str | os.PathLike) -> Iterator[None]:
    """Arrow's errors while reading ``path`` as one ActionlmError line naming the file."""
    try:
        yield
    except FileNotFoundError:
        raise ActionlmError(f"{path}: no such file") from None
    except (OSError, pa.ArrowException) as err:
        reason = " ".join(str(err).split())
        raise ActionlmError(f"{path}: not a Parquet table, or truncated ({reason})") from None


def parquet_file(path: str | os.PathLike, columns: Iterable[str] = ()) -> pq.ParquetFile:
    """``path`` opened as Parquet (its footer read), with every one of ``columns``."""
    with reading(path):
        handle = pq.ParquetFile(path)
    names = handle.schema_arrow.names
    missing = [c for c in columns if c not in names]
    if missing:
        raise ActionlmError(f"{path}: missing columns {missing} (has {names})")
    return handle


def read_table(path: str | os.PathLike, columns: list[str] | None = None,
               filters: list | None = None) -> pa.Table:
    """``columns`` (all when None) of the rows passing ``filters`` (pq.read_table's)."""
    parquet_file(path, columns or ())
    with reading(path):
        return pq.read_table(path, columns=columns, filters=filters)


def iter_batches(path: str | os.PathLike, columns: list[str],
                 batch_size: int) -> Iterator[pa.RecordBatch]:
    """``columns`` of ``path`` in record batches of at most ``batch_size`` rows."""
    batches = parquet_file(path, columns).iter_batches(batch_size=batch_size, columns=columns)
    while True:
        with reading(path):
            batch = next(batches, None)
        if batch is None:
            return
        yield batch
