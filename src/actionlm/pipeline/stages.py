"""What each stage's job reads, which flags it gets, and which run owns it.

For every stage (one Snakemake rule, one ``actionlm`` command), given a job's wildcards:

- ``inputs``: every file the command reads, named as its command-line option
  (``skeletons`` -> ``--skeletons``), so a rule passes them all with ``file_flags``;
- ``flags``: exactly the config values its output depends on (the rule's params; the
  canonical form of actionlm.pipeline.flags); what changes only speed or memory (threads,
  devices, batch sizes of inference, request plumbing) is a resource (``resources``);
- ``owner``: the run whose output an upstream stage's result is. A variant's stage whose
  signature (its flags and those of every stage before it) equals the main run's (or a
  stream's) resolves to that run's output, so an ablation trains only what its overlay
  changes. A cross run takes its models from its source dataset's main run.

Ensembles fuse the evaluations of *members*: ``method`` (the main run's) or
``method/modality`` (that stream's), with weights (default: GAP's per stream) and scores
softmax-normalised first when the members are different methods (``normalize: auto``).
"""

from __future__ import annotations

from actionlm.data.skeleton_layouts import STREAM_WEIGHTS
from actionlm.data.zero_shot import VALIDATION, has_seen_test, is_zero_shot
from actionlm.errors import ActionlmError
from actionlm.pipeline import paths
from actionlm.pipeline.flags import cli_flags
from actionlm.pipeline.runs import MAIN, Run, deep_merge, make_runs, run_settings, stream_name

CLASSIFIERS = ("ce", "gap")  # encoders evaluated by their own classifier head
TEXT = "_text"  # evaluate's {method} of a text probe on a recognizer's inputs: llm_ar_text
TEXT_SIMILARITY = "_textsim"  # evaluate's {method} of zero-shot by text similarity: gap_textsim
# keys of encoders.network / encoders.train that only one method reads (others never see them)
TEXT_TUNING_KEYS = {"text_tuning", "text_lr", "text_optimizer"}
ENCODER_METHOD_KEYS = {
    "gap": {"parts", "gap_weight", "global_text", *TEXT_TUNING_KEYS},
    "sugar": {"positives", "sugar_kinds", "temperature", *TEXT_TUNING_KEYS},
}
MODEL_STAGES = ("train_vqvae", "train_encoder", "lora")  # a cross run borrows these


def encoder_of(method: str) -> str:
    """The skeleton encoder a method's chain starts from (SUGAR's LLM reads SUGAR features)."""
    return method if method in CLASSIFIERS else "sugar"


def modalities(cfg: dict, method: str) -> list[str]:
    """The streams `all` runs ``method`` on: LLM-AR's vqvae.modalities, an encoder's (and its
    recognizer's) encoders.{encoder}.modalities; null: encoders.modalities."""
    own = (cfg["vqvae"] if method == "llm_ar" else cfg["encoders"][encoder_of(method)])
    return own.get("modalities") or cfg["encoders"]["modalities"]


def member_parts(member: str) -> tuple[str, str | None]:
    """An ensemble member ``method[/modality]`` as (method, modality or None: the main run)."""
    method, _, modality = member.partition("/")
    return method, modality or None


def main_modality(cfg: dict, method: str) -> str:
    """The stream of the main run's ``method`` (its network's ``modality``)."""
    if method == "llm_ar":
        return cfg["vqvae"]["train"]["modality"]
    return encoder_options(cfg, encoder_of(method))["modality"]


def encoder_options(cfg: dict, method: str) -> dict:
    """train-encoder's options for ``method``: encoders.network + encoders.train with the
    method's own block (encoders.{method}) on top, without the other methods' keys; a
    fine-tuned text encoder is the one knowledge.text_encoder names."""
    encoders = cfg["encoders"]
    own = encoders[method]
    foreign = set().union(*ENCODER_METHOD_KEYS.values()) - ENCODER_METHOD_KEYS.get(method, set())
    options = {k: v for section in ("network", "train")
               for k, v in {**encoders[section], **own.get(section, {})}.items()
               if k not in foreign}
    if options.get("text_tuning") == "finetune":
        text = cfg["knowledge"]["text_encoder"]
        options.update(text_backend=text["backend"], text_model=text["model"],
                       text_pretrained=text["pretrained"])
    return options


def lora_options(cfg: dict, method: str) -> dict:
    """lora.common with the method's own keys on top; descriptions are an input, not a flag."""
    options = {**cfg["lora"]["common"], **cfg["lora"][method]}
    options.pop("descriptions", None)
    return options


