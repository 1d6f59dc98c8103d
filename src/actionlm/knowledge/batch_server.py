"""An OpenAI-compatible chat-completions server for a prepared LLM folder that answers
concurrent requests together, in batches: ``python -m actionlm.knowledge.batch_server DIR``.
``serve_model`` (actionlm.knowledge.serve) runs it for the describe stage.

Served, without authentication, once the model is loaded (the port opens only then):

- ``GET /health``: 200 ``{"status": "ok"}``.
- ``GET /v1/models`` and ``GET /v1/models/NAME``: the one model, named
  ``served_model_name(DIR)`` (the folder's own name).
- ``POST /v1/chat/completions``, non-streaming. Fields: ``model`` (the served name, else 404),
  ``messages`` (system / user / assistant turns with string contents, put through the model's
  chat template with the generation prompt), ``max_tokens`` or ``max_completion_tokens``
  (default: the rest of the context), ``temperature`` (0-2, default 1; 0 = greedy),
  ``top_p`` (default 1), ``seed`` (default 0), ``stop`` (up to 4 strings; the answer ends
  before the first one, which is not returned), ``n`` (1 only), ``stream`` (false only),
  ``user`` (ignored) and transformers serve's ``generation_config`` (only ``do_sample``;
  false = greedy), which the describe stage sends. Anything else, a bad value, malformed JSON
  or a prompt that does not fit the context is refused with 400, before any generation, as
  OpenAI's ``{"error": {"message", "type", "code", "param"}}``, so the openai client raises
  its own errors (BadRequestError, NotFoundError). The answer: ``id``, ``object``
  ``chat.completion``, ``created``, ``model``, one choice (``finish_reason`` "stop" at the
  end-of-turn token or a stop string, "length" at max_tokens) and ``usage``, where
  ``completion_tokens`` counts every generated token, the end-of-turn token included.

Batching: handler threads tokenize requests and queue them; one generation thread takes
everything queued (waiting ``--gather-ms`` after each arrival for stragglers, at most
``--max-batch`` rows) and decodes it as one batch. Requests whose prompts share a prefix are
grouped (the describe stage's requests of one kind share the system message and the worked
example: about 100 of their 120 tokens), so that each group's prefix is computed once and its
KV cache copied to the group's rows; the rest of each prompt is then computed for all rows
together, left-padded, with positions counted from the attention mask, and all rows decode
together, each answered as soon as it ends (rows that ended are dropped from the batch once a
quarter of it has). Requests arriving meanwhile wait for the next batch. For CPU speed, keys
and values live in preallocated buffers (not concatenated anew each step) and a decode step's
grouped-query attention reads them without copying them once per query head. One line per
batch goes to stdout: ``batch rows= prefix_groups= steps= prompt_tokens= computed=
generated_tokens= seconds=`` (``computed``: prompt tokens run through the model).

Determinism: each request samples from its own ``torch.Generator`` seeded with its ``seed``,
with its own temperature and top_p, so its answer depends on the request only, not on the
requests that share its batch, except through floating-point differences of the batch's
shape (row count, padding, prefix split): these change logits in their last digits and can
flip a near-tie token, after which the texts differ. Devices and dtypes differ likewise.

Limits: one model, text only, no streaming, no logprobs or tools; no request is cancelled
when its client goes away; a batch runs until its longest answer ends, so a long request
delays the next batch. ``--threads`` sets torch's CPU threads: give no more than the cores
that are really free; on two cores shared with other programs, two threads made decoding
10-30 times slower than one (each step waits for a descheduled thread).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import AttentionInterface, AutoModelForCausalLM, AutoTokenizer, DynamicCache
from transformers.cache_utils import Cache, DynamicLayer
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from actionlm.data.prepare_llm import MANIFEST, llm_model_dir, read_manifest
from actionlm.knowledge.serve import served_model_name

log = logging.getLogger("actionlm.batch_server")

MAX_BATCH_ROWS = 64
GATHER_S = 0.1  # a request burst on a loaded machine can arrive over tens of ms
MAX_STOPS = 4
MAX_BODY_BYTES = 8 << 20
FIRST_DECODE_ROOM = 256  # generated tokens the KV buffers hold before they first grow
ROLES = ("system", "user", "assistant")
ATTENTION = "actionlm_grouped_sdpa"
SEED_RANGE = (-(2**63), 2**64 - 1)  # what torch.Generator.manual_seed takes
ACCEPTED = {"model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p",
            "seed", "stop", "n", "stream", "user", "generation_config"}


class ApiError(Exception):
    """A request refused or failed, answered as OpenAI's error object."""

    def __init__(self, status: int, message: str, code: str, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param

    def body(self) -> dict:
        kind = "server_error" if self.status >= 500 else "invalid_request_error"
        return {"error": {"message": self.message, "type": kind, "code": self.code,
                          "param": self.param}}


def invalid(param: str, message: str) -> ApiError:
    return ApiError(400, f"{param}: {message}", "invalid_value", param)


# ---------------------------------------------------------------- requests


@dataclass
class Job:
    """One chat completion: its tokenized prompt and sampling, and (once done) its answer."""

    prompt: list[int]
    max_tokens: int
    temperature: float
    top_p: float
    seed: int
    stops: tuple[str, ...]
    done: threading.Event = field(default_factory=threading.Event)
    result: dict | None = None
    error: ApiError | None = None

    def finish(self, result: dict) -> None:
        self.result = result
        self.done.set()

    def fail(self, error: ApiError) -> None:
        if not self.done.is_set():
            self.error = error
            self.done.set()


def parse_body(body: bytes) -> dict:
    try:
        request = json.loads(body)
    except (UnicodeDecodeError, ValueError) as err:
        raise ApiError(400, f"the body is not valid JSON ({err})", "invalid_json") from None
    if not isinstance(request, dict):
        raise ApiError(400, "the body must be a JSON object", "invalid_json")
    unsupported = sorted(set(request) - ACCEPTED)
    if unsupported:
        raise ApiError(400, f"unsupported parameter(s): {', '.join(unsupported)}",
                       "unsupported_parameter", unsupported[0])
    return {key: value for key, value in request.items() if value is not None}


def chat_messages(request: dict) -> list[dict]:
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("messages", "expected a non-empty list of messages")
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict) or set(message) - {"role", "content"}:
            raise invalid(where, "expected an object with role and content only")
        if message.get("role") not in ROLES:
            raise invalid(f"{where}.role", f"expected one of {', '.join(ROLES)}")
        if not isinstance(message.get("content"), str):
            raise invalid(f"{where}.content", "expected a string")
    return messages


