"""The cached LLM client against a real loopback HTTP server with scripted faults."""

from __future__ import annotations

import dataclasses
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from actionlm.errors import ActionlmError
from actionlm.knowledge.client import (
    ChatRequest,
    InvalidAnswer,
    LLMClient,
    LLMRequestError,
    Provider,
)
from fake_openai import FakeOpenAI, Reply, last_user_text

KEY_ENV = "ACTIONLM_TEST_KEY"
KEY = "sk-test-0123456789-SECRET"


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)


@pytest.fixture
def server():
    with FakeOpenAI(lambda body: f"answer to {last_user_text(body)}") as fake:
        yield fake


def make_client(server, cache: Path, model: str = "fake-model", **kw) -> LLMClient:
    kw = {"backoff_s": 0.01, "max_retries": 3, "timeout_s": 5.0, **kw}
    return LLMClient(Provider(model, server.base_url, KEY_ENV), cache, **kw)


def ask(text: str, **kw) -> ChatRequest:
    return ChatRequest(messages=({"role": "user", "content": text},), **{"label": f"q {text}", **kw})


def cache_entries(cache: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(cache.rglob("*.json"))]


def test_answers_in_request_order_and_rerun_sends_nothing(server, tmp_path):
    requests = [ask(f"q{i}") for i in range(6)]
    answers = make_client(server, tmp_path).run(requests)
    assert [a.text for a in answers] == [f"answer to q{i}" for i in range(6)]
    assert len(server.requests) == 6 and not any(a.from_cache for a in answers)

    again = make_client(server, tmp_path)
    assert [a.text for a in again.run(requests)] == [a.text for a in answers]
    assert len(server.requests) == 6
    assert again.stats.as_dict() == {"cache_hits": 6, "requests": 0, "retries": 0,
                                     "bad_answers": 0, "trimmed": 0}


def test_cache_key_covers_model_messages_and_sampling_only():
    base = ask("x")
    h = base.request_hash("m")
    assert ask("x", label="other", validator=str.upper).request_hash("m") == h
    assert base.request_hash("m2") != h
    assert ask("y").request_hash("m") != h
    for change in ({"temperature": 0.1}, {"seed": 1}, {"max_tokens": 7}, {"top_p": 0.5}):
        assert ChatRequest(base.messages, **change).request_hash("m") != h
    assert base.request_hash("m", {"generation_config": "{}"}) != h


def test_cache_entries_are_sharded_json_without_temp_files(server, tmp_path):
    client = make_client(server, tmp_path)
    [answer] = client.run([ask("q")])
    path = tmp_path / answer.request_hash[:2] / f"{answer.request_hash}.json"
    entry = json.loads(path.read_text())
    assert entry["text"] == "answer to q" and entry["model"] == "fake-model"
    assert entry["messages"] == [{"role": "user", "content": "q"}]
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [path]


GOOD = Reply(content="good answer")


@pytest.mark.parametrize(
    "fault, bad_answer",
    [
        (Reply(status=429, headers={"Retry-After": "0.05"}), False),
        (Reply(status=500), False),
        (Reply(status=503), False),
        (Reply(delay_s=2.0), False),  # longer than the client's timeout
        (Reply(fault="reset"), False),
        (Reply(fault="malformed"), False),
        (Reply(fault="no-choices"), False),
        (Reply(content=""), True),
        (Reply(content=None), True),
        (Reply(content="cut", finish_reason="length"), True),
        (Reply(content="", finish_reason="content_filter"), True),
    ],
    ids=["429", "500", "503", "timeout", "reset", "malformed-json", "no-choices", "empty",
         "null-content", "length", "content-filter"],
)
def test_fault_is_retried_and_only_answers_are_cached(server, tmp_path, fault, bad_answer):
    server.script(fault, GOOD)
    client = make_client(server, tmp_path, timeout_s=0.5)
    [answer] = client.run([ask("q", seed=7)])
    assert answer.text == "good answer"
    assert len(server.requests) == 2
    assert client.stats.retries == 1 and client.stats.bad_answers == int(bad_answer)
    # a bad answer is asked again with the next seed; a transport failure resent as it was
    assert [r["seed"] for r in server.requests] == [7, 8 if bad_answer else 7]
    # a bad answer was paid for: it is kept, under the key of its own seed
    entries = {e["sampling"]["seed"]: e for e in cache_entries(tmp_path)}
    assert sorted(entries) == ([7, 8] if bad_answer else [7])
    assert entries[max(entries)]["text"] == "good answer"
    assert answer.request_hash == entries[max(entries)]["request_hash"]
    [again] = make_client(server, tmp_path).run([ask("q", seed=7)])
    assert len(server.requests) == 2 and again == dataclasses.replace(answer, from_cache=True)


