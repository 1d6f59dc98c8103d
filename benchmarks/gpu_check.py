"""GPU check: the scale smoke (configs/paper/scale_smoke.yaml: every paper width and shape, a
LLaMA-2-7B-wide stand-in LLM) through `snakemake all` on CUDA in bf16, then per training stage
its samples/s and peak GPU memory, and the projected wall time of each paper configuration
(configs/paper/{gap,llm_ar,sugar}.yaml) at full scale.

    python benchmarks/gpu_check.py                # CUDA, bf16; at most 8 minutes on one H100
    python benchmarks/gpu_check.py --device cpu   # the smoke's toy sizes on the CPU: a sanity
                                                  # check of this script, CPU figures

How each figure is measured:
- samples/s: from each stage's curves.parquet, rows after the first (the first holds CUDA
  start-up and kernel selection) when there are several: samples over their `seconds`. Epoch
  rows (train-vqvae, train-encoder) count their steps x batch size, at most the training set;
  LoRA rows count their own `samples`.
- peak GPU memory: torch.cuda.max_memory_allocated() of each stage's process (every rank under
  torchrun), written as the process exits by a sitecustomize hook that this script puts on
  PYTHONPATH for the run only; the stages' code is untouched. Host peak RSS: Snakemake's
  benchmark tables.
- projection: the paper's steps x (its batch / measured samples/s), i.e. steps x the measured
  time per step when the batch is the paper's (CUDA runs use the paper overlays' batch sizes,
  micro-batches, gradient checkpointing and GAP's text fine-tuning). LoRA stages are measured on
  the stand-in (LLaMA-2-7B's width, 2 layers, SmolLM2's vocabulary), so their projection is
  also scaled by the paper LLM's forward FLOPs per token over the stand-in's: an estimate.

Network jobs run one at a time (`--resources gpu=N`), so that no two share the device. With two
visible GPUs the run sets compute.gpus 2: LoRA runs under torchrun as two-process DDP.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from scale_llm import OVERLAY, overlay_paths, write_fixtures  # noqa: E402
from workflow_copy import copy_workflow  # noqa: E402

MODELS = "results/models/synthetic/xsub"
# measured stage -> (its folder below MODELS, the actionlm command and --method that run it)
STAGES = {
    "train_vqvae": ("vqvae", "train-vqvae", None),
    "train_encoder ce": ("encoders/ce", "train-encoder", "ce"),
    "train_encoder gap": ("encoders/gap", "train-encoder", "gap"),
    "train_encoder sugar": ("encoders/sugar", "train-encoder", "sugar"),
    "lora llm_ar": ("llm_ar", "lora", "llm_ar"),
    "lora sugar": ("sugar", "lora", "sugar"),
}
# X-Sub training sets after CTR-GCN's preprocessing (github.com/Uason-Chen/CTR-GCN: samples of
# data/ntu*/statistics/performer.txt whose subject is in seq_transformation.py's train_ids).
TRAIN_SETS = {"NTU60 X-Sub": 40_091, "NTU120 X-Sub": 63_026}
# The papers' LLMs (layers, hidden, MLP width, vocabulary): LLaMA-13B (Touvron et al. 2023,
# Table 2: 40 layers, dimension 5120; its released config: intermediate 13824, vocab 32000) for
# LLM-AR; LLaMA-2-7B (Touvron et al. 2023b; config: 32, 4096, 11008, 32000) for SUGAR.
LLM_SHAPES = {"llama-13b": (40, 5120, 13824, 32000), "llama-2-7b": (32, 4096, 11008, 32000)}
PEAK_HOOK = '''"""gpu_check: this process's peak CUDA memory, recorded at exit (one run only)."""
import atexit, json, os, sys


def _record():
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return
    record = {"argv": sys.argv[1:], "rank": int(os.environ.get("RANK", 0)),
              "peak_bytes": torch.cuda.max_memory_allocated()}
    path = os.path.join(os.environ["GPU_CHECK_PEAKS"], f"{os.getpid()}.json")
    with open(path, "w") as f:
        json.dump(record, f)


