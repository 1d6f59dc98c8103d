"""The `actionlm` command: stages as subcommands, each with its own help."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from actionlm.cli import STAGES, build_parser, main
from actionlm.cli_args import Bounded
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


# --- numeric options: out of range is a one-line usage error, with or without the workflow ----

# command, option, values out of its range (each a case)
OUT_OF_RANGE = """
prepare --val-fraction 1.5 -0.5 nan
prepare --seed -1
prepare --workers 0
prepare --subjects 0
prepare --replications 0
prepare --setups -2
split --val-fraction 1.5 1 -0.5 nan inf
split --seed -1 0.5
describe --concurrency 0
describe --max-retries -1
describe --timeout 0 nan
describe --serve-threads 0
describe-visual --frames-per-class 0
describe-visual --samples-per-class 0
describe-visual --frames-per-sample 0
describe-visual --render-size 8
describe-visual --max-side 0
describe-visual --seed -3
describe-visual --max-tokens 0
describe-visual --temperature -0.1 2.5 nan
describe-visual --concurrency 0
describe-visual --max-retries -1
describe-visual --timeout -5 inf
encode-text --batch-size 0
encode-text --seed -1
train-vqvae --width 0
train-vqvae --window 0 -8 8.5
train-vqvae --bodies 0
train-vqvae --codes 0
train-vqvae --curvature 0 -1 nan inf
train-vqvae --channels 0
train-vqvae --depth -1
train-vqvae --zipf-alpha 0
train-vqvae --zipf-beta -1
train-vqvae --omega1 -0.5
train-vqvae --omega2 nan
train-vqvae --gumbel-tau 0
train-vqvae --mmd-rows 1
train-vqvae --lr 0 -1e-3 nan inf
train-vqvae --weight-decay -0.1
train-vqvae --epochs -1
train-vqvae --max-steps -1
train-vqvae --batch-size 0
train-vqvae --seed -1
train-vqvae --reset-every -1
train-vqvae --threads 0
train-vqvae --checkpoint-every -1
tokenize --batch-size 0
tokenize --threads 0
train-encoder --base-channels 2
train-encoder --window 0
train-encoder --bodies 0
train-encoder --dropout 1 -0.1
train-encoder --num-class 1
train-encoder --epochs 0
train-encoder --repeat 0
train-encoder --batch-size 1
train-encoder --warmup-epochs -1
train-encoder --positives 0
train-encoder --seed -1
train-encoder --lr 0 nan
train-encoder --momentum 1.5 -0.1
train-encoder --weight-decay -1
train-encoder --gamma 0
train-encoder --clip-grad -1
train-encoder --rotate -0.1 inf
train-encoder --gap-weight -1
train-encoder --temperature 0
train-encoder --text-lr 0
train-encoder --milestones 0
train-encoder --train-interval 0 1.5
train-encoder --test-interval 0 nan
train-encoder --threads 0
train-encoder --checkpoint-every -1
extract-features --test-interval 0 1.5
extract-features --batch-size 0
extract-features --threads 0
evaluate --test-interval 0 -1 nan
evaluate --batch-size 0
evaluate --threads 0
evaluate --generate-tokens -1
ensemble --weights -1 nan inf
lora --description-words 0
lora --lora-r 0
lora --lora-alpha 0 nan
lora --lora-dropout 1 -0.5
lora --queries 0
lora --segments 0
lora --depth 0
lora --heads 0
lora --bridge-dropout 1.5
lora --lr 0 inf
lora --weight-decay -1
lora --epochs -1
lora --max-steps -1
lora --batch-size 0
lora --micro-batch-size 0
lora --warmup-steps -1
lora --max-grad-norm -1 nan
lora --seed -1
lora --threads 0
lora --checkpoint-every -1
lora --log-every 0
"""
BOUND_CASES = [(command, option, value) for line in OUT_OF_RANGE.strip().splitlines()
               for command, option, *values in [line.split()] for value in values]


def numeric_options(stage: str) -> dict[str, object]:
    """Option -> type of every option of ``stage`` that takes a number (choices aside)."""
    parser = build_parser(stage)
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {a.option_strings[0]: a.type for a in sub.choices[stage]._actions
            if a.type in (int, float) or isinstance(a.type, Bounded)
            if a.choices is None}


def test_every_numeric_option_is_bounded_and_covered():
    covered = {(command, option) for command, option, _ in BOUND_CASES}
    for stage, _, _ in STAGES:
        options = numeric_options(stage)
        assert [o for o, kind in options.items() if not isinstance(kind, Bounded)] == [], stage
        assert {(stage, o) for o in options} == {c for c in covered if c[0] == stage}, stage
    assert (len(covered), len(BOUND_CASES)) == (103, 137)  # options, out-of-range values


@pytest.mark.parametrize(("command", "option", "value"), BOUND_CASES)
def test_out_of_range_value_is_a_one_line_error(command, option, value, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, f"{option}={value}"])
    assert exit_.value.code == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"actionlm {command}: error: argument {option}: expected "), line
    assert f"got {value!r}" in line
