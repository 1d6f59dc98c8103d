"""Every config key reaches its stage: for each stage, the command line the workflow builds
(actionlm.pipeline's inputs and flags, from representative configs with false booleans and
nulls) is parsed by the stage's own parser, and each value arrives under its option."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

import pytest
import yaml

from actionlm.cli import build_parser
from actionlm.pipeline import Pipeline, targets
from actionlm.pipeline.checks import check_config
from actionlm.pipeline.flags import cli_flags, file_flags
from actionlm.pipeline.runs import deep_merge

ROOT = Path(__file__).resolve().parents[1]
MAIN = {"run": "", "dataset": "synthetic", "protocol": "xsub"}

# Representative values: the default, every boolean the other way, nulls where allowed.
FLIPPED = {
    "dataset_defaults": {"trust_pickle": True, "val_fraction": 0.1},
    "prepare": {"strict": True},
    "knowledge": {"allow_incomplete": False,
                  "text_encoder": {"model": None, "pretrained": "none", "seed": 3}},
    "vqvae": {"train": {"zipf": False, "context": False, "mmd": False, "width": None,
                        "weight_decay": 0.01}},
    "encoders": {"network": {"backbone": "stgcn"},
                 "train": {"milestones": [], "text_tuning": "finetune", "rotate": 0.3}},
    "lora": {"common": {"gradient_checkpointing": True, "max_grad_norm": 0.0},
             "llm_ar": {"train_action_embeddings": False},
             "sugar": {"descriptions": True, "bridge": "qformer"}},
    "llm_eval": {"normalize": "mean", "generate_tokens": 5},
}
ENDPOINT = {"knowledge": {"provider": {"serve_local": False, "base_url": None},
                          "visual": {"enabled": True, "frames_dir": None}}}
GAP_FILES = {"knowledge": {"import_gap": "gap", "import_gap_allow_missing": True},
             "encoders": {"train": {"sugar_kinds": ["part", "paragraph"]}}}  # GAP's kinds
CONFIGS = {"default": {}, "flipped": FLIPPED, "endpoint": ENDPOINT, "gap": GAP_FILES}

# (stage, command, wildcards, what the rule's shell adds besides files and flags)
JOBS = [
    ("prepare", "prepare", {"dataset": "synthetic"}, ["--out", "o"]),
    ("split", "split", {"dataset": "synthetic", "protocol": "xsub"},
     ["--protocol", "xsub", "--out", "o"]),
    ("prepare_llm", "prepare-llm", {}, ["--out", "o"]),
    ("describe", "describe", {"dataset": "synthetic"}, ["--out", "o"]),
    ("encode_text", "encode-text", {"dataset": "synthetic"}, ["--out", "o"]),
    ("train_vqvae", "train-vqvae", MAIN, ["--out", "o"]),
    ("tokenize", "tokenize", MAIN, ["--out", "o"]),
    *[("train_encoder", "train-encoder", {**MAIN, "method": m}, ["--out", "o"])
      for m in ("ce", "gap", "sugar")],
    ("extract_features", "extract-features", {**MAIN, "method": "sugar"}, ["--out", "o"]),
    *[("lora", "lora", {**MAIN, "method": m}, ["--out", "o"]) for m in ("llm_ar", "sugar")],
    *[("evaluate", "evaluate", {**MAIN, "method": m}, ["--out", "o"])
      for m in ("ce", "gap", "llm_ar", "sugar", "llm_ar_text")],
    ("evaluate", "evaluate", {**MAIN, "protocol": "unseen3_seed0", "method": "sugar"},
     ["--out", "o"]),
]


def pipeline(overlay: dict) -> Pipeline:
    config = deep_merge(yaml.safe_load((ROOT / "config.yaml").read_text()), overlay)
    check_config(config, ROOT / "workflow/schemas/config.schema.yaml")
    return Pipeline(config)


def parse(command: str, line: str) -> tuple[argparse.Namespace, argparse.ArgumentParser]:
    parser = build_parser(command)
    stage = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser.parse_args([command, *shlex.split(line)]), stage.choices[command]


def arrived(args: argparse.Namespace, parser: argparse.ArgumentParser, key: str) -> object:
    """The parsed value of config key ``key`` (its option --key, or --no-key)."""
    flag = "--" + key.replace("_", "-")
    action = next((a for a in parser._actions if flag in a.option_strings), None)
    assert action is not None, f"{parser.prog} has no option {flag}"
    return getattr(args, action.dest)


def same(parsed: object, expected: object) -> bool:
    if isinstance(expected, (list, tuple)):
        return len(parsed) == len(expected) and all(map(same, parsed, expected))
    if isinstance(parsed, list) and isinstance(expected, str):  # prepare's --actions 1,2,3
        return ",".join(map(str, parsed)) == expected
    if isinstance(expected, float):
        return parsed == pytest.approx(expected)
    return str(parsed) == str(expected) if isinstance(parsed, Path) else parsed == expected


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("stage, command, wildcards, extra", JOBS,
                         ids=[f"{j[0]}-{j[2].get('method', '')}" for j in JOBS])
def test_each_config_value_reaches_its_option(name, stage, command, wildcards, extra):
    pipe = pipeline(CONFIGS[name])
    options = getattr(pipe, f"_{stage}_options")(wildcards)
    files = pipe.inputs(stage, wildcards)
    line = " ".join([file_flags(files, ("adapter",)), *extra, pipe.flags(stage, wildcards)])
    args, parser = parse(command, line)
    for key, value in {**options, **{k: v for k, v in files.items() if k != "adapter"}}.items():
        assert same(arrived(args, parser, key), value), (stage, key, value)


@pytest.mark.parametrize("name", ("endpoint",))
def test_visual_knowledge_options_reach_describe_visual(name):
    pipe = pipeline(CONFIGS[name])
    wildcards = {"dataset": "synthetic"}
    options = pipe._describe_visual_options(wildcards)
    line = " ".join([file_flags(pipe.inputs("describe_visual", wildcards)), "--out o",
                     pipe.flags("describe_visual", wildcards)])
    args, parser = parse("describe-visual", line)
    for key, value in options.items():
        assert same(arrived(args, parser, key), value), key


@pytest.mark.parametrize("name", ("summary", "ablations/gap_partitions"))
def test_report_options_parse(name):
    pipe = pipeline({})
    inputs = targets.report_inputs(pipe, {"name": name})
    line = " ".join([*inputs["metrics"], "--out-md a --out-csv b",
                     cli_flags({k: v for k, v in inputs.items() if k != "metrics"}),
                     targets.report_flags(pipe, {"name": name})])
    args, _ = parse("report", line)
    assert len(args.metrics) == len(inputs["metrics"])
    if name != "summary":
        assert args.row_labels == ["none", "global", "parts2", "parts4", "parts6"]