def number(request: dict, name: str, default: float, low: float, high: float,
           low_open: bool = False) -> float:
    value = request.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise invalid(name, "expected a number")
    if value > high or value < low or (low_open and value == low):
        raise invalid(name, f"expected a number in {'(' if low_open else '['}{low}, {high}]")
    return float(value)


def integer(request: dict, name: str, low: int, high: int) -> int:
    value = request[name]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise invalid(name, f"expected an integer in [{low}, {high}]")
    return value


def stop_strings(request: dict) -> tuple[str, ...]:
    stops = request.get("stop", [])
    stops = [stops] if isinstance(stops, str) else stops
    if (not isinstance(stops, list) or len(stops) > MAX_STOPS
            or not all(isinstance(s, str) and s for s in stops)):
        raise invalid("stop", f"expected a non-empty string or a list of at most {MAX_STOPS}")
    return tuple(stops)


def samples(request: dict) -> bool:
    """False when transformers serve's ``generation_config`` asks for greedy decoding."""
    config = request.get("generation_config", {})
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except ValueError:
            raise invalid("generation_config", "not valid JSON") from None
    if not isinstance(config, dict) or set(config) - {"do_sample"} or not isinstance(
            config.get("do_sample", True), bool):
        raise invalid("generation_config", 'only {"do_sample": true|false} is supported')
    return config.get("do_sample", True)


def check_options(request: dict) -> None:
    if request.get("stream", False) is not False:
        raise ApiError(400, "stream: streaming is not supported", "unsupported_value", "stream")
    if request.get("n", 1) != 1:
        raise ApiError(400, "n: only one choice per request is supported", "unsupported_value",
                       "n")


# ---------------------------------------------------------------- the model


