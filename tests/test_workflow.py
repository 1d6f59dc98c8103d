"""The real Snakemake workflow on real data (NW-UCLA views 1-2 from ../shared): outputs,
logs, change-only reruns, and config errors that name the key. Descriptions come from GAP-format
files (the import path: no model call), the LLM is the bundled SmolLM2 converted once per test
session, and the VQ-VAE is trained for one short epoch."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from workflow_copy import copy_workflow, run_snakemake, tiny_nw_ucla

pytestmark = pytest.mark.slow


def snakemake(workdir: Path, *args: str, change: dict | None = None) -> subprocess.CompletedProcess:
    """Run Snakemake on config.yaml + overlay.yaml (+ a further overlay holding ``change``)."""
    configs = ["config.yaml", "overlay.yaml"]
    if change is not None:
        (workdir / "change.yaml").write_text(yaml.safe_dump(change))
        configs.append("change.yaml")
    return run_snakemake(workdir, *args, configs=tuple(configs))


def planned_jobs(result: subprocess.CompletedProcess) -> dict[str, int]:
    """Job counts from a dry run's 'Job stats' table."""
    lines = result.stdout.splitlines()
    if any("Nothing to be done" in line for line in lines):
        return {}
    start = next(i for i, line in enumerate(lines) if line.startswith("job ")) + 2
    jobs = {}
    for line in lines[start:]:
        name, _, count = line.partition(" ")
        if name == "total" or not count.strip().isdigit():
            break
        jobs[name] = int(count)
    return jobs


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, shared, smollm2_dir) -> Path:
    """A copy of the workflow with an overlay pointing at the real NW-UCLA views, run once."""
    work = tiny_nw_ucla(tmp_path_factory.mktemp("workflow"), shared, smollm2_dir,
                        datasets={"nw_ucla": {"protocols": ["view2", "view2_unseen3_seed0"]}})
    # LLM-AR through LoRA, closed set and zero-shot (SUGAR's LLM: tests/test_lora.py); GAP's
    # and SUGAR's encoders zero-shot by text similarity, GZSL calibrated on the validation
    # protocol view2_unseen3_seed0_val
    result = snakemake(work, "all")
    assert result.returncode == 0, result.stderr[-3000:]
    return work


def test_all_builds_the_data_stage(workdir):
    data = workdir / "results/data/nw_ucla"
    table = pd.read_parquet(data / "skeletons.parquet", columns=["sample_id", "label", "camera"])
    assert len(table) == 1020 and table["label"].nunique() == 10
    view2 = pd.read_parquet(data / "splits/view2.parquet")
    assert view2["split"].value_counts().to_dict() == {"train": 516, "test": 504}
    unseen = pd.read_parquet(data / "splits/view2_unseen3_seed0.parquet").merge(table,
                                                                                on="sample_id")
    assert unseen.groupby("split")["label"].nunique().to_dict() == {"test": 3, "test_seen": 7,
                                                                    "train": 7}
    assert unseen.groupby("split")["camera"].unique().map(list).to_dict() == {
        "test": [2], "test_seen": [2], "train": [1]}  # view 1 trains, view 2 tests
    log = (workdir / "logs/prepare/nw_ucla.log").read_text()
    assert "prepared 1020 samples, rejected 0" in log
    assert (workdir / "results/benchmarks/prepare/nw_ucla.tsv").read_text().startswith("s\t")


def test_all_builds_knowledge_and_action_sentences(workdir):
    knowledge = workdir / "results/knowledge/nw_ucla"
    descriptions = pd.read_parquet(knowledge / "descriptions.parquet")
    assert descriptions["class_id"].nunique() == 10
    assert set(descriptions["kind"]) == {"part", "synonym", "paragraph"}
    embeddings = pd.read_parquet(knowledge / "text_embeddings.parquet")
    assert len(embeddings) == len(descriptions) + 10  # + each class's name
    assert len(embeddings["embedding"].iloc[0]) == 384
    sentences = pd.read_parquet(workdir / "results/tokens/nw_ucla/view2/action_sentences.parquet")
    assert len(sentences) == 1020 and set(sentences["split"]) == {"train", "test"}
    assert (sentences["n_tokens"] == 8).all()  # window 32 -> W = 32 / 4 tokens
    assert sentences["tokens"].map(max).max() < 64


def test_all_trains_and_evaluates_the_encoders(workdir):
    for method in ("ce", "gap"):
        metrics = json.loads((workdir / f"results/eval/nw_ucla/view2/{method}/metrics.json")
                             .read_text())
        assert metrics["n"] == 504 and metrics["method"] == method
        assert 0 <= metrics["top1"] <= metrics["top5"] <= 1
    features = pd.read_parquet(workdir / "results/features/nw_ucla/view2/sugar/features.parquet")
    assert len(features) == 1020 and (features["n_steps"] == 4).all()  # window 16 / 4
    log = (workdir / "logs/train_encoder/nw_ucla/view2/gap.log").read_text()
    assert "gap encoder (ctrgcn, c=4, joint stream)" in log