def test_a_cut_answer_keeps_its_complete_part_when_the_request_can_trim(server, tmp_path):
    def upto_last_period(text):
        return text[: text.rfind(".") + 1]

    server.script(Reply(content="One. Two. Thr", finish_reason="length"),
                  Reply(content="no period at all", finish_reason="length"), GOOD)
    client = make_client(server, tmp_path, concurrency=1)  # scripted replies go in arrival order
    [kept, refused_then_good] = client.run([ask("a", trim_truncated=upto_last_period),
                                            ask("b", trim_truncated=upto_last_period)])
    assert kept.text == "One. Two." and refused_then_good.text == "good answer"
    assert client.stats.trimmed == 1 and client.stats.bad_answers == 1
    entry = next(e for e in cache_entries(tmp_path) if e["label"] == "q a")
    assert entry["text"] == "One. Two. Thr" and entry["finish_reason"] == "length"  # as sent
    [again, _] = make_client(server, tmp_path).run([ask("a", trim_truncated=upto_last_period),
                                                    ask("b", trim_truncated=upto_last_period)])
    assert again.text == "One. Two." and again.from_cache and len(server.requests) == 3


def test_retry_after_is_honoured(server, tmp_path):
    server.script(Reply(status=429, headers={"Retry-After": "0.6"}), GOOD)
    make_client(server, tmp_path, backoff_s=0.0).run([ask("q")])
    assert server.arrivals[1] - server.arrivals[0] >= 0.55


def test_exhausted_retries_name_the_request_and_keep_the_rest(tmp_path):
    def flaky(body):
        return Reply(status=503, error="overloaded") if "bad" in last_user_text(body) else "fine"

    with FakeOpenAI(flaky) as server:
        client = make_client(server, tmp_path, max_retries=2)
        with pytest.raises(LLMRequestError) as err:
            client.run([ask("a"), ask("bad"), ask("c")])
        message = str(err.value)
        assert "q bad: HTTP 503" in message and "HTTP 503" in message and "overloaded" in message
        assert "1 of 3" in message and "3 attempts" in message
        assert sum("bad" in last_user_text(r) for r in server.requests) == 3
        assert sorted(e["label"] for e in cache_entries(tmp_path)) == ["q a", "q c"]

        server.responder = lambda body: "healed"
        server.requests.clear()
        answers = make_client(server, tmp_path).run([ask("a"), ask("bad"), ask("c")])
        assert [last_user_text(r) for r in server.requests] == ["bad"]
        assert [a.text for a in answers] == ["fine", "healed", "fine"]


def test_unknown_model_fails_at_once_without_retries(server, tmp_path):
    client = make_client(server, tmp_path, model="no-such-model", concurrency=1)
    with pytest.raises(LLMRequestError, match="HTTP 404.*unknown model 'no-such-model'"):
        client.run([ask("a"), ask("b"), ask("c")])
    assert len(server.requests) == 1
    assert cache_entries(tmp_path) == []


@pytest.mark.parametrize("status", [400, 401, 403])
def test_refused_requests_are_not_retried_and_never_echo_the_key(server, tmp_path, status):
    server.script(Reply(status=status, error=f"Incorrect API key provided: {KEY}"))
    with pytest.raises(LLMRequestError) as err:
        make_client(server, tmp_path, concurrency=1).run([ask("a"), ask("b")])
    assert f"HTTP {status}" in str(err.value) and KEY not in str(err.value)
    assert len(server.requests) == 1