def grouped_query_attention(module, query, key, value, attention_mask, **kwargs):
    """SDPA, except for one-token decode steps of grouped-query models: there each key/value
    head's query heads become rows of one query, instead of copying the (batch-sized) cached
    keys and values once per query head, which dominated a batched CPU decode step."""
    heads, kv_heads = query.shape[1], key.shape[1]
    special = kwargs.get("dropout") or any(
        kwargs.get(name) is not None for name in ("sliding_window", "s_aux", "softcap"))
    if query.shape[2] != 1 or heads == kv_heads or special:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    batch = query.shape[0]
    grouped = query.reshape(batch, kv_heads, heads // kv_heads, query.shape[-1])
    out = F.scaled_dot_product_attention(grouped, key, value, attn_mask=attention_mask,
                                         scale=kwargs.get("scaling"))
    return out.reshape(batch, heads, 1, value.shape[-1]).transpose(1, 2), None


AttentionInterface.register(ATTENTION, grouped_query_attention)
AttentionMaskInterface.register(ATTENTION, sdpa_mask)  # the same boolean masks as sdpa


class BufferedLayer(DynamicLayer):
    """A DynamicLayer whose keys and values live in preallocated buffers (doubled when full)
    instead of being concatenated anew at every step; ``keys``/``values`` are views."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity, self.length = capacity, 0
        self.key_buffer = self.value_buffer = None

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if self.key_buffer is None or end > self.key_buffer.shape[-2]:
            self._grow(key_states, value_states, max(end, self.capacity, 2 * self.length))
        self.key_buffer[:, :, self.length:end] = key_states
        self.value_buffer[:, :, self.length:end] = value_states
        self.length = end
        self._view()
        return self.keys, self.values

    def _grow(self, key_states, value_states, capacity: int) -> None:
        def grown(old, new):
            shape = (*new.shape[:2], capacity, new.shape[-1])
            buffer = new.new_empty(shape)
            if old is not None:
                buffer[:, :, :self.length] = old[:, :, :self.length]
            return buffer

        self.key_buffer = grown(self.key_buffer, key_states)
        self.value_buffer = grown(self.value_buffer, value_states)

    def _view(self) -> None:
        self.keys = self.key_buffer[:, :, :self.length]
        self.values = self.value_buffer[:, :, :self.length]

    def get_seq_length(self) -> int:
        return self.length

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.length:
            self.key_buffer = self.key_buffer[indices]
            self.value_buffer = self.value_buffer[indices]
            self._view()


def new_cache(config, capacity: int) -> Cache:
    """Buffered layers where the model's cache would be plain DynamicLayers (Llama, Qwen,
    SmolLM...); the model's own DynamicCache otherwise (sliding windows, hybrids)."""
    cache = DynamicCache(config=config)
    if cache.layers and all(type(layer) is DynamicLayer for layer in cache.layers):
        return Cache(layers=[BufferedLayer(capacity) for _ in cache.layers])
    return cache


