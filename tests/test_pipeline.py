"""actionlm.pipeline, the workflow's logic, without Snakemake: paths, canonical flags, the run
resolver (what an ablation variant or a cross-dataset run trains itself and what it takes
from the main run), each stage's declared inputs, the targets and the config checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from actionlm.errors import ActionlmError
from actionlm.pipeline import Pipeline, paths, targets
from actionlm.pipeline.checks import check_config
from actionlm.pipeline.flags import cli_flags
from actionlm.pipeline.runs import deep_merge

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"
MAIN = {"run": "", "dataset": "synthetic", "protocol": "xsub"}


def config(**overlay) -> dict:
    merged = deep_merge(yaml.safe_load((ROOT / "config.yaml").read_text()), overlay)
    check_config(merged, SCHEMA)
    return merged


@pytest.fixture(scope="module")
def pipe() -> Pipeline:
    return Pipeline(config())


def variant(table: str, name: str, **wc) -> dict:
    return {**MAIN, "run": f"ablations/{table}/{name}/", **wc}


# ------------------------------------------------------------------ flags and paths

def test_flags_are_canonical_whatever_the_spelling():
    assert cli_flags({"lr": 0.0005, "epochs": 8}) == cli_flags({"epochs": 8.0, "lr": 5e-4})
    assert cli_flags({"a_b": True, "c": False, "d": None, "e": [0.5, 1.0], "f": "x y"}) == \
        "--a-b --no-c --e 0.5 1 --f 'x y'"


def test_result_paths_name_their_dataset_protocol_and_method():
    assert paths.result_key("results/eval/ntu60/xsub/gap/metrics.json") == \
        {"dataset": "ntu60", "protocol": "xsub", "method": "gap"}
    assert paths.result_key("/w/results/eval/ntu60/zeroshot/unseen5/llm_ar.json") == \
        {"dataset": "ntu60", "protocol": "zeroshot/unseen5", "method": "llm_ar"}
    assert paths.result_key("results/eval/ntu60/zeroshot/smie55_5/gap_textsim.json") == \
        {"dataset": "ntu60", "protocol": "zeroshot/smie55_5", "method": "gap_textsim"}
    assert paths.result_key("results/ablations/t/v/eval/ntu60/xsub/ce/metrics.json")["method"] == "ce"
    assert paths.result_key("results/cross/ntu60/xsub/eval/ntu120/xset/sugar/metrics.json") == \
        {"dataset": "cross", "protocol": "ntu60/xsub/ntu120/xset", "method": "sugar"}
    assert paths.result_key("results/models/ntu60/xsub/gap/best.safetensors") is None
    assert paths.result_key("results/streams/bone/eval/ntu60/xsub/gap/metrics.json") == \
        {"dataset": "ntu60", "protocol": "xsub", "method": "gap (bone)"}
    assert paths.result_key("results/eval/ntu60/xsub/gap_4stream/metrics.json")["method"] == \
        "gap_4stream"


def test_logs_and_benchmarks_follow_the_run():
    assert paths.log("train_encoder", ("dataset", "method")) == \
        "logs/{run}train_encoder/{dataset}/{method}.log"
    assert paths.benchmark("prepare", ("dataset",)) == "results/benchmarks/prepare/{dataset}.tsv"


# ------------------------------------------------------------------ the run resolver

def test_a_variant_trains_only_what_its_overlay_changes(pipe):
    encoder = pipe.upstream("train_encoder", "best", variant("gap_partitions", "parts2"), "gap")
    assert encoder == "results/ablations/gap_partitions/parts2/models/synthetic/xsub/encoders/gap/best.safetensors"
    # parts4 is the main config; `none` evaluates the main run's CE encoder
    rows = dict(targets.ablation_rows(pipe, "gap_partitions"))
    assert rows["parts4"] == "results/eval/synthetic/xsub/gap/metrics.json"
    assert rows["none"] == "results/eval/synthetic/xsub/ce/metrics.json"
    assert rows["parts6"].startswith("results/ablations/gap_partitions/parts6/eval/")


def test_an_llm_variant_retrains_from_the_stage_its_overlay_changes(pipe):
    euclidean = pipe.inputs("lora", variant("llm_ar_codebook", "euclidean", method="llm_ar"))
    assert euclidean["vqvae"].startswith("results/ablations/llm_ar_codebook/euclidean/models/")
    assert euclidean["sentences"].startswith("results/ablations/llm_ar_codebook/euclidean/tokens/")
    linear = pipe.inputs("evaluate", variant("sugar_bridge", "linear", method="sugar"))
    assert linear["inputs"] == "results/features/synthetic/xsub/sugar/features.parquet"
    assert linear["model"] == "results/ablations/sugar_bridge/linear/models/synthetic/xsub/sugar/recognizer.json"
    assert "--bridge linear " in pipe.flags("lora", variant("sugar_bridge", "linear", method="sugar"))


def test_restating_a_main_value_in_a_variant_changes_nothing():
    cfg = config(ablations={"tables": {"same": {"method": "gap", "variants": {
        "restated": {"encoders": {"train": {"lr": 1e-1, "epochs": 12.0}}},
        "changed": {"encoders": {"train": {"lr": 0.05}}}}}}})
    rows = dict(targets.ablation_rows(Pipeline(cfg), "same"))
    assert rows["restated"] == "results/eval/synthetic/xsub/gap/metrics.json"
    assert rows["changed"] == "results/ablations/same/changed/eval/synthetic/xsub/gap/metrics.json"


def test_a_cross_run_applies_the_source_models_to_the_target(pipe):
    cfg = config(datasets={"other": {"format": "synthetic", "protocols": ["xview"], "seed": 1}},
                 cross_dataset=[{"source": "synthetic", "source_protocol": "xsub",
                                 "target": "other", "target_protocol": "xview"}])
    cross = Pipeline(cfg)
    wc = {"run": "cross/synthetic/xsub/", "dataset": "other", "protocol": "xview"}
    tokens = cross.inputs("tokenize", wc)
    assert tokens["vqvae"] == "results/models/synthetic/xsub/vqvae/vqvae.safetensors"
    assert tokens["skeletons"] == "results/data/other/skeletons.parquet"
    evaluation = cross.inputs("evaluate", {**wc, "method": "llm_ar"})
    assert evaluation["model"] == "results/models/synthetic/xsub/llm_ar/recognizer.json"
    assert evaluation["inputs"] == "results/cross/synthetic/xsub/tokens/other/xview/action_sentences.parquet"
    assert evaluation["classes"] == "results/data/other/classes.parquet"
    assert "--zero-shot" in cross.flags("evaluate", {**wc, "method": "llm_ar"}).split()
    assert targets.cross_targets(cross) == [
        "results/cross/synthetic/xsub/eval/other/xview/llm_ar/metrics.json",
        "results/cross/synthetic/xsub/eval/other/xview/sugar/metrics.json"]


def test_an_unknown_run_is_a_clear_error(pipe):
    with pytest.raises(ActionlmError, match="ablations/nope/x/: no such run"):
        pipe.inputs("train_vqvae", variant("nope", "x"))


# ------------------------------------------------------------------ inputs and flags

def test_every_file_a_stage_reads_is_an_input(pipe):
    assert set(pipe.inputs("train_encoder", {**MAIN, "method": "ce"})) == {"skeletons", "split", "classes"}
    assert set(pipe.inputs("train_encoder", {**MAIN, "method": "gap"})) == {
        "skeletons", "split", "classes", "texts"}
    assert set(pipe.inputs("evaluate", {**MAIN, "method": "sugar"})) == {
        "classes", "inputs", "llm", "model", "adapter"}
    described = Pipeline(config(lora={"sugar": {"descriptions": True}}))
    assert "descriptions" in described.inputs("lora", {**MAIN, "method": "sugar"})
    assert "descriptions" not in pipe.inputs("lora", {**MAIN, "method": "sugar"})


def test_a_method_reads_only_its_own_encoder_keys(pipe):
    gap_only = Pipeline(config(encoders={"train": {"gap_weight": 0.5}}))
    for method, changed in (("ce", False), ("gap", True), ("sugar", False)):
        wc = {**MAIN, "method": method}
        assert (gap_only.flags("train_encoder", wc) != pipe.flags("train_encoder", wc)) == changed


def test_a_method_block_overrides_the_common_keys_for_that_method_alone(pipe):
    sugar_schedule = Pipeline(config(encoders={"sugar": {"train": {"lr": 0.01, "epochs": 200},
                                                         "network": {"window": 48}}}))
    for method in ("ce", "gap"):
        wc = {**MAIN, "method": method}
        assert sugar_schedule.flags("train_encoder", wc) == pipe.flags("train_encoder", wc)
    flags = sugar_schedule.flags("train_encoder", {**MAIN, "method": "sugar"}).split()
    assert flags[flags.index("--lr") + 1] == "0.01" and flags[flags.index("--epochs") + 1] == "200"
    assert flags[flags.index("--window") + 1] == "48"
    # SUGAR's recognizer reads features of that encoder: its chain is the variant's own
    lora = sugar_schedule.inputs("lora", {**MAIN, "method": "sugar"})
    assert lora["features"] == "results/features/synthetic/xsub/sugar/features.parquet"


def test_per_dataset_settings_reach_that_datasets_jobs_and_variants_build_on_them():
    cfg = config(datasets={"other": {"format": "synthetic", "protocols": ["xsub"], "seed": 1}},
                 run_datasets=["synthetic", "other"],
                 per_dataset={"other": {"encoders": {"train": {"repeat": 5, "lr": 0.2}}},
                              "not_run": {"vqvae": {"train": {"codes": 64}}}})
    pipe = Pipeline(cfg)
    mine = {**MAIN, "dataset": "other", "method": "gap"}
    flags = pipe.flags("train_encoder", mine).split()
    assert flags[flags.index("--repeat") + 1] == "5" and flags[flags.index("--lr") + 1] == "0.2"
    assert "--repeat 1" in pipe.flags("train_encoder", {**MAIN, "method": "gap"})
    # an ablation variant changes its own key and keeps the dataset's settings
    parts2 = variant("gap_partitions", "parts2", dataset="other", method="gap")
    flags = pipe.flags("train_encoder", parts2).split()
    assert flags[flags.index("--parts") + 1] == "2" and flags[flags.index("--repeat") + 1] == "5"
    # a variant equal to the dataset's main settings resolves to the main run there too
    assert [path for name, path in targets.ablation_rows(pipe, "gap_partitions")
            if name == "parts4"] == ["results/eval/synthetic/xsub/gap/metrics.json",
                                     "results/eval/other/xsub/gap/metrics.json"]


def test_resources_never_reach_the_flags(pipe):
    moved = Pipeline(config(compute={"threads": 4, "device": "cpu"}, lora={"micro_batch_size": 1},
                            llm_eval={"batch_size": 2}, knowledge={"concurrency": 3}))
    for stage, method in (("lora", "llm_ar"), ("evaluate", "sugar"), ("train_encoder", "gap"),
                          ("describe", None)):
        wc = {**MAIN, "method": method}
        assert moved.flags(stage, wc) == pipe.flags(stage, wc)
    assert moved.inference_batch({"method": "sugar"}) == 2


def test_gpu_jobs_ask_the_scheduler_for_what_compute_says(pipe):
    assert pipe.network_resources("tokenize") == {
        "mem_mb": 8000, "runtime": 60, "device": "auto", "precision": "auto", "gpu": 1}
    cluster = Pipeline(config(compute={
        "gpus": 4, "gpu_model": "a100", "gpu_partition": "gpu", "precision": "bf16",
        "limits": {"lora": {"mem_mb": 64000, "runtime": 2880}}}))
    assert cluster.network_resources("lora") == {
        "mem_mb": 64000, "runtime": 2880, "device": "auto", "precision": "bf16", "gpu": 4,
        "gpu_model": "a100", "slurm_partition": "gpu"}
    assert cluster.launcher() == "torchrun --standalone --nproc-per-node 4 -m actionlm.cli"
    cpu_only = Pipeline(config(compute={"gpus": 0}))
    assert "gpu" not in cpu_only.network_resources("evaluate")
    assert (pipe.launcher(), cpu_only.launcher()) == ("actionlm", "actionlm")
    assert pipe.request_resources() == {"llm_cache": "resources/cache/llm", "llm_concurrency": 64,
                                        "llm_retries": 2, "llm_timeout_s": 300}


# ------------------------------------------------------------------ streams and ensembles

def test_each_stream_is_a_run_and_a_stream_variant_resolves_to_it():
    pipe = Pipeline(config(encoders={"gap": {"modalities": ["joint", "bone"]}}))
    wanted = set(targets.all_targets(pipe))
    bone = {"run": "streams/bone/", "dataset": "synthetic", "protocol": "xsub", "method": "gap"}
    assert {"results/eval/synthetic/xsub/gap/metrics.json",
            "results/streams/bone/eval/synthetic/xsub/gap/metrics.json",
            "results/streams/bone/features/synthetic/xsub/gap/features.parquet"} <= wanted
    assert not [t for t in wanted if "streams/" in t and "/gap/" not in t]  # CE, SUGAR: joint
    assert "--modality bone" in pipe.flags("train_encoder", bone)
    assert "--modality joint" in pipe.flags("train_encoder", {**bone, "run": ""})
    assert pipe.inputs("evaluate", bone)["model"] == \
        "results/streams/bone/models/synthetic/xsub/encoders/gap/best.safetensors"
    # GAP's stream table: joint is the main run, bone the stream run `all` already builds,
    # the motion streams runs of their own kind (streams/...), fusions the variant's ensemble
    rows = dict(targets.ablation_rows(pipe, "gap_streams"))
    assert rows["joint"] == "results/eval/synthetic/xsub/gap/metrics.json"
    assert rows["bone"] == "results/streams/bone/eval/synthetic/xsub/gap/metrics.json"
    assert rows["bone_motion"] == "results/streams/bone_motion/eval/synthetic/xsub/gap/metrics.json"
    assert rows["two_stream"] == \
        "results/ablations/gap_streams/two_stream/eval/synthetic/xsub/ensemble/metrics.json"


def test_a_streams_llm_chain_starts_from_its_own_network(pipe):
    """SUGAR's recognizer on bone reads the bone encoder's features; LLM-AR's the bone VQ-VAE."""
    bone = {"run": "streams/bone/", "dataset": "synthetic", "protocol": "xsub"}
    assert pipe.inputs("lora", {**bone, "method": "sugar"})["features"] == \
        "results/streams/bone/features/synthetic/xsub/sugar/features.parquet"
    assert pipe.inputs("tokenize", bone)["vqvae"] == \
        "results/streams/bone/models/synthetic/xsub/vqvae/vqvae.safetensors"
    assert "--modality bone" in pipe.flags("train_vqvae", bone)
    # the joint stream run is the main run
    joint = pipe.run("streams/joint/")
    assert pipe.owner(joint, "evaluate", "gap", "synthetic") == ""


