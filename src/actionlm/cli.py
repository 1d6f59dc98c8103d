"""The ``actionlm`` command: one subcommand per pipeline stage (Snakemake rules call these)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from actionlm import __version__
from actionlm.errors import ActionlmError


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}")


def _str_list(text: str) -> list[str]:
    """Comma/space separated names; ``none`` is the empty list."""
    return [x for x in text.replace(",", " ").split() if x and x != "none"]


def _add_prepare(sub: argparse._SubParsersAction) -> None:
    from actionlm.data.prepare import FORMATS

    p = sub.add_parser(
        "prepare",
        help="skeleton files -> skeletons.parquet, classes, rejected, splits",
        description="Read skeleton data in one of several formats and write DIR/skeletons.parquet "
        "(denoised, centred joints), DIR/classes.parquet, DIR/rejected.parquet (inputs that "
        "could not be used, with the reason) and DIR/splits/{protocol}.parquet.",
    )
    p.add_argument("--format", required=True, choices=FORMATS, dest="fmt")
    p.add_argument("--src", type=Path, help="input folder (ntu-raw, nw-ucla) or file (ctrgcn-npz, pyskl)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--dataset", default=None,
                   help="class list: ntu60, ntu120, nw_ucla (default from the format), or a name "
                   "with --actions")
    p.add_argument("--actions", type=_int_list, default=None,
                   help="NTU action ids (1-based) to keep, relabelled 0..n-1 in this order")
    p.add_argument("--protocols", type=_str_list, default=None,
                   help="protocols to write (xsub, xview, xset, view3, view2, unseen<K>_seed<S>); "
                   "default: the input's own splits, else the dataset's standard ones; "
                   "'none' for no split")
    p.add_argument("--val-fraction", type=float, default=0.0,
                   help="fraction of each class's training samples moved to a val split")
    p.add_argument("--seed", type=int, default=0, help="seed for val/unseen draws and synthetic data")
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default: all cores)")
    p.add_argument("--strict", action="store_true", help="stop at the first unusable input")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow unpickling a pyskl .pkl (pickle can execute code)")
    syn = p.add_argument_group("synthetic data (--format synthetic)")
    syn.add_argument("--subjects", type=int, default=10)
    syn.add_argument("--replications", type=int, default=2)
    syn.add_argument("--setups", type=int, default=1)
    p.set_defaults(run=_run_prepare)


def _run_prepare(args: argparse.Namespace) -> None:
    from actionlm.data.prepare import prepare

    summary = prepare(
        args.fmt,
        args.src,
        args.out,
        dataset=args.dataset,
        actions=args.actions,
        protocols=args.protocols,
        strict=args.strict,
        trust_pickle=args.trust_pickle,
        workers=args.workers,
        val_fraction=args.val_fraction,
        seed=args.seed,
        synthetic={"n_subjects": args.subjects, "n_replications": args.replications,
                   "n_setups": args.setups},
    )
    print(summary.line())
    for r in summary.rejected[:20]:
        print(f"  rejected {r.source}: {r.reason}")
    if len(summary.rejected) > 20:
        print(f"  ... {len(summary.rejected) - 20} more in {args.out / 'rejected.parquet'}")


def _add_split(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "split",
        help="one evaluation protocol -> DIR/splits/{protocol}.parquet",
        description="Assign every sample of a prepared dataset folder to train/val/test under "
        "one protocol (xsub, xview, xset, view3, view2, unseen<K>_seed<S>).",
    )
    p.add_argument("--data", type=Path, required=True, help="folder written by 'actionlm prepare'")
    p.add_argument("--protocol", required=True)
    p.add_argument("--val-fraction", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=_run_split)


def _run_split(args: argparse.Namespace) -> None:
    from actionlm.data.prepare import write_split

    info = write_split(args.data, args.protocol, val_fraction=args.val_fraction, seed=args.seed)
    print(f"{args.protocol}: {info['counts']}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="actionlm",
        description="Skeleton action recognition with language models (GAP, LLM-AR, SUGAR). "
        "Each subcommand is one pipeline stage; the Snakemake workflow calls them in order.",
    )
    parser.add_argument("--version", action="version", version=f"actionlm {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(title="stages", metavar="STAGE", required=True)
    _add_prepare(sub)
    _add_split(sub)
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
