"""The batching chat-completions server (actionlm.knowledge.batch_server) on the bundled
SmolLM2, through serve_model and the real openai client: OpenAI's answer and error formats,
answers that do not depend on the batch they were decoded in, greedy answers equal to
transformers' own generate, and concurrent requests decoded in shared batches."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest

from actionlm.data.prepare_llm import llm_model_dir
from actionlm.knowledge.describe import Prompts
from actionlm.knowledge.serve import serve_model, served_model_name

PROMPTS = Path(__file__).resolve().parents[1] / "configs/prompts/describe.yaml"
CLASSES = ["drink water", "throw", "sit down", "stand up", "clapping", "hand waving",
           "kicking something", "jump up", "put on a hat", "take off a jacket", "pick up",
           "brushing teeth", "reading", "writing", "tear up paper", "cheer up"]
SHORT = [{"role": "user", "content": "Name one body part used to wave."}]


@pytest.fixture(scope="module")
def server(smollm2_dir, tmp_path_factory):
    """(openai client, served name, log file) of one server shared by the module's tests."""
    log_path = tmp_path_factory.mktemp("batch-server") / "server.log"
    with serve_model(smollm2_dir, log_path=log_path, threads=1) as base_url:
        client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=600)
        yield client, served_model_name(smollm2_dir), log_path


@pytest.fixture(scope="module")
def tokenizer(smollm2_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(llm_model_dir(smollm2_dir))


def describe_messages(kind: str, class_name: str) -> list[dict]:
    """What the describe stage sends: system message, worked example, question."""
    return list(Prompts.load(PROMPTS).request(kind, class_name).messages)


def ask(server, messages, **sampling):
    client, name, _ = server
    return client.chat.completions.create(model=name, messages=messages, **sampling)


def ask_together(server, requests: list[tuple[list[dict], dict]]) -> list:
    """Send all requests at once (one thread each); their answers in order."""
    with ThreadPoolExecutor(len(requests)) as pool:
        futures = [pool.submit(ask, server, messages, **sampling)
                   for messages, sampling in requests]
        return [future.result() for future in futures]


def batch_lines(log_path: Path, start: int, rows: int) -> list[dict[str, float]]:
    """The server's per-batch log lines after byte ``start``, as {key: number}, once they
    count ``rows`` rows (a batch's line follows the answer of its last row)."""
    deadline = time.monotonic() + 30
    while True:
        text = log_path.read_bytes()[start:].decode()
        lines = [{key: float(value) for key, value in re.findall(r"(\w+)=([\d.]+)", line)}
                 for line in text.splitlines() if " batch rows=" in line]
        if sum(line["rows"] for line in lines) >= rows or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


def post(server, payload: bytes | dict, path: str = "/chat/completions") -> tuple[int, dict]:
    """Raw POST to the server: (status, JSON body)."""
    client = server[0]
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    request = urllib.request.Request(f"{client.base_url}".rstrip("/") + path, data=data,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_answer_has_openai_fields_usage_and_finish_reasons(server, tokenizer):
    _, name, _ = server
    reply = ask(server, SHORT, max_tokens=5, temperature=0)
    assert reply.object == "chat.completion" and reply.id.startswith("chatcmpl-")
    assert reply.model == name and reply.created > 0
    [choice] = reply.choices
    assert (choice.index, choice.message.role, choice.finish_reason) == (0, "assistant", "length")
    prompt = tokenizer.apply_chat_template(SHORT, add_generation_prompt=True, return_dict=False)
    assert reply.usage.prompt_tokens == len(prompt)
    assert reply.usage.completion_tokens == 5
    assert reply.usage.total_tokens == len(prompt) + 5

    ended = ask(server, SHORT, max_tokens=40, temperature=0)  # ends at its end-of-turn token
    assert ended.choices[0].finish_reason == "stop"
    assert 0 < ended.usage.completion_tokens < 40
    assert ended.choices[0].message.content.startswith(choice.message.content)

    text = ended.choices[0].message.content
    stop = text.split()[3]
    stopped = ask(server, SHORT, max_tokens=40, temperature=0, stop=[stop, "zzz-never"])
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.choices[0].message.content == text[:text.index(stop)]
    assert stopped.usage.completion_tokens < ended.usage.completion_tokens


def test_sampled_answer_does_not_depend_on_the_batch_it_is_decoded_in(server):
    _, _, log_path = server
    sampling = {"max_tokens": 24, "temperature": 0.7, "top_p": 0.9, "seed": 5}
    request = (describe_messages("synonym", "drink water"), sampling)
    alone = ask(server, request[0], **sampling).choices[0].message.content
    start = log_path.stat().st_size
    others = [(describe_messages(kind, name), {**sampling, "seed": seed})
              for seed, (kind, name) in enumerate([
                  ("synonym", "throw"), ("synonym", "drink water"), ("part", "sit down"),
                  ("paragraph", "clapping"), ("motion", "jump up"), ("synonym", "reading")])]
    answers = ask_together(server, [*others[:3], request, *others[3:], (SHORT, sampling)])
    assert answers[3].choices[0].message.content == alone
    assert answers[1].choices[0].message.content != alone  # same messages, another seed
    batches = batch_lines(log_path, start, rows=8)
    assert sum(b["rows"] for b in batches) == 8 and len(batches) < 8  # decoded together


def test_greedy_batched_answers_equal_transformers_generate(server, smollm2_dir, tokenizer,
                                                            torch_one_thread):
    import torch
    from transformers import AutoModelForCausalLM

    conversations = [describe_messages("synonym", "throw"), SHORT,
                     describe_messages("synonym", "sit down and relax on a chair"),
                     describe_messages("part", "kicking something")]
    answers = ask_together(server, [(m, {"max_tokens": 16, "temperature": 0})
                                    for m in conversations])
    model = AutoModelForCausalLM.from_pretrained(llm_model_dir(smollm2_dir)).eval()
    for messages, answer in zip(conversations, answers):
        inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                               return_tensors="pt", return_dict=True)
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=16, do_sample=False)
        expected = out[0, inputs["input_ids"].shape[1]:]
        assert answer.choices[0].message.content == tokenizer.decode(
            expected, skip_special_tokens=True)
        assert answer.usage.completion_tokens == len(expected)