def test_ensembles_fuse_the_members_with_gaps_weights_by_default():
    pipe = Pipeline(config(ensembles={
        "gap_4stream": {"members": ["gap/joint", "gap/bone", "gap/joint_motion", "gap/bone_motion"]},
        "gap_sugar": {"members": ["gap", "sugar"]},
        "mine": {"members": ["ce", "gap/bone"], "weights": [1, 2], "normalize": "softmax"}}))
    wc = {**MAIN, "ensemble": "gap_4stream"}
    assert pipe.inputs("ensemble", wc)["predictions"] == [
        "results/eval/synthetic/xsub/gap/predictions.parquet",
        "results/streams/bone/eval/synthetic/xsub/gap/predictions.parquet",
        "results/streams/joint_motion/eval/synthetic/xsub/gap/predictions.parquet",
        "results/streams/bone_motion/eval/synthetic/xsub/gap/predictions.parquet"]
    assert pipe.flags("ensemble", wc) == ("--names gap/joint gap/bone gap/joint_motion "
                                          "gap/bone_motion --normalize none --weights 0.8 0.8 "
                                          "0.2 0.2")
    assert "--normalize softmax --weights 0.8 0.8" in \
        pipe.flags("ensemble", {**wc, "ensemble": "gap_sugar"})
    assert "--normalize softmax --weights 1 2" in pipe.flags("ensemble", {**wc, "ensemble": "mine"})
    wanted = targets.all_targets(pipe)
    assert "results/eval/synthetic/xsub/gap_sugar/metrics.json" in wanted
    assert not [t for t in wanted if "unseen" in t and "gap_sugar" in t]  # closed-set only
    gap_only = Pipeline(config(encoders={"methods": ["gap"]}, llm_eval={"methods": []}, ensembles={
        "gap_2stream": {"members": ["gap/joint", "gap/bone"]},
        "gap_sugar": {"members": ["gap", "sugar"]}}))
    assert targets.fused_ensembles(gap_only) == ["gap_2stream"]  # SUGAR is not evaluated
    with pytest.raises(ActionlmError, match="ensembles.other: no such ensemble"):
        pipe.inputs("ensemble", {**wc, "ensemble": "other"})


