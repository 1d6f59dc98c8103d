"""The LLM action recognizer: a frozen causal LM with LoRA adapters, reading skeleton tokens
spliced into an instruction and answering with the class name.

- LLM-AR (Qu et al., CVPR 2024, Sec. 3.2): the action sentence's U codes become U new input
  tokens whose embeddings start at the VQ-VAE codes mapped back to Euclidean space (the log map
  at 0, Eq. 10; the MMD term, Eq. 7, already drew them towards the LLM's word embeddings).
  They stay trainable by default: the codebook was fitted for reconstruction, not for the LLM,
  and LoRA on the attention projections cannot move an input row by itself; U x hidden values
  (0.3M for SmolLM2) are few next to the adapters, and the LLM's own table is never touched.
- SUGAR (Ye et al., AAAI 2026, Step 3): encoder features go through Temporal Query
  Projection (actionlm.llm.tqp) to L tokens; the answer is the class name and a short
  description of its motion.

Both splice their tokens into "Given a sequence of action tokens [tokens], please predict the
corresponding action." (LLM-AR's instruction; SUGAR reuses it), wrapped in the tokenizer's
chat template when it has one, and learn with cross-entropy on the answer tokens only (LLM-AR
Eq. 13, SUGAR Eq. 5). The LLM loads in the dtype prepare-llm recorded (``llm_dtype``); what
trains (LoRA matrices, action-token embeddings, projector) is float32 whatever that dtype, so
the optimiser never steps bfloat16 weights, and the skeleton tokens are cast to the LLM's
embedding dtype where they enter it. A trained recognizer is a folder: ``adapter.safetensors``
(LoRA + action-token embeddings or projector, float32) and ``recognizer.json`` (everything
else); loading it never unpickles and refuses another base model than the one it was trained
on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from actionlm.data.prepare_llm import MANIFEST, llm_model_dir, load_llm_embedding_matrix
from actionlm.device import select_device
from actionlm.errors import ActionlmError
from actionlm.io import atomic_path, write_json
from actionlm.llm.tqp import BridgeConfig, build_bridge

log = logging.getLogger(__name__)

METHODS = ("llm_ar", "sugar")
SPEC_FILE = "recognizer.json"
ADAPTER_FILE = "adapter.safetensors"
ACTION_SLOT = "{actions}"
INSTRUCTION = (f"Given a sequence of action tokens {ACTION_SLOT}, "
               "please predict the corresponding action.")
CANDIDATES = " Choose one of: {candidates}."
# SUGAR's zero-shot question for its top five ("Zero-shot on Action Recognition"), answered by
# generation (actionlm.eval.llm --generate-tokens).
RANKING = (f"Given a sequence of action tokens {ACTION_SLOT}, please choose the top five most "
           "compatible action from: {candidates}.")
# Without a chat template: the Alpaca layout of the code base LLM-AR builds on.
PLAIN_TEMPLATE = "### Instruction:\n{instruction}\n\n### Response:\n"
IGNORE = -100


@dataclass(frozen=True)
class LoraSettings:
    """LoRA (Hu et al. 2022) on ``target_modules``; both papers use r = 64, alpha = 16."""

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")

    def peft_config(self):
        from peft import LoraConfig

        if self.r < 1 or self.alpha <= 0 or not 0 <= self.dropout < 1 or not self.target_modules:
            raise ActionlmError(f"LoRA settings {asdict(self)}: need r >= 1, alpha > 0, "
                                "0 <= dropout < 1 and at least one target module")
        return LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=list(self.target_modules), task_type="CAUSAL_LM")


@dataclass
class RecognizerSpec:
    """What ``recognizer.json`` holds besides training facts: enough to rebuild the network
    around the adapter file and to prompt it exactly as in training."""

    method: str
    classes: list[str]
    answers: list[str]  # the trained answer of each class, same order
    lora: LoraSettings
    base: dict  # llm (folder), fingerprint, model_type, hidden_size, vocab_size, context
    codes: int | None = None  # llm_ar: U
    train_action_embeddings: bool = True  # llm_ar
    features: dict | None = None  # sugar: n_steps, width of the encoder features
    bridge: BridgeConfig | None = None  # sugar
    prompt: dict = field(default_factory=lambda: {"instruction": INSTRUCTION,
                                                  "candidates": CANDIDATES})

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> RecognizerSpec:
        data = dict(data)
        data["lora"] = LoraSettings(**{**data["lora"],
                                       "target_modules": tuple(data["lora"]["target_modules"])})
        data["bridge"] = data["bridge"] and BridgeConfig(**data["bridge"])
        return cls(**data)


def base_fingerprint(llm_dir: str | os.PathLike) -> dict:
    """Identity of a base LLM: its shape and a hash of its input-embedding table (read from
    safetensors; equal tables mean the same tokenizer-to-vector map the adapter learned on)."""
    from transformers import AutoConfig

    hf_dir = llm_model_dir(llm_dir)
    config = AutoConfig.from_pretrained(hf_dir).get_text_config()
    table = load_llm_embedding_matrix(llm_dir).contiguous()
    return {
        "model_type": config.model_type,
        "hidden_size": int(config.hidden_size),
        "vocab_size": int(table.shape[0]),
        "context": int(getattr(config, "max_position_embeddings", 0) or 0),
        "fingerprint": hashlib.sha256(table.numpy().tobytes()).hexdigest(),
    }


def llm_dtype(llm_dir: str | os.PathLike) -> torch.dtype:
    """The dtype prepare-llm recorded for the model (float32 for a plain HF folder)."""
    manifest = Path(llm_dir) / MANIFEST
    if not manifest.is_file():
        return torch.float32
    return getattr(torch, json.loads(manifest.read_text()).get("dtype", "float32"))


def load_frozen_llm(hf_dir: Path, dtype: torch.dtype, device: torch.device,
                    compute_dtype: torch.dtype | None) -> nn.Module:
    """The base LLM as a stage computes with it under autocast to ``compute_dtype``.

    A float32 LLM's linear layers are held in ``compute_dtype``: autocast rounds their weights
    to it at every call anyway, so the products are the same, without the casts (an output head
    tied to the embedding table gets its own copy: it is frozen). The embedding table and the
    norms keep their dtype, and so does the residual stream. On the CPU attention is eager
    under bf16: PyTorch's CPU flash attention ran a bf16 backward pass at 8.3 ms per layer
    against 1.0 ms in float32 (a LoRA batch of 8, SmolLM2), where eager attention is bf16
    matmuls. A LoRA step of SmolLM2 ran 1.6x faster than float32 this way on two threads of a
    CPU with AMX (``benchmarks/bench_training_step.py``), 1.85x in the default's one-thread LoRA
    jobs; with sdpa, autocast gained 1.3x."""
    from transformers import AutoModelForCausalLM

    eager = device.type == "cpu" and compute_dtype == torch.bfloat16
    model = AutoModelForCausalLM.from_pretrained(
        hf_dir, dtype=dtype, attn_implementation="eager" if eager else None)
    if compute_dtype is not None and dtype == torch.float32:
        embeddings = model.get_input_embeddings().weight
        for module in model.modules():
            if isinstance(module, nn.Linear) and module.weight is embeddings:
                module.weight = nn.Parameter(embeddings.detach().to(compute_dtype),
                                             requires_grad=False)
            elif isinstance(module, nn.Linear):
                module.to(compute_dtype)
    return model


class ActionTokenEmbedding(nn.Module):
    """LLM-AR's U new input tokens: row u is the embedding of action token u."""

    def __init__(self, codes: torch.Tensor, trainable: bool):
        super().__init__()
        self.weight = nn.Parameter(codes.detach().clone().float(), requires_grad=trainable)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.embedding(tokens, self.weight)


