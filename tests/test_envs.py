"""The conda environments of the rules pin exactly what pyproject.toml pins, and every rule
that runs a command names one of them (snakemake --sdm conda builds it)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def test_conda_env_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {Requirement(r).name.lower(): str(Requirement(r).specifier) for r in project["dependencies"]}
    env = yaml.safe_load((ROOT / "envs/actionlm.yaml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pinned = {Requirement(r).name.lower(): str(Requirement(r).specifier)
              for r in pip_section if not r.startswith("-")}
    assert pinned == wanted
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert project["requires-python"] == ">=" + python.split("=")[1]


def test_every_rule_with_a_command_uses_an_env_file():
    """One environment for all rule groups: every rule runs the one `actionlm` CLI, whose
    stages share torch/transformers, so per-group copies would only install them again."""
    checked = 0
    for smk in sorted((ROOT / "workflow/rules").glob("*.smk")):
        blocks = re.split(r"^rule (\w+):\n", smk.read_text(), flags=re.MULTILINE)
        for name, body in zip(blocks[1::2], blocks[2::2]):
            if not re.search(r"^    (shell|run|script):", body, flags=re.MULTILINE):
                continue
            env = re.search(r'^    conda:\n\s+"([^"]+)"', body, flags=re.MULTILINE)
            assert env, f"{smk.name}: rule {name} has no conda: directive"
            assert (smk.parent / env.group(1)).resolve() == ROOT / "envs/actionlm.yaml", name
            checked += 1
    assert checked >= 10