def test_interval(cfg: dict, method: str) -> float:
    """The centred crop share of ``method``'s encoder's inference clips (test_interval holds
    one)."""
    return encoder_options(cfg, method)["test_interval"][0]


def evaluate_options(cfg: dict, method: str, zero_shot: bool, gzsl: bool = False) -> dict:
    """evaluate's options for ``method`` (``gzsl``: the protocol has a test_seen side)."""
    if method in CLASSIFIERS:
        return {"method": method, "test_interval": test_interval(cfg, method)}
    if method.endswith(TEXT_SIMILARITY):
        return {"method": "text_similarity", "class_texts": cfg["zero_shot"]["class_texts"],
                "test_interval": test_interval(cfg, method.removesuffix(TEXT_SIMILARITY))}
    if method.endswith(TEXT):
        return {"method": "text_probe", "zero_shot": zero_shot}
    ev = cfg["llm_eval"]
    return {"method": method, "zero_shot": zero_shot, "normalize": ev["normalize"],
            "generate_tokens": ev["generate_tokens"],
            "gzsl": gzsl and cfg["zero_shot"]["gzsl"]}


def signature(stage: str, cfg: dict, method: str | None) -> tuple:
    """Everything a run-scoped stage's output depends on under ``cfg``: its own options and
    its upstream stages' signatures."""
    if stage == "train_vqvae":
        return (cfg["vqvae"]["train"],)
    if stage == "tokenize":
        return signature("train_vqvae", cfg, method)
    if stage == "train_encoder":
        return (encoder_options(cfg, encoder_of(method)),)
    if stage == "extract_features":
        return signature("train_encoder", cfg, method), test_interval(cfg, encoder_of(method))
    if stage == "lora":
        upstream = "tokenize" if method == "llm_ar" else "extract_features"
        return (signature(upstream, cfg, method), lora_options(cfg, method),
                cfg["lora"][method].get("descriptions"))
    if stage == "evaluate":
        base = method.removesuffix(TEXT_SIMILARITY).removesuffix(TEXT)
        upstream = ("train_encoder" if method in CLASSIFIERS or method.endswith(TEXT_SIMILARITY)
                    else
                    "lora" if base == method else
                    "tokenize" if base == "llm_ar" else "extract_features")
        return signature(upstream, cfg, base), evaluate_options(cfg, method, False)
    raise ValueError(f"{stage} is not a run-scoped stage")