def test_all_runs_llm_ar_closed_set_zero_shot_and_the_report(workdir):
    eval_dir = workdir / "results/eval/nw_ucla"
    closed = json.loads((eval_dir / "view2/llm_ar/metrics.json").read_text())
    assert closed["n"] == 504 and len(closed["class_names"]) == 10
    for method in ("llm_ar", "llm_ar_text", "gap_textsim", "sugar_textsim"):
        summary = json.loads((eval_dir / f"zeroshot/view2_unseen3/{method}.json").read_text())
        assert summary["runs"] == 1 and summary["protocols"] == ["view2_unseen3_seed0"]
    probe = json.loads((eval_dir / "view2_unseen3_seed0/llm_ar_text/metrics.json").read_text())
    assert probe["method"] == "text_probe" and len(probe["class_names"]) == 3  # unseen only
    llm_ar = json.loads((eval_dir / "view2_unseen3_seed0/llm_ar/metrics.json").read_text())
    assert {"seen", "unseen", "harmonic"} <= set(llm_ar["gzsl"])  # every class, view 2
    for method in ("gap", "sugar"):
        zero_shot = json.loads((eval_dir / f"view2_unseen3_seed0/{method}_textsim/metrics.json")
                               .read_text())
        assert len(zero_shot["class_names"]) == 3 and zero_shot["class_texts"] == "names"
        validation = json.loads((eval_dir / f"view2_unseen3_seed0_val/{method}_textsim/"
                                 "metrics.json").read_text())
        gamma = validation["gzsl"]["validation_gamma"]  # chosen on the validation protocol
        assert zero_shot["gzsl"]["calibrated"]["gamma"] == gamma
        assert "validation_gamma" not in zero_shot["gzsl"]
    report = (workdir / "results/report/summary.md").read_text()
    assert all(method in report for method in ("ce", "gap", "llm_ar", "gap_textsim"))
    assert "## Zero-shot" in report
    assert "published (paper, GPU, full data)" in report


# What a change of the view2 evaluation / the LLM-AR chain reruns besides its own stage:
# (view2 encoder curves, embeddings, report) and (LoRA, closed-set + zero-shot evaluation).
REPORT = {"report": 1, "all": 1}
LLM_AR = {"lora": 2, "evaluate": 2}
PROBE = {"evaluate": 1}  # the zero-shot text probe reads the tokens
ENCODERS = {"train_encoder": 3, "evaluate": 2, "extract_features": 3, "plot_embedding": 3}
# GAP's and SUGAR's text similarity: an encoder each on the zero-shot protocol and on its
# validation protocol, their evaluations and averages
TEXT_SIMILARITY = {"train_encoder": 4, "evaluate": 4, "zeroshot_summary": 2}


def jobs(*parts: dict) -> dict[str, int]:
    """Job counts of several parts of a plan, added up per rule."""
    total: dict[str, int] = {}
    for part in parts:
        for rule, count in part.items():
            total[rule] = total.get(rule, 0) + count
    return total


