"""Constrained scoring of candidate answers with a causal LM, and the free-generation baseline.

An LLM recognizer (LLM-AR §3.2 "Testing", SUGAR "Inference") is asked to name the action; the
papers let it generate and read the class off the text. Scoring every candidate class instead
gives a full ranking (top-1 and top-5 from one pass, SUGAR's zero-shot top-5) and never an
unmatched answer: for a prompt x and a candidate answer a = (a_1 .. a_m, EOS),

    log p(a | x) = sum_j log p(a_j | x, a_<j)                         (chain rule)

The prompt is run once per sample and its KV cache reused: all candidates go through the
model together as one prefix tree per sample (shared prefixes fed once, each token attending to
the prompt and its own prefix through a tree attention mask), so a batch of B samples costs one
prompt pass and one pass over B x (distinct answer prefixes) tokens, with no copy of the cache
per candidate. The batch's common prompt beginning (chat header, instruction) runs only once.

Default normalisation is ``sum``: the exact sequence log-likelihood, the quantity a recognizer
trained with cross-entropy on answer + EOS (LLM-AR Eq. 13, SUGAR Eq. 5) maximises, so the
argmax is the model's most probable answer among the candidates; EOS ends each answer, so a
class name that is a prefix of another ("pick up" / "pick up with one hand") is not favoured.
``mean`` divides by the answer's length (EOS included); it suits untrained zero-shot prompts,
where the sum penalises long class names for their length alone.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from actionlm.errors import ActionlmError, InputError

NORMALIZATIONS = ("sum", "mean")
# Tree logits one pass may hold (rows x tree nodes x vocab, float32): 512 MB.
DEFAULT_MAX_LOGITS = 2**27


@dataclass(frozen=True)
class Answers:
    """K candidate answers tokenised with EOS appended (``ids`` [K, T] right-padded with EOS,
    ``lengths`` [K] = answer tokens + 1), and their prefix tree: the N distinct prefixes
    a_1..a_j (j < m) are the tokens fed after the prompt, each predicting the next token.

    ``node_tokens`` [N] last token of each prefix, ``node_depth`` [N] its offset after the
    prompt, ``node_sees`` [N, N] ancestor-or-self (which fed tokens a node attends to);
    ``step_node`` / ``step_target`` / ``step_real`` [K, T-1]: answer k's token j+2 is predicted
    at node ``step_node[k, j]``.
    """

    texts: list[str]
    ids: torch.Tensor
    lengths: torch.Tensor
    node_tokens: torch.Tensor
    node_depth: torch.Tensor
    node_sees: torch.Tensor
    step_node: torch.Tensor
    step_target: torch.Tensor
    step_real: torch.Tensor

    def __len__(self) -> int:
        return len(self.texts)


def tokenize_answers(tokenizer, texts: Sequence[str], eos_token_id: int | None = None) -> Answers:
    """Token ids of each answer + EOS and their prefix tree, refusing a list that cannot rank:
    no candidates, a duplicate (two columns with equal scores), or one that tokenises to
    nothing."""
    texts = list(texts)
    if not texts:
        raise ActionlmError("no candidate answers to score")
    eos = tokenizer.eos_token_id if eos_token_id is None else eos_token_id
    if eos is None:
        raise ActionlmError("the tokenizer has no EOS token to end the candidate answers with")
    seen: dict[tuple[int, ...], str] = {}
    rows = []
    for text in texts:
        ids = tuple(tokenizer(text, add_special_tokens=False)["input_ids"])
        if not ids:
            raise ActionlmError(f"candidate answer {text!r} tokenises to no tokens")
        if ids in seen:
            same = "is listed twice" if seen[ids] == text else f"tokenises like {seen[ids]!r}"
            raise ActionlmError(f"candidate answer {text!r} {same}: the class list must be unique")
        seen[ids] = text
        rows.append([*ids, eos])
    lengths = torch.tensor([len(r) for r in rows])
    width = int(lengths.max())
    ids = torch.full((len(rows), width), eos, dtype=torch.long)
    nodes: dict[tuple[int, ...], int] = {}
    parent: list[int] = []
    step_node = torch.zeros((len(rows), width - 1), dtype=torch.long)
    step_target = torch.full((len(rows), width - 1), eos, dtype=torch.long)
    for k, row in enumerate(rows):
        ids[k, : len(row)] = torch.tensor(row)
        for j in range(len(row) - 1):
            prefix = tuple(row[: j + 1])
            if prefix not in nodes:
                nodes[prefix] = len(parent)
                parent.append(nodes.get(prefix[:-1], -1))
            step_node[k, j], step_target[k, j] = nodes[prefix], row[j + 1]
    sees = torch.eye(len(parent), dtype=torch.bool)
    for i, up in enumerate(parent):  # parents come first, so their rows are complete
        if up >= 0:
            sees[i] |= sees[up]
    return Answers(
        texts, ids, lengths,
        node_tokens=torch.tensor([p[-1] for p in nodes], dtype=torch.long),
        node_depth=torch.tensor([len(p) - 1 for p in nodes], dtype=torch.long),
        node_sees=sees, step_node=step_node, step_target=step_target,
        step_real=torch.arange(width - 1)[None, :] < (lengths - 1)[:, None],
    )


def context_length(model) -> int | None:
    """The longest sequence the model's position encoding covers (None when it does not say)."""
    config = model.config.get_text_config()
    return getattr(config, "max_position_embeddings", None)


