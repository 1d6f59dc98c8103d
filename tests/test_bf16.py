"""``--precision bf16`` on the CPU: the encoder, VQ-VAE and LoRA stages train under bfloat16
autocast (checked with a forward hook, so a silently inactive autocast fails), their float32
master weights are what they save, and a reloaded checkpoint predicts as the model in memory."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from actionlm.data.clips import load_sequences
from actionlm.data.prepare_llm import prepare_llm
from actionlm.data.split_files import SplitFiles
from actionlm.device import autocast, autocast_dtype, bf16_matrix_units, llm_precision
from actionlm.errors import ActionlmError
from actionlm.llm import lora
from actionlm.llm.recognizer import ADAPTER_FILE, load_frozen_llm, load_recognizer
from actionlm.llm.scoring import score_answers, tokenize_answers
from actionlm.models.encoder import load_encoder, predict_logits
from actionlm.models.vqvae import ActionVQVAE, VQVAEConfig, load_vqvae, save_vqvae
from actionlm.models.vqvae_losses import LossConfig
from actionlm.train.encoder import EncoderTraining
from actionlm.train.encoder import TrainConfig as EncoderTrainConfig
from actionlm.train.vqvae import TrainConfig as VQVAETrainConfig
from actionlm.train.vqvae import VQVAETraining
from test_lora import CLASSES, lora_args, write_classes, write_sentences

CPU = torch.device("cpu")

pytestmark = pytest.mark.usefixtures("torch_one_thread")


class DtypeProbe:
    """Records the dtype of a module's output at every forward call."""

    def __init__(self, module: torch.nn.Module):
        self.seen: set[torch.dtype] = set()
        module.register_forward_hook(
            lambda _module, _inputs, out: self.seen.add(out.dtype))


def latest_checkpoint_weights(folder: Path) -> dict[str, torch.Tensor]:
    latest = json.loads((folder / "checkpoints" / "latest.json").read_text())
    return load_file(folder / "checkpoints" / latest["weights"])


def assert_same_float32(saved: dict[str, torch.Tensor], memory: dict[str, torch.Tensor]) -> None:
    assert saved.keys() == memory.keys()
    for name, tensor in saved.items():
        assert torch.equal(tensor, memory[name].detach().cpu()), name
        if memory[name].is_floating_point():
            assert tensor.dtype == torch.float32, name


