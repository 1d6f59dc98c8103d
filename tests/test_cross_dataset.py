"""Cross-dataset zero-shot (SUGAR, LLM-AR): the recognizer trained on one dataset ranks the
test classes of another. The workflow's plan (dry run on two synthetic datasets), its config
check, the report's `cross` table, and the one-line error when the target's skeleton layout is
not the one the source's VQ-VAE or SUGAR encoder was trained on."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from actionlm.cli import main
from actionlm.data.split_files import SplitFiles
from actionlm.data.synthetic import SYNTHETIC_ACTIONS
from actionlm.errors import ActionlmError
from actionlm.eval.features import extract_features
from actionlm.models.encoder import EncoderConfig, SkeletonEncoder, save_encoder
from actionlm.models.vqvae import ActionVQVAE, VQVAEConfig, save_vqvae
from actionlm.report.summary import collect_results, summary_markdown
from actionlm.train.tokenize import tokenize_dataset
from workflow_copy import copy_workflow, run_snakemake

PAIR = {"source": "synthetic", "source_protocol": "xsub", "target": "synthetic_b",
        "target_protocol": "xview"}
CROSS_RUN = "results/cross/synthetic/xsub"  # the source's models applied to other datasets
TOKENS = f"{CROSS_RUN}/tokens/synthetic_b/xview/action_sentences.parquet"
FEATURES = f"{CROSS_RUN}/features/synthetic_b/xview/sugar/features.parquet"
CROSS_EVAL = f"{CROSS_RUN}/eval/synthetic_b/xview"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A copy of the workflow with a second synthetic dataset (another seed, other actions)."""
    work = copy_workflow(tmp_path_factory.mktemp("cross-workflow"))
    overlay = {"datasets": {"synthetic_b": {"format": "synthetic", "protocols": ["xview"],
                                            "seed": 1, "actions": list(SYNTHETIC_ACTIONS[:6])}}}
    (work / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    return work


def dry_run(workdir: Path, cross: list[dict], change: dict | None = None
            ) -> subprocess.CompletedProcess:
    """`snakemake -n -p all` on config.yaml + the overlay + cross_dataset: ``cross``."""
    (workdir / "cross.yaml").write_text(yaml.safe_dump({"cross_dataset": cross, **(change or {})}))
    return run_snakemake(workdir, "-n", "-p", "all",
                         configs=("config.yaml", "overlay.yaml", "cross.yaml"))


def shell_commands(result: subprocess.CompletedProcess, rule: str) -> list[str]:
    """The shell commands a dry run prints for the jobs of ``rule``."""
    blocks = re.split(r"\n(?=\[.*\]\nrule )", result.stdout)
    return [line.removeprefix("Shell command: ") for block in blocks
            if re.search(rf"^rule {rule}:$", block, re.M)
            for line in block.splitlines() if line.startswith("Shell command: ")]


def test_cross_pairs_plan_tokens_features_and_zero_shot_evaluations(workdir):
    """Each Snakemake run here waits ~10 s for the SLURM plugin's probe: one plan covers both
    pairs (explicit methods; methods from llm_eval.methods) and one the default."""
    default_methods = {**PAIR, "target_protocol": "xsub"}  # llm_eval.methods: llm_ar only
    result = dry_run(workdir, [{**PAIR, "methods": ["llm_ar", "sugar"]}, default_methods],
                     {"llm_eval": {"methods": ["llm_ar"]}})
    assert result.returncode == 0, result.stderr[-3000:]
    # the target's inputs made with the source's VQ-VAE and SUGAR encoder, by the main rules
    tokenize = [c for c in shell_commands(result, "tokenize") if "results/cross/" in c]
    assert len(tokenize) == 2
    [command] = [c for c in tokenize if "synthetic_b/splits/xview" in c]
    assert "--skeletons results/data/synthetic_b/skeletons.parquet" in command
    assert "--vqvae results/models/synthetic/xsub/vqvae/vqvae.safetensors" in command
    assert f"--out $(dirname {TOKENS})" in command
    [features] = [c for c in shell_commands(result, "extract_features") if "results/cross/" in c]
    assert "--model results/models/synthetic/xsub/encoders/sugar/best.safetensors" in features
    assert "--split results/data/synthetic_b/splits/xview.parquet" in features
    assert f"--out {FEATURES}" in features
    # the source's recognizers rank the target's test classes
    evaluations = [c for c in shell_commands(result, "evaluate") if "results/cross/" in c]
    assert sorted(re.search(r"--method (\w+)", c).group(1) for c in evaluations) == [
        "llm_ar", "llm_ar", "sugar"]
    for method, table in (("llm_ar", TOKENS), ("sugar", FEATURES)):
        [command] = [c for c in evaluations if f"--method {method} " in c and "xview" in c]
        assert f"--model results/models/synthetic/xsub/{method}/recognizer.json" in command
        assert "--zero-shot" in command.split()
        assert "--classes results/data/synthetic_b/classes.parquet" in command
        assert f"--inputs {table}" in command
        assert f"--out $(dirname {CROSS_EVAL}/{method}/metrics.json)" in command
    # the target is prepared although it is not in run_datasets; the report reads the results
    assert "--out $(dirname results/data/synthetic_b/skeletons.parquet)" in result.stdout
    [report] = shell_commands(result, "report")
    assert f"{CROSS_EVAL}/llm_ar/metrics.json {CROSS_EVAL}/sugar/metrics.json" in report
    # the default (no cross_dataset) plans none of it
    plain = dry_run(workdir, [])
    assert plain.returncode == 0, plain.stderr[-3000:]
    assert "results/cross/" not in plain.stdout


def test_cross_pair_of_an_unknown_dataset_names_the_key(workdir):
    result = dry_run(workdir, [{**PAIR, "target": "nw_ucla"}])
    assert result.returncode != 0
    assert ("cross_dataset[0].target names 'nw_ucla', which is not under `datasets`"
            in result.stdout + result.stderr)


def test_report_tabulates_cross_results_in_their_own_table(tmp_path):
    paths = []
    for method, top1 in (("llm_ar", 0.25), ("sugar", 0.5)):
        path = tmp_path / CROSS_EVAL / method / "metrics.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"top1": top1, "top5": 1.0, "n": 40}))
        paths.append(path)
    results = collect_results(paths)
    assert set(results["dataset"]) == {"cross"}
    assert set(results["protocol"]) == {"synthetic/xsub/synthetic_b/xview"}
    text = summary_markdown(results, "t")
    assert "## cross" in text and "synthetic/xsub/synthetic_b/xview (top-1 / top-5 %)" in text
    assert "| sugar | 50.0 / 100.0 |" in text


# --- skeleton layouts ------------------------------------------------------------------------


def test_tokenize_refuses_a_vqvae_of_another_skeleton_layout(small_ntu_data, tmp_path):
    """A VQ-VAE trained on NW-UCLA's 20 Kinect v1 joints cannot read NTU's 25."""
    weights = tmp_path / "results/models/nw_ucla/view2/vqvae/vqvae.safetensors"
    weights.parent.mkdir(parents=True)
    save_vqvae(ActionVQVAE(VQVAEConfig(width=8, joints=20, window=8, codes=4, channels=8,
                                       depth=0)), weights)
    with pytest.raises(ActionlmError) as err:
        tokenize_dataset(SplitFiles.prepared(small_ntu_data, "xview"), weights, tmp_path / "tokens",
                         device_name="cpu")
    message = str(err.value)
    assert str(small_ntu_data) in message and str(weights) in message
    assert "25 joints (ntu25)" in message and "20 joints (kinect_v1_20)" in message
    assert not (tmp_path / "tokens/action_sentences.parquet").exists()


def test_extract_features_refuses_an_encoder_of_another_skeleton_layout(small_ntu_data, tmp_path,
                                                                        capsys):
    weights = tmp_path / "results/models/nw_ucla/view2/encoders/sugar/best.safetensors"
    weights.parent.mkdir(parents=True)
    save_encoder(SkeletonEncoder(EncoderConfig(method="sugar", layout="kinect_v1_20",
                                               num_class=10, base_channels=4, window=8,
                                               text_width=8)), weights)
    out = tmp_path / "features.parquet"
    with pytest.raises(ActionlmError, match=r"25 joints \(ntu25\).*20 joints \(kinect_v1_20\)"):
        extract_features(weights, SplitFiles.prepared(small_ntu_data, "xview"), out,
                         torch.device("cpu"))
    # the CLI prints it as one line naming both datasets' files (exit 2), no traceback
    assert main(["extract-features", "--model", str(weights),
                 "--skeletons", str(small_ntu_data / "skeletons.parquet"),
                 "--split", str(small_ntu_data / "splits" / "xview.parquet"),
                 "--out", str(out), "--device", "cpu"]) == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error and "nw_ucla" in error and "results/data/synthetic" in error
    assert not out.exists()
