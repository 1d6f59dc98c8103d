"""Collect evaluation results into tables that read like the papers' tables -> OUT.md and
OUT.csv: one table per dataset, rows = methods (or ablation variants), columns = protocols,
cells = top-1 / top-5 % on the test split.

Inputs: the ``metrics.json`` of ``actionlm evaluate`` (.../eval/{dataset}/{protocol}/{method}/
metrics.json) and zero-shot family averages of ``actionlm zeroshot-summary``
(.../eval/{dataset}/zeroshot/{family}/{method}.json, shown as mean ± std over the seeds or
splits, in the section "Zero-shot" with generalized zero-shot's seen / unseen / harmonic mean,
uncalibrated and calibrated, beside the field's published results on the benchmarks); the
dataset, protocol and method are read from the path (a cross-dataset run's results form the
``cross`` table), the row name is the method or the file's ``--row-labels`` entry (ablation
variants). ``--all`` adds every result below ``--root``. ``--papers`` adds the papers'
headline numbers as rows labelled "published (paper, GPU, full data)"; ``--published ROW=TOP1``
adds a published column (the paper's number for an ablation variant). An ensemble's result
(``actionlm ensemble``) is a row like a method's, and the section "Ensembles" lists its
members' top-1 and whether the fusion helps: its gain over the best member. An LLM
recognizer also evaluated by generation (``evaluate --generate-tokens``) has a second row,
"{method} (generation)", labelled so next to the scoring row.

summary.csv: dataset, method, source (this run / published ...), then per protocol
``{protocol} top1``, ``{protocol} top5``, ``{protocol} n`` (percent; n = test samples), and
``published top1`` when given; zero-shot columns also ``{protocol} gzsl_h`` and
``{protocol} calibrated_h`` (GZSL harmonic means, percent).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import pandas as pd

from actionlm.errors import ActionlmError
from actionlm.io import atomic_path
from actionlm.pipeline.paths import result_key
from actionlm.report.published import PUBLISHED, PUBLISHED_SOURCE, ZERO_SHOT

log = logging.getLogger(__name__)

THIS_RUN = "this run"
MISSING = "–"
ZERO_SHOT_PREFIX = "zeroshot/"
GZSL_COLUMNS = [f"{kind}_{m}" for kind in ("gzsl", "calibrated") for m in ("s", "u", "h")]
COLUMNS = ["dataset", "protocol", "method", "source", "top1", "top5", "top1_std", "n", "members",
           "best_member", *GZSL_COLUMNS]


def read_result(path: Path, label: str | None = None) -> list[dict]:
    """The result rows (percent) of an evaluation's metrics.json or a seed average: scoring's,
    and generation's where it ran; dataset, protocol and method come from its path
    (actionlm.pipeline.paths.result_key), the row's name is ``label`` when given (an ablation
    variant), else the method."""
    key = result_key(str(path))
    if key is None:
        raise ActionlmError(f"{path}: not an evaluation's result (expected .../eval/DATASET/"
                            "PROTOCOL/METHOD/metrics.json or .../eval/DATASET/zeroshot/FAMILY/"
                            "METHOD.json)")
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ActionlmError(f"{path}: unreadable metrics ({err})") from None
    if not isinstance(metrics, dict) or "top1" not in metrics:
        raise ActionlmError(f"{path}: not an evaluation's metrics (no top1)")

    n = sum(metrics["n"]) if isinstance(metrics.get("n"), list) else metrics.get("n")
    name = label or key["method"]
    rows = [{**key, **percents(metrics), "method": name, "source": THIS_RUN, "n": n,
             "members": members_cell(metrics),
             "best_member": 100 * max(metrics["member_top1"]) if "member_top1" in metrics
             else None, **gzsl_percents(metrics.get("gzsl"))}]
    if isinstance(metrics.get("generation"), dict):
        rows.append({**key, **percents(metrics["generation"]), "method": f"{name} (generation)",
                     "source": THIS_RUN, "n": n, "members": None, "best_member": None})
    return rows


def percents(metrics: dict) -> dict:
    """top1, top5, top1_std of a metrics dict in percent (None where it has none)."""
    return {k: None if metrics.get(k) is None else 100.0 * float(metrics[k])
            for k in ("top1", "top5", "top1_std")}


def gzsl_percents(gzsl: dict | None) -> dict:
    """The GZSL seen / unseen / harmonic (and calibrated) columns in percent."""
    out = dict.fromkeys(GZSL_COLUMNS)
    for kind, values in (("gzsl", gzsl), ("calibrated", (gzsl or {}).get("calibrated"))):
        for short, key in (("s", "seen"), ("u", "unseen"), ("h", "harmonic")):
            if values:
                out[f"{kind}_{short}"] = 100.0 * float(values[key])
    return out


def members_cell(metrics: dict) -> str | None:
    """An ensemble's members with their top-1 ("gap 79.6, sugar 76.8"); None otherwise."""
    if "member_top1" not in metrics:
        return None
    return ", ".join(f"{name} {100 * top1:.1f}" for name, top1 in
                     zip(metrics["member_names"], metrics["member_top1"]))


