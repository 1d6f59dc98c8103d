"""The conda environment used by the rules pins exactly what pyproject.toml pins."""

from __future__ import annotations

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