def test_rerun_plans_nothing_and_changes_rerun_only_their_stage(workdir):
    def plan(change):
        return planned_jobs(snakemake(workdir, "-n", "all", change=change))

    assert planned_jobs(snakemake(workdir, "-n", "all")) == {}
    # A split parameter reruns the splits (view2, the zero-shot protocol and its validation
    # protocol) and everything trained on them, not prepare.
    assert plan({"datasets": {"nw_ucla": {"val_fraction": 0.1}}}) == jobs(
        {"split": 3, "train_vqvae": 2, "tokenize": 2}, ENCODERS, TEXT_SIMILARITY, LLM_AR, PROBE,
        {"zeroshot_summary": 2, "plot_curves": 4}, REPORT)
    # A new protocol adds its own chain only (no validation protocol: unseen2_seed1 has no
    # seen test samples).
    protocols = ["view2", "view2_unseen3_seed0", "unseen2_seed1"]
    assert plan({"datasets": {"nw_ucla": {"protocols": protocols}}}) == jobs(
        {"split": 1, "train_vqvae": 1, "tokenize": 1, "lora": 1, "evaluate": 1}, PROBE,
        {"train_encoder": 2, "evaluate": 2, "zeroshot_summary": 4, "plot_curves": 1}, REPORT)
    # A prepare parameter reruns prepare and everything after it.
    assert plan({"prepare": {"strict": True}}) == jobs(
        {"prepare": 1, "split": 3, "describe": 1, "encode_text": 1, "train_vqvae": 2,
         "tokenize": 2}, ENCODERS, TEXT_SIMILARITY, LLM_AR, PROBE,
        {"zeroshot_summary": 2, "plot_curves": 4}, REPORT)
    # A VQ-VAE loss weight reruns the LLM-AR chain, nothing before it and no encoder.
    assert plan({"vqvae": {"train": {"omega2": 0.5}}}) == jobs(
        {"train_vqvae": 2, "tokenize": 2}, LLM_AR, PROBE,
        {"zeroshot_summary": 2, "plot_curves": 3}, REPORT)
    # The text encoder reruns encode-text and what reads text (GAP, SUGAR, the zero-shot text
    # probe, text similarity and their averages); request plumbing reruns nothing.
    assert plan({"knowledge": {"text_encoder": {"batch_size": 7}, "concurrency": 3}}) == jobs(
        {"encode_text": 1, "train_encoder": 2, "extract_features": 2, "plot_embedding": 2,
         "plot_curves": 1, "zeroshot_summary": 1}, {"evaluate": 1}, PROBE, TEXT_SIMILARITY,
        REPORT)
    # A GAP-only key reruns the GAP encoders and what reads them, not CE or SUGAR.
    assert plan({"encoders": {"train": {"gap_weight": 0.5}}}) == jobs(
        {"train_encoder": 3, "evaluate": 3, "extract_features": 1, "plot_embedding": 1,
         "plot_curves": 1, "zeroshot_summary": 1}, REPORT)
    # A LoRA learning rate reruns the LoRA runs and their evaluations, not the text probe.
    assert plan({"lora": {"llm_ar": {"lr": 0.01}}}) == jobs(
        LLM_AR, {"zeroshot_summary": 1, "plot_curves": 1}, REPORT)
    # Restating values (another spelling, another overlay) reruns nothing.
    assert plan({"lora": {"llm_ar": {"lr": 5e-3}}, "encoders": {"train": {"epochs": 1.0}},
                 "vqvae": {"train": {"lr": 1e-3}}}) == {}
    # Threads, micro-batches, inference batches and devices are resources: nothing reruns.
    assert plan({"compute": {"threads": 3, "llm_threads": 1, "device": "cpu"},
                 "lora": {"micro_batch_size": 1},
                 "llm_eval": {"batch_size": 8}, "encoders": {"inference_batch_size": 64}}) == {}


def test_html_report_holds_every_figure_and_lint_is_clean(workdir):
    result = snakemake(workdir, "--report", "report.html")
    assert result.returncode == 0, result.stderr[-3000:]
    added = re.findall(r"Adding (\S+) \(", result.stdout + result.stderr)
    assert set(added) == {"confusion.png", "token_frequency.png", "summary.md", "summary.csv",
                          "vqvae_curves.png", "encoder_curves.png", "lora_curves.png",
                          "embedding_ce.png", "embedding_gap.png", "embedding_sugar.png"}
    # ce, gap, llm_ar on view2, the two zero-shot recognizers, and GAP's and SUGAR's text
    # similarity on the zero-shot protocol and its validation protocol; one Zipf plot per
    # protocol LLM-AR runs on
    assert added.count("confusion.png") == 9 and added.count("token_frequency.png") == 2
    assert (workdir / "report.html").stat().st_size > 100_000
    lint = snakemake(workdir, "--lint")
    assert lint.returncode == 0 and "Congratulations" in lint.stdout + lint.stderr, lint.stdout


def test_invalid_config_names_the_key(workdir):
    result = snakemake(workdir, "-n", "all", change={"prepare": {"threads": 0}})
    assert result.returncode != 0
    assert "prepare.threads: 0 is less than the minimum of 1" in result.stdout + result.stderr
    result = snakemake(workdir, "-n", "all", change={"run_datasets": ["ntu61"]})
    assert result.returncode != 0
    assert "run_datasets names ['ntu61']" in result.stdout + result.stderr
    result = snakemake(workdir, "-n", "all", change={"encoders": {"protocols": ["veiw2"]}})
    assert result.returncode != 0
    assert "encoders.protocols names ['veiw2']" in result.stdout + result.stderr


