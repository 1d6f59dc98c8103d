"""The report stage (results tables with the papers' numbers, curve and feature-map figures) and
the ablation targets of the workflow (planned with `snakemake -n` in a copy of the workflow)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from actionlm.cli import main
from actionlm.data.features import write_features
from actionlm.report.embedding import pca_2d
from actionlm.report.published import PUBLISHED_SOURCE
from workflow_copy import copy_workflow, run_snakemake

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_metrics(path: Path, **metrics) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics))
    return path


@pytest.fixture
def evals(tmp_path) -> Path:
    """ce on xsub only, gap on xsub and xview, a zero-shot seed average, and a run on ntu60
    (one of the papers' benchmarks)."""
    root = tmp_path / "eval"
    write_metrics(root / "synthetic/xsub/ce/metrics.json", top1=0.5, top5=0.9, n=100, method="ce")
    write_metrics(root / "synthetic/xsub/gap/metrics.json", top1=0.55, top5=0.92, n=100)
    write_metrics(root / "synthetic/xview/gap/metrics.json", top1=0.625, top5=0.95, n=120)
    write_metrics(root / "synthetic/zeroshot/unseen3/llm_ar.json", top1=0.4, top1_std=0.05,
                  top5=1.0, n=[30, 30], runs=2)
    write_metrics(root / "ntu60/xsub/gap/metrics.json", top1=0.8, top5=0.95, n=1000)
    return root


def run_report(root: Path, out: Path, *args: str, files: list[Path] = ()) -> tuple[str, pd.DataFrame]:
    code = main(["report", *map(str, files), "--root", str(root), "--out-md", str(out / "s.md"),
                 "--out-csv", str(out / "s.csv"), *args])
    assert code == 0
    return (out / "s.md").read_text(), pd.read_csv(out / "s.csv")


def cell(table: pd.DataFrame, dataset: str, method: str, column: str, source: str = "this run"):
    row = table[(table["dataset"] == dataset) & (table["method"] == method)
                & (table["source"] == source)]
    assert len(row) == 1, (dataset, method, source)
    return row[column].iloc[0]


def markdown_row(md: str, section: str, label: str) -> list[str]:
    """The cells of the row starting with ``label`` in the table under ``## section``."""
    body = md.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    line = next(line for line in body.splitlines() if line.startswith(f"| {label} |"))
    return [c.strip() for c in line.strip("|").split("|")][1:]


def test_summary_has_one_cell_per_method_and_protocol(evals, tmp_path):
    files = [evals / "synthetic/xsub/ce/metrics.json", evals / "synthetic/xsub/gap/metrics.json",
             evals / "synthetic/xview/gap/metrics.json"]
    md, table = run_report(evals, tmp_path, files=files)
    assert cell(table, "synthetic", "ce", "xsub top1") == pytest.approx(50.0)
    assert cell(table, "synthetic", "gap", "xview top1") == pytest.approx(62.5)
    assert cell(table, "synthetic", "gap", "xview n") == 120
    assert np.isnan(cell(table, "synthetic", "ce", "xview top1"))  # not evaluated: empty
    assert markdown_row(md, "synthetic", "ce") == ["50.0 / 90.0", "–"]
    assert markdown_row(md, "synthetic", "gap") == ["55.0 / 92.0", "62.5 / 95.0"]
    assert "ntu60" not in md and PUBLISHED_SOURCE not in md  # only what was given


def test_summary_collects_everything_under_root_with_the_papers_rows(evals, tmp_path):
    md, table = run_report(evals, tmp_path, "--papers", "--all")
    # the zero-shot seed average: mean ± std over seeds, samples of all seeds
    assert cell(table, "synthetic", "llm_ar", "zeroshot/unseen3 top1") == pytest.approx(40.0)
    assert cell(table, "synthetic", "llm_ar", "zeroshot/unseen3 n") == 60
    assert markdown_row(md, "Zero-shot", "llm_ar") == ["40.0 ± 5.0 / 100.0", "–", "–"]
    assert "llm_ar" not in md.split("## synthetic\n")[1].split("\n## ")[0]  # own section
    # the papers' numbers, labelled, beside the run on the same benchmark
    assert cell(table, "ntu60", "GAP (joint)", "xsub top1", PUBLISHED_SOURCE) == 90.2
    assert cell(table, "ntu120", "LLM-AR", "xset top1", PUBLISHED_SOURCE) == 91.5
    assert markdown_row(md, "ntu60", "gap")[0] == "80.0 / 95.0"
    assert markdown_row(md, "ntu60", f"GAP (joint) — {PUBLISHED_SOURCE}")[:2] == ["90.2", "95.6"]
    assert f"SUGAR — {PUBLISHED_SOURCE}" not in md.split("## synthetic\n")[1].split("\n## ")[0]


def test_zero_shot_section_shows_zsl_gzsl_and_the_published_benchmark_rows(evals, tmp_path):
    gzsl = {"seen": 0.8, "unseen": 0.4, "harmonic": 0.5333,
            "calibrated": {"seen": 0.7, "unseen": 0.6, "harmonic": 0.6462}}
    files = [write_metrics(evals / "ntu60/zeroshot/synse55_5/gap_textsim.json", top1=0.5,
                           top5=0.9, n=[100], gzsl=gzsl)]
    md, table = run_report(evals, tmp_path, "--papers", files=files)
    assert markdown_row(md, "Zero-shot", "gap_textsim") == ["50.0 / 90.0", "80.0 / 40.0 / 53.3",
                                                            "70.0 / 60.0 / 64.6"]
    assert cell(table, "ntu60", "gap_textsim", "zeroshot/synse55_5 calibrated_h") == \
        pytest.approx(64.62)
    synse = f"SynSE (Shift-GCN features) — {PUBLISHED_SOURCE}"
    assert markdown_row(md, "Zero-shot", synse) == ["75.8", "H 59.0", "–"]
    assert markdown_row(md, "Zero-shot", f"TDSM (Shift-GCN features) — {PUBLISHED_SOURCE}")[0] \
        == "86.5"
    assert "synse48_12" not in md  # only the families this run evaluated


def test_an_ensemble_is_a_row_and_its_gain_over_the_best_member_is_reported(evals, tmp_path):
    fused = write_metrics(evals / "synthetic/xsub/gap_ce/metrics.json", top1=0.6, top5=0.95,
                          n=100, method="ensemble", member_names=["gap", "ce"],
                          member_top1=[0.55, 0.5])
    md, table = run_report(evals, tmp_path, files=[fused])
    assert cell(table, "synthetic", "gap_ce", "xsub top1") == pytest.approx(60.0)
    assert markdown_row(md, "Ensembles", "synthetic") == ["xsub", "gap_ce", "gap 55.0, ce 50.0",
                                                          "60.0", "+5.0"]


def test_an_evaluation_by_generation_is_a_labelled_row_beside_scoring(evals, tmp_path):
    sugar = write_metrics(evals / "synthetic/xsub/sugar/metrics.json", top1=0.7, top5=0.9,
                          n=100, generation={"top1": 0.6, "no_class": 0.05})
    md, table = run_report(evals, tmp_path, files=[sugar])
    assert cell(table, "synthetic", "sugar", "xsub top1") == pytest.approx(70.0)
    assert cell(table, "synthetic", "sugar (generation)", "xsub top1") == pytest.approx(60.0)
    assert markdown_row(md, "synthetic", "sugar (generation)") == ["60.0"]


def test_ablation_table_has_a_published_column(tmp_path):
    files = [write_metrics(tmp_path / f"results/ablations/t/{variant}/eval/synthetic/xsub/gap/"
                           "metrics.json", top1=top1, top5=0.9, n=10)
             for variant, top1 in (("global", 0.4), ("parts4", 0.5))]
    md, table = run_report(tmp_path, tmp_path, "--row-labels", "global", "parts4", "--row-name",
                           "variant", "--published", "parts4=85.4", "--published-label",
                           "GAP Table 1a", files=files)
    assert "| variant | xsub (top-1 / top-5 %) |" in md
    assert markdown_row(md, "synthetic", "parts4") == ["50.0 / 90.0", "85.4"]
    assert markdown_row(md, "synthetic", "global") == ["40.0 / 90.0", "–"]
    assert cell(table, "synthetic", "parts4", "published top1") == 85.4


def test_rows_not_run_are_listed_with_their_reason(tmp_path):
    files = [write_metrics(tmp_path / "results/eval/synthetic/xsub/sugar/metrics.json",
                           top1=0.5, top5=0.9, n=10)]
    md, table = run_report(tmp_path, tmp_path, "--row-labels", "motion", "--row-name", "variant",
                           "--refused", "visual=why", "motion_visual=needs a=b", files=files)
    assert "## Not run\n\n- **visual**: why\n- **motion_visual**: needs a=b\n" in md
    assert markdown_row(md, "synthetic", "motion") == ["50.0 / 90.0"]
    assert list(table["method"]) == ["motion"]


@pytest.mark.parametrize("content, message", [("{not json", "unreadable metrics"),
                                               ('{"top5": 0.5}', "no top1")])
def test_bad_metrics_file_is_a_one_line_error(tmp_path, capsys, content, message):
    path = tmp_path / "eval/synthetic/xsub/ce/metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    code = main(["report", str(path), "--root", str(tmp_path / "eval"),
                 "--out-md", str(tmp_path / "s.md"), "--out-csv", str(tmp_path / "s.csv")])
    err = capsys.readouterr().err
    assert code == 2 and str(path) in err and message in err
    assert not (tmp_path / "s.md").exists()


