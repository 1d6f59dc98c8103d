"""Constrained scoring: the prefix-tree pass over the prompt's KV cache gives exactly the full
sequence log-likelihood of every candidate, whatever the batch, order and grouping; bad class
lists and over-long prompts are refused; the generate baseline's matching."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from actionlm.data.prepare_llm import llm_model_dir
from actionlm.errors import ActionlmError
from actionlm.llm.scoring import (
    chat_prompt_embeddings,
    generate_answers,
    match_answer,
    match_ranking,
    score_answers,
    shared_prefix_length,
    tokenize_answers,
)

# Shared prefixes ("sit" / "sit down"), one-word and two-word answers.
CANDIDATES = ["sit down", "sit", "stand up", "drink water", "throw", "pickup"]
PROMPTS = ["given a sequence of action tokens head hand arm , please predict the action",
           "given a sequence of action tokens leg",
           "please predict the corresponding action : hip foot bends"]


def load(folder, attention="sdpa"):
    folder = llm_model_dir(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, attn_implementation=attention).eval()
    return model, AutoTokenizer.from_pretrained(folder)


@torch.no_grad()
def full_sequence_scores(model, embeds, mask, answers) -> torch.Tensor:
    """The reference: each unpadded prompt + answer + EOS in one plain forward, no cache."""
    table = model.get_input_embeddings()
    out = torch.zeros(len(mask), len(answers))
    for b in range(len(mask)):
        n = int(mask[b].sum())
        for k in range(len(answers)):
            ids = answers.ids[k, : answers.lengths[k]]
            logits = model(inputs_embeds=torch.cat([embeds[b, -n:], table(ids)])[None]).logits[0]
            logp = torch.log_softmax(logits[n - 1:-1].float(), -1)
            out[b, k] = logp.gather(1, ids[:, None]).sum()
    return out


@pytest.fixture(scope="module")
def tiny(tiny_llm):
    return load(tiny_llm(0))


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_scores_equal_the_full_sequence_log_likelihood(tiny_llm, attention):
    model, tokenizer = load(tiny_llm(0), attention)
    embeds, mask = chat_prompt_embeddings(model, tokenizer, PROMPTS)
    answers = tokenize_answers(tokenizer, CANDIDATES)
    assert len(answers.node_tokens) < int((answers.lengths - 1).sum())  # "sit" fed once
    scores = score_answers(model, embeds, mask, answers)
    expected = full_sequence_scores(model, embeds, mask, answers)
    torch.testing.assert_close(scores, expected, atol=2e-4, rtol=1e-5)
    assert torch.equal(scores.argsort(1, descending=True), expected.argsort(1, descending=True))


@pytest.mark.slow  # converts the bundled SmolLM2 once per session (~40 s)
def test_smollm2_scores_equal_the_full_sequence_log_likelihood(smollm2_dir):
    model, tokenizer = load(smollm2_dir)
    embeds, mask = chat_prompt_embeddings(model, tokenizer, ["Sit or pick up?", "Name it."])
    answers = tokenize_answers(tokenizer, ["pick up with one hand", "sit down"])
    scores = score_answers(model, embeds, mask, answers)
    torch.testing.assert_close(scores, full_sequence_scores(model, embeds, mask, answers),
                               atol=5e-4, rtol=1e-5)


def test_scores_do_not_depend_on_batch_grouping_or_candidate_order(tiny):
    model, tokenizer = tiny
    embeds, mask = chat_prompt_embeddings(model, tokenizer, PROMPTS)
    assert shared_prefix_length(embeds, mask.sum(1)) > 0  # the chat header is run once
    answers = tokenize_answers(tokenizer, CANDIDATES)
    together = score_answers(model, embeds, mask, answers)
    one_row_per_pass = score_answers(model, embeds, mask, answers, max_logits=1)
    alone = torch.cat([score_answers(model, *chat_prompt_embeddings(model, tokenizer, [p]), answers)
                       for p in PROMPTS])
    order = [3, 0, 5, 1, 4, 2]
    permuted = score_answers(model, embeds, mask,
                             tokenize_answers(tokenizer, [CANDIDATES[i] for i in order]))
    for other in (one_row_per_pass, alone, permuted[:, torch.tensor(order).argsort()]):
        torch.testing.assert_close(other, together, atol=2e-4, rtol=1e-5)


def test_mean_normalisation_divides_by_the_answer_length_with_eos(tiny):
    model, tokenizer = tiny
    embeds, mask = chat_prompt_embeddings(model, tokenizer, PROMPTS[:2])
    answers = tokenize_answers(tokenizer, CANDIDATES)
    assert answers.lengths.tolist() == [3, 2, 3, 3, 2, 2]  # words + EOS
    total = score_answers(model, embeds, mask, answers)
    mean = score_answers(model, embeds, mask, answers, normalize="mean")
    torch.testing.assert_close(mean, total / answers.lengths)
    with pytest.raises(ActionlmError, match="normalize"):
        score_answers(model, embeds, mask, answers, normalize="max")


def test_single_token_answers_need_no_tree_pass(tiny):
    model, tokenizer = tiny
    embeds, mask = chat_prompt_embeddings(model, tokenizer, PROMPTS[:2])
    answers = tokenize_answers(tokenizer, ["throw", "pickup"], eos_token_id=tokenizer.eos_token_id)
    scores = score_answers(model, embeds, mask, answers)
    torch.testing.assert_close(scores, full_sequence_scores(model, embeds, mask, answers),
                               atol=2e-4, rtol=1e-5)


@pytest.mark.parametrize("classes, message", [
    (["sit down", "throw", "sit down"], "listed twice"),
    (["sit down", "sit  down"], "tokenises like 'sit down'"),
    (["throw", ""], "tokenises to no tokens"),
    (["throw", "   "], "tokenises to no tokens"),
    ([], "no candidate"),
])
def test_bad_class_lists_are_refused(tiny, classes, message):
    with pytest.raises(ActionlmError, match=message):
        tokenize_answers(tiny[1], classes)


def test_a_prompt_longer_than_the_context_is_refused(tiny):
    model, tokenizer = tiny  # context 256
    answers = tokenize_answers(tokenizer, CANDIDATES)
    long = " ".join(["head hand"] * 130)
    embeds, mask = chat_prompt_embeddings(model, tokenizer, [PROMPTS[0], long])
    with pytest.raises(ActionlmError, match=r"s2: prompt of \d+ tokens .* context of 256"):
        score_answers(model, embeds, mask, answers, row_names=["s1", "s2"])


def test_a_right_padded_prompt_is_refused(tiny):
    model, tokenizer = tiny
    embeds, mask = chat_prompt_embeddings(model, tokenizer, PROMPTS[:2])
    with pytest.raises(ActionlmError, match="left-padded"):
        score_answers(model, embeds, mask.flip(1), tokenize_answers(tokenizer, CANDIDATES))


def test_generation_is_greedy_decoding_of_each_left_padded_prompt(tiny):
    model, tokenizer = tiny
    embeds, mask = chat_prompt_embeddings(model, tokenizer, PROMPTS[:2])
    texts = generate_answers(model, tokenizer, embeds, mask, max_new_tokens=3)
    table = model.get_input_embeddings()
    for b, text in enumerate(texts):
        sequence, new = embeds[b, -int(mask[b].sum()):], []
        with torch.no_grad():
            for _ in range(3):
                token = int(model(inputs_embeds=sequence[None]).logits[0, -1].argmax())
                if token == tokenizer.eos_token_id:
                    break
                new.append(token)
                sequence = torch.cat([sequence, table(torch.tensor([token]))])
        assert text == tokenizer.decode(new, skip_special_tokens=True).strip()


@pytest.mark.parametrize("text, expected", [
    ("Sit down.", 0),
    ("sit down and then stand up", 0),          # starts with a class: that one
    ("pick up with two hands", 3),              # the longest class it starts with
    ("I think it is: stand up!", 1),            # contained
    ("dancing", -1),
    ("stnad up: the person rises from the chair", 1),  # fuzzy, on the words before ":"
    ("pick upp with two hand", 3),              # fuzzy: the closest name wins
    ("sleep", -1),                              # nothing close enough
])
def test_generated_text_is_matched_to_a_class_name(text, expected):
    classes = ["sit down", "stand up", "pick up", "pick up with two hands"]
    assert match_answer(text, classes) == expected


@pytest.mark.parametrize("text, expected", [
    ("1. stand up 2. sit down 3. dancing 4) stand up 5. pick up", [1, 0, 2]),
    ("sit down, pick up with two hands; stand up", [0, 3, 1]),
    ("no idea", []),
])
def test_a_top_five_answer_is_read_as_a_ranking(text, expected):
    classes = ["sit down", "stand up", "pick up", "pick up with two hands"]
    assert match_ranking(text, classes) == expected
