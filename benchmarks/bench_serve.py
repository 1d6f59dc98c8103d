"""Cost of describing classes through `transformers serve` (actionlm.knowledge.serve).

Prints the conversion time of the bundled GGUF (when no --llm is given), the server's startup
seconds, and seconds per 60-token chat answer through the openai client, against a baseline run
in this same process: greedy `model.generate` of the same 60 tokens from the same folder, no
server. Their ratio is the price of the HTTP/OpenAI path.

    python benchmarks/bench_serve.py                    # converts the bundled SmolLM2 first
    python benchmarks/bench_serve.py --llm DIR          # an `actionlm prepare-llm` folder
    taskset -c 0,1 python benchmarks/bench_serve.py     # pin to 2 cores (the embedded default)
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import openai
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from actionlm.data.prepare_llm import DEFAULT_SOURCE, llm_model_dir, prepare_llm
from actionlm.knowledge.serve import serve_model, served_model_name

TOKENS = 60
MESSAGES = [{"role": "user", "content": "Describe step by step how the arms and hands move when "
             "a person waves goodbye."}]


def seconds_per_answer_served(base_url: str, model: str, repeats: int) -> list[float]:
    client = openai.OpenAI(base_url=base_url, api_key="unused")
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        reply = client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=TOKENS,
                                               temperature=0)
        times.append(time.perf_counter() - start)
        assert reply.usage.completion_tokens == TOKENS, reply.usage
    return times


def seconds_per_answer_in_process(folder: Path, repeats: int) -> list[float]:
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    inputs = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        with torch.no_grad():
            model.generate(**inputs, max_new_tokens=TOKENS, min_new_tokens=TOKENS, do_sample=False)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--llm", type=Path,
                        help="prepared LLM folder (default: convert the bundled one)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads of the server and of the baseline (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"cores available: {len(os.sched_getaffinity(0))}, torch threads: "
          f"{torch.get_num_threads()}, load average: {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as scratch:
        llm = args.llm
        if llm is None:
            llm = Path(scratch) / "smollm2-135m-instruct"
            start = time.perf_counter()
            prepare_llm(DEFAULT_SOURCE, llm, "float32")
            print(f"convert {DEFAULT_SOURCE}: {time.perf_counter() - start:.1f} s")
        runs = args.repeats + 1
        start = time.perf_counter()
        with serve_model(llm, threads=args.threads) as base_url:
            print(f"server startup: {time.perf_counter() - start:.1f} s")
            served = seconds_per_answer_served(base_url, served_model_name(llm), runs)[1:]
        baseline = seconds_per_answer_in_process(llm_model_dir(llm), runs)[1:]
    s, b = statistics.median(served), statistics.median(baseline)
    print(f"{TOKENS}-token answer, median of {args.repeats} after one warm-up: served {s:.2f} s, "
          f"in-process generate {b:.2f} s, ratio {s / b:.2f}")


if __name__ == "__main__":
    main()
