"""NW-UCLA in the common ``all_sqe`` JSON form: one ``aAA_sSS_eEE_vVV.json`` per sequence,
``{"file_name", "skeletons": [T][20][3], "label": 1..10}``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from actionlm.data.classes import nw_ucla_class_table
from actionlm.data.ntu_raw import center_on_first_frame
from actionlm.data.table import Sample
from actionlm.errors import InputError

NW_UCLA_NAME = re.compile(r"a(\d{2})_s(\d{2})_e(\d{2})_v(\d{2})")
N_JOINTS = 20
CENTER_JOINT = 1  # 0-based: the spine joint of the Kinect v1 skeleton, as NTU's joint 2


def load_nw_ucla_file(path: str | Path) -> Sample:
    path = Path(path)
    source = str(path)
    match = NW_UCLA_NAME.fullmatch(path.stem)
    if match is None:
        raise InputError(source, f"file name {path.stem!r} is not of the form aAA_sSS_eEE_vVV")
    action, subject, repetition, view = (int(g) for g in match.groups())
    try:
        record = json.loads(path.read_bytes())
    except OSError as err:
        raise InputError(source, f"cannot read: {err.strerror or err}") from None
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
        raise InputError(source, f"not valid JSON ({type(err).__name__}: {err})") from None
    if not isinstance(record, dict) or "skeletons" not in record:
        raise InputError(source, "JSON has no 'skeletons' key")
    if record["skeletons"] == []:
        raise InputError(source, "'skeletons' has zero frames")
    try:  # no dtype here, so that strings, booleans and nulls are seen rather than converted
        values = np.asarray(record["skeletons"])
    except (ValueError, TypeError):
        values = None
    if values is None or values.dtype.kind not in "iuf":
        raise InputError(source, "'skeletons' is not a numeric [frames][20][3] array")
    if values.ndim != 3 or values.shape[1:] != (N_JOINTS, 3):
        raise InputError(source, f"'skeletons' has shape {values.shape}, expected (frames, 20, 3)")
    joints = values.astype(np.float32)
    if not np.isfinite(joints).all():
        raise InputError(source, "non-finite coordinate (nan/inf)")
    classes = nw_ucla_class_table()
    expected = classes.label_of(action)
    if expected is None:
        raise InputError(source, f"action a{action:02d} is not an NW-UCLA class")
    label = record.get("label")
    if label is not None and (isinstance(label, bool) or label != expected + 1):
        raise InputError(
            source, f"'label' {label!r} disagrees with the file name's action a{action:02d}"
        )
    file_name = record.get("file_name")
    if file_name is not None and file_name != path.stem:
        raise InputError(source, f"'file_name' {file_name!r} disagrees with the file's name")
    joints = center_on_first_frame(joints[:, None], CENTER_JOINT, source)
    return Sample(path.stem, action, joints, source, subject=subject, camera=view,
                  replication=repetition)
