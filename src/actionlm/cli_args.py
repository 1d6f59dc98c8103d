"""A stage's command line: the checked number types of its options, and from the parsed
options to its config dataclass.

Every numeric option takes one of the ``type=`` checkers here (``positive_int``,
``non_negative_int``, ``positive_float``, ``non_negative_float``, ``fraction``, ``share``, or
``Bounded`` for another interval): a value that is not a finite number in its interval (nan
and inf never are) is a one-line argparse usage error naming the option, exit code 2, with or
without the workflow's config schema in front.

An option ``--some-name`` fills the field ``some_name`` (argparse's ``dest``), a list value
becomes a tuple (dataclass fields are immutable), and the options' defaults are the dataclass's
own (``default=Config().x``), so a default lives in one place.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import MISSING, dataclass, fields


@dataclass(frozen=True)
class Bounded:
    """An argparse ``type=``: a finite ``kind`` (int or float) from ``low`` up to ``high`` (no
    upper end when None), an end excluded when ``open_low`` / ``open_high``."""

    kind: type
    low: float
    high: float | None = None
    open_low: bool = False
    open_high: bool = False

    def __call__(self, text: str) -> int | float:
        try:
            value = self.kind(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or not self.holds(value):
            raise argparse.ArgumentTypeError(f"expected {self.description()}, got {text!r}")
        return value

    def holds(self, value: float) -> bool:
        above = value > self.low if self.open_low else value >= self.low
        below = self.high is None or (value < self.high if self.open_high else value <= self.high)
        return above and below

    def description(self) -> str:
        what = "an integer" if self.kind is int else "a finite number"
        if self.high is None:
            return f"{what} {'>' if self.open_low else '>='} {self.low:g}"
        return (f"{what} in {'(' if self.open_low else '['}{self.low:g}, "
                f"{self.high:g}{')' if self.open_high else ']'}")


positive_int = Bounded(int, 1)  # counts, sizes
non_negative_int = Bounded(int, 0)  # seeds, counts where 0 means off
positive_float = Bounded(float, 0, open_low=True)  # rates, temperatures, scales
non_negative_float = Bounded(float, 0)  # weights, decays, limits where 0 means off
fraction = Bounded(float, 0, 1, open_high=True)  # a part that leaves something: dropout, val
share = Bounded(float, 0, 1, open_low=True)  # a part that keeps something: crop shares


def fields_from_args(cls: type, args: argparse.Namespace, skip: tuple[str, ...] = ()) -> dict:
    """The values of dataclass ``cls``'s fields (except ``skip``) in ``args``, by name."""
    values = {f.name: getattr(args, f.name) for f in fields(cls) if f.name not in skip}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


def field_defaults(cls: type) -> dict:
    """Dataclass ``cls``'s default values by field name (fields without one left out): the
    defaults of the options that fill it."""
    return {f.name: f.default for f in fields(cls) if f.default is not MISSING}