def test_exhausted_quota_is_not_retried(server, tmp_path):
    server.script(Reply(status=429, code="insufficient_quota", error="You exceeded your quota"))
    with pytest.raises(LLMRequestError, match="HTTP 429.*quota"):
        make_client(server, tmp_path).run([ask("a")])
    assert len(server.requests) == 1


def test_missing_key_is_reported_before_any_request(server, tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ActionlmError, match=f"environment variable {KEY_ENV} is not set"):
        make_client(server, tmp_path).run([ask("a")])
    assert server.requests == []


def test_warm_cache_needs_no_key(server, tmp_path, monkeypatch):
    make_client(server, tmp_path).run([ask("a")])
    monkeypatch.delenv(KEY_ENV)
    [answer] = make_client(server, tmp_path).run([ask("a")])
    assert answer.from_cache and answer.text == "answer to a"


def test_key_is_sent_but_never_stored(server, tmp_path):
    make_client(server, tmp_path).run([ask("a")])
    assert server.headers[0]["authorization"] == f"Bearer {KEY}"
    assert all(KEY not in p.read_text() for p in tmp_path.rglob("*.json"))


def test_invalid_answer_is_asked_again_with_a_new_seed(tmp_path):
    def by_seed(body):  # a deterministic server: the answer depends on the seed only
        return "six parts" if body["seed"] >= 2 else f"broken {body['seed']}"

    def six_parts(text):
        if text != "six parts":
            raise InvalidAnswer("not six parts")
        return {"parsed": True}

    with FakeOpenAI(by_seed) as server:
        client = make_client(server, tmp_path)
        [answer] = client.run([ask("q", validator=six_parts)])
        assert answer.value == {"parsed": True}
        assert [r["seed"] for r in server.requests] == [0, 1, 2]
        entries = cache_entries(tmp_path)
        assert sorted((e["sampling"]["seed"], e["text"]) for e in entries) == [
            (0, "broken 0"), (1, "broken 1"), (2, "six parts")]
        # each seed has its own key; the answer names the one it came from
        assert {e["request_hash"] for e in entries} == {
            ask("q").request_hash("fake-model", bad_answers=k) for k in range(3)}
        assert answer.request_hash == ask("q", seed=2).request_hash("fake-model")
        again = make_client(server, tmp_path)
        assert again.run([ask("q", validator=six_parts)]) == [
            dataclasses.replace(answer, from_cache=True)]
        assert len(server.requests) == 3
        assert again.stats.cache_hits == 3 and again.stats.bad_answers == 2


def test_invalid_answers_until_retries_run_out_are_reported(server, tmp_path):
    def never(text):
        raise InvalidAnswer("missing hip")

    with pytest.raises(LLMRequestError, match=r"q a: .*missing hip.*answer was 'answer to a'"):
        make_client(server, tmp_path, max_retries=1).run([ask("a", validator=never)])
    assert sorted(e["sampling"]["seed"] for e in cache_entries(tmp_path)) == [0, 1]


def test_refused_answers_are_cached_and_more_retries_ask_the_next_seeds(server, tmp_path,
                                                                       monkeypatch):
    """A refused answer was paid for: a rerun with the same settings judges the cached answers
    again and sends nothing (it needs no key); only a higher max_retries asks new seeds."""
    def even_seeds_only(text):
        if int(text.rsplit(" ", 1)[1]) % 2:
            raise InvalidAnswer("odd seed")
        return text

    server.responder = lambda body: f"{last_user_text(body)} {body['seed']}"
    requests = [ask("a", seed=1, validator=even_seeds_only),
                ask("b", seed=2, validator=even_seeds_only)]
    with pytest.raises(LLMRequestError, match=r"1 of 2 .*higher max_retries") as first:
        make_client(server, tmp_path, max_retries=0).run(requests)
    assert sorted(r["seed"] for r in server.requests) == [1, 2]
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(LLMRequestError) as again:
        make_client(server, tmp_path, max_retries=0).run(requests)
    assert len(server.requests) == 2 and str(again.value) == str(first.value)
    assert again.value.answers == [None, dataclasses.replace(first.value.answers[1],
                                                             from_cache=True)]
    assert make_client(server, tmp_path, max_retries=0).all_cached(requests)
    assert not make_client(server, tmp_path, max_retries=1).all_cached(requests)

    monkeypatch.setenv(KEY_ENV, KEY)
    client = make_client(server, tmp_path, max_retries=2)
    assert [a.text for a in client.run(requests)] == ["a 2", "b 2"]
    assert [r["seed"] for r in server.requests[2:]] == [2]  # the next seed, once
    assert client.stats.as_dict() == {"cache_hits": 2, "requests": 1, "retries": 0,
                                      "bad_answers": 1, "trimmed": 0}


