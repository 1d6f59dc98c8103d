"""``actionlm prepare`` on data that cannot form every standard protocol (files of one camera,
one subject), and ``--dataset`` inferred from the NTU action ids of the file names.

A standard protocol that prepare chose itself (the dataset's defaults) and the data cannot
form is skipped with a warning naming it and why; one named with ``--protocols`` is a one-line
error, found from the file names before any file is decoded, and nothing is written. Inputs
are the real NTU raw files of the shared folder, copied into tmp_path under names with other
camera / subject / action fields (the fields only name the file: its content is the same).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow.parquet as pq

from actionlm.cli import main
from actionlm.io import table_metadata
from test_malformed import (
    NTU_GOOD,
    NTU_RAW,
    Result,
    assert_nothing_written,
    prepare_cli,
    prepare_console,
)

TEST_SUBJECT, TRAIN_SUBJECT = NTU_GOOD  # P003 is an xsub test subject, P004 a training one; C001


def ntu_file(shared: Path, folder: Path, real: str, **fields: int) -> Path:
    """A copy of the real file ``real`` named with ``fields`` (setup, camera, subject,
    replication, action) replaced."""
    keys = dict(zip("SCPRA", ("setup", "camera", "subject", "replication", "action")))
    values = {keys[real[i]]: int(real[i + 1 : i + 4]) for i in range(0, 20, 4)}
    values.update(fields)
    name = "S{setup:03d}C{camera:03d}P{subject:03d}R{replication:03d}A{action:03d}".format(
        **values)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.skeleton"
    path.write_bytes((shared / NTU_RAW / f"{real}.skeleton").read_bytes())
    return path


def one_camera(shared: Path, folder: Path, **fields: int) -> Path:
    """Both real files (camera 1): one xsub test subject, one training subject."""
    for real in NTU_GOOD:
        ntu_file(shared, folder, real, **fields)
    return folder


def written_splits(out: Path) -> list[str]:
    return sorted(path.stem for path in (out / "splits").glob("*.parquet"))


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_default_protocols_skip_what_one_camera_cannot_form(shared, tmp_path, capsys, caplog):
    src, out = one_camera(shared, tmp_path / "raw"), tmp_path / "out"
    result = prepare_cli(capsys, "ntu-raw", src, out, "--dataset", "ntu60")
    assert result.code == 0, result.err
    assert written_splits(out) == ["xsub"]
    assert pq.read_metadata(out / "skeletons.parquet").num_rows == 2
    assert "skipped protocol 'xview' (a default, not asked for): no sample of camera 2 or 3 " \
           "for its train split" in warnings_of(caplog)
    assert result.out.startswith(
        "prepared 2 samples, rejected 0; protocols: xsub; skipped xview: no sample of camera 2 "
        "or 3 for its train split")

    # the workflow's split stage, asked for xview by name: one line saying why
    inputs = [f"--{name.replace('_', '-')}={out / name}.parquet"
              for name in ("skeletons", "classes", "embedded_splits")]
    code = main(["split", *inputs, "--protocol", "xview", "--out", str(tmp_path / "xv.parquet")])
    line = Result(code, *capsys.readouterr()).error_line()
    assert code == 2 and line == ("actionlm: error: protocol 'xview' leaves the train split "
                                  "empty: no sample of camera 2 or 3")


def test_default_protocol_lost_to_a_rejected_file_is_skipped_after_decoding(
        shared, tmp_path, capsys, caplog):
    """The names promise camera 2, but its only file cannot be decoded."""
    src, out = one_camera(shared, tmp_path / "raw"), tmp_path / "out"
    (src / "S001C002P004R001A017.skeleton").write_bytes(b"\x00" * 100)
    result = prepare_cli(capsys, "ntu-raw", src, out, "--dataset", "ntu60")
    assert result.code == 0, result.err
    assert written_splits(out) == ["xsub"]
    assert "skipped xview: no sample of camera 2 or 3 for its train split" in result.out
    assert any("skipped protocol 'xview'" in w for w in warnings_of(caplog))

    # named explicitly, the same loss is an error, and nothing is written
    out = tmp_path / "explicit"
    result = prepare_cli(capsys, "ntu-raw", src, out, "--dataset", "ntu60", "--protocols", "xview")
    assert result.code == 2
    assert result.error_line() == ("actionlm: error: protocol 'xview' leaves the train split "
                                   "empty: no sample of camera 2 or 3")
    assert_nothing_written(out)


def test_no_formable_default_protocol_is_an_error(shared, tmp_path, capsys):
    """One file: one subject (no xsub test side) and one camera."""
    src, out = tmp_path / "raw", tmp_path / "out"
    ntu_file(shared, src, TRAIN_SUBJECT)
    result = prepare_cli(capsys, "ntu-raw", src, out, "--dataset", "ntu60")
    assert result.code == 2
    line = result.error_line()
    assert "can form none of the standard protocols" in line
    assert "xsub: no sample of a test subject" in line and "xview: no sample of camera 2" in line
    assert_nothing_written(out)
    # no split at all is still possible
    assert prepare_cli(capsys, "ntu-raw", src, out, "--dataset", "ntu60",
                       "--protocols", "none").code == 0
    assert not (out / "splits").exists()


def test_explicit_impossible_protocol_is_one_line_before_decoding(shared, tmp_path):
    """The installed command in its own process: exactly one line on stderr, nothing written.
    The folder also holds an undecodable file and --strict stops at the first bad file: the
    protocol error shows that the file names were checked before any file was decoded."""
    src, out = one_camera(shared, tmp_path / "raw"), tmp_path / "out"
    (src / "S001C001P001R001A001.skeleton").write_bytes(b"\x00" * 100)
    result = prepare_console(src, out, "--protocols", "xsub,xview", "--strict")
    assert result.code == 2
    assert result.error_line() == (
        "actionlm: error: protocol 'xview' leaves the train split empty: no sample of camera 2 "
        f"or 3 (among the 3 .skeleton files of {src} that ntu60 can use)")
    assert_nothing_written(out)


def test_dataset_is_inferred_from_the_highest_action_id(shared, tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO, logger="actionlm.data.prepare")

    def prepared(src: Path, out: Path, *extra: str) -> tuple[str, list[int]]:
        result = prepare_cli(capsys, "ntu-raw", src, out, "--protocols", "xsub", *extra)
        assert result.code == 0, result.err
        classes = pq.read_table(out / "classes.parquet")
        return table_metadata(classes, "dataset"), classes["native_id"].to_pylist()

    src60 = one_camera(shared, tmp_path / "raw60", action=60)
    assert prepared(src60, tmp_path / "out60") == ("ntu60", list(range(1, 61)))
    assert ("--dataset not given: ntu60, inferred from the highest action id in the file names "
            "(A060)") in caplog.messages

    src120 = one_camera(shared, tmp_path / "raw120")
    ntu_file(shared, src120, TEST_SUBJECT, action=61)
    assert prepared(src120, tmp_path / "out120") == ("ntu120", list(range(1, 121)))
    assert pq.read_metadata(tmp_path / "out120/skeletons.parquet").num_rows == 3
    assert any("ntu120, inferred" in m and "(A061)" in m for m in caplog.messages)

    # an explicit --dataset wins: A061 is then not a class, and its file is rejected
    assert prepared(src120, tmp_path / "given", "--dataset", "ntu60") == (
        "ntu60", list(range(1, 61)))
    assert pq.read_metadata(tmp_path / "given/rejected.parquet").num_rows == 1