class Recognizer(nn.Module):
    """Frozen LLM + LoRA (``model``, peft-wrapped) + the skeleton bridge (``bridge``).

    ``forward`` is the training loss, so that DistributedDataParallel can wrap the module."""

    def __init__(self, spec: RecognizerSpec, llm_dir: str | os.PathLike, device: torch.device,
                 codebook: torch.Tensor | None = None, compute_dtype: torch.dtype | None = None):
        """``compute_dtype``: the autocast dtype the stage runs the LLM under
        (``actionlm.device.autocast_dtype``; None: no autocast); see ``load_frozen_llm``."""
        super().__init__()
        from peft import get_peft_model
        from transformers import AutoTokenizer

        self.spec = spec
        self.device = device
        hf_dir = llm_model_dir(llm_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(hf_dir)
        base = load_frozen_llm(hf_dir, llm_dtype(llm_dir), device, compute_dtype)
        hidden = base.get_input_embeddings().embedding_dim
        # peft's default, pinned: adapters of a bf16/fp16 LLM are made float32 (master weights)
        self.model = get_peft_model(base, spec.lora.peft_config(), autocast_adapter_dtype=True)
        if spec.method == "llm_ar":
            codebook = torch.zeros(spec.codes, hidden) if codebook is None else codebook
            self.bridge = ActionTokenEmbedding(codebook, spec.train_action_embeddings)
        else:
            self.bridge = build_bridge(spec.bridge, spec.features["width"], hidden)
        self.chat = bool(self.tokenizer.chat_template)
        self._prompt_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self._answer_ids = {c: self.encode_answer(a) for c, a in zip(spec.classes, spec.answers)}
        self.to(device)

    # ---------------------------------------------------------------- prompts and answers

    def answer_text(self, class_name: str) -> str:
        """The answer trained for ``class_name``; the bare name for a class never trained on
        (zero-shot candidates)."""
        answers = dict(zip(self.spec.classes, self.spec.answers))
        return answers.get(class_name, class_name)

    def encode_answer(self, text: str) -> list[int]:
        return [*self.tokenizer(text, add_special_tokens=False).input_ids,
                self.tokenizer.eos_token_id]

    def answer_ids(self, class_name: str) -> list[int]:
        """Token ids of ``answer_text(class_name)`` followed by EOS: what is trained and scored."""
        ids = self._answer_ids.get(class_name)
        return ids if ids is not None else self.encode_answer(self.answer_text(class_name))

    def prompt_text(self, candidates: Sequence[str] | None = None, ranking: bool = False) -> str:
        """The whole prompt as text, ``{actions}`` marking where the skeleton tokens go;
        ``ranking``: SUGAR's request for the top five of ``candidates`` instead."""
        instruction = self.spec.prompt["instruction"]
        if ranking:
            instruction = RANKING.replace("{candidates}", ", ".join(candidates or ()))
        elif candidates:
            instruction += self.spec.prompt["candidates"].format(candidates=", ".join(candidates))
        if self.chat:
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": instruction}], add_generation_prompt=True,
                tokenize=False)
        bos = self.tokenizer.bos_token or ""
        return bos + PLAIN_TEMPLATE.format(instruction=instruction)

    def prompt_pieces(self, candidates: Sequence[str] | None, ranking: bool = False
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids of the prompt before and after the skeleton tokens (cached)."""
        key = (tuple(candidates) if candidates else None, ranking)
        if key not in self._prompt_cache:
            before, after = self.prompt_text(candidates, ranking).split(ACTION_SLOT)
            self._prompt_cache[key] = tuple(
                torch.tensor(self.tokenizer(text, add_special_tokens=False).input_ids,
                             dtype=torch.long, device=self.device)
                for text in (before, after))
        return self._prompt_cache[key]

    def prompt_length(self, n_action_tokens: int, candidates: Sequence[str] | None = None) -> int:
        before, after = self.prompt_pieces(candidates)
        return len(before) + n_action_tokens + len(after)

    def check_context(self, n_action_tokens: int, source: str,
                      candidates: Sequence[str] | None = None) -> None:
        """Refuse prompts (plus the longest trained answer) beyond the model's context."""
        context = self.spec.base["context"]
        longest = self.prompt_length(n_action_tokens, candidates) + max(
            map(len, self._answer_ids.values()), default=0)
        if context and longest > context:
            raise ActionlmError(
                f"{source}: a prompt with {n_action_tokens} skeleton tokens and its answer take "
                f"{longest} tokens, more than the model's context of {context}"
            )

    # ---------------------------------------------------------------- embeddings

    def skeleton_embeddings(self, inputs) -> list[torch.Tensor]:
        """The skeleton tokens of each sample in LLM space: list of [n_i, hidden]."""
        if self.spec.method == "llm_ar":
            rows = [torch.as_tensor(t, dtype=torch.long) for t in inputs]
            for i, row in enumerate(rows):
                bad = row[(row < 0) | (row >= self.spec.codes)]
                if len(bad):
                    raise ActionlmError(f"sample {i}: action tokens {bad[:5].tolist()} outside "
                                        f"the codebook range [0, {self.spec.codes})")
            return [self.bridge(r.to(self.device)) for r in rows]
        features = torch.as_tensor(inputs, dtype=torch.float32)
        width = self.spec.features["width"]
        if features.ndim != 3 or features.shape[2] != width:
            raise ActionlmError(
                f"features of shape {list(features.shape)} do not fit the projector, which "
                f"takes [batch, steps, {width}]"
            )
        self.spec.bridge.validate(width, features.shape[1], "features")
        return list(self.bridge(features.to(self.device)))

    def prompt_rows(self, inputs, candidates: Sequence[str] | None = None,
                    ranking: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(head [P, H], rows): in LLM input space, the prompt's beginning before the skeleton
        tokens (chat header, instruction), the same for every sample, and each sample's rest:
        its skeleton tokens and the prompt's end [n_i, H]."""
        embed = self.model.get_input_embeddings()
        head, tail = (embed(ids) for ids in self.prompt_pieces(candidates, ranking))
        return head, [torch.cat([s.to(tail.dtype), tail]) for s in self.skeleton_embeddings(inputs)]

    def prompt_embeddings(self, inputs, candidates: Sequence[str] | None = None,
                          ranking: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs_embeds [B, L, H], attention_mask [B, L]), left-padded so that every row
        ends where its answer starts. ``inputs``: token id lists or a LongTensor [B, W]
        (llm_ar), features [B, n_steps, width] (sugar); ``candidates``: class names listed in
        the instruction (zero-shot); ``ranking``: SUGAR's top-five question about them."""
        head, rows = self.prompt_rows(inputs, candidates, ranking)
        embeds, mask = left_padded([torch.cat([head, r]) for r in rows])
        if self.spec.base["context"] and embeds.shape[1] > self.spec.base["context"]:
            raise ActionlmError(f"prompt of {embeds.shape[1]} tokens exceeds the model's context "
                                f"of {self.spec.base['context']}")
        return embeds, mask

    # ---------------------------------------------------------------- training

    def forward(self, inputs, labels: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Summed cross-entropy over the answer tokens (+ EOS) of the true classes (LLM-AR
        Eq. 13, SUGAR Eq. 5), the number of those tokens predicted right, and their count.

        The prompt's beginning, the same for every sample, runs once per batch and its keys and
        values serve every row (as in constrained scoring): the same sums as running it in each
        row, at about half the tokens (31 of the 65 of an LLM-AR sample with SmolLM2's
        chat header). Gradient checkpointing drops a layer's cache, so it runs it per row."""
        head, rows = self.prompt_rows(inputs)
        answers = [self._answer_ids[self.spec.classes[c]] for c in labels]
        width = max(map(len, answers))
        targets = torch.full((len(answers), width), IGNORE, dtype=torch.long, device=self.device)
        for i, ids in enumerate(answers):
            targets[i, :len(ids)] = torch.tensor(ids, device=self.device)
        answer_embeds = self.model.get_input_embeddings()(targets.clamp_min(0))
        cache = None
        if getattr(self.model, "is_gradient_checkpointing", False):
            rows, head = [torch.cat([head, r]) for r in rows], head[:0]
        elif len(head):
            cache = self.model(inputs_embeds=head[None], use_cache=True,
                               logits_to_keep=1).past_key_values
            cache.batch_repeat_interleave(len(rows))
        prompt, prompt_mask = left_padded(rows)
        mask = torch.cat([prompt_mask.new_ones(len(rows), len(head)), prompt_mask,
                          (targets != IGNORE).long()], dim=1)
        out = self.model(inputs_embeds=torch.cat([prompt, answer_embeds], dim=1),
                         attention_mask=mask, past_key_values=cache,
                         position_ids=(mask.cumsum(1) - 1).clamp_min(0)[:, len(head):],
                         logits_to_keep=width + 1)
        logits = out.logits[:, :-1].float()  # position t predicts answer token t
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE,
                               reduction="sum")
        valid = targets != IGNORE
        correct = (logits.argmax(-1) == targets)[valid].sum()
        return loss, correct, int(valid.sum())

    # ---------------------------------------------------------------- persistence

    def adapter_state(self) -> dict[str, torch.Tensor]:
        """What training adds to the frozen LLM: the LoRA matrices and the bridge."""
        lora = {f"model.{n}": p for n, p in self.model.named_parameters() if "lora_" in n}
        return {**lora, **{f"bridge.{n}": p for n, p in self.bridge.named_parameters()}}

    def load_adapter_state(self, state: dict[str, torch.Tensor], source: str) -> None:
        expected = self.adapter_state()
        missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        wrong = [n for n in set(expected) & set(state) if state[n].shape != expected[n].shape]
        if missing or unexpected or wrong:
            raise ActionlmError(
                f"{source}: adapter does not fit this recognizer (missing {missing[:3]}, "
                f"unexpected {unexpected[:3]}, wrong shapes {wrong[:3]})"
            )
        with torch.no_grad():
            for name, tensor in state.items():
                expected[name].copy_(tensor)

    def save(self, folder: str | os.PathLike, extra: dict | None = None) -> None:
        """``adapter.safetensors`` then ``recognizer.json`` (written last: its presence marks
        a complete recognizer)."""
        folder = Path(folder)
        tensors = {k: v.detach().float().cpu().contiguous()
                   for k, v in self.adapter_state().items()}
        with atomic_path(folder / ADAPTER_FILE) as tmp:
            save_file(tensors, tmp)
        write_json({**self.spec.to_json(), **(extra or {})}, folder / SPEC_FILE)


def left_padded(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows [n_i, H] stacked left-padded with zeros: (embeds [B, L, H], mask [B, L] long)."""
    length = max(len(r) for r in rows)
    embeds = rows[0].new_zeros(len(rows), length, rows[0].shape[1])
    mask = torch.zeros(len(rows), length, dtype=torch.long, device=rows[0].device)
    for i, row in enumerate(rows):
        embeds[i, length - len(row):] = row
        mask[i, length - len(row):] = 1
    return embeds, mask


def load_recognizer(folder: str | os.PathLike, device: torch.device | str = "auto",
                    llm_dir: str | os.PathLike | None = None,
                    compute_dtype: torch.dtype | None = None) -> Recognizer:
    """A trained recognizer in eval mode, from its folder or its recognizer.json. ``llm_dir``
    overrides the base LLM folder recorded in recognizer.json (a moved checkout, another
    node); it must hold the same model. ``compute_dtype``: as for ``Recognizer``."""
    folder = Path(folder)
    if folder.name == SPEC_FILE:
        folder = folder.parent
    spec_path = folder / SPEC_FILE
    try:
        data = json.loads(spec_path.read_text())
        spec = RecognizerSpec.from_json({k: data[k] for k in RecognizerSpec.__dataclass_fields__})
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ActionlmError(f"{spec_path}: not a recognizer description ({err!r})") from None
    llm_dir = Path(llm_dir or spec.base["llm"])
    found = base_fingerprint(llm_dir)
    if found["fingerprint"] != spec.base["fingerprint"]:
        raise ActionlmError(
            f"{folder / ADAPTER_FILE}: adapter trained on another base model than {llm_dir} "
            f"({spec.base['model_type']}, vocab {spec.base['vocab_size']}, hidden "
            f"{spec.base['hidden_size']}, embedding hash {spec.base['fingerprint'][:12]}; "
            f"found {found['model_type']}, vocab {found['vocab_size']}, hidden "
            f"{found['hidden_size']}, hash {found['fingerprint'][:12]})"
        )
    device = select_device(device) if isinstance(device, str) else device
    recognizer = Recognizer(spec, llm_dir, device, compute_dtype=compute_dtype)
    try:
        state = load_file(folder / ADAPTER_FILE)
    except (OSError, SafetensorError) as err:
        raise ActionlmError(f"{folder / ADAPTER_FILE}: unreadable adapter ({err})") from None
    recognizer.load_adapter_state(state, str(folder / ADAPTER_FILE))
    return recognizer.eval()
