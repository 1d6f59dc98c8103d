"""Config validation names the bad key; config.yaml is the one home of every default."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from snakemake.utils import update_config

from actionlm.config import config_errors, validate_config
from actionlm.errors import ActionlmError

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"


@pytest.fixture
def config() -> dict:
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def errors(config):
    return config_errors(config, yaml.safe_load(SCHEMA.read_text()))


def test_shipped_configs_are_valid(config):
    """config.yaml, and each overlay merged onto it the way `--configfile` does."""
    assert errors(config) == []
    for overlay in sorted((ROOT / "configs").glob("*.yaml")):
        merged = copy.deepcopy(config)
        update_config(merged, yaml.safe_load(overlay.read_text()))
        assert errors(merged) == [], overlay.name


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda c: c["prepare"].update(threads=0), "prepare.threads: 0 is less than the minimum"),
        (lambda c: c["prepare"].update(thread=2), "prepare.thread: unknown key"),
        (lambda c: c["datasets"]["synthetic"].update(format="ntu"), "datasets.synthetic.format: 'ntu' is not one of"),
        (lambda c: c["datasets"]["synthetic"].update(protocols=["xsubject"]), "datasets.synthetic.protocols.0: 'xsubject' does not match"),
        (lambda c: c["datasets"]["synthetic"].pop("protocols"), "datasets.synthetic.protocols: 'protocols' is a required property"),
        (lambda c: c["datasets"]["synthetic"]["synthetic"].update(subjects="ten"), "datasets.synthetic.synthetic.subjects: 'ten' is not of type 'integer'"),
        (lambda c: c.pop("run_datasets"), "run_datasets: 'run_datasets' is a required property"),
    ],
)
def test_errors_name_the_key(config, edit, expected):
    edit(config)
    found = errors(config)
    assert any(line.startswith(expected) for line in found), found


def test_validate_config_raises_one_message_listing_all(config, tmp_path):
    config["prepare"]["threads"] = -1
    config["datasets"]["synthetic"]["seed"] = "x"
    with pytest.raises(ActionlmError) as err:
        validate_config(config, SCHEMA, "config.yaml")
    text = str(err.value)
    assert text.startswith("config.yaml is invalid:")
    assert "prepare.threads" in text and "datasets.synthetic.seed" in text


def schema_keys(schema: dict, root: dict, prefix: str = "") -> list[str]:
    """Dotted paths of every fixed key the schema defines (not the free-form maps: datasets,
    ablation tables), resolving local $refs."""
    if "$ref" in schema:
        node = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = {**node, **{k: v for k, v in schema.items() if k != "$ref"}}
    keys = []
    for key, sub in schema.get("properties", {}).items():
        keys.append(prefix + key)
        if key not in ("datasets", "tables"):
            keys += schema_keys(sub, root, f"{prefix}{key}.")
    return keys


def has_default(node: object) -> bool:
    if isinstance(node, dict):
        return "default" in node or any(has_default(v) for v in node.values())
    return isinstance(node, list) and any(has_default(v) for v in node)


def test_config_yaml_holds_every_key_and_the_schema_no_default(config):
    schema = yaml.safe_load(SCHEMA.read_text())
    assert not has_default(schema)
    missing = []
    for key in schema_keys(schema, schema):
        node = config
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                missing.append(key)
                break
            node = node[part]
    # what each dataset must set itself; the per-method blocks of lora and encoders override
    # common keys (lora's each set their own lr, so lora.common has none)
    optional = {"dataset_defaults.format", "dataset_defaults.protocols", "lora.common.lr"}
    overrides = ("lora.llm_ar.", "lora.sugar.", "encoders.ce.", "encoders.gap.", "encoders.sugar.")
    assert [k for k in missing if k not in optional and not k.startswith(overrides)] == []