atexit.register(_record)
'''


def load_paper(name: str) -> dict:
    return yaml.safe_load((ROOT / f"configs/paper/{name}.yaml").read_text())


def encoder_train(paper: dict, method: str) -> dict:
    """A paper overlay's encoder train keys for ``method``: the common ones, its block on top."""
    return {**paper["encoders"].get("train", {}),
            **paper["encoders"].get(method, {}).get("train", {})}


def lora_train(paper: dict, method: str) -> dict:
    return {**paper["lora"]["common"], **paper["lora"].get(method, {})}


def cuda_overlay(gpus: int, cores: int) -> dict:
    """The measurement settings on CUDA: more synthetic data (all 19 actions, 20 subjects, 2
    takes: ~1,500 training samples), the paper overlays' batch sizes, micro-batches, gradient
    checkpointing, GAP's text fine-tuning and SUGAR's described answers, a few steps each."""
    gap, llm_ar, sugar = load_paper("gap"), load_paper("llm_ar"), load_paper("sugar")
    sugar_lora = lora_train(sugar, "sugar")
    text_tuning = {k: v for k, v in gap["encoders"]["gap"]["train"].items()
                   if k.startswith("text_")}
    return {
        "datasets": {"synthetic": {"actions": None,
                                   "synthetic": {"subjects": 20, "replications": 2}}},
        "prepare": {"threads": cores},
        "compute": {"device": "cuda", "precision": "bf16", "gpus": gpus, "threads": 8},
        "llm": {"dtype": "bfloat16"},
        "vqvae": {"train": {"epochs": 0, "max_steps": 40,
                            "batch_size": llm_ar["vqvae"]["train"]["batch_size"]}},
        "encoders": {"train": {"epochs": 3},
                     "ce": {"train": {"batch_size": encoder_train(gap, "ce")["batch_size"]}},
                     "gap": {"train": {"batch_size": encoder_train(gap, "gap")["batch_size"],
                                       **text_tuning}},
                     "sugar": {"train": {
                         "batch_size": encoder_train(sugar, "sugar")["batch_size"]}}},
        "lora": {"micro_batch_size": llm_ar["lora"]["micro_batch_size"],
                 "common": {"epochs": 0, "max_steps": 16, "gradient_checkpointing":
                            llm_ar["lora"]["common"]["gradient_checkpointing"]},
                 "llm_ar": {"batch_size": lora_train(llm_ar, "llm_ar")["batch_size"]},
                 "sugar": {"batch_size": sugar_lora["batch_size"],
                           "descriptions": sugar_lora["descriptions"],
                           "description_words": sugar_lora["description_words"]}},
        "llm_eval": {"batch_size": 64},
    }


def cpu_overlay(threads: int) -> dict:
    """On the CPU: the scale smoke's own toy sizes, float32; 3 VQ-VAE epochs (a few seconds)
    so that one stage has curve rows after its first, as every stage has on CUDA."""
    return {"compute": {"device": "cpu", "precision": "fp32", "gpus": 1, "threads": threads},
            "vqvae": {"train": {"epochs": 3}}}


def run_workflow(work: Path, overlay: dict, cores: int, gpus: int) -> float:
    """`snakemake all` on config.yaml + the scale smoke + ``overlay`` in ``work``, network
    jobs one at a time, with the peak-memory hook; returns the wall seconds."""
    (work / "gpu_check.yaml").write_text(yaml.safe_dump(overlay))
    hook = work / "gpu_check_hook"
    (hook / "peaks").mkdir(parents=True)
    (hook / "sitecustomize.py").write_text(PEAK_HOOK)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")])),
           "GPU_CHECK_PEAKS": str(hook / "peaks")}
    command = [sys.executable, "-m", "snakemake", "all", "--cores", str(cores),
               "--resources", f"gpu={gpus}", "--configfile", "config.yaml",
               str(OVERLAY.relative_to(ROOT)), "gpu_check.yaml"]
    start = time.perf_counter()
    with open(work / "gpu_check.snakemake.log", "w") as log:
        done = subprocess.run(command, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode:
        tail = (work / "gpu_check.snakemake.log").read_text()[-4000:]
        sys.exit(f"{tail}\nsnakemake failed (exit {done.returncode}); everything is in {work}")
    return time.perf_counter() - start


def training_samples(work: Path) -> int:
    split = pd.read_parquet(work / "results/data/synthetic/splits/xsub.parquet")
    return int((split["split"] == "train").sum())


def throughput(work: Path, folder: str, n_train: int) -> tuple[float, bool]:
    """(samples/s, whether the first curve row was left out) of a stage's curves.parquet."""
    curves = pd.read_parquet(work / MODELS / folder / "curves.parquet")
    if "samples" in curves:  # LoRA: samples per row
        samples = curves["samples"].astype(float)
    else:  # epoch rows: cumulative steps; full batches (encoders) or the whole set (VQ-VAE)
        config = json.loads((work / MODELS / folder / "config.json").read_text())["train"]
        steps = curves["step"].diff().fillna(curves["step"])
        samples = (steps * config["batch_size"]).clip(upper=n_train * config.get("repeat", 1))
    warm = len(curves) > 1
    rows = slice(1, None) if warm else slice(None)
    return samples[rows].sum() / curves["seconds"][rows].sum(), warm


def peak_memory(work: Path) -> dict[str, float]:
    """Stage -> peak GPU memory in GiB over its processes (from the hook's records)."""
    peaks: dict[str, float] = {}
    for path in (work / "gpu_check_hook/peaks").glob("*.json"):
        record = json.loads(path.read_text())
        for stage, (_, command, method) in STAGES.items():
            argv = record["argv"]
            if command in argv and (method is None or method in argv):
                peaks[stage] = max(peaks.get(stage, 0.0), record["peak_bytes"] / 2**30)
    return peaks


def host_rss(work: Path) -> dict[str, float]:
    """Stage -> peak host RSS in GiB (Snakemake's benchmark table of its job)."""
    rss = {}
    for stage, (_, _, method) in STAGES.items():
        folder = work / "results/benchmarks" / stage.split()[0] / "synthetic"
        path = folder / f"xsub/{method}.tsv" if method else folder / "xsub.tsv"
        table = pd.read_csv(path, sep="\t")
        rss[stage] = float(pd.to_numeric(table["max_rss"], errors="coerce").max()) / 1024
    return rss


def llm_flops_per_token(layers: int, hidden: int, intermediate: int, vocab: int) -> float:
    """Forward FLOPs per token of a LLaMA decoder: 2 x its weights' multiply-adds (attention
    projections 4h^2 and the SwiGLU MLP 3hi per layer, the output head hv); attention scores,
    small for prompts of ~100-200 tokens, are left out (Kaplan et al. 2020's 2N rule)."""
    return 2 * (layers * (4 * hidden**2 + 3 * hidden * intermediate) + hidden * vocab)


def stand_in_shape(work: Path) -> tuple[int, int, int, int]:
    config = json.loads((overlay_paths(work)[0] / "config.json").read_text())
    return (config["num_hidden_layers"], config["hidden_size"], config["intermediate_size"],
            config["vocab_size"])


def paper_runs() -> list[dict]:
    """Each paper configuration's training stages at full scale: the stage measured here, its
    steps and batch (from configs/paper/*.yaml; epochs x full batches of the X-Sub training
    set where the paper counts epochs) and, for LoRA, the paper's LLM."""
    gap, llm_ar, sugar = load_paper("gap"), load_paper("llm_ar"), load_paper("sugar")
    runs = [encoder_run("GAP", gap, method, dataset)
            for method in ("ce", "gap") for dataset in TRAIN_SETS]
    vqvae, lora = llm_ar["vqvae"]["train"], lora_train(llm_ar, "llm_ar")
    runs.append({"paper": "LLM-AR", "stage": "train_vqvae", "data": "any (iterations)",
                 "steps": vqvae["max_steps"], "batch": vqvae["batch_size"], "llm": None})
    runs.append({"paper": "LLM-AR", "stage": "lora llm_ar", "data": "any (iterations)",
                 "steps": lora["max_steps"], "batch": lora["batch_size"],
                 "llm": llm_ar["llm"]["name"]})
    runs += [encoder_run("SUGAR", sugar, "sugar", dataset) for dataset in TRAIN_SETS]
    lora = lora_train(sugar, "sugar")
    runs += [{"paper": "SUGAR", "stage": "lora sugar", "data": dataset,
              "steps": lora["epochs"] * (n // lora["batch_size"]), "batch": lora["batch_size"],
              "llm": sugar["llm"]["name"]} for dataset, n in TRAIN_SETS.items()]
    return runs


def encoder_run(paper: str, config: dict, method: str, dataset: str) -> dict:
    train = encoder_train(config, method)
    return {"paper": paper, "stage": f"train_encoder {method}", "data": dataset,
            "steps": train["epochs"] * (TRAIN_SETS[dataset] // train["batch_size"]),
            "batch": train["batch_size"], "llm": None}


def report(work: Path, device: str, wall: float) -> None:
    n_train = training_samples(work)
    peaks, rss = peak_memory(work), host_rss(work)
    cpu = device == "cpu"
    if cpu:
        print("CPU FIGURES (--device cpu: the smoke's toy data, batches and frozen text encoder): "
              "a sanity check of this script, not GPU numbers; the projections below are CPU "
              "projections.")
    print(f"`snakemake all`: {wall:.0f} s on {device}; {n_train} training samples\n")
    speed = {}
    print(f"{'stage':<21}{'samples/s':>11}{'peak GPU GiB':>14}{'host RSS GiB':>14}")
    for stage, (folder, _, _) in STAGES.items():
        speed[stage], warm = throughput(work, folder, n_train)
        gpu = "-" if cpu else f"{peaks.get(stage, float('nan')):.2f}"
        note = "" if warm else "  (one curve row: includes start-up)"
        print(f"{stage:<21}{speed[stage]:>11.1f}{gpu:>14}{rss[stage]:>14.2f}{note}")
    stand_in = llm_flops_per_token(*stand_in_shape(work))
    print(f"\nProjected wall time at full scale ({'CPU' if cpu else device}; "
          "steps x batch / measured samples/s; LoRA x the paper LLM's FLOPs/token over the "
          f"stand-in's, {stand_in / 1e9:.2f} GFLOP):")
    print(f"{'paper':<8}{'stage':<21}{'data':<18}{'steps':>9}{'batch':>7}{'x FLOPs':>9}"
          f"{'hours':>10}")
    for run in paper_runs():
        scale = llm_flops_per_token(*LLM_SHAPES[run["llm"]]) / stand_in if run["llm"] else 1.0
        hours = run["steps"] * run["batch"] / speed[run["stage"]] * scale / 3600
        print(f"{run['paper']:<8}{run['stage']:<21}{run['data']:<18}{run['steps']:>9}"
              f"{run['batch']:>7}{scale:>9.1f}{hours:>10.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--workdir", type=Path, help="a folder that does not exist yet "
                        "(default: a new one under the system's temp folder); kept afterwards")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="gpu-check-")) / "run"
    work.mkdir(parents=True)
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            sys.exit("no CUDA device: run with --device cpu for the CPU sanity check")
        gpus, cores, layers = min(torch.cuda.device_count(), 2), os.cpu_count() or 1, 2
        overlay = cuda_overlay(gpus, cores)
        device = f"{gpus} x {torch.cuda.get_device_name(0)}"
    else:
        gpus, cores, layers = 1, os.cpu_count() or 1, 1
        overlay, device = cpu_overlay(cores), "cpu"
    copy_workflow(work)
    write_fixtures(work, layers)
    wall = run_workflow(work, overlay, cores, gpus)
    report(work, device, wall)
    print(f"\nworkflow folder: {work}")


if __name__ == "__main__":
    main()