# ------------------------------------------------------------------ targets and checks

def test_sugar_knowledge_rows_without_a_vision_endpoint_are_refused_with_the_reason(pipe):
    """SUGAR Table 3 offline: CE and motion (the main run's SUGAR) run; the visual rows are
    listed as not run, with why. With a vision endpoint all four run."""
    main = "results/eval/synthetic/xsub/{}/metrics.json"
    assert targets.ablation_rows(pipe, "sugar_knowledge") == [
        ("none", main.format("ce")), ("motion", main.format("sugar"))]
    why = "visual texts need knowledge.visual.enabled (describe-visual, a vision-model endpoint)"
    options = targets.report_options(pipe, {"name": "ablations/sugar_knowledge"})
    assert options["refused"] == [f"visual={why}", f"motion_visual={why}"]
    assert options["row_labels"] == ["none", "motion"]
    vision = Pipeline(config(knowledge={"provider": {"serve_local": False, "base_url": None},
                                        "visual": {"enabled": True, "frames_dir": None}}))
    rows = dict(targets.ablation_rows(vision, "sugar_knowledge"))
    assert list(rows) == ["none", "visual", "motion", "motion_visual"]
    assert rows["motion_visual"].startswith("results/ablations/sugar_knowledge/motion_visual/")
    assert targets.report_options(vision, {"name": "ablations/sugar_knowledge"})["refused"] is None


