"""The scale smoke's stand-ins (configs/paper/scale_smoke.yaml): a random LLaMA-architecture LLM
at LLaMA-2-7B's width, and GAP-format texts for the NTU60 classes, written where the overlay's
``llm.source`` and ``knowledge.import_gap`` point (paths relative to the workflow folder).

Used by tests/test_scale_smoke.py and benchmarks/gpu_check.py; by hand, before running the
overlay in a checkout:

    python tests/scale_llm.py .        # writes resources/scale-llm/ and resources/scale-gap/
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from actionlm.data.classes import ntu_class_table
from workflow_copy import write_gap_files

ROOT = Path(__file__).resolve().parents[1]
OVERLAY = ROOT / "configs/paper/scale_smoke.yaml"
# LLaMA-2-7B's shape (Touvron et al. 2023, Table 1: dimension 4096, 32 heads, 32 layers, context
# 4096; its config.json: intermediate_size 11008, rms_norm_eps 1e-5, untied output head); the
# stand-in keeps all of it but the depth. Its vocabulary is SmolLM2's (the borrowed tokenizer).
LLAMA2_7B = {"hidden_size": 4096, "intermediate_size": 11008, "num_attention_heads": 32,
             "num_key_value_heads": 32, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
             "tie_word_embeddings": False}


def overlay_paths(work: Path) -> tuple[Path, Path]:
    """(LLM folder, GAP text folder) that the overlay names, below the workflow folder ``work``."""
    overlay = yaml.safe_load(OVERLAY.read_text())
    return work / overlay["llm"]["source"], work / overlay["knowledge"]["import_gap"]


def write_fixtures(work: Path, layers: int = 1) -> None:
    """The overlay's LLM folder and GAP texts, below the workflow folder ``work``."""
    llm, gap = overlay_paths(work)
    write_scale_llm(llm, layers)
    write_gap_files(gap, ntu_class_table("ntu60").names)  # line k: A(k), as GAP's NTU files


def smollm2_tokenizer():
    """The tokenizer (with its chat template) of the bundled SmolLM2 GGUF: no download."""
    from transformers import AutoTokenizer

    from actionlm.data.prepare_llm import DEFAULT_SOURCE, resolve_source

    _, gguf = resolve_source(DEFAULT_SOURCE)
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


def write_scale_llm(folder: Path, layers: int = 1, seed: int = 0) -> Path:
    """A random LlamaForCausalLM of LLaMA-2-7B's width and ``layers`` layers with SmolLM2's
    tokenizer, saved (bfloat16 safetensors, as a hub LLaMA folder is) into ``folder``: what
    ``actionlm prepare-llm --source FOLDER`` links."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    tokenizer = smollm2_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), num_hidden_layers=layers,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, **LLAMA2_7B)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdir", type=Path, help="the folder snakemake runs the overlay in")
    parser.add_argument("--layers", type=int, default=1, help="decoder layers of the LLM")
    args = parser.parse_args()
    write_fixtures(args.workdir, args.layers)
    print("wrote", *overlay_paths(args.workdir))


if __name__ == "__main__":
    main()
