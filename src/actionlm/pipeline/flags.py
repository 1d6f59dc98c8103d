"""Config values -> command-line flags, in one canonical form.

The flags are a rule's params, and Snakemake reruns a job when its params change; so they
depend only on the values, never on how the config was written: keys are sorted, ``1`` and
``1.0`` give the same text, and a value restated in an overlay changes nothing.
"""

from __future__ import annotations

import shlex


def canonical(value: object) -> str:
    """One value as its flag argument: integral floats without ".0", other floats as Python's
    shortest round-tripping repr (5e-4 and 0.0005 are both '0.0005')."""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return shlex.quote(str(value))


def cli_flags(options: dict) -> str:
    """``key_name: v`` -> ``--key-name v``; ``True``/``False`` -> ``--key``/``--no-key``; a list ->
    ``--key v1 v2``; ``None`` -> left out (the command's own default: "none")."""
    flags = []
    for key in sorted(options):
        value, flag = options[key], "--" + key.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + key.replace("_", "-"))
        elif isinstance(value, (list, tuple)):
            flags.append(" ".join([flag, *map(canonical, value)]))
        elif value is not None:
            flags.append(f"{flag} {canonical(value)}")
    return " ".join(flags)


def file_flags(files: dict[str, str | list[str]], skip: tuple[str, ...] = ()) -> str:
    """A rule's named inputs as the command's file options (``--name path [path...]``)."""
    return cli_flags({k: v for k, v in files.items() if k not in skip})