def find_results(root: Path) -> list[Path]:
    """Every evaluation below ``root``: metrics.json files and zero-shot family averages."""
    found = sorted(p for p in root.glob("**/metrics.json") if result_key(str(p)))
    return found + sorted(p for p in root.glob("**/zeroshot/*/*.json") if result_key(str(p)))


def collect_results(paths: list[Path], labels: list[str] | None = None) -> pd.DataFrame:
    """The long results table, rows in input order (named by ``labels`` when given)."""
    if labels is not None and len(labels) != len(paths):
        raise ActionlmError(f"--row-labels: {len(labels)} labels for {len(paths)} results")
    rows = [row for i, p in enumerate(paths)
            for row in read_result(Path(p), labels[i] if labels else None)]
    return pd.DataFrame(rows, columns=COLUMNS)


def published_results() -> pd.DataFrame:
    """The papers' numbers and the zero-shot benchmarks' published results as result rows."""
    return pd.DataFrame([{"dataset": r.dataset, "protocol": r.protocol, "method": r.method,
                          "source": PUBLISHED_SOURCE, "top1": r.top1, "top5": r.top5,
                          "gzsl_h": r.harmonic} for r in (*PUBLISHED, *ZERO_SHOT)],
                        columns=COLUMNS)


def wide_table(results: pd.DataFrame, published: dict[str, float] | None = None) -> pd.DataFrame:
    """Rows (dataset, method, source) in order of appearance, columns ``{protocol} top1|top5|n``
    in order of appearance (missing cells empty)."""
    protocols = list(dict.fromkeys(results["protocol"]))
    keys = ["dataset", "method", "source"]
    table = results.drop_duplicates(keys)[keys].reset_index(drop=True)
    for protocol in protocols:
        cells = results[results["protocol"] == protocol].drop_duplicates(keys, keep="last")
        columns = ["top1", "top5", "n"]
        if protocol.startswith(ZERO_SHOT_PREFIX):
            columns += ["gzsl_h", "calibrated_h"]
        cells = cells.set_index(keys)[columns]
        cells.columns = [f"{protocol} {c}" for c in cells.columns]
        table = table.join(cells, on=keys)
    if published is not None:
        table["published top1"] = table["method"].map(published)
    return table


def _cell(row: pd.Series | None) -> str:
    if row is None or pd.isna(row["top1"]):
        return MISSING
    top1 = f"{row['top1']:.1f}"
    if not pd.isna(row["top1_std"]):
        top1 += f" ± {row['top1_std']:.1f}"
    return top1 if pd.isna(row["top5"]) else f"{top1} / {row['top5']:.1f}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def dataset_table(results: pd.DataFrame, dataset: str, row_name: str,
                  published: dict[str, float] | None = None, published_label: str = "") -> str:
    """One dataset's methods x closed-set protocols table (zero-shot: its own section);
    published rows are labelled as such."""
    part = results[(results["dataset"] == dataset) &
                   ~results["protocol"].str.startswith(ZERO_SHOT_PREFIX)]
    protocols = list(dict.fromkeys(part["protocol"]))
    header = [row_name, *[f"{p} (top-1 / top-5 %)" for p in protocols]]
    if published is not None:
        header.append(f"{PUBLISHED_SOURCE}: {published_label} top-1 %")
    rows = []
    for (method, source), group in part.groupby(["method", "source"], sort=False):
        by_protocol = {r["protocol"]: r for _, r in group.iterrows()}
        label = method if source == THIS_RUN else f"{method} — {source}"
        row = [label, *[_cell(by_protocol.get(p)) for p in protocols]]
        if published is not None:
            value = published.get(method)
            row.append(MISSING if value is None else f"{value:.1f}")
        rows.append(row)
    return markdown_table(header, rows) + "\n"