def test_cached_answer_that_a_stricter_validator_refuses_is_asked_again(server, tmp_path):
    make_client(server, tmp_path).run([ask("a")])

    def strict(text):
        if "again" not in text:
            raise InvalidAnswer("old format")
        return text

    server.responder = lambda body: "asked again"
    [answer] = make_client(server, tmp_path).run([ask("a", validator=strict)])
    assert answer.text == "asked again" and len(server.requests) == 2


def test_unreadable_cache_entry_is_a_miss(server, tmp_path):
    client = make_client(server, tmp_path)
    [answer] = client.run([ask("a")])
    client.cache.path(answer.request_hash).write_text("{truncated")
    [again] = make_client(server, tmp_path).run([ask("a")])
    assert not again.from_cache and len(server.requests) == 2
    assert cache_entries(tmp_path)[0]["text"] == "answer to a"


def test_two_runs_sharing_a_cache_never_leave_a_torn_entry(tmp_path):
    """Two runs (as two Snakemake jobs would) write the same keys at once: every entry stays
    whole JSON, and both get every answer."""
    requests = [ask(f"q{i}") for i in range(20)]
    with FakeOpenAI(lambda body: "x" * 5000, latency_s=0.01) as server:
        with ThreadPoolExecutor(2) as pool:
            runs = list(pool.map(lambda _: make_client(server, tmp_path).run(requests), range(2)))
    assert all(len(answers) == 20 for answers in runs)
    assert len(cache_entries(tmp_path)) == 20
    assert all(e["text"] == "x" * 5000 for e in cache_entries(tmp_path))
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".json"]


def test_concurrency_is_bounded(tmp_path):
    with FakeOpenAI(lambda body: "ok", latency_s=0.15) as server:
        make_client(server, tmp_path, concurrency=3).run([ask(f"q{i}") for i in range(9)])
        assert server.max_in_flight == 3


def test_inline_images_are_cached_as_digests(server, tmp_path):
    image = "data:image/png;base64," + "A" * 5000
    content = [{"type": "text", "text": "what is shown?"},
               {"type": "image_url", "image_url": {"url": image}}]
    request = ChatRequest(messages=({"role": "user", "content": content},))
    make_client(server, tmp_path).run([request])
    assert server.requests[0]["messages"][0]["content"][1]["image_url"]["url"] == image
    [path] = tmp_path.rglob("*.json")
    stored = json.loads(path.read_text())["messages"][0]["content"][1]["image_url"]["url"]
    assert stored.startswith("sha256:") and "AAAA" not in path.read_text()


def test_unicode_and_control_characters_round_trip(server, tmp_path):
    text = 'class "quoted"\nnew line – ünïcödé 动作'
    [answer] = make_client(server, tmp_path).run([ask(text)])
    assert answer.text == f"answer to {text}"
    [again] = make_client(server, tmp_path).run([ask(text)])
    assert again.from_cache and again.text == answer.text


def test_requests_are_not_sent_in_a_retry_storm(tmp_path):
    """Backoff grows exponentially between transport failures."""
    with FakeOpenAI(lambda body: Reply(status=500)) as server:
        client = make_client(server, tmp_path, backoff_s=0.05, max_retries=3)
        start = time.monotonic()
        with pytest.raises(LLMRequestError):
            client.run([ask("a")])
        gaps = [b - a for a, b in zip(server.arrivals, server.arrivals[1:])]
        assert len(gaps) == 3 and gaps[2] > gaps[0]
        assert time.monotonic() - start < 2
