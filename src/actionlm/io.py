"""Atomic file output: every table is written to a temp file beside its target and renamed,
so a crash never leaves a half-written file that looks complete."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path in the target's folder; rename it onto the target only on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
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