def check_context(model, prompt_lengths: torch.Tensor, answer_length: int,
                  row_names: Sequence[str] | None = None) -> None:
    """Refuse a prompt that, with the longest answer, runs past the model's context: positions
    beyond it were never trained and would score noise without any error."""
    limit = context_length(model)
    if limit is None:
        return
    over = (prompt_lengths + answer_length > limit).nonzero().flatten().tolist()
    if over:
        i = over[0]
        name = row_names[i] if row_names is not None else f"batch row {i}"
        raise InputError(name, f"prompt of {int(prompt_lengths[i])} tokens + answer of "
                         f"{answer_length} tokens exceeds the model's context of {limit} tokens")


@torch.inference_mode()
def score_answers(model, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor,
                  answers: Answers, *, normalize: str = "sum",
                  max_logits: int = DEFAULT_MAX_LOGITS,
                  row_names: Sequence[str] | None = None) -> torch.Tensor:
    """log p(answer_k + EOS | prompt_b) [B, K] float32 (``mean``: divided by the answer length).

    ``inputs_embeds`` [B, L, H] and ``attention_mask`` [B, L] are left-padded and end where the
    answer starts. Per sample, the prompt runs once; the first answer token is read off its
    last logits, and the answers' prefix tree (every shared prefix once) runs in one pass
    against the prompt's KV cache, each fed token attending to the prompt and its own prefix
    only. Rows go in groups of at most ``max_logits`` tree logits (rows x N x vocab).
    """
    if normalize not in NORMALIZATIONS:
        raise ActionlmError(f"normalize={normalize!r}: expected one of {NORMALIZATIONS}")
    attention = model.config.get_text_config()._attn_implementation
    if attention not in ("sdpa", "eager"):
        raise ActionlmError(f"constrained scoring needs attn_implementation 'sdpa' or 'eager' "
                            f"(a per-sample tree mask), not {attention!r}")
    mask = attention_mask.to(device=inputs_embeds.device, dtype=torch.long)
    if not bool(mask[:, -1].all()):
        raise ActionlmError("prompt attention mask must be left-padded (last position real)")
    check_context(model, mask.sum(1).cpu(), int(answers.lengths.max()), row_names)
    vocab = model.get_output_embeddings().weight.shape[0]
    rows = max(1, max_logits // (max(1, len(answers.node_tokens)) * vocab))
    scores = torch.cat([_score_rows(model, inputs_embeds[i:i + rows], mask[i:i + rows], answers,
                                    attention) for i in range(0, len(mask), rows)])
    if normalize == "mean":
        scores = scores / answers.lengths.to(scores.device)
    return scores


def _score_rows(model, inputs_embeds: torch.Tensor, mask: torch.Tensor, answers: Answers,
                attention: str) -> torch.Tensor:
    """Summed log-likelihood [B, K] of every answer after each of B prompts. The prompts' common
    beginning (system prompt, instruction) runs once for the group, then each prompt's rest."""
    device = inputs_embeds.device
    batch, width = mask.shape
    lengths = mask.sum(1)
    shared = shared_prefix_length(inputs_embeds, lengths)
    cache = None
    if shared:
        start = width - int(lengths[0])
        cache = model(inputs_embeds=inputs_embeds[:1, start:start + shared], use_cache=True,
                      logits_to_keep=1).past_key_values
        cache.batch_repeat_interleave(batch)
    # The last rest_width columns hold every row's rest right-aligned; what lies before a
    # shorter rest (padding or the shared prefix again) is masked out.
    rest = lengths - shared
    rest_width = int(rest.max())
    steps = torch.arange(rest_width, device=device)
    prompt_mask = torch.cat([torch.ones((batch, shared), dtype=torch.long, device=device),
                             (steps[None, :] >= (rest_width - rest)[:, None]).long()], dim=1)
    # Positions count real tokens only, as generate() numbers a left-padded prompt.
    out = model(inputs_embeds=inputs_embeds[:, width - rest_width:], attention_mask=prompt_mask,
                position_ids=(prompt_mask.cumsum(1) - 1).clamp(min=0)[:, shared:],
                past_key_values=cache, use_cache=True, logits_to_keep=1)
    first = answers.ids[:, 0].to(device)
    scores = torch.log_softmax(out.logits[:, -1].float(), dim=-1)[:, first]
    n_nodes = len(answers.node_tokens)
    if n_nodes == 0:  # every answer is one token: EOS follows the prompt directly
        return scores
    sees = torch.cat([prompt_mask.bool()[:, None, :].expand(-1, n_nodes, -1),
                      answers.node_sees.to(device)[None].expand(batch, -1, -1)], dim=-1)[:, None]
    if attention == "eager":  # additive form, as eager attention adds the mask to the scores
        dtype = out.past_key_values.layers[0].keys.dtype
        sees = torch.zeros(sees.shape, dtype=dtype, device=device).masked_fill(
            ~sees, torch.finfo(dtype).min)
    logits = model(
        input_ids=answers.node_tokens.to(device).expand(batch, -1), attention_mask=sees,
        position_ids=lengths[:, None] + answers.node_depth.to(device)[None],
        past_key_values=out.past_key_values, use_cache=True,
    ).logits.float()  # [B, N, V]
    nodes, targets = answers.step_node.to(device), answers.step_target.to(device)
    step_logp = logits[:, nodes, targets] - torch.logsumexp(logits, dim=-1)[:, nodes]
    return scores + (step_logp * answers.step_real.to(device)).sum(-1)


def shared_prefix_length(inputs_embeds: torch.Tensor, lengths: torch.Tensor) -> int:
    """How many leading real positions all left-padded rows share exactly (0 for one row);
    every row keeps at least one position of its own, whose logits start its answer."""
    n = int(lengths.min()) - 1
    if len(lengths) < 2 or n <= 0:
        return 0
    columns = (inputs_embeds.shape[1] - lengths)[:, None] + torch.arange(n, device=lengths.device)
    aligned = inputs_embeds.gather(1, columns[..., None].expand(-1, -1, inputs_embeds.shape[-1]))
    same = (aligned == aligned[:1]).all(-1).all(0)
    return n if bool(same.all()) else int((~same).nonzero()[0])


def chat_prompt_embeddings(model, tokenizer, prompts: Sequence[str],
                           system: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded input embeddings [B, L, H] and mask [B, L] of user turns in the tokenizer's
    chat template, ending where the assistant's answer starts: a text-only recognizer prompt
    (zero-shot with the candidate list in the instruction)."""
    texts = [tokenizer.apply_chat_template(
        ([{"role": "system", "content": system}] if system else [])
        + [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        for p in prompts]
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = side
    device = model.get_input_embeddings().weight.device
    ids = batch["input_ids"].to(device)
    return model.get_input_embeddings()(ids), batch["attention_mask"].to(device)


@torch.inference_mode()
def generate_answers(model, tokenizer, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor,
                     max_new_tokens: int) -> list[str]:
    """Greedy free-form answers to left-padded prompt embeddings: the papers' decoding, and
    SUGAR's generated description."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    new_tokens = model.generate(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                max_new_tokens=max_new_tokens, do_sample=False,
                                eos_token_id=tokenizer.eos_token_id, pad_token_id=pad)
    return [t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]


def _normalized(text: str) -> str:
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text.lower()).split())


