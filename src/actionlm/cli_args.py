"""From a stage's parsed command line to its config dataclass: an option ``--some-name`` fills
the field ``some_name`` (argparse's ``dest``), a list value becomes a tuple (dataclass fields
are immutable), and the options' defaults are the dataclass's own (``default=Config().x``), so
a default lives in one place.
"""

from __future__ import annotations

import argparse
from dataclasses import MISSING, fields


def fields_from_args(cls: type, args: argparse.Namespace, skip: tuple[str, ...] = ()) -> dict:
    """The values of dataclass ``cls``'s fields (except ``skip``) in ``args``, by name."""
    values = {f.name: getattr(args, f.name) for f in fields(cls) if f.name not in skip}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


def field_defaults(cls: type) -> dict:
    """Dataclass ``cls``'s default values by field name (fields without one left out): the
    defaults of the options that fill it."""
    return {f.name: f.default for f in fields(cls) if f.default is not MISSING}