def test_ablation_target_trains_only_the_variant_that_differs(workdir):
    """GAP Table 1b on NW-UCLA, executed through the same rules as `all`: the synonym variant
    is the main config, so its row is the main run's GAP evaluation (nothing trained or
    evaluated again); the paragraph variant is a run of its own."""
    result = snakemake(workdir, "ablation_gap_global_text")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = workdir / "results/ablations/gap_global_text"
    assert not (runs / "synonym").exists()
    paragraph_run = runs / "paragraph"
    assert (paragraph_run / "models/nw_ucla/view2/encoders/gap/best.safetensors").exists()
    assert not (paragraph_run / "models/nw_ucla/view2/encoders/ce").exists()
    assert (workdir / "logs/ablations/gap_global_text/paragraph/train_encoder/nw_ucla/view2/gap.log"
            ).is_file()
    main = json.loads((workdir / "results/eval/nw_ucla/view2/gap/metrics.json").read_text())
    paragraph = json.loads((paragraph_run / "eval/nw_ucla/view2/gap/metrics.json").read_text())
    table = pd.read_csv(workdir / "results/report/ablations/gap_global_text.csv")
    ours = table[table["source"] == "this run"].set_index("method")
    assert ours.loc["synonym", "view2 top1"] == pytest.approx(100 * main["top1"], abs=0.005)
    assert ours.loc["paragraph", "view2 top1"] == pytest.approx(100 * paragraph["top1"], abs=0.005)
    assert "GAP Table 1b" in (workdir / "results/report/ablations/gap_global_text.md").read_text()
    # built: nothing more to do, for the table or for `all`
    assert planned_jobs(snakemake(workdir, "-n", "ablation_gap_global_text", "all")) == {}


def test_paid_answers_survive_removing_results(tmp_path, monkeypatch):
    """describe through the openai client and a loopback endpoint, run by Snakemake: after
    `rm -rf results` the rebuilt table comes from resources/cache, with no request sent."""
    from fake_openai import FakeOpenAI
    from test_describe import gap_style

    work = copy_workflow(tmp_path)
    monkeypatch.setenv("ACTIONLM_WORKFLOW_TEST_KEY", "sk-workflow-test")
    target = "results/knowledge/synthetic/descriptions.parquet"
    with FakeOpenAI(gap_style) as server:
        overlay = {"datasets": {"synthetic": {"protocols": ["xsub"],
                                              "synthetic": {"subjects": 2, "replications": 1}}},
                   "knowledge": {"provider": {"serve_local": False, "model": "fake-model",
                                              "base_url": server.base_url,
                                              "api_key_env": "ACTIONLM_WORKFLOW_TEST_KEY"}}}
        (work / "overlay.yaml").write_text(yaml.safe_dump(overlay))
        first = snakemake(work, target)
        assert first.returncode == 0, first.stderr[-3000:]
        asked = len(server.requests)
        assert asked == 19 * 5  # part, synonym, paragraph, motion, brief
        rows = pd.read_parquet(work / target)
        shutil.rmtree(work / "results")
        again = snakemake(work, target)
        assert again.returncode == 0, again.stderr[-3000:]
        assert len(server.requests) == asked
    pd.testing.assert_frame_equal(pd.read_parquet(work / target), rows)


def test_a_two_stream_ensemble_trains_the_bone_stream_and_fuses_the_scores(workdir):
    """GAP on joint (the main run) and bone (the run streams/bone/), fused with GAP's weights
    (0.8 / 0.8 on raw logits); only GAP's bone chain and the fusion are new jobs. Last in this
    file: it widens `all` for the plans of the tests above."""
    change = {"encoders": {"gap": {"modalities": ["joint", "bone"]}},
              "ensembles": {"gap_2stream": {"members": ["gap/joint", "gap/bone"]}}}
    planned = planned_jobs(snakemake(workdir, "-n", "all", change=change))
    assert planned["train_encoder"] == 1 and planned["ensemble"] == 1, planned
    result = snakemake(workdir, "all", change=change)
    assert result.returncode == 0, result.stderr[-3000:]
    bone = workdir / "results/streams/bone"
    model = json.loads((bone / "models/nw_ucla/view2/encoders/gap/config.json").read_text())
    assert model["model"]["modality"] == "bone"
    members = [pd.read_parquet(root / "eval/nw_ucla/view2/gap/predictions.parquet")
               for root in (workdir / "results", bone)]
    fused = pd.read_parquet(workdir / "results/eval/nw_ucla/view2/gap_2stream/predictions.parquet")
    by_id = [m.set_index("sample_id").loc[fused["sample_id"]] for m in members]
    expected = 0.8 * np.stack(by_id[0]["scores"]) + 0.8 * np.stack(by_id[1]["scores"])
    assert (fused["pred"].to_numpy() == expected.argmax(1)).all()
    table = pd.read_csv(workdir / "results/report/summary.csv")
    assert {"gap", "gap (bone)", "gap_2stream"} <= set(table["method"])
    assert planned_jobs(snakemake(workdir, "-n", "all", change=change)) == {}