def model_dtype(model_dir: Path) -> torch.dtype:
    """The dtype prepare-llm recorded (float32 for a plain Hugging Face folder)."""
    if not (model_dir / MANIFEST).is_file():
        return torch.float32
    return getattr(torch, read_manifest(model_dir).get("dtype", "float32"))


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def left_pad(rows: list[list[int]], pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask of ``rows``, right-aligned (padding on the left)."""
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row):] = torch.tensor(row)
            mask[i, width - len(row):] = 1
    return ids.to(device), mask.to(device)


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Each token's position among its row's real tokens (padding does not count)."""
    return (mask.cumsum(1) - 1).clamp(min=0)


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < len(a) and n < len(b) and a[n] == b[n]:
        n += 1
    return n


def group_by_prefix(jobs: list[Job]) -> list[tuple[int, list[Job]]]:
    """(prefix length, jobs) groups that compute the fewest prompt tokens: a group of k
    prompts sharing a prefix of P tokens computes it once, saving (k - 1) * P. Groups are runs
    of the prompts in sorted order (whose shared prefix is the least of their neighbours'),
    chosen by dynamic programming; a prefix leaves each prompt at least its last token."""
    jobs = sorted(jobs, key=lambda job: job.prompt)
    shared = [common_prefix(a.prompt, b.prompt) for a, b in zip(jobs, jobs[1:])]
    saved, start_of = [0] * (len(jobs) + 1), [0] * (len(jobs) + 1)
    for end in range(1, len(jobs) + 1):  # the best grouping of jobs[:end]
        prefix, saved[end] = len(jobs[end - 1].prompt) - 1, -1
        for start in range(end - 1, -1, -1):  # its last group is jobs[start:end]
            if start < end - 1:
                prefix = min(prefix, shared[start], len(jobs[start].prompt) - 1)
            if saved[start] + (end - 1 - start) * prefix > saved[end]:
                saved[end], start_of[end] = saved[start] + (end - 1 - start) * prefix, start
    groups, end = [], len(jobs)
    while end:
        start = start_of[end]
        members = jobs[start:end]
        prefix = min([len(job.prompt) - 1 for job in members] + shared[start:end - 1])
        groups.append((prefix, members))
        end = start
    return groups[::-1]


def sample(logits: torch.Tensor, temperature: float, top_p: float,
           generator: torch.Generator) -> int:
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1:
        sorted_probs, order = probs.sort(descending=True)
        keep = sorted_probs.cumsum(0) - sorted_probs < top_p  # always keeps the likeliest
        probs = torch.zeros_like(probs).scatter_(0, order[keep], sorted_probs[keep])
    return int(torch.multinomial(probs, 1, generator=generator))


@dataclass
class Row:
    """A job being decoded: its generator, its tokens so far and whether it has ended."""

    job: Job
    generator: torch.Generator
    tokens: list[int] = field(default_factory=list)
    ended: bool = False


@dataclass
class BatchStats:
    rows: int
    groups: int
    prompt_tokens: int
    computed_prompt_tokens: int
    generated_tokens: int = 0
    steps: int = 0

    def line(self, seconds: float) -> str:
        return (f"batch rows={self.rows} prefix_groups={self.groups} steps={self.steps} "
                f"prompt_tokens={self.prompt_tokens} computed={self.computed_prompt_tokens} "
                f"generated_tokens={self.generated_tokens} seconds={seconds:.2f}")


class Engine:
    """The model and tokenizer, and batched generation over them (one thread at a time)."""

    def __init__(self, model_dir: str | os.PathLike, device: str):
        folder = llm_model_dir(model_dir)
        self.name = served_model_name(model_dir)
        self.device = resolve_device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModelForCausalLM.from_pretrained(
            folder, dtype=model_dtype(Path(model_dir)), attn_implementation=ATTENTION,
        ).to(self.device).eval()
        eos = self.model.generation_config.eos_token_id
        eos = eos if isinstance(eos, list) else [eos]
        self.eos = {t for t in [*eos, self.tokenizer.eos_token_id] if t is not None}
        self.pad = next(t for t in (self.tokenizer.pad_token_id, *sorted(self.eos), 0)
                        if t is not None)
        self.context = getattr(self.model.config, "max_position_embeddings", None) or (
            self.tokenizer.model_max_length)
        self.lock = threading.Lock()  # the tokenizer is shared by the handler threads

    def job(self, request: dict) -> Job:
        """A validated request's job; raises ApiError."""
        check_options(request)
        if request.get("model") != self.name:
            raise ApiError(404, f"model {request.get('model')!r} does not exist; this server "
                           f"serves {self.name!r}", "model_not_found", "model")
        messages = chat_messages(request)
        temperature = number(request, "temperature", 1.0, 0, 2)
        top_p = number(request, "top_p", 1.0, 0, 1, low_open=True)
        seed = integer(request, "seed", *SEED_RANGE) if "seed" in request else 0
        stops = stop_strings(request)
        greedy = not samples(request)
        try:
            with self.lock:
                prompt = list(self.tokenizer.apply_chat_template(
                    messages, add_generation_prompt=True, return_dict=False))
        except Exception as err:  # a template may refuse an order of roles (jinja's error)
            raise invalid("messages", f"the model's chat template refused them ({err})") from None
        if not prompt:
            raise invalid("messages", "the chat template made an empty prompt")
        room = self.context - len(prompt)
        key = "max_completion_tokens" if "max_completion_tokens" in request else "max_tokens"
        max_tokens = integer(request, key, 1, 1 << 31) if key in request else room
        if max_tokens > room:
            raise ApiError(400, f"the prompt ({len(prompt)} tokens) and {key} ({max_tokens}) "
                           f"exceed the model's context of {self.context} tokens",
                           "context_length_exceeded", "messages")
        return Job(prompt, max_tokens, 0.0 if greedy else temperature, top_p, seed, stops)

    @torch.inference_mode()
    def generate(self, jobs: list[Job]) -> BatchStats:
        """Answer every job (each as soon as it ends); returns the batch's counts."""
        groups = group_by_prefix(jobs)
        rows = [Row(job, torch.Generator(self.device).manual_seed(job.seed))
                for _, members in groups for job in members]
        stats = BatchStats(len(rows), len(groups), sum(len(j.prompt) for j in jobs),
                           sum(length for length, _ in groups)
                           + sum(len(j.prompt) - length for length, ms in groups for j in ms))
        width = (max(length for length, _ in groups)
                 + max(len(j.prompt) - length for length, ms in groups for j in ms))
        room = min(max(j.max_tokens for j in jobs), FIRST_DECODE_ROOM)
        cache = new_cache(self.model.config, width + room)
        logits, mask, last = self.prefill(groups, cache)
        while rows:
            tokens = self.next_tokens(logits, rows)
            stats.generated_tokens += sum(not row.ended for row in rows)
            for row, token in zip(rows, tokens):
                if not row.ended:
                    self.extend(row, token)
            ended = [i for i, row in enumerate(rows) if row.ended]
            if len(ended) == len(rows):
                break
            if len(ended) >= max(1, len(rows) // 4):  # dropping copies the cache: not for 1 of 64
                keep = [i for i, row in enumerate(rows) if not row.ended]
                index = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(index)
                mask, last = mask[index], last[index]
                rows, tokens = [rows[i] for i in keep], [tokens[i] for i in keep]
            mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=1)
            last = last + 1
            logits = self.model(
                input_ids=torch.tensor(tokens, device=self.device)[:, None], attention_mask=mask,
                position_ids=last[:, None], past_key_values=cache, use_cache=True,
                logits_to_keep=1).logits[:, -1]
            stats.steps += 1
        return stats

    def prefill(self, groups: list[tuple[int, list[Job]]], cache: Cache):
        """Each group's shared prefix once (left-padded to the longest), its cache rows copied
        to the group's jobs, then every job's rest (left-padded): the last logits of each row,
        the attention mask so far and each row's last position."""
        prefixes = [members[0].prompt[:length] for length, members in groups]
        owner = torch.tensor([g for g, (_, ms) in enumerate(groups) for _ in ms],
                             device=self.device)
        prefix_ids, prefix_mask = left_pad(prefixes, self.pad, self.device)
        if prefix_ids.shape[1]:
            self.model(input_ids=prefix_ids, attention_mask=prefix_mask,
                       position_ids=positions(prefix_mask), past_key_values=cache,
                       use_cache=True, logits_to_keep=1)
            cache.batch_select_indices(owner)
        rests = [job.prompt[length:] for length, members in groups for job in members]
        rest_ids, rest_mask = left_pad(rests, self.pad, self.device)
        mask = torch.cat([prefix_mask[owner], rest_mask], dim=1)
        rest_positions = positions(mask)[:, -rest_ids.shape[1]:]
        logits = self.model(input_ids=rest_ids, attention_mask=mask, position_ids=rest_positions,
                            past_key_values=cache, use_cache=True, logits_to_keep=1).logits
        return logits[:, -1], mask, rest_positions[:, -1]

    def next_tokens(self, logits: torch.Tensor, rows: list[Row]) -> list[int]:
        """Greedy rows take the argmax; the others sample with their own generator (rows
        that ended take nothing from theirs)."""
        best = logits.argmax(dim=-1).tolist()
        return [best[i] if row.ended or row.job.temperature == 0 else
                sample(logits[i], row.job.temperature, row.job.top_p, row.generator)
                for i, row in enumerate(rows)]

    def extend(self, row: Row, token: int) -> None:
        """Add ``token`` to ``row``; answer its job if this ends it."""
        row.tokens.append(token)
        if token in self.eos:
            self.answer(row, self.decode(row.tokens[:-1]), "stop")
            return
        text = self.decode(row.tokens) if row.job.stops else None
        cut = first_stop(text, row.job.stops) if text is not None else -1
        if cut >= 0:
            self.answer(row, text[:cut], "stop")
        elif len(row.tokens) >= row.job.max_tokens:
            self.answer(row, text if text is not None else self.decode(row.tokens), "length")

    def decode(self, tokens: list[int]) -> str:
        with self.lock:
            return self.tokenizer.decode(tokens, skip_special_tokens=True)

    def answer(self, row: Row, text: str, finish_reason: str) -> None:
        row.ended = True
        prompt, generated = len(row.job.prompt), len(row.tokens)
        row.job.finish({
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
            "created": int(time.time()), "model": self.name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": finish_reason}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": generated,
                      "total_tokens": prompt + generated},
        })