def test_a_file_that_is_no_evaluation_is_refused(evals, tmp_path, capsys):
    stray = write_metrics(tmp_path / "elsewhere/metrics.json", top1=0.5)
    code = main(["report", str(stray), "--out-md", str(tmp_path / "s.md"),
                 "--out-csv", str(tmp_path / "s.csv")])
    assert code == 2 and "not an evaluation's result" in capsys.readouterr().err
    code = main(["report", str(evals / "synthetic/xsub/ce/metrics.json"), "--row-labels", "a", "b",
                 "--out-md", str(tmp_path / "s.md"), "--out-csv", str(tmp_path / "s.csv")])
    assert code == 2 and "2 labels for 1 results" in capsys.readouterr().err


def test_curves_figure_plots_the_quantities_the_tables_have(tmp_path):
    runs = []
    for method, has_val in (("ce", False), ("gap", True)):
        path = tmp_path / f"encoders/{method}/curves.parquet"
        path.parent.mkdir(parents=True)
        pd.DataFrame({"epoch": [1, 2, 3], "loss": [2.0, 1.5, 1.0], "contrastive": [0.0, 0.0, 0.0],
                      "train_top1": [0.2, 0.4, 0.6],
                      "val_top1": [0.1, 0.3, 0.5] if has_val else [np.nan] * 3}).to_parquet(path)
        runs.append(path)
    from actionlm.report.curves import plot_curves, read_curves

    tables = read_curves(runs)
    assert list(tables) == ["ce", "gap"]  # runs named by their folder
    out = tmp_path / "fig/encoder_curves.png"
    assert plot_curves(tables, "encoder", "t", out) == ["loss", "contrastive", "train_top1",
                                                        "val_top1"]
    assert out.read_bytes().startswith(PNG_MAGIC)
    assert main(["plot-curves", str(runs[0]), "--kind", "lora", "--out",
                 str(tmp_path / "lora.png")]) == 2  # no LoRA quantity in an encoder's table


