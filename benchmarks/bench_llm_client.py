"""Throughput of the cached LLM client, and the cost of a rerun, for `actionlm describe`.

Against a loopback OpenAI-compatible server (tests/fake_openai.py) that takes `--latency`
seconds per answer, the describe stage asks its 3 questions for each NTU120 class:

- cold run: requests/s against the ideal concurrency / latency (target: ratio >= 0.8), and
  against a baseline in this same process: the bare AsyncOpenAI client with as many workers
  (no cache, no retries, no parsing), which shows what the machine itself allows;
- rerun: every answer from the cache, zero requests (target: under 2 s for 120 classes), in
  this process and as the CLI in a fresh process (imports included, no API key set).

    python benchmarks/bench_llm_client.py [--classes 120] [--latency 0.2] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import openai
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from actionlm.data.classes import NTU120_CLASS_NAMES  # noqa: E402
from actionlm.knowledge.client import LLMClient, Provider  # noqa: E402
from actionlm.knowledge.describe import DEFAULT_PROMPTS, Prompts, describe_classes  # noqa: E402
from fake_openai import FakeOpenAI, last_user_text  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def answer(body: dict) -> str:
    question = last_user_text(body)
    if question.startswith("Describing"):
        return "head nods; hand grips; arm lifts; hip stays; leg bends; foot taps."
    if question.startswith("Suggest"):
        return "do it, perform it, carry it out, execute it"
    return "A person performs the action with a steady and deliberate movement of the body."


def serve(latency: float, port, received, stop) -> None:
    """The fake server in its own process (as a real endpoint is): its threads must not
    compete with the client for this process's GIL."""
    def counted(body: dict) -> str:
        with received.get_lock():
            received.value += 1
        return answer(body)

    with FakeOpenAI(counted, latency_s=latency) as server:
        port.value = int(server.base_url.rsplit(":", 1)[1].split("/")[0])
        stop.wait()


def bare_client_baseline(base_url: str, requests: list, concurrency: int) -> float:
    """Requests/s of the plain AsyncOpenAI client, ``concurrency`` workers, no cache, no
    retries, no validation: what the machine allows; the client's overhead is the rest."""
    async def send_all() -> None:
        api = openai.AsyncOpenAI(api_key="bench", base_url=base_url, max_retries=0)
        queue = list(requests)

        async def worker() -> None:
            while queue:
                request = queue.pop()
                await api.chat.completions.create(
                    model="fake-model", messages=list(request.messages), **request.sampling())

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        await api.close()

    start = time.perf_counter()
    asyncio.run(send_all())
    return len(requests) / (time.perf_counter() - start)


def cli_rerun(classes: list[tuple], cache: str, base_url: str) -> float:
    """Wall time of `actionlm describe` in a fresh process on the warm cache, without a key."""
    with tempfile.TemporaryDirectory() as scratch:
        classes_file = Path(scratch) / "classes.parquet"
        pq.write_table(pa.table({"label": [c[0] for c in classes],
                                 "class_name": [c[1] for c in classes],
                                 "native_id": [c[2] for c in classes]}), classes_file)
        command = [sys.executable, "-m", "actionlm.cli", "describe", "--classes",
                   str(classes_file), "--out", str(Path(scratch) / "d.parquet"), "--cache-dir",
                   cache, "--model", "fake-model", "--base-url", base_url,
                   "--api-key-env", "BENCH_UNSET_KEY"]
        start = time.perf_counter()
        subprocess.run(command, cwd=REPO, check=True, capture_output=True)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, default=120)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per answer")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    os.environ["BENCH_KEY"] = "bench"
    prompts = Prompts.load(REPO / DEFAULT_PROMPTS)
    classes = [(i, name, i + 1) for i, name in enumerate(NTU120_CLASS_NAMES[: args.classes])]
    n_requests = 3 * len(classes)

    port, received, stop = multiprocessing.Value("i", 0), multiprocessing.Value("i", 0), \
        multiprocessing.Event()
    server = multiprocessing.Process(target=serve, args=(args.latency, port, received, stop))
    server.start()
    while not port.value:
        time.sleep(0.05)
    base_url = f"http://127.0.0.1:{port.value}/v1"
    try:
        with tempfile.TemporaryDirectory() as cache:
            baseline = bare_client_baseline(
                base_url, [prompts.request(kind, name) for _, name, _ in classes
                           for kind in ("part", "synonym", "paragraph")], args.concurrency)
            sent_before = received.value

            def client() -> LLMClient:
                return LLMClient(Provider("fake-model", base_url, "BENCH_KEY"), cache,
                                 concurrency=args.concurrency)

            start, cpu_start = time.perf_counter(), time.process_time()
            cold_client = client()
            describe_classes(classes, prompts, cold_client)
            cold, cold_cpu = time.perf_counter() - start, time.process_time() - cpu_start
            sent = received.value - sent_before

            start = time.perf_counter()
            describe_classes(classes, prompts, client())
            warm = time.perf_counter() - start
            cli_warm = cli_rerun(classes, cache, base_url)
            resent = received.value - sent_before - sent
    finally:
        stop.set()
        server.join()

    ideal = args.concurrency / args.latency
    throughput = sent / cold
    print(f"{len(classes)} classes, {n_requests} requests, latency {args.latency * 1000:.0f} ms, "
          f"concurrency {args.concurrency}")
    print(f"cold run:  {cold:6.2f} s  {throughput:6.1f} req/s ({cold_client.stats.retries} "
          f"retries); ideal concurrency/latency = {ideal:.1f} req/s; ratio "
          f"{throughput / ideal:.2f} (target >= 0.80)")
    print(f"           client CPU {1000 * cold_cpu / sent:.1f} ms per request "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    print(f"           bare AsyncOpenAI, same concurrency, no cache: {baseline:.1f} req/s "
          f"(ratio to ideal {baseline / ideal:.2f}); this client / bare "
          f"{throughput / baseline:.2f}")
    print(f"rerun:     {warm:6.2f} s in this process, {cli_warm:.2f} s as `actionlm describe` in "
          f"a fresh process (no API key set); {resent} requests sent (target: 0 requests, "
          f"< 2 s); ratio to target {cli_warm / 2.0:.2f}")


if __name__ == "__main__":
    main()