def match_answer(text: str, candidates: Sequence[str]) -> int:
    """Index of the candidate a generated answer names, -1 for none: the whole answer equal to
    a class name (case, punctuation and spacing ignored), else the longest class name the
    answer starts with, else the longest one it contains (whole words), else (fuzzy) the class
    name most like the answer's opening words up to the first ":" (as many words as the name
    has), if their difflib similarity ratio is at least FUZZY_CUTOFF: "drnk water" names
    "drink water", "dancing" names none of "sit down", "stand up"."""
    said = _normalized(text)
    names = [_normalized(c) for c in candidates]
    if said in names:
        return names.index(said)
    for test in (lambda n: said.startswith(n + " "), lambda n: f" {n} " in f" {said} "):
        hits = [i for i, n in enumerate(names) if n and test(n)]
        if hits:
            return max(hits, key=lambda i: len(names[i]))
    return fuzzy_match(_normalized(text.split(":", 1)[0]), names)


FUZZY_CUTOFF = 0.8


def fuzzy_match(said: str, names: Sequence[str]) -> int:
    """The name closest to as many opening words of ``said`` as it has, -1 below FUZZY_CUTOFF."""
    words = said.split()
    ratios = [difflib.SequenceMatcher(None, " ".join(words[:len(n.split())]), n).ratio()
              if n else 0.0 for n in names]
    best = max(range(len(names)), key=ratios.__getitem__, default=-1)
    return best if best >= 0 and ratios[best] >= FUZZY_CUTOFF else -1


def match_ranking(text: str, candidates: Sequence[str], k: int = 5) -> list[int]:
    """The distinct candidates a "top k" answer names, in its order, at most ``k``: the answer
    is split at commas, semicolons, line breaks and list numbers ("1.", "2)") and each piece
    matched by match_answer."""
    pieces = re.split(r"[,;\n]|\b\d+[.)]", text)
    found = [match_answer(piece, candidates) for piece in pieces if piece.strip()]
    return list(dict.fromkeys(i for i in found if i >= 0))[:k]
