"""The LoRA stage (actionlm lora) and the recognizer it writes: training lowers the loss, the LLM
stays frozen, resumption is exact, bridges behave as SUGAR describes them, bad input is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from safetensors.torch import load_file

from actionlm.cli import build_parser
from actionlm.cli_args import fields_from_args
from actionlm.data.features import write_features
from actionlm.errors import ActionlmError
from actionlm.io import with_metadata, write_parquet
from actionlm.knowledge.describe import DESCRIPTIONS_SCHEMA
from actionlm.llm import lora
from actionlm.llm.lora import TrainConfig, train_lora
from actionlm.llm.recognizer import ADAPTER_FILE, LoraSettings, load_recognizer
from actionlm.llm.tqp import BridgeConfig, build_bridge
from actionlm.models.vqvae import ActionVQVAE, VQVAEConfig, save_vqvae
from actionlm.train.tokenize import SENTENCE_SCHEMA

CLASSES = ["drink water", "pickup", "throw"]
CODES = 16


def write_classes(path: Path, names=CLASSES) -> Path:
    write_parquet(pa.table({"label": pa.array(range(len(names)), pa.int16()),
                            "class_name": names, "native_id": list(range(1, len(names) + 1))}),
                  path)
    return path


def write_sentences(path: Path, vqvae: Path, n: int = 24, length: int = 6, codes: int = CODES,
                    shift: int = 0) -> Path:
    """Class c's sentences use codes 5c..5c+4: the class is readable from the tokens."""
    gen = torch.Generator().manual_seed(0)
    labels = [i % len(CLASSES) for i in range(n)]
    tokens = [(5 * c + torch.randint(0, 5, (length,), generator=gen) + shift).tolist()
              for c in labels]
    table = pa.table({
        "sample_id": [f"s{i}" for i in range(n)], "split": ["train"] * n,
        "label": pa.array(labels, pa.int16()),
        "tokens": pa.array(tokens, pa.list_(pa.int16())),
        "n_tokens": pa.array([length] * n, pa.int16()),
    }, schema=with_metadata(SENTENCE_SCHEMA, codes=codes, vqvae=str(vqvae)))
    write_parquet(table, path)
    return path


def save_tiny_vqvae(path: Path) -> Path:
    """A random VQ-VAE of CODES codes (seeded), whose codebook seeds the action tokens."""
    torch.manual_seed(0)
    vq = ActionVQVAE(VQVAEConfig(width=64, codes=CODES, channels=8, depth=0, curvature=0.1))
    with torch.no_grad():
        vq.codebook.set_codes(torch.randn(CODES, 64) * 0.3)
    save_vqvae(vq, path)
    return path


@pytest.fixture(scope="module")
def llm_ar_inputs(tmp_path_factory, tiny_llm):
    folder = tmp_path_factory.mktemp("llm-ar")
    save_tiny_vqvae(folder / "vqvae.safetensors")
    return {"llm": tiny_llm(0), "vqvae": folder / "vqvae.safetensors",
            "classes": write_classes(folder / "classes.parquet"),
            "sentences": write_sentences(folder / "sentences.parquet", folder / "vqvae.safetensors")}


def lora_args(inputs: dict, out: Path, *extra: str):
    return build_parser("lora").parse_args(lora_argv(inputs, out, *extra))


def lora_argv(inputs: dict, out: Path, *extra: str) -> list[str]:
    """`actionlm lora` arguments for ``inputs`` (small CPU settings; ``extra`` overrides)."""
    argv = ["lora", "--llm", str(inputs["llm"]), "--classes", str(inputs["classes"]),
            "--out", str(out), "--lora-r", "2", "--batch-size", "6", "--micro-batch-size", "3",
            "--lr", "3e-3", "--device", "cpu", "--log-every", "2", *extra]
    for key in ("sentences", "features", "descriptions", "vqvae"):
        if key in inputs:
            argv += [f"--{key}", str(inputs[key])]
    return argv if "features" in inputs else [*argv, "--method", "llm_ar"]


