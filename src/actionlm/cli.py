"""The ``actionlm`` command: one subcommand per pipeline stage (Snakemake rules call these).

Each stage module defines ``add_arguments(parser)`` and ``run(args)``; this file only lists
them, so a stage is found in one module and its CLI beside its logic.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from actionlm import __version__
from actionlm.errors import ActionlmError

# (subcommand, module, one-line help)
STAGES: list[tuple[str, str, str]] = [
    ("prepare", "actionlm.data.prepare", "skeleton files -> skeletons.parquet, classes, rejected, splits"),
    ("split", "actionlm.data.splits", "one evaluation protocol -> DIR/splits/{protocol}.parquet"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="actionlm",
        description="Skeleton action recognition with language models (GAP, LLM-AR, SUGAR). "
        "Each subcommand is one pipeline stage; the Snakemake workflow calls them in order.",
    )
    parser.add_argument("--version", action="version", version=f"actionlm {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(title="stages", metavar="STAGE", required=True)
    for name, module_name, help_text in STAGES:
        module = importlib.import_module(module_name)
        stage = sub.add_parser(name, help=help_text, description=module.__doc__.split("\n\n")[0])
        module.add_arguments(stage)
        stage.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        args.run(args)
    except ActionlmError as err:
        print(f"actionlm: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