@pytest.mark.parametrize("amx", [True, False])
def test_the_llm_stages_run_auto_in_bf16_on_a_cpu_with_bf16_matrix_units_only(amx, monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert bf16_matrix_units(CPU) is amx
    assert llm_precision(CPU, "auto") == ("bf16" if amx else "auto")
    assert llm_precision(CPU, "fp32") == "fp32" and llm_precision(CPU, "bf16") == "bf16"
    assert autocast_dtype(CPU, "auto") is None  # the small networks: float32 on any CPU
    with pytest.raises(ActionlmError, match="--precision 'fp16'"):
        llm_precision(CPU, "fp16")


def test_precision_picks_the_autocast_dtype_and_refuses_unknown_names():
    assert autocast_dtype(CPU, "auto") is None and autocast_dtype(CPU, "fp32") is None
    assert autocast_dtype(CPU, "bf16") == torch.bfloat16
    with autocast(CPU, "bf16"):
        assert torch.ones(2, 2).mm(torch.ones(2, 2)).dtype == torch.bfloat16
    with pytest.raises(ActionlmError, match=r"--precision 'fp16': expected one of auto, bf16"):
        autocast_dtype(CPU, "fp16")


def test_encoder_trains_in_bf16_and_its_float32_checkpoint_predicts_the_same(
        small_ntu_data, tmp_path):
    training = EncoderTraining(
        SplitFiles.prepared(small_ntu_data, "xview"), small_ntu_data / "classes.parquet",
        tmp_path, {"method": "ce", "base_channels": 8, "window": 16},
        EncoderTrainConfig(epochs=1, batch_size=16, lr=0.05, warmup_epochs=0, seed=1),
        None, CPU, precision="bf16")
    probe = DtypeProbe(training.model.fc)
    [row] = training.run(checkpoint_every=0)
    assert math.isfinite(row["loss"]) and probe.seen == {torch.bfloat16}
    memory = training.model.state_dict()
    assert_same_float32(load_file(tmp_path / "last.safetensors"), memory)
    assert_same_float32(latest_checkpoint_weights(tmp_path), memory)
    store = load_sequences(SplitFiles.prepared(small_ntu_data, "xview"), ("test",))
    logits = [predict_logits(model, store, 16, (0.95,), CPU, precision="bf16")
              for model in (training.model, load_encoder(tmp_path / "last.safetensors"))]
    assert torch.allclose(*logits, rtol=2e-2, atol=2e-2)
    assert torch.equal(logits[0].argmax(1), logits[1].argmax(1))


def test_vqvae_trains_in_bf16_and_its_float32_weights_tokenize_the_same(
        small_ntu_data, fake_llm, tmp_path):
    files = SplitFiles.prepared(small_ntu_data, "xview")
    training = VQVAETraining(
        files, fake_llm, tmp_path,
        {"window": 32, "codes": 32, "channels": 32, "depth": 1, "curvature": 0.5},
        LossConfig(mmd_rows=32),
        VQVAETrainConfig(lr=1e-2, epochs=0, max_steps=3, batch_size=16, seed=3, reset_every=2),
        CPU, precision="bf16")
    probe = DtypeProbe(training.model.encoder[0])
    curves = training.run(checkpoint_every=0)
    assert curves[-1]["step"] == 3 and math.isfinite(curves[-1]["loss"])
    assert probe.seen == {torch.bfloat16}
    memory = training.model.state_dict()
    assert_same_float32(load_file(tmp_path / "vqvae.safetensors"), memory)
    assert_same_float32(latest_checkpoint_weights(tmp_path), memory)
    joints = training.data.joints[:24]
    with torch.no_grad(), autocast(CPU, "bf16"):
        codes = [model.eval().tokenize(joints)
                 for model in (training.model, load_vqvae(tmp_path / "vqvae.safetensors"))]
    assert (codes[0] == codes[1]).float().mean() > 0.95  # bf16 ties may flip a nearest code


@pytest.fixture(scope="module")
def smollm2_bf16(smollm2_dir, tmp_path_factory) -> Path:
    """``prepare-llm --dtype bfloat16`` of the converted SmolLM2 folder: a manifest pointing at
    it, so that every stage loads the LLM in bfloat16."""
    out = tmp_path_factory.mktemp("llm-bf16") / "smollm2-bf16"
    prepare_llm(str(smollm2_dir), out, "bfloat16")
    return out


def test_lora_on_a_bf16_llm_with_checkpointing_keeps_float32_adapters_that_reload(
        smollm2_bf16, tmp_path, monkeypatch):
    torch.manual_seed(0)
    vq = ActionVQVAE(VQVAEConfig(width=576, codes=16, channels=8, depth=0, curvature=0.1))
    save_vqvae(vq, tmp_path / "vq.safetensors")
    inputs = {"llm": smollm2_bf16, "vqvae": tmp_path / "vq.safetensors",
              "classes": write_classes(tmp_path / "classes.parquet"),
              "sentences": write_sentences(tmp_path / "s.parquet", tmp_path / "vq.safetensors")}
    probes, run = [], lora.LoraTraining.run

    def probed_run(self, *args):  # a LoRA matrix is float32: bf16 out only under autocast
        probes.append(DtypeProbe(next(m for n, m in self.recognizer.named_modules()
                                      if n.endswith("lora_A.default"))))
        return run(self, *args)

    monkeypatch.setattr(lora.LoraTraining, "run", probed_run)
    recognizer, curves = lora.train_lora(lora_args(
        inputs, tmp_path / "out", "--epochs", "0", "--max-steps", "2", "--batch-size", "2",
        "--micro-batch-size", "2", "--log-every", "1", "--gradient-checkpointing",
        "--precision", "bf16"))
    assert [c["step"] for c in curves] == [1, 2] and all(math.isfinite(c["loss"]) for c in curves)
    assert probes[0].seen == {torch.bfloat16}
    assert recognizer.model.get_input_embeddings().weight.dtype == torch.bfloat16
    assert recognizer.model.base_model.model.is_gradient_checkpointing
    trainable = [p for p in recognizer.parameters() if p.requires_grad]
    assert trainable and {p.dtype for p in trainable} == {torch.float32}

    memory = recognizer.adapter_state()
    assert_same_float32(load_file(tmp_path / "out" / ADAPTER_FILE), memory)
    assert_same_float32(latest_checkpoint_weights(tmp_path / "out"), memory)
    loaded = load_recognizer(tmp_path / "out", "cpu", compute_dtype=torch.bfloat16)
    answers = tokenize_answers(recognizer.tokenizer, CLASSES)
    sentences = pd.read_parquet(inputs["sentences"]).tokens.head(3).map(list).tolist()
    with torch.inference_mode(), autocast(CPU, "bf16"):
        scores = [score_answers(model.eval().model, *model.prompt_embeddings(sentences), answers)
                  for model in (recognizer, loaded)]
    assert torch.allclose(*scores, rtol=2e-2, atol=5e-2)


def test_a_float32_llm_under_bf16_holds_its_linear_weights_in_bf16_with_the_same_logits(
        smollm2_dir):
    """What autocast computes from float32 weights, the bf16-held weights compute exactly: the
    embedding table, norms and residual stream stay float32; the tied output head gets a bf16
    copy (the embedding table itself is untouched); the CPU attends eagerly."""
    from transformers import AutoModelForCausalLM

    from actionlm.data.prepare_llm import llm_model_dir

    folder = llm_model_dir(smollm2_dir)
    held = load_frozen_llm(folder, torch.float32, CPU, torch.bfloat16)
    plain = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32,
                                                 attn_implementation="eager")
    layer = held.model.layers[0]
    assert layer.self_attn.q_proj.weight.dtype == layer.mlp.down_proj.weight.dtype == torch.bfloat16
    assert held.get_input_embeddings().weight.dtype == torch.float32
    assert layer.input_layernorm.weight.dtype == torch.float32
    head = held.get_output_embeddings().weight
    assert head.dtype == torch.bfloat16 and not head.requires_grad
    assert torch.equal(head, plain.get_input_embeddings().weight.to(torch.bfloat16))
    assert held.config._attn_implementation == "eager"
    ids = torch.tensor([[1, 523, 2847, 314, 253, 1134, 28, 198, 42, 7]])
    with torch.inference_mode(), autocast(CPU, "bf16"):
        logits = [model(input_ids=ids).logits for model in (held, plain)]
    assert torch.equal(*logits)
    fp32 = load_frozen_llm(folder, torch.float32, CPU, None)
    assert fp32.model.layers[0].self_attn.q_proj.weight.dtype == torch.float32
    assert fp32.get_output_embeddings().weight is fp32.get_input_embeddings().weight