def test_llm_ar_learns_and_keeps_the_llm_frozen(llm_ar_inputs, tmp_path):
    before = load_file(llm_ar_inputs["llm"] / "model.safetensors")
    recognizer, curves = train_lora(lora_args(llm_ar_inputs, tmp_path / "out", "--epochs", "3",
                                              "--lr", "1e-2"))
    assert curves[-1]["loss"] < curves[0]["loss"]
    # the LLM's own weights are exactly the file's after training (in the dtype the stage holds
    # them in: bf16 linear layers on a CPU with AMX); only adapters were saved
    base = {n.replace("base_model.model.", "").replace(".base_layer", ""): p
            for n, p in recognizer.model.named_parameters() if "lora_" not in n}
    assert set(before) <= set(base)
    assert all(torch.equal(base[n], before[n].to(base[n].dtype)) for n in before)
    saved = load_file(tmp_path / "out" / ADAPTER_FILE)
    assert saved and all("lora_" in n or n.startswith("bridge.") for n in saved)
    assert not torch.allclose(saved["bridge.weight"], recognizer_codes(llm_ar_inputs))

    loaded = load_recognizer(tmp_path / "out", "cpu")
    assert all(torch.equal(loaded.adapter_state()[n].float(), t) for n, t in saved.items())
    assert loaded.answer_ids("pickup")[-1] == loaded.tokenizer.eos_token_id
    embeds, mask = loaded.prompt_embeddings([[1, 2, 3], [4, 5, 6, 7, 8]])
    assert embeds.shape[:2] == mask.shape and mask[0, :2].tolist() == [0, 0]
    assert mask[1].all() and mask[:, -1].all()  # left-padded; both end where the answer starts
    spec = json.loads((tmp_path / "out" / "recognizer.json").read_text())
    assert spec["classes"] == CLASSES and spec["codes"] == CODES and spec["train"]["epochs"] == 3


def recognizer_codes(inputs) -> torch.Tensor:
    from actionlm.models.vqvae import load_vqvae

    with torch.no_grad():
        return load_vqvae(inputs["vqvae"]).codebook.tangent_codes()


def test_the_shared_prompt_head_gives_the_loss_and_gradients_of_running_each_row(
        llm_ar_inputs):
    """Training runs the prompt's common beginning once per batch and reuses its keys and
    values for every row; gradient checkpointing runs it in each row instead. Both must give
    the same loss and gradients, including for rows of different lengths (padding after the
    shared head) and through the LoRA matrices that shape the head's keys and values."""
    from actionlm.llm.lora import vqvae_codebook
    from actionlm.llm.recognizer import Recognizer, RecognizerSpec, base_fingerprint

    llm = llm_ar_inputs["llm"]
    codebook, _ = vqvae_codebook(llm_ar_inputs["sentences"], llm_ar_inputs["vqvae"], 64)
    spec = RecognizerSpec("llm_ar", CLASSES, CLASSES, LoraSettings(r=2, dropout=0.0),
                          {"llm": str(llm), **base_fingerprint(llm)}, codes=CODES)
    recognizer = Recognizer(spec, llm, torch.device("cpu"), codebook).train()
    with torch.no_grad():  # LoRA's B starts at zero: give the adapters an effect on the head
        for name, p in recognizer.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    tokens, labels = [[1, 2, 3, 4], [5, 6], [7, 8, 9, 10, 11, 12]], [0, 2, 1]

    def loss_and_grads():
        recognizer.zero_grad()
        loss, correct, n = recognizer(tokens, labels)
        loss.backward()
        return loss, n, {k: p.grad.clone() for k, p in recognizer.named_parameters()
                         if p.requires_grad}

    shared = loss_and_grads()
    assert len(recognizer.prompt_pieces(None)[0]) > 1
    recognizer.model.gradient_checkpointing_enable(
        gradient_checkpointing_kwargs={"use_reentrant": False})
    per_row = loss_and_grads()
    assert shared[1] == per_row[1] == sum(len(recognizer.answer_ids(CLASSES[c])) for c in labels)
    assert torch.allclose(shared[0], per_row[0], rtol=1e-5)
    lora_b = [k for k in shared[2] if "lora_B" in k and "layers.0." in k]
    assert lora_b and all(shared[2][k].abs().sum() > 0 for k in lora_b)
    assert all(torch.allclose(shared[2][k], per_row[2][k], rtol=1e-4, atol=1e-6)
               for k in shared[2])