def first_stop(text: str, stops: tuple[str, ...]) -> int:
    """Where the first stop string starts in ``text``; -1 if none occurs."""
    found = [i for i in (text.find(stop) for stop in stops) if i >= 0]
    return min(found, default=-1)


# ---------------------------------------------------------------- batching and HTTP


class BatchWorker(threading.Thread):
    """The one thread that generates: takes what is queued, answers it as one batch."""

    def __init__(self, engine: Engine, max_rows: int, gather_s: float):
        super().__init__(name="generation", daemon=True)
        self.engine, self.max_rows, self.gather_s = engine, max_rows, gather_s
        self.queue: queue.Queue[Job] = queue.Queue()

    def submit(self, job: Job) -> None:
        self.queue.put(job)

    def take_batch(self) -> list[Job]:
        jobs = [self.queue.get()]
        while len(jobs) < self.max_rows:
            try:
                jobs.append(self.queue.get(timeout=self.gather_s))
            except queue.Empty:
                break
        return jobs

    def run(self) -> None:
        while True:
            jobs = self.take_batch()
            start = time.perf_counter()
            try:
                stats = self.engine.generate(jobs)
            except Exception as err:  # the server goes on; these requests get a 500
                log.exception("batch of %d rows failed", len(jobs))
                for job in jobs:
                    job.fail(ApiError(500, f"generation failed: {err}", "server_error"))
            else:
                log.info(stats.line(time.perf_counter() - start))


class ChatServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # a batch's worth of clients may connect at once

    def __init__(self, host: str, port: int, engine: Engine, worker: BatchWorker):
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.engine, self.worker = engine, worker
        super().__init__((host, port), ChatHandler)


class ChatHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ChatServer

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        name = self.server.engine.name
        card = {"id": name, "object": "model", "created": 0, "owned_by": "actionlm"}
        if path == "/health":
            self.send_json(200, {"status": "ok"})
        elif path == "/v1/models":
            self.send_json(200, {"object": "list", "data": [card]})
        elif path == f"/v1/models/{name}":
            self.send_json(200, card)
        else:
            self.send_error_json(ApiError(404, f"no such path: {path}", "not_found"))

    def do_POST(self) -> None:
        try:
            if self.path.split("?", 1)[0].rstrip("/") != "/v1/chat/completions":
                raise ApiError(404, f"no such path: {self.path}", "not_found")
            job = self.server.engine.job(parse_body(self.read_body()))
            self.server.worker.submit(job)
            job.done.wait()
            if job.error:
                raise job.error
            self.send_json(200, job.result)
        except ApiError as err:
            self.send_error_json(err)
        except Exception as err:
            log.exception("request failed")
            self.send_error_json(ApiError(500, f"internal error: {err}", "server_error"))

    def read_body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise ApiError(400, "a Content-Length header is required", "invalid_json") from None
        if not 0 <= length <= MAX_BODY_BYTES:
            self.close_connection = True
            raise ApiError(413 if length > 0 else 400, f"body of {length} bytes refused",
                           "invalid_json")
        return self.rfile.read(length)

    def send_error_json(self, err: ApiError) -> None:
        if err.status >= 500:
            log.error("HTTP %d: %s", err.status, err.message)
        self.send_json(err.status, err.body())

    def send_json(self, status: int, payload: dict) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base's signature
        pass  # one line per batch, not per request


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", type=Path, help="prepared LLM folder (actionlm prepare-llm)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--max-batch", type=int, default=MAX_BATCH_ROWS,
                        help="most requests decoded together")
    parser.add_argument("--gather-ms", type=float, default=GATHER_S * 1000,
                        help="wait this long after each arrival for more requests to batch")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stdout, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    engine = Engine(args.model_dir, args.device)
    worker = BatchWorker(engine, max(1, args.max_batch), args.gather_ms / 1000)
    worker.start()
    server = ChatServer(args.host, args.port, engine, worker)
    log.info("serving %r (%s, %s on %s, %d torch threads) at http://%s:%d/v1 after %.1f s",
             engine.name, llm_model_dir(args.model_dir), engine.model.dtype, engine.device,
             torch.get_num_threads(), args.host, args.port, time.perf_counter() - start)
    server.serve_forever()


if __name__ == "__main__":
    main()
