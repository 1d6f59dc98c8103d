"""Samples/s and accuracy of batched constrained scoring vs per-sample generate + matching.

Both recognise the same zero-shot prompts with the same LLM in this process: each prompt lists
the NW-UCLA classes and describes one action in words; the answer must name the class. The
baseline generates greedily, one sample at a time, and matches the text to a class name (the
papers' decoding); constrained scoring ranks every class by log p(class + EOS | prompt) in
batches (prompt KV cache reused, candidates as one prefix tree). Scoring with batch size 1 is
shown too, to separate the batching from the scoring itself. ``--ntu60`` adds the real task's
shape: an (untrained) LLM-AR recognizer's prompts against NTU60's 60 classes.

    python benchmarks/bench_scoring.py                    # prepares the bundled SmolLM2 (~40 s)
    python benchmarks/bench_scoring.py --llm /tmp/llm-smol --ntu60
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from actionlm.data.classes import NTU120_CLASS_NAMES, NW_UCLA_CLASSES
from actionlm.data.prepare_llm import DEFAULT_SOURCE, llm_model_dir, prepare_llm
from actionlm.device import autocast, select_device
from actionlm.llm.scoring import (
    chat_prompt_embeddings,
    generate_answers,
    match_answer,
    score_answers,
    tokenize_answers,
)

# Two plain descriptions per NW-UCLA class (the benchmark's test items), in class order.
DESCRIPTIONS = (
    ("The person bends over and lifts a small object off the floor using only the right hand.",
     "Someone reaches down and grabs an item from the ground with a single hand."),
    ("The person squats and lifts a box from the floor holding it with both hands.",
     "Someone bends down and raises a heavy object off the ground using two hands."),
    ("The person lets a piece of rubbish fall from the hand into a bin.",
     "Someone throws away garbage by dropping it into the trash can."),
    ("The person strolls across the room in a circle.",
     "Someone walks around the space, taking many steps."),
    ("The person lowers the body from standing onto a chair.",
     "Someone takes a seat on a chair."),
    ("The person rises from a chair to an upright position.",
     "Someone gets up from sitting and stands."),
    ("The person puts on a jacket, pushing the arms into the sleeves.",
     "Someone gets dressed by putting a coat on."),
    ("The person takes off a jacket, pulling the arms out of the sleeves.",
     "Someone gets undressed by removing a coat."),
    ("The person swings an arm forward and releases a ball into the air.",
     "Someone hurls an object away with one arm."),
    ("The person walks while holding a large box in front of the body.",
     "Someone transports a bag, holding it while moving."),
)


def build_prompts(classes: list[str]) -> tuple[list[str], list[int]]:
    items = [(d, label) for label, pair in enumerate(DESCRIPTIONS) for d in pair]
    listed = "; ".join(classes)
    prompts = [f"Possible actions: {listed}.\nWhich of these actions does the following "
               f"describe? {text}\nAnswer with the action name only." for text, _ in items]
    return prompts, [label for _, label in items]


def compare(title: str, model, tokenizer, embed, items: list, labels: list[int],
            classes: list[str], batch_size: int) -> None:
    """Time and score both methods on ``items`` (``embed(items)`` -> left-padded prompt)."""
    answers = tokenize_answers(tokenizer, classes)
    max_new = int(answers.lengths.max())  # the longest class name + EOS
    truth = torch.tensor(labels)

    def generate_all(batch: list) -> list[int]:
        return [match_answer(generate_answers(model, tokenizer, *embed([item]), max_new)[0],
                             classes) for item in batch]

    def score_all(batch: list, size: int) -> torch.Tensor:
        return torch.cat([score_answers(model, *embed(batch[i:i + size]), answers).cpu()
                          for i in range(0, len(batch), size)])

    def timed(fn, *a):
        start = time.perf_counter()
        result = fn(*a)
        return result, len(items) / (time.perf_counter() - start)

    with torch.inference_mode():
        generate_all(items[:1]), score_all(items[:2], 2)  # warm-up (first-call setup)
        picks, gen_rate = timed(generate_all, items)
        scores, score_rate = timed(score_all, items, batch_size)
        scores_one, one_rate = timed(score_all, items, 1)
    gen_acc = (torch.tensor(picks) == truth).float().mean().item()
    sum_acc = (scores.argmax(1) == truth).float().mean().item()
    mean_acc = ((scores / answers.lengths).argmax(1) == truth).float().mean().item()
    top5 = (scores.topk(5, dim=1).indices == truth[:, None]).any(1).float().mean().item()
    print(f"\n{title}: {len(items)} samples, {len(classes)} classes "
          f"({len(answers.node_tokens)} answer-tree tokens), {torch.get_num_threads()} threads")
    print(f"generate + match (per sample): {gen_rate:7.2f} samples/s  top-1 {gen_acc:.3f} "
          f"(unmatched answers: {picks.count(-1)})")
    print(f"constrained scoring, batch {batch_size:>3}: {score_rate:7.2f} samples/s  "
          f"top-1 {sum_acc:.3f} (sum), {mean_acc:.3f} (mean), top-5 {top5:.3f}")
    print(f"constrained scoring, batch   1: {one_rate:7.2f} samples/s")
    print(f"max |score difference| batch {batch_size} vs 1: "
          f"{(scores - scores_one).abs().max().item():.2e}")
    ratio = score_rate / gen_rate
    print(f"speed-up: {ratio:.1f}x (batch {batch_size}), {one_rate / gen_rate:.1f}x (batch 1); "
          f"target >= 5x: {'met' if ratio >= 5 else 'NOT met'}; accuracy "
          f"{'equal or better' if sum_acc >= gen_acc else 'WORSE'} than generate")


def recognizer_scenario(llm: Path, n: int):
    """An untrained LLM-AR recognizer (random action-token embeddings) on random 16-token
    action sentences, NTU60's 60 classes: the prompt and answer shapes of the real task
    (accuracy is chance)."""
    from actionlm.llm.recognizer import LoraSettings, Recognizer, RecognizerSpec, base_fingerprint

    classes = list(NTU120_CLASS_NAMES[:60])
    spec = RecognizerSpec("llm_ar", classes, classes, LoraSettings(r=8),
                          {"llm": str(llm), **base_fingerprint(llm)}, codes=512)
    gen = torch.Generator().manual_seed(0)
    hidden = spec.base["hidden_size"]
    recognizer = Recognizer(spec, llm, torch.device("cpu"),
                            0.05 * torch.randn(512, hidden, generator=gen)).eval()
    items = torch.randint(0, 512, (n, 16), generator=gen).tolist()
    labels = torch.randint(0, 60, (n,), generator=gen).tolist()
    return recognizer, items, labels, classes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llm", type=Path, help="prepared LLM folder (default: prepare the "
                        "bundled SmolLM2 into a temporary folder)")
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--ntu60", action="store_true", help="also time an (untrained) LLM-AR "
                        "recognizer's prompts against NTU60's 60 classes")
    args = parser.parse_args()
    device = select_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        if args.llm is None:
            args.llm = Path(tmp) / "llm"
            prepare_llm(DEFAULT_SOURCE, args.llm)
        model_dir = llm_model_dir(args.llm)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device)
        model.eval()
        classes = list(NW_UCLA_CLASSES.values())
        prompts, labels = build_prompts(classes)
        print(f"{model_dir} on {device}")
        with autocast(device):
            compare("zero-shot text prompts, NW-UCLA", model, tokenizer,
                    lambda batch: chat_prompt_embeddings(model, tokenizer, batch), prompts,
                    labels, classes, args.batch_size)
            if args.ntu60:
                recognizer, items, labels, classes = recognizer_scenario(args.llm, 16)
                compare("LLM-AR recognizer prompts (untrained), NTU60", recognizer.model,
                        recognizer.tokenizer, recognizer.prompt_embeddings, items, labels,
                        classes, min(args.batch_size, 8))


if __name__ == "__main__":
    main()