@pytest.mark.parametrize("change, param", [
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]},
     "messages[0].content"),
    ({"temperature": "hot"}, "temperature"),
    ({"temperature": 3}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": 10**6}, "messages"),  # prompt + max_tokens beyond the context
    ({"seed": "x"}, "seed"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"n": 2}, "n"),
    ({"logprobs": True}, "logprobs"),
    ({"generation_config": '{"top_k": 5}'}, "generation_config"),
])
def test_bad_fields_are_refused_with_400(server, change, param):
    _, name, _ = server
    status, body = post(server, {"model": name, "messages": SHORT, **change})
    assert status == 400
    assert body["error"]["type"] == "invalid_request_error" and body["error"]["param"] == param
    assert body["error"]["message"] and body["error"]["code"]


def test_malformed_requests_and_unknown_names_get_openai_errors(server):
    client, name, _ = server
    status, body = post(server, b"{not json")
    assert (status, body["error"]["code"]) == (400, "invalid_json")
    status, body = post(server, {"model": "gpt-4o", "messages": SHORT})
    assert (status, body["error"]["code"]) == (404, "model_not_found")
    status, body = post(server, {"model": name, "messages": SHORT}, path="/completions")
    assert status == 404 and body["error"]["message"]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=SHORT, max_tokens=2)
    with pytest.raises(openai.BadRequestError, match="stream"):
        client.chat.completions.create(model=name, messages=SHORT, max_tokens=2, stream=True)
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.chat.completions.create(model=name, messages=SHORT, max_tokens=2, temperature=5)
    assert ask(server, SHORT, max_tokens=2).usage.completion_tokens == 2  # still serving


def test_concurrent_requests_are_decoded_in_shared_batches(server):
    _, _, log_path = server
    start = log_path.stat().st_size
    requests = [(describe_messages("synonym" if i % 2 else "motion", name),
                 {"max_tokens": 12, "temperature": 0.7, "seed": i})
                for i, name in enumerate(CLASSES)]
    answers = ask_together(server, requests)
    assert all(a.choices[0].message.content and a.usage.completion_tokens <= 12 for a in answers)
    batches = batch_lines(log_path, start, rows=16)
    assert sum(b["rows"] for b in batches) == 16
    assert len(batches) < 16
    # each kind's requests share its system message and worked example: computed once per batch
    assert sum(b["computed"] for b in batches) < sum(b["prompt_tokens"] for b in batches) / 2