def test_all_asks_for_every_evaluation_and_the_report(pipe):
    wanted = targets.all_targets(pipe)
    assert "results/report/summary.md" in wanted
    assert {"results/eval/synthetic/xsub/ce/metrics.json",
            "results/eval/synthetic/xsub/sugar/metrics.json"} <= set(wanted)
    # zero-shot: the default's text similarity of GAP; the recognizers and their probes on demand
    assert [t for t in wanted if "/zeroshot/" in t] == [
        "results/eval/synthetic/zeroshot/xsub_unseen5/gap_textsim.json"]
    every = Pipeline(config(zero_shot={"recognizers": None, "text_similarity": ["gap", "sugar"]}))
    assert {Path(t).stem for t in targets.all_targets(every) if "/zeroshot/" in t} == {
        "llm_ar", "sugar", "llm_ar_text", "sugar_text", "gap_textsim", "sugar_textsim"}
    some = Pipeline(config(zero_shot={"recognizers": ["sugar"]}))
    assert {Path(t).stem for t in targets.all_targets(some) if "/zeroshot/" in t} == {
        "sugar", "sugar_text", "gap_textsim"}
    assert not [t for t in wanted if "unseen" in t and "/ce/" in t]  # a classifier: closed set
    wc = {"dataset": "synthetic", "family": "xsub_unseen5", "method": "sugar"}
    assert targets.seed_metrics(pipe, wc) == [
        "results/eval/synthetic/xsub_unseen5_seed0/sugar/metrics.json"]


