"""CTR-GCN's ``x_train/y_train/x_test/y_test`` npz: samples zero-padded to a common length of
2 bodies x 25 joints x xyz, one-hot labels. Read member by member, a block of rows at a time,
so a 7 GB NTU file never has to fit in memory."""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from actionlm.data.table import Rejection, Sample
from actionlm.errors import InputError

SPLITS = ("train", "test")
ROWS_PER_READ = 64
# What a damaged archive member can raise while being read (bad CRC, bad deflate stream, ...).
_CORRUPT = (zipfile.BadZipFile, zlib.error, EOFError, OSError)


def _read_header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    return np.lib.format.read_array_header_2_0(f)


def _member_header(zf: zipfile.ZipFile, name: str, source: str) -> tuple[tuple[int, ...], np.dtype]:
    try:
        with zf.open(name) as f:
            shape, fortran, dtype = _read_header(f)
    except KeyError:
        raise InputError(source, f"missing array {name.removesuffix('.npy')!r}") from None
    except (ValueError, *_CORRUPT) as err:
        raise InputError(source, f"{name}: not a valid .npy array ({err})") from None
    if fortran:
        raise InputError(source, f"{name}: Fortran-ordered arrays are not supported")
    if dtype.hasobject:
        raise InputError(source, f"{name}: object arrays would need pickle; refused")
    if dtype.kind not in "iuf":
        raise InputError(source, f"{name}: dtype {dtype} is not numeric")
    return shape, dtype


def _read_small(zf: zipfile.ZipFile, name: str, source: str) -> np.ndarray:
    """A whole (label-sized) member, checked like ``_member_header``."""
    _member_header(zf, name, source)
    try:
        with zf.open(name) as f:
            return np.lib.format.read_array(f, allow_pickle=False)
    except (ValueError, *_CORRUPT) as err:
        raise InputError(source, f"{name}: damaged array data ({err})") from None


def _iter_rows(
    zf: zipfile.ZipFile, name: str, shape: tuple, dtype: np.dtype, source: str
) -> Iterator[np.ndarray]:
    row_shape = shape[1:]
    row_bytes = int(np.prod(row_shape)) * dtype.itemsize
    try:
        with zf.open(name) as f:
            _read_header(f)
            for start in range(0, shape[0], ROWS_PER_READ):
                n = min(ROWS_PER_READ, shape[0] - start)
                data = f.read(n * row_bytes)
                if len(data) != n * row_bytes:
                    row = start + len(data) // row_bytes
                    raise InputError(
                        source, f"{name}: truncated, its data ends before row {row} of {shape[0]}"
                    )
                yield from np.frombuffer(data, dtype=dtype).reshape((n, *row_shape))
    except _CORRUPT as err:
        raise InputError(source, f"{name}: damaged archive member ({err})") from None


def true_length_and_bodies(x: np.ndarray) -> tuple[int, int]:
    """Recover (frames, bodies) of one zero-padded [T, 150] sample. A second body that is all
    zeros, or an exact copy of the first (CTR-GCN's NTU120 script duplicates single actors),
    counts as absent."""
    nonzero = np.flatnonzero(x.any(axis=1))
    if nonzero.size == 0:
        return 0, 0
    n = int(nonzero[-1]) + 1
    second = x[:n, 75:]
    n_bodies = 1 if not second.any() or np.array_equal(second, x[:n, :75]) else 2
    return n, n_bodies


def iter_npz_samples(
    path: Path, dataset_classes: int | None = None
) -> Iterator[Sample | Rejection]:
    """Yield each sample of a CTR-GCN npz; ids are ``{split}_{index}`` as in CTR-GCN's feeder."""
    source = str(path)
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as err:
        raise InputError(source, f"not a readable npz archive ({err})") from None
    with zf:
        for split in SPLITS:
            x_shape, x_dtype = _member_header(zf, f"x_{split}.npy", source)
            y = _read_small(zf, f"y_{split}.npy", source)
            if len(x_shape) != 3 or x_shape[2] != 150:
                raise InputError(
                    source, f"x_{split} has shape {x_shape}, expected (samples, frames, 150)"
                )
            if y.ndim != 2 or y.shape[0] != x_shape[0]:
                raise InputError(
                    source,
                    f"x_{split} has {x_shape[0]} samples but y_{split} has shape {y.shape}",
                )
            if dataset_classes is not None and y.shape[1] != dataset_classes:
                raise InputError(
                    source,
                    f"y_{split} is one-hot over {y.shape[1]} classes, expected {dataset_classes}",
                )
            for i, x in enumerate(_iter_rows(zf, f"x_{split}.npy", x_shape, x_dtype, source)):
                sample_id = f"{split}_{i}"
                where = f"{source}[x_{split}][{i}]"
                hot = np.flatnonzero(y[i] > 0)
                if hot.size != 1 or y[i, hot[0]] != 1:
                    yield Rejection(where, f"y_{split}[{i}] is not a one-hot row", sample_id)
                    continue
                x = x.astype(np.float32, copy=False)
                if not np.isfinite(x).all():
                    yield Rejection(where, "non-finite coordinate (nan/inf)", sample_id)
                    continue
                n, n_bodies = true_length_and_bodies(x)
                if n == 0:
                    yield Rejection(where, "all frames are zero (empty sample)", sample_id)
                    continue
                joints = x[:n].reshape(n, 2, 25, 3)[:, :n_bodies].copy()
                yield Sample(sample_id, int(hot[0]) + 1, joints, where)


def protocol_from_file_name(path: Path) -> str:
    """CTR-GCN names its files NTU60_CS / NTU60_CV / NTU120_CSub / NTU120_CSet."""
    suffix = path.stem.rsplit("_", 1)[-1].lower()
    return {"cs": "xsub", "csub": "xsub", "cv": "xview", "cset": "xset"}.get(suffix, "npz")