def test_resume_after_interruption_ends_with_the_same_weights(llm_ar_inputs, tmp_path, monkeypatch):
    args = ("--epochs", "2", "--checkpoint-every", "2", "--lora-dropout", "0.1")
    train_lora(lora_args(llm_ar_inputs, tmp_path / "whole", *args))
    original_step, calls = lora.LoraTraining.step, []

    def dying_step(self, batch, step):
        calls.append(step)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return original_step(self, batch, step)

    monkeypatch.setattr(lora.LoraTraining, "step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        train_lora(lora_args(llm_ar_inputs, tmp_path / "cut", *args))
    assert not (tmp_path / "cut" / ADAPTER_FILE).exists()
    monkeypatch.setattr(lora.LoraTraining, "step", original_step)
    _, curves = train_lora(lora_args(llm_ar_inputs, tmp_path / "cut", *args))
    assert curves[-1]["step"] == 8
    whole, cut = (load_file(tmp_path / d / ADAPTER_FILE) for d in ("whole", "cut"))
    assert all(torch.equal(whole[n], cut[n]) for n in whole)


def test_epochs_0_runs_exactly_max_steps_through_as_many_epochs_as_needed(llm_ar_inputs,
                                                                          tmp_path):
    """LLM-AR counts iterations: 24 samples in batches of 6 are 4 steps per epoch, so 6 steps
    end half-way through the second seeded epoch, the cosine schedule reaching 0 at step 6."""
    _, curves = train_lora(lora_args(llm_ar_inputs, tmp_path / "out", "--epochs", "0",
                                     "--max-steps", "6", "--warmup-steps", "1"))
    assert [(c["step"], c["epoch"]) for c in curves] == [(2, 0.5), (4, 1.0), (6, 1.5)]
    assert curves[-1]["lr"] == pytest.approx(TrainConfig(lr=3e-3, warmup_steps=1).lr_at(5, 6))
    assert (tmp_path / "out" / ADAPTER_FILE).is_file()
    with pytest.raises(ActionlmError, match=r"lora: --epochs 0 .* needs --max-steps > 0"):
        train_lora(lora_args(llm_ar_inputs, tmp_path / "none", "--epochs", "0"))


def test_sugar_answers_with_descriptions_and_reloads(tiny_llm, tmp_path):
    rng = np.random.default_rng(0)
    labels = [i % 3 for i in range(12)]
    feats = rng.normal(size=(12, 8, 16)).astype(np.float32) + np.array(labels)[:, None, None]
    write_features(tmp_path / "features.parquet", feats, labels, [f"s{i}" for i in range(12)],
                   ["train"] * 12, {"method": "sugar"})
    def row(label: int, kind: str, part: str | None, text: str) -> dict:
        return {"class_id": label, "class_name": CLASSES[label], "kind": kind, "part": part,
                "text": text, "source": "t", "request_hash": None}

    parts = [row(0, "part", "head", "head tilts forward"), row(0, "part", "hand", "hand reaches"),
             row(0, "motion", None, "head tilts forward; hand reaches")]
    briefs = [row(0, "brief", None, "The person  lifts\na cup to the mouth."),
              row(2, "brief", None, "The person throws.")]
    write_parquet(pa.Table.from_pylist(parts + briefs, schema=DESCRIPTIONS_SCHEMA),
                  tmp_path / "desc.parquet")
    inputs = {"llm": tiny_llm(0), "classes": write_classes(tmp_path / "classes.parquet"),
              "features": tmp_path / "features.parquet", "descriptions": tmp_path / "desc.parquet"}
    sugar = ("--method", "sugar", "--queries", "3", "--segments", "2", "--description-words", "3")
    recognizer, curves = train_lora(lora_args(inputs, tmp_path / "out", *sugar))
    # SUGAR answers "class: brief description", the brief cut to --description-words words
    assert recognizer.answer_text("drink water") == "drink water: The person lifts"
    assert recognizer.answer_text("pickup") == "pickup"  # no brief row: the name alone
    assert recognizer.answer_text("throw") == "throw: The person throws."
    assert lora.class_answers(CLASSES, tmp_path / "desc.parquet", 12) == [
        "drink water: The person lifts a cup to the mouth.", "pickup",
        "throw: The person throws."]
    assert len(curves) == 1 and np.isfinite(curves[0]["loss"])
    loaded = load_recognizer(tmp_path / "out", "cpu")
    assert loaded.answer_text("drink water") == "drink water: The person lifts"
    embeds, mask = loaded.prompt_embeddings(torch.zeros(2, 8, 16))
    assert embeds.shape[1] == loaded.prompt_length(3) and mask.all()
    with pytest.raises(ActionlmError, match="do not fit the projector"):
        loaded.prompt_embeddings(torch.zeros(2, 8, 12))

    # a table without brief rows (GAP's imported files, or describe before SUGAR's brief
    # question) is refused before training, naming describe and the way out
    write_parquet(pa.Table.from_pylist(parts, schema=DESCRIPTIONS_SCHEMA), tmp_path / "parts.parquet")
    with pytest.raises(ActionlmError, match=r"parts.parquet: no brief descriptions; they are made "
                       r"by describe .*\(lora.sugar.descriptions: false\)"):
        train_lora(lora_args({**inputs, "descriptions": tmp_path / "parts.parquet"},
                             tmp_path / "refused", *sugar))
    assert not (tmp_path / "refused" / ADAPTER_FILE).exists()


def test_bridges_follow_sugar_table4():
    torch.manual_seed(0)
    features = torch.randn(2, 12, 16)
    outputs = {}
    for kind in ("tqp", "linear", "qformer", "cross_attention"):
        bridge = build_bridge(BridgeConfig(kind, queries=5, segments=3, heads=4), 16, 32).eval()
        outputs[kind] = (bridge, bridge(features))
    assert outputs["linear"][1].shape == (2, 12, 32)  # one token per time step
    assert all(outputs[k][1].shape == (2, 5, 32) for k in ("tqp", "qformer", "cross_attention"))
    # TQP shares one Q-Former over its segments: as many weights as one Q-Former
    n_params = {k: sum(p.numel() for p in b.parameters()) for k, (b, _) in outputs.items()}
    assert n_params["tqp"] == n_params["qformer"] > n_params["cross_attention"]
    # one Q-Former sees the steps as a set; TQP reads the segments in order
    shuffled = features[:, torch.tensor([4, 5, 6, 7, 0, 1, 2, 3, 8, 9, 10, 11])]
    with torch.no_grad():
        assert torch.allclose(outputs["qformer"][0](shuffled), outputs["qformer"][1], atol=1e-5)
        assert not torch.allclose(outputs["tqp"][0](shuffled), outputs["tqp"][1], atol=1e-3)


def test_out_of_range_action_tokens_are_refused(llm_ar_inputs, tmp_path):
    bad = write_sentences(tmp_path / "bad.parquet", llm_ar_inputs["vqvae"], shift=2)  # up to 16
    with pytest.raises(ActionlmError, match=r"bad.parquet: sample s\d+ has action tokens .*\[0, 16\)"):
        train_lora(lora_args({**llm_ar_inputs, "sentences": bad}, tmp_path / "out"))


def test_features_that_do_not_fit_the_projector_are_refused(tiny_llm, tmp_path):
    write_features(tmp_path / "f.parquet", np.zeros((6, 8, 10), np.float32), [0, 1, 2] * 2,
                   [f"s{i}" for i in range(6)], ["train"] * 6, {})
    inputs = {"llm": tiny_llm(0), "classes": write_classes(tmp_path / "c.parquet"),
              "features": tmp_path / "f.parquet"}
    with pytest.raises(ActionlmError, match="f.parquet: feature width 10 does not fit"):
        train_lora(lora_args(inputs, tmp_path / "out", "--method", "sugar", "--heads", "4"))


def test_an_adapter_for_another_base_model_is_refused(llm_ar_inputs, tmp_path, tiny_llm):
    train_lora(lora_args(llm_ar_inputs, tmp_path / "out", "--max-steps", "1"))
    with pytest.raises(ActionlmError, match="another base model"):
        load_recognizer(tmp_path / "out", "cpu", llm_dir=tiny_llm(1))


def test_a_prompt_beyond_the_context_is_refused(llm_ar_inputs, tmp_path):
    long = write_sentences(tmp_path / "long.parquet", llm_ar_inputs["vqvae"], length=240)
    with pytest.raises(ActionlmError, match="long.parquet: .* more than the model's context of 256"):
        train_lora(lora_args({**llm_ar_inputs, "sentences": long}, tmp_path / "out"))


def test_duplicate_class_names_are_refused(llm_ar_inputs, tmp_path):
    dup = write_classes(tmp_path / "dup.parquet", ["drink water", "pickup", "Pickup "])
    with pytest.raises(ActionlmError, match="dup.parquet: duplicate class_name 'Pickup'"):
        train_lora(lora_args({**llm_ar_inputs, "classes": dup}, tmp_path / "out"))


def test_options_default_to_the_dataclasses_and_switch_off_with_no(llm_ar_inputs, tmp_path):
    args = build_parser("lora").parse_args(
        ["lora", "--method", "llm_ar", "--llm", "x", "--classes", "c", "--out", "o"])
    assert TrainConfig(**fields_from_args(TrainConfig, args)) == TrainConfig()
    assert (args.lora_r, args.queries, args.gradient_checkpointing) == (
        LoraSettings().r, BridgeConfig().queries, False)
    assert lora_args(llm_ar_inputs, tmp_path, "--gradient-checkpointing").gradient_checkpointing
    assert not lora_args(llm_ar_inputs, tmp_path,
                         "--no-gradient-checkpointing").gradient_checkpointing


@pytest.mark.slow
def test_smollm2_recognizer_trains_without_touching_the_llm(smollm2_dir, llm_ar_inputs, tmp_path):
    """The bundled LLM end to end: a tiny codebook of its width, two steps."""
    torch.manual_seed(0)
    vq = ActionVQVAE(VQVAEConfig(width=576, codes=CODES, channels=8, depth=0, curvature=0.1))
    save_vqvae(vq, tmp_path / "vq.safetensors")
    inputs = {**llm_ar_inputs, "llm": smollm2_dir, "vqvae": tmp_path / "vq.safetensors"}
    recognizer, curves = train_lora(lora_args(inputs, tmp_path / "out", "--max-steps", "2",
                                              "--log-every", "1", "--batch-size", "2"))
    assert len(curves) == 2 and all(np.isfinite(c["loss"]) for c in curves)
    trainable = [n for n, p in recognizer.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or n.startswith("bridge.") for n in trainable)
    assert recognizer.prompt_text().startswith("<|im_start|>")
