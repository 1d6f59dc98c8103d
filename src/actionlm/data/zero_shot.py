"""Zero-shot protocols: which classes are unseen, and which samples train and test.

A zero-shot protocol names its unseen classes and the samples of each side:

- ``unseen{K}_seed{S}`` (LLM-AR Sec. 4.4, SUGAR "Zero-shot"): K classes drawn by seed S; every
  seen-class sample trains, every unseen-class sample tests.
- ``{base}_unseen{K}_seed{S}`` (base: a standard protocol such as xsub or view2): K classes
  drawn by seed S, samples split as the benchmarks below split them.
- The field's benchmarks, fixed class lists on NTU's cross-subject partition (``BENCHMARKS``):
  SynSE's ``synse55_5`` and ``synse48_12`` (NTU60), ``synse110_10`` and ``synse96_24``
  (NTU120), and SMIE's three random splits per dataset, ``smie55_5_split{1,2,3}`` (NTU60) and
  ``smie110_10_split{1,2,3}`` (NTU120).

Under a base protocol, seen classes of its train side are ``train``, unseen classes of its test
side are ``test`` (zero-shot learning, ZSL) and seen classes of its test side ``test_seen``
(with ``test``: generalized zero-shot, GZSL); unseen classes of the train side are left out
(SMIE's split.py; SynSE's loaders read NTU's cross-subject ("CS") train and test sets). No
unseen-class sample is ever in ``train`` or ``val``.

``{P}_val`` is the validation protocol of a protocol P with a base (SynSE's ``rv``/``rs`` label
splits play this part): K of P's seen classes drawn by seed 0 are its unseen ones, and only P's
training samples take part: its seen classes train, except a share (VALIDATION_SHARE of each
class, seeded) kept for ``test_seen``. GZSL calibration is chosen there, never on P's test side.

A protocol's *family* groups the protocols whose results are averaged: the seeds of
``unseen{K}`` (``unseen{K}_seed{S}`` -> ``unseen{K}``), SMIE's three splits (-> ``smie55_5``);
a SynSE split is a family of one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from actionlm.errors import ActionlmError

BASES = ("xsub", "xview", "xset", "view3", "view2")
DRAWN = re.compile(rf"(?:(?P<base>{'|'.join(BASES)})_)?unseen(?P<k>\d+)_seed(?P<seed>\d+)")
SMIE = re.compile(r"(?P<family>smie\d+_\d+)_split(?P<split>\d+)")


@dataclass(frozen=True)
class Benchmark:
    """A fixed unseen-class list: NTU action ids (1-based), the dataset it is for, its source."""

    dataset: str
    n_classes: int
    actions: tuple[int, ...]
    source: str


def _smie(split: int, zero_based: list[int]) -> Benchmark:
    n = 60 if split <= 3 else 120
    return Benchmark(f"ntu{n}", n, tuple(c + 1 for c in zero_based),
                     f"SMIE (Zhou et al., ACM MM 2023), YujieOuO/SMIE split.py: split_{split} "
                     "(0-based labels)")


SYNSE_SOURCE = "SynSE (Gupta et al., ICIP 2021), skelemoa/synse-zsl README, 'Unseen Classes'"
BENCHMARKS = {
    "synse55_5": Benchmark("ntu60", 60, (11, 12, 20, 27, 57), SYNSE_SOURCE),
    "synse48_12": Benchmark("ntu60", 60, (4, 6, 10, 13, 16, 41, 43, 48, 52, 57, 59, 60),
                            SYNSE_SOURCE),
    "synse110_10": Benchmark("ntu120", 120, (5, 14, 38, 44, 50, 66, 89, 96, 100, 107),
                             SYNSE_SOURCE),
    "synse96_24": Benchmark("ntu120", 120, (6, 10, 12, 17, 19, 21, 23, 30, 36, 40, 46, 50, 60,
                                            69, 71, 82, 85, 88, 94, 95, 105, 114, 115, 120),
                            SYNSE_SOURCE),
    "smie55_5_split1": _smie(1, [4, 19, 31, 47, 51]),
    "smie55_5_split2": _smie(2, [12, 29, 32, 44, 59]),
    "smie55_5_split3": _smie(3, [7, 20, 28, 39, 58]),
    "smie110_10_split1": _smie(4, [3, 18, 26, 38, 41, 60, 87, 99, 102, 110]),
    "smie110_10_split2": _smie(5, [5, 12, 14, 15, 17, 42, 67, 82, 100, 119]),
    "smie110_10_split3": _smie(6, [6, 20, 27, 33, 42, 55, 71, 97, 104, 118]),
}
BENCHMARK_BASE = "xsub"  # SynSE's data_cnn60.py: metric 'CS'; SMIE's split.py: xsub/
VALIDATION = "_val"
VALIDATION_SHARE = 0.2


@dataclass(frozen=True)
class ZeroShotProtocol:
    name: str
    family: str
    base: str | None  # the standard protocol whose sides hold the samples; None: every sample
    k: int
    seed: int | None  # None: a fixed list (benchmark)
    benchmark: Benchmark | None = None
    parent: ZeroShotProtocol | None = None  # a validation protocol's

    def unseen_classes(self, n_classes: int) -> list[int]:
        """The unseen class ids (0-based) among ``n_classes`` classes."""
        if (why := self.problem(n_classes)) is not None:
            raise ActionlmError(why)
        if self.benchmark is not None:
            return sorted(a - 1 for a in self.benchmark.actions)
        pool = list(range(n_classes))
        if self.parent is not None:
            held = set(self.parent.unseen_classes(n_classes))
            pool = [c for c in pool if c not in held]
        rng = np.random.default_rng(self.seed)
        return sorted(int(c) for c in rng.choice(pool, size=self.k, replace=False))

    def problem(self, n_classes: int) -> str | None:
        """Why a dataset of ``n_classes`` classes cannot form this protocol, or None."""
        if self.parent is not None:
            seen = n_classes - self.parent.k
            return self.parent.problem(n_classes) or (
                None if 0 < self.k < seen else
                f"{self.name} holds out {self.k} of the {seen} seen classes of {self.parent.name}")
        if self.benchmark is not None:
            if n_classes == self.benchmark.n_classes:
                return None
            return (f"{self.name} is a benchmark of {self.benchmark.dataset}'s "
                    f"{self.benchmark.n_classes} classes (all of them, in NTU order); this "
                    f"dataset has {n_classes}")
        if 0 < self.k < n_classes:
            return None
        return f"{self.name} holds out {self.k} of {n_classes} classes (K: 1..{n_classes - 1})"


def zero_shot_protocol(name: str) -> ZeroShotProtocol | None:
    """The zero-shot protocol ``name`` names, or None (a closed-set protocol or unknown)."""
    if name.endswith(VALIDATION):
        parent = zero_shot_protocol(name.removesuffix(VALIDATION))
        if parent is None or parent.base is None or parent.parent is not None:
            return None  # only a protocol with a test_seen side has a validation protocol
        return ZeroShotProtocol(name, name, parent.base, parent.k, 0, parent=parent)
    if (m := DRAWN.fullmatch(name)) is not None:
        base = m.group("base")
        family = f"{base}_unseen{m.group('k')}" if base else f"unseen{m.group('k')}"
        return ZeroShotProtocol(name, family, base, int(m.group("k")), int(m.group("seed")))
    if name in BENCHMARKS:
        bench = BENCHMARKS[name]
        smie = SMIE.fullmatch(name)
        return ZeroShotProtocol(name, smie.group("family") if smie else name, BENCHMARK_BASE,
                                len(bench.actions), None, bench)
    return None


def is_zero_shot(name: str) -> bool:
    return zero_shot_protocol(name) is not None


def family_of(name: str) -> str | None:
    protocol = zero_shot_protocol(name)
    return None if protocol is None else protocol.family


def has_seen_test(name: str) -> bool:
    """Whether protocol ``name`` has a ``test_seen`` side (GZSL; a validation protocol)."""
    protocol = zero_shot_protocol(name)
    return protocol is not None and protocol.base is not None