def test_pca_map_separates_classes_and_reports_variance(tmp_path):
    rng = np.random.default_rng(0)
    line = np.outer(rng.normal(size=50), rng.normal(size=8))
    coords, explained = pca_2d(line)
    assert explained[0] == pytest.approx(1.0) and explained[1] == pytest.approx(0.0, abs=1e-9)
    assert coords[:, 0] @ coords[:, 0] == pytest.approx(((line - line.mean(0)) ** 2).sum())

    labels = np.repeat(np.arange(3), 20)
    centres = rng.normal(size=(3, 16)) * 4
    features = centres[labels][:, None, :] + rng.normal(size=(60, 4, 16))
    splits = ["test"] * 50 + ["train"] * 10
    write_features(tmp_path / "features.parquet", features.astype(np.float32), labels,
                   [f"s{i}" for i in range(60)], splits, {"method": "gap"})
    pd.DataFrame({"label": [0, 1, 2], "class_name": ["drink", "sit", "wave"]}).to_parquet(
        tmp_path / "classes.parquet")
    out = tmp_path / "embedding.png"
    assert main(["plot-embedding", "--features", str(tmp_path / "features.parquet"),
                 "--classes", str(tmp_path / "classes.parquet"), "--out", str(out)]) == 0
    assert out.read_bytes().startswith(PNG_MAGIC)
    pooled = features[:50].mean(axis=1)
    coords, _ = pca_2d(pooled)
    means = np.stack([coords[labels[:50] == k].mean(0) for k in range(3)])
    spread = max(coords[labels[:50] == k].std(0).max() for k in range(3))
    gaps = [np.linalg.norm(means[a] - means[b]) for a in range(3) for b in range(a + 1, 3)]
    assert min(gaps) > 3 * spread  # distinct clusters survive the projection


