"""Throughput of the describe stage's local server (actionlm.knowledge.batch_server, started by
serve_model): requests/s and generated tokens/s (per second, and per CPU second of the server)
for N describe requests sent at once (decoded in shared batches), against the same N requests
sent one at a time to the same server, in this same process, for each N of --concurrency (with
--repeats, the fastest of alternated runs).

The requests are the describe stage's own (configs/prompts/describe.yaml: system message, worked
example, question; class-major over the four kinds, as the stage sends them), with the prompts
file's sampling and max_tokens capped at --tokens. Both runs send identical requests, so they
generate the same answers (up to floating-point differences of the batch shape). The server's
per-batch lines (rows, prefix groups, prompt tokens computed) are printed for the batched runs.

    python benchmarks/bench_serve.py                    # converts the bundled SmolLM2 first
    python benchmarks/bench_serve.py --llm DIR          # an `actionlm prepare-llm` folder
    taskset -c 0,1 python benchmarks/bench_serve.py     # pin to 2 cores (the embedded default)
    python benchmarks/bench_serve.py --threads 1        # robust on a core shared with others
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import psutil

from actionlm.data.prepare_llm import DEFAULT_SOURCE, prepare_llm
from actionlm.knowledge.describe import DEFAULT_PROMPTS, KINDS, SERVE_SAMPLING, Prompts
from actionlm.knowledge.serve import serve_model, served_model_name

CLASSES = ["drink water", "eat meal", "brushing teeth", "brushing hair", "drop", "pickup",
           "throw", "sitting down", "standing up", "clapping", "reading", "writing",
           "tear up paper", "wear jacket", "take off jacket", "wear a shoe", "take off a shoe",
           "wear on glasses", "take off glasses", "put on a hat", "take off a hat", "cheer up",
           "hand waving", "kicking something", "reach into pocket", "hopping", "jump up",
           "make a phone call", "playing with phone", "typing on a keyboard",
           "pointing to something", "taking a selfie"]


def describe_requests(n: int, max_tokens: int) -> list[dict]:
    """The first ``n`` requests the describe stage would send (class-major over its kinds)."""
    prompts = Prompts.load(DEFAULT_PROMPTS)
    requests = []
    for name in CLASSES:
        for kind in KINDS:
            request = prompts.request(kind, name)
            sampling = request.sampling()
            sampling["max_tokens"] = min(sampling["max_tokens"], max_tokens)
            requests.append({"messages": list(request.messages), **sampling,
                             "extra_body": SERVE_SAMPLING})  # as the stage sends them
    return requests[:n]


def send(client: openai.OpenAI, model: str, request: dict) -> int:
    """One request; its generated tokens."""
    reply = client.chat.completions.create(model=model, **request)
    return reply.usage.completion_tokens


def server_cpu_seconds() -> float:
    """CPU seconds used so far by the server (a child of this process): unlike wall time, it
    barely grows when other programs share the cores (with --threads 1)."""
    for child in psutil.Process().children(recursive=True):
        if "actionlm.knowledge.batch_server" in child.cmdline():
            times = child.cpu_times()
            return times.user + times.system
    raise RuntimeError("the server process is gone")


def timed(client, model: str, requests: list[dict], together: bool):
    """(seconds, generated tokens, server CPU seconds) for ``requests`` sent all at once or
    one at a time."""
    start, cpu = time.perf_counter(), server_cpu_seconds()
    if together:
        with ThreadPoolExecutor(len(requests)) as pool:
            tokens = sum(pool.map(lambda r: send(client, model, r), requests))
    else:
        tokens = sum(send(client, model, r) for r in requests)
    return time.perf_counter() - start, tokens, server_cpu_seconds() - cpu


def batch_lines(log_path: Path, start: int, rows: int) -> list[str]:
    """The server's batch lines after byte ``start``, once they count ``rows`` rows (a
    batch's line follows the answer of its last row)."""
    deadline = time.monotonic() + 30
    while True:
        text = log_path.read_bytes()[start:].decode(errors="replace")
        lines = [line.split(" INFO ", 1)[-1] for line in text.splitlines()
                 if " batch rows=" in line]
        if sum(int(line.split("rows=")[1].split()[0]) for line in lines) >= rows:
            return lines
        if time.monotonic() > deadline:
            return lines + ["(incomplete)"]
        time.sleep(0.1)


def best_of(repeats: int, client, model: str, requests: list[dict], log_path: Path):
    """Batched and one-by-one runs alternated ``repeats`` times: the fastest (seconds, tokens,
    CPU seconds) of each (the least disturbed by other load), the batched one's log lines."""
    batched, one_by_one = [], []
    for _ in range(repeats):
        offset = log_path.stat().st_size
        run = timed(client, model, requests, together=True)
        batched.append((*run, batch_lines(log_path, offset, len(requests))))
        one_by_one.append(timed(client, model, requests, together=False))
    return min(batched), min(one_by_one)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--llm", type=Path,
                        help="prepared LLM folder (default: convert the bundled one)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--tokens", type=int, default=64, help="max_tokens cap per request")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads of the server (default: torch's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=1,
                        help="alternate both runs this often and keep each one's fastest (a "
                        "shared machine's load varies)")
    args = parser.parse_args()
    print(f"cores available: {len(os.sched_getaffinity(0))}, server threads: "
          f"{args.threads or 'default'}, load average: {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as scratch:
        llm = args.llm
        if llm is None:
            llm = Path(scratch) / "smollm2-135m-instruct"
            start = time.perf_counter()
            prepare_llm(DEFAULT_SOURCE, llm, "float32")
            print(f"convert {DEFAULT_SOURCE}: {time.perf_counter() - start:.1f} s")
        log_path = Path(scratch) / "server.log"
        start = time.perf_counter()
        with serve_model(llm, device=args.device, threads=args.threads,
                         log_path=log_path) as base_url:
            print(f"server startup: {time.perf_counter() - start:.1f} s")
            client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0,
                                   timeout=3600)
            model = served_model_name(llm)
            timed(client, model, describe_requests(1, args.tokens), together=False)  # warm-up
            for n in args.concurrency:
                requests = describe_requests(n, args.tokens)
                (batched_s, batched_tokens, batched_cpu, lines), (one_s, one_tokens, one_cpu) = (
                    best_of(args.repeats, client, model, requests, log_path))
                print(f"{n:3d} requests at once:    {n / batched_s:6.3f} requests/s, "
                      f"{batched_tokens / batched_s:6.1f} tokens/s, "
                      f"{batched_tokens / batched_cpu:6.1f} tokens/server-CPU-s "
                      f"({batched_tokens} tokens, {batched_s:.1f} s, {len(lines)} batches)")
                print(f"{n:3d} requests one by one: {n / one_s:6.3f} requests/s, "
                      f"{one_tokens / one_s:6.1f} tokens/s, "
                      f"{one_tokens / one_cpu:6.1f} tokens/server-CPU-s "
                      f"({one_tokens} tokens, {one_s:.1f} s); "
                      f"batched/sequential: {one_s / batched_s:.2f}x wall, "
                      f"{one_cpu / batched_cpu:.2f}x CPU")
                for line in lines:
                    print(f"      {line}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