def test_zero_shot_families_average_seeds_and_smie_splits_but_not_the_protocols_apart():
    protocols = ["xsub", "xsub_unseen5_seed0", "xsub_unseen5_seed1", "unseen3_seed0"]
    pipe = Pipeline(config(datasets={"synthetic": {"protocols": protocols}}))
    assert targets.encoder_protocols(pipe, "synthetic") == ["xsub"]
    wc = {"dataset": "synthetic", "family": "xsub_unseen5", "method": "gap_textsim"}
    assert [Path(p).parts[3] for p in targets.seed_metrics(pipe, wc)] == protocols[1:3]
    wanted = {t for t in targets.all_targets(pipe) if "/zeroshot/" in t}
    assert {Path(t).parent.name for t in wanted} == {"xsub_unseen5", "unseen3"}


def test_text_similarity_reads_the_encoder_and_calibrates_on_the_validation_protocol(pipe):
    wc = {**MAIN, "protocol": "xsub_unseen5_seed0", "method": "gap_textsim"}
    inputs = pipe.inputs("evaluate", wc)
    assert inputs["model"] == \
        "results/models/synthetic/xsub_unseen5_seed0/encoders/gap/best.safetensors"
    assert inputs["texts"] == "results/knowledge/synthetic/text_embeddings.parquet"
    assert inputs["calibrate_on"] == \
        "results/eval/synthetic/xsub_unseen5_seed0_val/gap_textsim/metrics.json"
    assert pipe.flags("evaluate", wc) == \
        "--class-texts names --method text_similarity --test-interval 0.95"
    validation = pipe.inputs("evaluate", {**wc, "protocol": "xsub_unseen5_seed0_val"})
    assert "calibrate_on" not in validation  # gamma is chosen there, not applied
    assert "_val/encoders/gap/" in validation["model"]
    # no test_seen side (every sample of the protocol's classes): no GZSL, no calibration
    assert "calibrate_on" not in pipe.inputs("evaluate", {**wc, "protocol": "unseen3_seed0"})
    off = Pipeline(config(zero_shot={"calibrate": False}))
    assert "calibrate_on" not in off.inputs("evaluate", wc)