# --- the workflow: report and ablation targets (dry runs in a copy of the workflow) ---

@pytest.fixture(scope="module")
def workflow_copy(tmp_path_factory) -> Path:
    return copy_workflow(tmp_path_factory.mktemp("workflow"))


def dry_run(work: Path, *targets: str) -> str:
    result = run_snakemake(work, "-n", "-p", *targets)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout


def commands(plan: str, command: str) -> list[str]:
    return [line.split("Shell command: ", 1)[1] for line in plan.splitlines()
            if line.startswith(f"Shell command: actionlm {command} ")]


def variant_of(command: str, table: str) -> str | None:
    found = re.search(rf"results/ablations/{table}/(\w+)/", command)
    return found and found.group(1)


def test_all_builds_the_report_from_every_evaluation(workflow_copy):
    plan = dry_run(workflow_copy, "all")
    [report] = commands(plan, "report")
    tabulated = {t for t in report.split() if t.endswith(".json")}
    # every closed-set evaluation and every zero-shot seed average that `all` runs
    evaluated = {re.search(r"--out \$\(dirname (\S+)\)", c).group(1)
                 for c in commands(plan, "evaluate") if "unseen" not in c}
    evaluated |= {re.search(r"--out (\S+)", c).group(1) for c in commands(plan, "zeroshot-summary")}
    assert tabulated == evaluated
    assert {"results/eval/synthetic/xsub/ce/metrics.json",
            "results/eval/synthetic/xsub/gap/metrics.json"} <= tabulated
    assert "--papers" in report and "results/report/synthetic/xsub/embedding_sugar.png" in report
    kinds = {re.search(r"--kind (\w+)", c).group(1) for c in commands(plan, "plot-curves")}
    llm_evaluated = any(re.search(r"/(llm_ar|sugar)/metrics\.json", t) for t in tabulated)
    assert kinds == {"encoder", "vqvae"} | ({"lora"} if llm_evaluated else set())


