"""The `actionlm` command: stages as subcommands, each with its own help."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from actionlm.cli import STAGES, build_parser, main
from actionlm.data.split_files import SplitFiles

ACTIONLM = Path(sys.executable).parent / "actionlm"


def test_console_script_lists_the_stages():
    result = subprocess.run([str(ACTIONLM), "--help"], capture_output=True, text=True, check=True)
    for stage in ("prepare", "split"):
        assert f"    {stage}" in result.stdout


@pytest.mark.parametrize("stage, option", [("prepare", "--trust-pickle"), ("split", "--protocol")])
def test_each_stage_has_help(stage, option, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([stage, "--help"])
    assert exit_.value.code == 0
    assert option in capsys.readouterr().out


def test_missing_stage_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([])
    assert exit_.value.code == 2
    assert "STAGE" in capsys.readouterr().err


def test_split_command_writes_one_protocol(shared, tmp_path, capsys):
    out = tmp_path / "ucla"
    assert main(["prepare", "--format", "nw-ucla", "--src", str(shared / "datasets/nw-ucla/all_sqe"),
                 "--out", str(out), "--protocols", "none", "--workers", "1"]) == 0
    assert not (out / "splits").exists()
    inputs = ["--skeletons", str(out / "skeletons.parquet"), "--classes",
              str(out / "classes.parquet"), "--embedded-splits", str(out / "embedded_splits.parquet")]
    split = tmp_path / "unseen.parquet"
    assert main(["split", *inputs, "--protocol", "unseen2_seed3", "--out", str(split)]) == 0
    assert "unseen2_seed3: {'train':" in capsys.readouterr().out
    assert SplitFiles(out / "skeletons.parquet", split).protocol == "unseen2_seed3"
    assert not (out / "splits").exists()
    assert main(["split", *inputs, "--protocol", "view3", "--out", str(tmp_path / "v3.parquet")]) == 2
    assert "protocol 'view3' leaves the test split empty" in capsys.readouterr().err


@pytest.mark.parametrize("stage", [name for name, _, _ in STAGES])
def test_every_boolean_option_has_a_no_form(stage):
    """A workflow writes ``--no-X`` for ``X: false`` as readily as ``--X`` for true."""
    parser = build_parser(stage)
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    flags = [a for a in sub.choices[stage]._actions
             if a.nargs == 0 and not isinstance(a, argparse._HelpAction)]
    assert [a.option_strings for a in flags
            if not isinstance(a, argparse.BooleanOptionalAction)] == []