def test_recognizers_add_gzsl_where_the_protocol_has_seen_test_samples(pipe):
    wc = {**MAIN, "protocol": "xsub_unseen5_seed0", "method": "sugar"}
    assert "--zero-shot" in pipe.flags("evaluate", wc) and "--gzsl" in pipe.flags("evaluate", wc)
    assert "--no-gzsl" in pipe.flags("evaluate", {**wc, "protocol": "unseen3_seed0"})
    assert "--no-gzsl" in pipe.flags("evaluate", {**wc, "protocol": "xsub"})
    assert "--no-gzsl" in Pipeline(config(zero_shot={"gzsl": False})).flags("evaluate", wc)


def pipe_inputs(pipe: Pipeline, method: str) -> dict:
    return pipe.inputs("evaluate", {**MAIN, "protocol": "xsub_unseen5_seed0", "method": method})


def test_a_run_without_encoders_or_text_methods_asks_for_neither():
    llm_ar_only = Pipeline(config(encoders={"methods": []},
                                  llm_eval={"methods": ["llm_ar"], "text_probe": False},
                                  zero_shot={"text_similarity": []}))
    wanted = targets.all_targets(llm_ar_only)
    assert not [t for t in wanted if "knowledge" in t or "/encoders/" in t]
    figures = targets.report_figures(llm_ar_only)
    assert figures and not [f for f in figures if "encoder" in f or "embedding" in f]
    texts = "results/knowledge/synthetic/text_embeddings.parquet"
    assert texts in targets.all_targets(
        Pipeline(config(encoders={"methods": ["ce"]}, llm_eval={"methods": ["sugar"]})))
    # the zero-shot text probe reads the class texts, LLM-AR alone or not
    with_probe = Pipeline(config(encoders={"methods": []}, llm_eval={"methods": ["llm_ar"]},
                                 zero_shot={"recognizers": None, "text_similarity": []}))
    assert texts in targets.all_targets(with_probe)
    assert pipe_inputs(with_probe, "llm_ar_text")["texts"] == texts