class Pipeline:
    """The workflow's logic for one validated config (actionlm.pipeline.checks)."""

    def __init__(self, config: dict):
        self.config = config
        self.runs = make_runs(config)
        self._settings: dict[tuple[str, str], dict] = {}

    # ------------------------------------------------------------------ runs

    def run(self, name: str) -> Run:
        if name not in self.runs:
            raise ActionlmError(f"results/{name}: no such run in the config (ablations.tables "
                                "or cross_dataset)")
        return self.runs[name]

    def settings(self, run: str, dataset: str) -> dict:
        """The config a job of run ``run`` on ``dataset`` sees (actionlm.pipeline.runs)."""
        if (run, dataset) not in self._settings:
            self._settings[run, dataset] = run_settings(self.config, self.run(run), dataset)
        return self._settings[run, dataset]

    def job_settings(self, wc: dict) -> dict:
        return self.settings(wc["run"], wc["dataset"])

    def owner(self, run: Run, stage: str, method: str | None, dataset: str) -> str:
        """The run whose output of ``stage`` on ``dataset`` ``run`` uses: the first of the main
        run and the streams (a stream: the main run only) with the same signature, else its own."""
        if run.source is not None:
            return MAIN if stage in MODEL_STAGES else run.name
        if run.name == MAIN:
            return MAIN
        mine = signature(stage, self.settings(run.name, dataset), method)
        shared = [MAIN] + ([] if run.name.startswith("streams/") else
                           [name for name in self.runs if name.startswith("streams/")])
        return next((name for name in shared
                     if signature(stage, self.settings(name, dataset), method) == mine), run.name)

    def stream_run(self, method: str, modality: str | None, dataset: str) -> str:
        """The run that evaluates ``method`` on ``modality`` (None: the main run's stream)."""
        if modality is None:
            return MAIN
        return self.owner(self.run(stream_name(modality)), "evaluate", method, dataset)

    def upstream(self, stage: str, name: str, wc: dict, method: str | None = None) -> str:
        """Output ``name`` of ``stage`` as the job ``wc`` of a later stage reads it."""
        run = self.run(wc["run"])
        dataset, protocol = wc["dataset"], wc["protocol"]
        if run.source is not None and stage in MODEL_STAGES:
            dataset, protocol = run.source
        return paths.output(stage, name, run=self.owner(run, stage, method, dataset),
                            dataset=dataset,
                            protocol=protocol, method=method or "")

    # ------------------------------------------------------------------ shared pieces

    def dataset(self, name: str) -> dict:
        """The dataset's entry over dataset_defaults."""
        return deep_merge(self.config["dataset_defaults"], self.config["datasets"][name])

    def data(self, dataset: str, *names: str) -> dict[str, str]:
        return {n: paths.output("prepare", n, dataset=dataset) for n in names}

    def split(self, wc: dict) -> dict[str, str]:
        return {**self.data(wc["dataset"], "skeletons"),
                "split": paths.SPLIT.format(dataset=wc["dataset"], protocol=wc["protocol"])}

    def llm(self) -> str:
        return paths.output("prepare_llm", "llm", llm=self.config["llm"]["name"])

    def zero_shot(self, wc: dict) -> bool:
        return is_zero_shot(wc["protocol"]) or self.run(wc["run"]).source is not None

    # ------------------------------------------------------------------ inputs

    def inputs(self, stage: str, wc: dict) -> dict[str, str | list[str]]:
        if "run" in wc:
            self.run(wc["run"])
        return getattr(self, f"_{stage}_inputs")(wc)

    def _prepare_inputs(self, wc: dict) -> dict:
        ds = self.dataset(wc["dataset"])
        if ds["format"] == "synthetic":
            return {}
        if not ds["root"]:
            raise ActionlmError(f"config: datasets.{wc['dataset']}.root is not set")
        return {"src": ds["root"]}

    def _prepare_llm_inputs(self, wc: dict) -> dict:
        return {}

    def _split_inputs(self, wc: dict) -> dict:
        return self.data(wc["dataset"], "skeletons", "classes", "embedded_splits")

    def _describe_inputs(self, wc: dict) -> dict:
        kn = self.config["knowledge"]
        inputs = self.data(wc["dataset"], "classes")
        if kn["import_gap"]:
            return {**inputs, "import_gap": kn["import_gap"]}
        inputs["prompts"] = kn["prompts"]
        if kn["provider"]["serve_local"]:
            inputs["serve_model_dir"] = self.llm()
        return inputs

    def _describe_visual_inputs(self, wc: dict) -> dict:
        frames = self.config["knowledge"]["visual"]["frames_dir"]
        return {**self.data(wc["dataset"], "classes"),
                **({"frames_dir": frames} if frames else self.data(wc["dataset"], "skeletons"))}

    def _encode_text_inputs(self, wc: dict) -> dict:
        tables = [paths.output("describe", "descriptions", dataset=wc["dataset"])]
        if self.config["knowledge"]["visual"]["enabled"]:
            tables.append(paths.output("describe_visual", "table", dataset=wc["dataset"]))
        return {"descriptions": tables}

    def ensemble_spec(self, wc: dict) -> dict:
        """The fusion a job of the ensemble stage makes: an ablation variant's ``ensemble``, or
        the config's ``ensembles.{name}``."""
        spec = self.run(wc["run"]).ensemble or self.config["ensembles"].get(wc["ensemble"])
        if spec is None:
            raise ActionlmError(f"ensembles.{wc['ensemble']}: no such ensemble in the config")
        return spec

    def _ensemble_inputs(self, wc: dict) -> dict:
        predictions = []
        for member in self.ensemble_spec(wc)["members"]:
            method, modality = member_parts(member)
            predictions.append(paths.output(
                "evaluate", "predictions", run=self.stream_run(method, modality, wc["dataset"]),
                dataset=wc["dataset"], protocol=wc["protocol"], method=method))
        return {"predictions": predictions}

    def _train_vqvae_inputs(self, wc: dict) -> dict:
        return {**self.split(wc), "llm": self.llm()}

    def _tokenize_inputs(self, wc: dict) -> dict:
        return {**self.split(wc), "vqvae": self.upstream("train_vqvae", "model", wc)}

    def _train_encoder_inputs(self, wc: dict) -> dict:
        inputs = {**self.split(wc), **self.data(wc["dataset"], "classes")}
        if wc["method"] != "ce":
            inputs["texts"] = paths.output("encode_text", "embeddings", dataset=wc["dataset"])
        return inputs

    def _extract_features_inputs(self, wc: dict) -> dict:
        return {**self.split(wc),
                "model": self.upstream("train_encoder", "best", wc, wc["method"])}

    def _lora_inputs(self, wc: dict) -> dict:
        method = wc["method"]
        inputs = {"llm": self.llm(), **self.data(wc["dataset"], "classes")}
        if method == "llm_ar":
            return {**inputs, "sentences": self.upstream("tokenize", "sentences", wc),
                    "vqvae": self.upstream("train_vqvae", "model", wc)}
        inputs["features"] = self.upstream("extract_features", "features", wc, "sugar")
        if self.job_settings(wc)["lora"]["sugar"]["descriptions"]:
            inputs["descriptions"] = paths.output("describe", "descriptions",
                                                  dataset=wc["dataset"])
        return inputs

    def _evaluate_inputs(self, wc: dict) -> dict:
        """An encoder and the test clips (ce, gap); a recognizer, its LLM and inputs table
        (llm_ar, sugar); or the inputs table and the text embeddings (a text probe)."""
        method = wc["method"]
        classes = self.data(wc["dataset"], "classes")
        if method in CLASSIFIERS:
            return {**self.split(wc), **classes,
                    "model": self.upstream("train_encoder", "best", wc, method)}
        if method.endswith(TEXT_SIMILARITY):
            return self._text_similarity_inputs(wc)
        base = method.removesuffix(TEXT)
        table = (self.upstream("tokenize", "sentences", wc) if base == "llm_ar" else
                 self.upstream("extract_features", "features", wc, "sugar"))
        if base != method:
            return {**classes, "inputs": table,
                    "texts": paths.output("encode_text", "embeddings", dataset=wc["dataset"])}
        return {**classes, "inputs": table, "llm": self.llm(),
                "model": self.upstream("lora", "spec", wc, method),
                "adapter": self.upstream("lora", "adapter", wc, method)}

    def _text_similarity_inputs(self, wc: dict) -> dict:
        """The encoder, the test clips and the class texts; on a protocol with a test_seen
        side, its validation protocol's evaluation (GZSL calibration) when zero_shot.calibrate
        asks for it."""
        method, protocol = wc["method"], wc["protocol"]
        inputs = {**self.split(wc), **self.data(wc["dataset"], "classes"),
                  "model": self.upstream("train_encoder", "best", wc,
                                         method.removesuffix(TEXT_SIMILARITY)),
                  "texts": paths.output("encode_text", "embeddings", dataset=wc["dataset"])}
        if (self.job_settings(wc)["zero_shot"]["calibrate"] and has_seen_test(protocol)
                and not protocol.endswith(VALIDATION)):
            inputs["calibrate_on"] = paths.output("evaluate", "metrics", **{
                **wc, "protocol": protocol + VALIDATION})
        return inputs

    # ------------------------------------------------------------------ flags (params)

    def flags(self, stage: str, wc: dict) -> str:
        return cli_flags(getattr(self, f"_{stage}_options")(wc))

    def _prepare_options(self, wc: dict) -> dict:
        """What prepare's tables depend on (not protocols or val_fraction: split reads those)."""
        ds = self.dataset(wc["dataset"])
        options = {"format": ds["format"], "seed": ds["seed"], "dataset": ds["classes"],
                   "actions": ",".join(map(str, ds["actions"])) if ds["actions"] else None,
                   "trust_pickle": ds["trust_pickle"], "strict": self.config["prepare"]["strict"]}
        if ds["format"] == "synthetic":
            options.update(ds["synthetic"])
        return options

    def _split_options(self, wc: dict) -> dict:
        ds = self.dataset(wc["dataset"])
        return {"val_fraction": ds["val_fraction"], "seed": ds["seed"]}

    def _prepare_llm_options(self, wc: dict) -> dict:
        return {"source": self.config["llm"]["source"], "dtype": self.config["llm"]["dtype"]}

    def _describe_options(self, wc: dict) -> dict:
        """Where the descriptions come from: GAP's files, the served local model, or an endpoint
        and model name (request plumbing is a resource)."""
        kn, provider = self.config["knowledge"], self.config["knowledge"]["provider"]
        if kn["import_gap"]:
            return {"gap_match": kn["import_gap_match"],
                    "allow_missing": kn["import_gap_allow_missing"]}
        if provider["serve_local"]:
            return {"allow_incomplete": kn["allow_incomplete"]}
        return {"allow_incomplete": kn["allow_incomplete"], **self.endpoint(),
                "model": provider["model"]}

    def endpoint(self) -> dict:
        provider = self.config["knowledge"]["provider"]
        return {"api_key_env": provider["api_key_env"], "base_url": provider["base_url"]}

    def _describe_visual_options(self, wc: dict) -> dict:
        visual = self.config["knowledge"]["visual"]
        return {**self.endpoint(),
                **{k: v for k, v in visual.items() if k not in ("enabled", "frames_dir")}}

    def _encode_text_options(self, wc: dict) -> dict:
        return dict(self.config["knowledge"]["text_encoder"])

    def _train_vqvae_options(self, wc: dict) -> dict:
        return dict(self.job_settings(wc)["vqvae"]["train"])

    def _tokenize_options(self, wc: dict) -> dict:
        return {}

    def _train_encoder_options(self, wc: dict) -> dict:
        return {"method": wc["method"],
                **encoder_options(self.job_settings(wc), wc["method"])}

    def _extract_features_options(self, wc: dict) -> dict:
        return {"test_interval": test_interval(self.job_settings(wc), wc["method"])}

    def _lora_options(self, wc: dict) -> dict:
        return {"method": wc["method"], **lora_options(self.job_settings(wc), wc["method"])}

    def _evaluate_options(self, wc: dict) -> dict:
        return evaluate_options(self.job_settings(wc), wc["method"], self.zero_shot(wc),
                                has_seen_test(wc["protocol"]))

    def _ensemble_options(self, wc: dict) -> dict:
        """Members' names, weights (default: each stream's STREAM_WEIGHTS) and normalisation
        (``auto``: softmax when the members are different methods, raw scores otherwise)."""
        spec, cfg = self.ensemble_spec(wc), self.settings(MAIN, wc["dataset"])
        parts = [member_parts(m) for m in spec["members"]]
        weights = spec.get("weights") or [STREAM_WEIGHTS[modality or main_modality(cfg, method)]
                                          for method, modality in parts]
        normalize = spec.get("normalize", "auto")
        if normalize == "auto":
            normalize = "softmax" if len({method for method, _ in parts}) > 1 else "none"
        return {"names": list(spec["members"]), "weights": [float(w) for w in weights],
                "normalize": normalize}

    # ------------------------------------------------------------------ resources

    def inference_batch(self, wc: dict) -> int:
        """Samples per pass of an evaluation (memory and speed only: a resource)."""
        if wc["method"] in CLASSIFIERS or wc["method"].endswith((TEXT, TEXT_SIMILARITY)):
            return self.config["encoders"]["inference_batch_size"]
        return self.config["llm_eval"]["batch_size"]

    def network_resources(self, stage: str) -> dict:
        """Resources of a job that runs a network: memory (MB) and wall time (minutes) from
        compute.limits, the ``device`` and autocast ``precision`` its command gets, and
        compute.gpus GPUs, which the SLURM executor turns into ``sbatch --gpus=[gpu_model:]n``
        in compute.gpu_partition. Resources, not params, so that moving a run onto GPUs (or
        bf16) reruns nothing."""
        compute = self.config["compute"]
        resources = {**compute["limits"][stage], "device": compute["device"],
                     "precision": compute["precision"]}
        if compute["gpus"]:
            resources["gpu"] = compute["gpus"]
            if compute["gpu_model"]:
                resources["gpu_model"] = compute["gpu_model"]
            if compute["gpu_partition"]:
                resources["slurm_partition"] = compute["gpu_partition"]
        return resources

    def request_resources(self) -> dict:
        """Request plumbing of the model-calling stages (the answers do not depend on it, and
        the cache makes a rerun free anyway)."""
        kn = self.config["knowledge"]
        return {"llm_cache": kn["cache_dir"], "llm_concurrency": kn["concurrency"],
                "llm_retries": kn["max_retries"], "llm_timeout_s": kn["timeout_s"]}

    def launcher(self) -> str:
        """How a multi-GPU job starts ``actionlm``: one process per GPU under torchrun (DDP)
        when compute.gpus > 1, else plainly."""
        gpus = self.config["compute"]["gpus"]
        if gpus > 1:
            return f"torchrun --standalone --nproc-per-node {gpus} -m actionlm.cli"
        return "actionlm"
