"""The package is layered: a module imports only modules of its own or an earlier layer,

    data -> knowledge, text -> models -> train -> llm -> eval -> report

so that, e.g., the LLM stages never depend on evaluation code. The top-level modules (errors,
io, device, cli_args, config, cli, pipeline) sit outside the order and may be imported by any
module; ``actionlm.config`` imports no layer, and ``actionlm.pipeline`` only the data layer
(what a dataset's format can form), so that Snakemake reads them without torch. Imports
inside functions count too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "actionlm"
LAYERS = {"data": 0, "knowledge": 1, "text": 1, "models": 2, "train": 3, "llm": 4, "eval": 5,
          "report": 6}
LAYER_LIMITS = {"config": -1, "pipeline": LAYERS["data"]}  # the last layer each may import


def module_name(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every ``actionlm...`` module that ``path`` imports, at any depth of its code."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.split(".")[0] == "actionlm"}


def top(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def violations(path: Path, package: Path = PACKAGE) -> list[str]:
    """``module -> imported`` for each import of a later layer (or, from a layer-free module,
    of any layer)."""
    name = module_name(path, package)
    own = top(name)
    bad = []
    for imported in sorted(imported_modules(path)):
        layer = LAYERS.get(top(imported))
        if layer is None:
            continue
        limit = LAYER_LIMITS.get(own, LAYERS.get(own))
        if limit is not None and layer > limit:
            bad.append(f"{name} -> {imported}")
    return bad


def test_every_module_imports_only_earlier_or_same_layers():
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 40
    assert [v for path in modules for v in violations(path)] == []


@pytest.mark.parametrize("source, layer", [
    ("from actionlm.eval.metrics import write_evaluation\n", "llm"),
    ("def f():\n    import actionlm.train.common\n", "models"),
    ("from actionlm import report\n", "eval"),
])
def test_an_import_of_a_later_layer_is_caught(tmp_path, source, layer):
    probe = tmp_path / "actionlm" / layer / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text(source)
    assert violations(probe, tmp_path / "actionlm") != []


@pytest.mark.parametrize("module, source", [
    ("config.py", "from actionlm.data.splits import make_split\n"),
    ("pipeline/stages.py", "from actionlm.models.encoder import load_encoder\n"),
])
def test_config_and_pipeline_stay_below_the_models(tmp_path, module, source):
    probe = tmp_path / "actionlm" / module
    probe.parent.mkdir(parents=True)
    probe.write_text(source)
    assert violations(probe, tmp_path / "actionlm") != []


def test_the_workflow_package_loads_without_torch():
    code = ("import sys, actionlm.pipeline, actionlm.pipeline.checks, actionlm.pipeline.targets; "
            "print('torch' in sys.modules)")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert loaded.stdout.strip() == "False"
