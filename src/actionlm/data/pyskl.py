"""pyskl's annotation pickle: ``{"split": {...}, "annotations": [{"frame_dir", "label",
"keypoint": M x T x V x C, ...}]}``. Unpickling runs code, so it is only done on request."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from actionlm.data.ntu_raw import CENTER_JOINT, NTU_NAME, center_on_first_frame, parse_ntu_name
from actionlm.data.table import Rejection, Sample
from actionlm.errors import ActionlmError, InputError


def load_pyskl_pickle(path: Path, trust_pickle: bool) -> dict:
    if not trust_pickle:
        raise ActionlmError(
            f"{path}: refusing to unpickle: a pickle can execute arbitrary code. "
            "Pass --trust-pickle only if you trust where this file came from."
        )
    try:
        with open(path, "rb") as f:
            data = pickle.load(f)  # noqa: S301 - the user passed --trust-pickle
    except Exception as err:  # a corrupt pickle can raise almost anything
        raise InputError(str(path), f"cannot unpickle ({type(err).__name__}: {err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise InputError(str(path), "not a pyskl annotation file (no 'annotations' list)")
    split = data.get("split")
    if split is not None and not (
        isinstance(split, dict) and all(isinstance(v, (list, tuple)) for v in split.values())
    ):
        raise InputError(str(path), "'split' is not a dict of sample-name lists")
    return data


def iter_pyskl_samples(data: dict, path: Path) -> Iterator[Sample | Rejection]:
    for i, ann in enumerate(data["annotations"]):
        where = f"{path}[annotations][{i}]"
        if not isinstance(ann, dict) or "keypoint" not in ann or "label" not in ann:
            yield Rejection(where, "annotation lacks 'keypoint' or 'label'")
            continue
        name = ann.get("frame_dir", f"sample_{i}")
        if not isinstance(name, str) or not name:
            yield Rejection(where, f"'frame_dir' {name!r} is not a non-empty string")
            continue
        label = ann["label"]
        if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or label < 0:
            yield Rejection(where, f"'label' {label!r} is not a 0-based integer class index", name)
            continue
        try:  # no dtype here, so that strings, booleans and objects are seen rather than converted
            kp = np.asarray(ann["keypoint"])
        except (ValueError, TypeError):
            kp = None
        if kp is None or kp.dtype.kind not in "iuf":
            yield Rejection(where, "keypoint is not a numeric array", name)
            continue
        kp = kp.astype(np.float32, copy=False)
        if kp.ndim != 4 or kp.shape[-1] not in (2, 3) or kp.shape[1] == 0:
            yield Rejection(where, f"keypoint has shape {kp.shape}, expected (M, T>0, V, 2 or 3)",
                            name)
            continue
        if not np.isfinite(kp).all():
            yield Rejection(where, "non-finite coordinate (nan/inf)", name)
            continue
        if kp.shape[-1] == 2:
            kp = np.concatenate([kp, np.zeros_like(kp[..., :1])], axis=-1)
        joints = np.ascontiguousarray(kp.transpose(1, 0, 2, 3))  # -> T, M, V, 3
        try:
            joints = center_on_first_frame(joints, CENTER_JOINT, where)
        except InputError as err:
            yield Rejection(where, err.reason, name)
            continue
        meta = parse_ntu_name(name, where) if NTU_NAME.fullmatch(name) else {}
        meta.pop("action", None)
        yield Sample(name, int(label) + 1, joints, where, **meta)


def pyskl_split_membership(data: dict) -> dict[str, dict[str, str]]:
    """pyskl's own splits (``xsub_train``/``xsub_val``...) as {protocol: {sample_id: split}};
    pyskl calls the held-out part ``val``, which is the papers' test set."""
    out: dict[str, dict[str, str]] = {}
    for key, names in (data.get("split") or {}).items():
        protocol, _, part = str(key).rpartition("_")
        if protocol and part in ("train", "val", "test"):
            split = "train" if part == "train" else "test"
            out.setdefault(protocol, {}).update({str(n): split for n in names})
    return out