def _triple(row: pd.Series | None, kind: str) -> str:
    if row is None or pd.isna(row[f"{kind}_h"]):
        return MISSING
    if pd.isna(row[f"{kind}_s"]):
        return f"H {row[f'{kind}_h']:.1f}"
    return " / ".join(f"{row[f'{kind}_{m}']:.1f}" for m in ("s", "u", "h"))


def zero_shot_section(results: pd.DataFrame) -> list[str]:
    """Per dataset: each method's ZSL top-1 / top-5 and GZSL seen / unseen / H (uncalibrated,
    calibrated) on each zero-shot family, the published results of the benchmarks beside."""
    zero = results[results["protocol"].str.startswith(ZERO_SHOT_PREFIX)]
    if zero[zero["source"] == THIS_RUN].empty:
        return []
    parts = ["## Zero-shot\n",
             "Per protocol family (mean over its seeds or splits): ZSL top-1 / top-5 % among the "
             "unseen classes; GZSL seen / unseen / harmonic mean % with every class a candidate, "
             "uncalibrated and calibrated (gamma chosen on the validation protocol). Published "
             "rows: other feature extractors, not a strict comparison.\n"]
    for dataset in dict.fromkeys(zero.loc[zero["source"] == THIS_RUN, "dataset"]):
        part = zero[zero["dataset"] == dataset]
        families = list(dict.fromkeys(part.loc[part["source"] == THIS_RUN, "protocol"]))
        part = part[part["protocol"].isin(families)]
        header = ["method"] + [f"{f.removeprefix(ZERO_SHOT_PREFIX)} {what}" for f in families
                               for what in ("ZSL", "GZSL S / U / H", "calibrated")]
        rows = []
        for (method, source), group in part.groupby(["method", "source"], sort=False):
            by_family = {r["protocol"]: r for _, r in group.iterrows()}
            label = method if source == THIS_RUN else f"{method} — {source}"
            rows.append([label] + [cell for f in families for cell in (
                _cell(by_family.get(f)), _triple(by_family.get(f), "gzsl"),
                _triple(by_family.get(f), "calibrated"))])
        parts += [f"### {dataset}\n", markdown_table(header, rows) + "\n"]
    return parts


def ensembles_section(results: pd.DataFrame) -> list[str]:
    """Each ensemble's members (top-1 %), its top-1 and its gain over the best member."""
    fused = results[results["members"].notna()]
    if fused.empty:
        return []
    rows = []
    for _, r in fused.iterrows():
        rows.append([r["dataset"], r["protocol"], r["method"], r["members"], f"{r['top1']:.1f}",
                     f"{r['top1'] - r['best_member']:+.1f}"])
    header = ["dataset", "protocol", "ensemble", "members (top-1 %)", "fused top-1 %",
              "gain over the best member"]
    return ["## Ensembles\n", markdown_table(header, rows) + "\n"]


