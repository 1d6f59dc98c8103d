"""The encoder-feature table (``features.parquet``): per sample, the frozen skeleton encoder's
output sequence, read by the stages that sit on top of an encoder (SUGAR's LLM projector, the
report's embedding map).

One row per sample; ``features`` is float32 flattened row-major from [n_steps, width]
(n_steps = 1 for a pooled feature). Which encoder made it is in the schema metadata
(``actionlm.encoder``: its config).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from actionlm.errors import ActionlmError
from actionlm.io import read_table, table_metadata, with_metadata, write_parquet

FEATURE_SCHEMA = pa.schema(
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("label", pa.int32(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("n_steps", pa.int32(), nullable=False),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("features", pa.list_(pa.float32()), nullable=False),
    ]
)


@dataclass
class FeatureSet:
    """``features`` float32 [N, n_steps, width], ``labels`` int64 [N], ids and split names."""

    features: torch.Tensor
    labels: torch.Tensor
    sample_ids: list[str]
    splits: list[str]
    encoder: dict

    def __len__(self) -> int:
        return len(self.sample_ids)


def write_features(path: str | os.PathLike, features: np.ndarray, labels, sample_ids, splits,
                   encoder: dict) -> None:
    """Write [N, n_steps, width] features atomically, with the encoder config as metadata."""
    n, steps, width = features.shape
    flat = np.ascontiguousarray(features, dtype=np.float32).reshape(-1)
    offsets = np.arange(0, n * steps * width + 1, steps * width, dtype=np.int32)
    table = pa.table(
        {
            "sample_id": pa.array(list(sample_ids), pa.string()),
            "label": pa.array(np.asarray(labels, dtype=np.int32)),
            "split": pa.array(list(splits), pa.string()),
            "n_steps": pa.array(np.full(n, steps, dtype=np.int32)),
            "width": pa.array(np.full(n, width, dtype=np.int32)),
            "features": pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat)),
        },
        schema=with_metadata(FEATURE_SCHEMA, encoder=encoder),
    )
    write_parquet(table, path)


def read_features(path: str | os.PathLike, splits: tuple[str, ...] | None = None) -> FeatureSet:
    """The rows of ``splits`` (all when None); every row must have the same shape."""
    path = Path(path)
    if not path.is_file():
        raise ActionlmError(f"{path}: no such feature table (run `actionlm extract-features`)")
    table = read_table(path, columns=FEATURE_SCHEMA.names)
    encoder = table_metadata(table, "encoder") or {}
    if splits is not None:
        table = table.filter(pc.is_in(table["split"], value_set=pa.array(list(splits))))
    if table.num_rows == 0:
        raise ActionlmError(f"{path}: no rows in splits {list(splits or [])}")
    shapes = set(zip(table["n_steps"].to_pylist(), table["width"].to_pylist()))
    if len(shapes) != 1:
        raise ActionlmError(f"{path}: rows have different feature shapes {sorted(shapes)}")
    steps, width = shapes.pop()
    values = pc.list_flatten(table["features"]).to_numpy()
    if values.size != table.num_rows * steps * width:
        raise ActionlmError(f"{path}: features length does not match n_steps x width")
    return FeatureSet(
        features=torch.from_numpy(values.reshape(table.num_rows, steps, width).copy()),
        labels=torch.from_numpy(table["label"].to_numpy().astype(np.int64)),
        sample_ids=table["sample_id"].to_pylist(),
        splits=table["split"].to_pylist(),
        encoder=encoder,
    )