@pytest.mark.parametrize("overlay, message", [
    ({"run_datasets": ["ntu61"]}, "run_datasets names ['ntu61'], which are not under `datasets`"),
    ({"encoders": {"protocols": ["xsbu"]}}, "encoders.protocols names ['xsbu']"),
    ({"ablations": {"protocols": ["xsbu"]}}, "ablations.protocols names ['xsbu']"),
    ({"cross_dataset": [{"source": "synthetic", "source_protocol": "xsub", "target": "nw_ucla",
                         "target_protocol": "view3"}]}, "cross_dataset[0].target names 'nw_ucla'"),
    ({"knowledge": {"visual": {"enabled": True}}}, "knowledge.visual.enabled needs a vision"),
    ({"datasets": {"synthetic": {"protocols": ["xsub", "unseen99_seed0"]}}},
     "datasets.synthetic.protocols.1: unseen99_seed0 holds out 99 of 19 classes (K: 1..18)"),
    ({"datasets": {"synthetic": {"protocols": ["synse55_5"]}}},
     "datasets.synthetic.protocols.0: synse55_5 is a benchmark of ntu60's 60 classes"),
    ({"datasets": {"ucla": {"format": "nw-ucla", "protocols": ["xset_unseen3_seed0"]}}},
     "datasets.ucla.protocols.0: xset_unseen3_seed0 is on xset: xset splits by each "
     "sample's setup, which nw-ucla data"),
    ({"datasets": {"ucla": {"format": "nw-ucla", "protocols": ["xset"]}}},
     "datasets.ucla.protocols.0: xset splits by each sample's setup, which nw-ucla data"),
    ({"datasets": {"ntu": {"format": "ntu-raw", "protocols": ["xsub"]}}},
     "datasets.ntu.classes: --dataset is required for --format ntu-raw"),
    ({"lora": {"common": {"lora_rank": 8}}}, "lora.common.lora_rank: unknown key"),
    ({"encoders": {"gap": {"network": {"parts": 4}}}},
     "ablations.tables.gap_partitions.variants.parts2.encoders.network.parts: "
     "encoders.gap.network.parts overrides it for gap; set encoders.gap.network.parts in the "
     "variant instead"),
    ({"per_dataset": {"synthetic": {"encoders": {"gap": {"network": {"parts": 2}}}}}},
     "per_dataset.synthetic.encoders.gap.network.parts overrides it for gap"),
    ({"per_dataset": {"synthetic": {"llm": {"name": "x"}}}}, "per_dataset.synthetic.llm: unknown"),
    ({"ensembles": {"x": {"members": ["gap", "ce"], "weights": [1]}}},
     "ensembles.x.weights: 1 weights for 2 members"),
    ({"ensembles": {"x": {"members": ["gap/skeleton", "ce"]}}}, "ensembles.x.members.0:"),
    ({"ensembles": {"gap": {"members": ["gap", "ce"]}}},
     "ensembles.gap: the name of a method's evaluation"),
    ({"encoders": {"modalities": ["bones"]}}, "encoders.modalities.0: 'bones' is not one of"),
    ({"encoders": {"gap": {"network": {"modality": "bone"}}}},
     "encoders.gap.network.modality: it would override the stream of every run"),
    ({"encoders": {"train": {"sugar_kinds": ["motion", "visual"]}}},
     "encoders.train.sugar_kinds (SUGAR on synthetic): visual texts need "
     "knowledge.visual.enabled"),
    ({"knowledge": {"import_gap": "gap"}},
     "encoders.train.sugar_kinds (SUGAR on synthetic): motion texts come from SUGAR's question "
     "to a model; GAP's imported files (knowledge.import_gap) hold none"),
    ({"knowledge": {"import_gap": "gap"}, "encoders": {"train": {"sugar_kinds": ["part", "paragraph"]}},
      "lora": {"sugar": {"descriptions": True}}},
     "lora.sugar.descriptions (SUGAR on synthetic): its brief descriptions come from SUGAR's "
     "question"),
])
def test_config_errors_name_the_key(overlay, message):
    with pytest.raises(ActionlmError, match="config is invalid") as err:
        config(**overlay)
    assert message in str(err.value)


def test_imported_gap_texts_serve_sugar_without_brief_descriptions():
    """GAP's files hold no brief descriptions: SUGAR answers with class names over them
    (lora.sugar.descriptions false), and the descriptions only matter when SUGAR's recognizer
    is trained (llm_eval.methods)."""
    gap = {"knowledge": {"import_gap": "gap"},
           "encoders": {"train": {"sugar_kinds": ["part", "paragraph"]}}}
    config(**gap)
    config(**gap, lora={"sugar": {"descriptions": True}}, llm_eval={"methods": ["llm_ar"]})
