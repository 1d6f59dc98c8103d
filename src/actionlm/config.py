"""Workflow config validation against ``workflow/schemas/config.schema.yaml``.

jsonschema's own messages do not say where in the YAML the problem is; these do
(``datasets.nw_ucla.root: None is not of type 'string'``).
"""

from __future__ import annotations

from pathlib import Path

import jsonschema
import yaml

from actionlm.errors import ActionlmError


def _key_path(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return ".".join(filter(None, [path, *extra[:1]])) or "<top level>"
    if error.validator == "required":
        missing = [r for r in error.validator_value if r not in error.instance]
        return ".".join(filter(None, [path, *missing[:1]]))
    return path or "<top level>"


def config_errors(config: dict, schema: dict) -> list[str]:
    """One line per problem, each naming the config key."""
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    lines = []
    for error in errors:
        message = error.message
        if error.validator == "additionalProperties":
            message = "unknown key (misspelt?)"
        lines.append(f"{_key_path(error)}: {message}")
    return lines


def validate_config(config: dict, schema_path: str | Path, source: str = "config") -> None:
    schema = yaml.safe_load(Path(schema_path).read_text())
    problems = config_errors(config, schema)
    if problems:
        raise ActionlmError(
            f"{source} is invalid:\n" + "\n".join(f"  {line}" for line in problems)
        )