def summary_markdown(results: pd.DataFrame, title: str, row_name: str = "method",
                     papers: pd.DataFrame | None = None, published: dict[str, float] | None = None,
                     published_label: str = "", figures: list[Path] = (),
                     out_dir: Path = Path("."), refused: list[str] = ()) -> str:
    """The report page: a table per dataset (with its papers' rows where the dataset is one of
    the papers' benchmarks), the rows not run (``refused``: "ROW=why"), every published
    number, then the figures."""
    measured = list(dict.fromkeys(results["dataset"]))
    papers = papers if papers is not None else results.iloc[0:0]
    parts = [f"# {title}\n",
             "Top-1 / top-5 accuracy in % on each protocol's test split; zero-shot rows: mean ± "
             "std of top-1 over the seeds. " + MISSING + ": not evaluated.\n"]
    if results.empty:
        parts.append("No evaluation results were given.\n")
    for dataset in measured:
        combined = pd.concat([results, papers[papers["dataset"] == dataset]], ignore_index=True)
        parts += [f"## {dataset}\n",
                  dataset_table(combined, dataset, row_name, published, published_label)]
    parts += zero_shot_section(pd.concat([results, papers], ignore_index=True))
    parts += ensembles_section(results)
    if refused:
        parts.append("## Not run\n\n" + "".join(
            f"- **{row}**: {why}\n" for row, _, why in (r.partition("=") for r in refused)))
    if not papers.empty:
        parts.append(f"## Papers: {PUBLISHED_SOURCE}\n\nTop-1 (/ top-5) %, joint modality; not "
                     "comparable with a small CPU run.\n")
        closed = papers[~papers["protocol"].str.startswith(ZERO_SHOT_PREFIX)]
        for dataset in dict.fromkeys(closed["dataset"]):
            parts += [f"### {dataset}\n", dataset_table(closed, dataset, "method")]
    if figures:
        parts.append("## Figures\n")
        parts += [f"![{Path(f).stem}]({os.path.relpath(f, out_dir)})\n" for f in figures]
    return "\n".join(parts)


def write_summary(results: pd.DataFrame, md_path: Path, csv_path: Path, title: str,
                  row_name: str = "method", with_papers: bool = False,
                  published: dict[str, float] | None = None, published_label: str = "",
                  figures: list[Path] = (), refused: list[str] = ()) -> None:
    papers = published_results() if with_papers else None
    table = wide_table(pd.concat([results, papers], ignore_index=True) if with_papers
                       else results, published)
    with atomic_path(csv_path) as tmp:
        table.round(2).to_csv(tmp, index=False)
    text = summary_markdown(results, title, row_name, papers, published, published_label,
                            figures, Path(md_path).parent, refused)
    with atomic_path(md_path) as tmp:
        tmp.write_text(text)


def parse_published(items: list[str]) -> dict[str, float]:
    published = {}
    for item in items:
        row, _, value = item.partition("=")
        try:
            published[row] = float(value)
        except ValueError:
            raise ActionlmError(f"--published {item}: expected ROW=TOP1 (a number)") from None
    return published


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("metrics", type=Path, nargs="*", help="metrics.json / zero-shot summary files")
    p.add_argument("--row-labels", nargs="*", default=None, metavar="LABEL",
                   help="the row name of each file in order (default: its method)")
    p.add_argument("--all", action=argparse.BooleanOptionalAction, default=False,
                   help="also every result below --root")
    p.add_argument("--root", type=Path, default=Path("results"), help="folder --all searches")
    p.add_argument("--out-md", type=Path, required=True)
    p.add_argument("--out-csv", type=Path, required=True)
    p.add_argument("--title", default="Results")
    p.add_argument("--row-name", default="method", help="header of the row column (e.g. variant)")
    p.add_argument("--papers", action=argparse.BooleanOptionalAction, default=False,
                   help="add the papers' headline numbers as labelled reference rows")
    p.add_argument("--published", nargs="*", default=None, metavar="ROW=TOP1",
                   help="a published top-1 %% per row (ablation variants)")
    p.add_argument("--published-label", default="", help="where --published comes from")
    p.add_argument("--figures", type=Path, nargs="*", default=[],
                   help="images to show below the tables")
    p.add_argument("--refused", nargs="*", default=[], metavar="ROW=WHY",
                   help="rows that were not run, with the reason (listed under the tables)")


def run(args: argparse.Namespace) -> None:
    results = collect_results(args.metrics, args.row_labels)
    if args.all:
        found = [p for p in find_results(args.root) if p not in set(args.metrics)]
        results = pd.concat([results, collect_results(found)], ignore_index=True)
    published = None if args.published is None else parse_published(args.published)
    write_summary(results, args.out_md, args.out_csv, args.title, args.row_name, args.papers,
                  published, args.published_label, args.figures, args.refused)
    log.info("%d results of %d datasets -> %s, %s", len(results), results["dataset"].nunique(),
             args.out_md, args.out_csv)