def test_ablation_targets_train_only_the_variants_that_differ(workflow_copy):
    plan = dry_run(workflow_copy, "ablation_gap_partitions", "ablation_gap_backbone")
    trained = {variant_of(c, "gap_partitions"): c for c in commands(plan, "train-encoder")
               if variant_of(c, "gap_partitions")}
    # parts4 is the main config and none is the CE encoder: both are the main run's models
    assert set(trained) == {"global", "parts2", "parts6"}
    for variant, parts in (("global", 1), ("parts2", 2), ("parts6", 6)):
        assert f"--parts {parts} " in trained[variant] and "--method gap" in trained[variant]
    evaluated = {variant_of(c, "gap_partitions"): c for c in commands(plan, "evaluate")
                 if variant_of(c, "gap_partitions")}
    assert set(evaluated) == {"global", "parts2", "parts6"}
    [summary] = [c for c in commands(plan, "report") if "gap_partitions" in c]
    rows = summary.split(" --")[0].split()[2:]
    assert rows[0] == "results/eval/synthetic/xsub/ce/metrics.json"  # none: the main CE run
    assert rows[3] == "results/eval/synthetic/xsub/gap/metrics.json"  # parts4: the main GAP run
    assert "--row-labels none global parts2 parts4 parts6 " in summary
    assert "--published none=84.6 global=85.2 parts2=85.3 parts4=85.4 parts6=85.4" in summary
    backbone = {variant_of(c, "gap_backbone"): c for c in commands(plan, "train-encoder")
                if variant_of(c, "gap_backbone")}
    assert set(backbone) == {"stgcn_ce", "stgcn_gap"}
    assert "--method ce" in backbone["stgcn_ce"] and "--backbone stgcn" in backbone["stgcn_ce"]


def test_llm_ablations_retrain_from_the_stage_the_overlay_changes(workflow_copy):
    plan = dry_run(workflow_copy, "ablation_llm_ar_codebook", "ablation_sugar_bridge")
    vqvae = {variant_of(c, "llm_ar_codebook"): c for c in commands(plan, "train-vqvae")
             if variant_of(c, "llm_ar_codebook")}
    assert set(vqvae) == {"euclidean"} and "--codebook euclidean" in vqvae["euclidean"]
    lora = {variant_of(c, "sugar_bridge"): c for c in commands(plan, "lora")
            if variant_of(c, "sugar_bridge")}
    assert set(lora) == {"qformer", "linear", "cross_attention"}
    for variant, command in lora.items():
        assert f"--bridge {variant} " in command
        assert "--features results/features/synthetic/xsub/sugar/features.parquet" in command
    assert not [c for c in commands(plan, "train-encoder") if "ablations/" in c]
    evaluated = {variant_of(c, "sugar_bridge"): c for c in commands(plan, "evaluate")
                 if variant_of(c, "sugar_bridge")}
    assert set(evaluated) == {"qformer", "linear", "cross_attention"}  # tqp: the main run's
    assert "--method sugar" in evaluated["linear"]
    assert "--model results/ablations/sugar_bridge/linear/models/synthetic/xsub/sugar/" \
        "recognizer.json" in evaluated["linear"]


def test_every_ablation_table_plans_through_the_main_rules(workflow_copy):
    plan = dry_run(workflow_copy, "ablations")
    rules = set(re.findall(r"^rule (\w+):", plan, re.M))
    assert rules == {"prepare", "prepare_llm", "describe", "split", "encode_text", "train_vqvae",
                     "tokenize", "train_encoder", "extract_features", "lora", "evaluate",
                     "ensemble", "report", "ablations"}
    assert len(commands(plan, "report")) == 8


def test_gaps_stream_table_trains_each_stream_once_and_fuses_them(workflow_copy):
    """Stream variants resolve to the runs streams/{m}/ (joint: the main run); the 2- and
    4-stream rows are the variants' own fusions of those evaluations."""
    plan = dry_run(workflow_copy, "ablation_gap_streams")
    trained = commands(plan, "train-encoder")
    assert sorted(re.search(r"--modality (\w+)", c)[1] for c in trained) == [
        "bone", "bone_motion", "joint", "joint_motion"]
    assert not [c for c in trained if "ablations/" in c]
    fused = {variant_of(c, "gap_streams"): c for c in commands(plan, "ensemble")}
    assert set(fused) == {"two_stream", "four_stream"}
    assert "--weights 0.8 0.8 0.2 0.2" in fused["four_stream"]
    assert "results/streams/joint_motion/eval/synthetic/xsub/gap/predictions.parquet" in \
        fused["four_stream"]
