"""The `actionlm` command: stages as subcommands, each with its own help."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from actionlm.cli import build_parser, main

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
    assert main(["split", "--data", str(out), "--protocol", "unseen2_seed3"]) == 0
    assert "unseen2_seed3: {'train':" in capsys.readouterr().out
    assert (out / "splits/unseen2_seed3.parquet").is_file()
    assert main(["split", "--data", str(out), "--protocol", "view3"]) == 2
    assert "protocol 'view3' leaves the test split empty" in capsys.readouterr().err
