"""Cached, concurrent, fault-tolerant chat completions through the ``openai`` client.

Every model call of the pipeline (class descriptions, visual descriptions) goes through
:class:`LLMClient`, so that paid or slow generations are made once:

- Cache: every answer the endpoint returns is stored as returned (raw text and finish_reason),
  refused ones too, since each was paid for, under ``sha256(endpoint, model, messages,
  sampling params as sent, seed included, and the provider's extra body fields if any)`` as
  one small JSON file ``CACHE_DIR/<hash[:2]>/<hash>.json``, written atomically (temp file +
  rename, so concurrent writers of the same key are safe). The API key is never stored.
- Verdicts are not stored: whether an answer is usable is decided each time it is read
  (finish reason, trimming, the request's validator). A rerun with a warm cache judges the
  cached answers again and sends no request (and needs no key); a stricter validator only
  asks for the next seed.
- Retries: 429 (waiting the server's ``Retry-After``), 408/409/5xx, timeouts, connection
  resets and malformed responses are resent with exponential backoff. 400/401/403/404/422
  and exhausted quota fail at once: resending cannot help, so nothing else is sent either.
- Bad answers (empty content, finish_reason ``length`` unless the request can trim it to its
  complete part, ``content_filter``, a validator that raises :class:`InvalidAnswer`) are asked
  again with ``seed + k`` for the k-th bad answer, a new request with its own cache key: a
  deterministic server would otherwise return the same bad answer. A request has
  ``max_retries + 1`` attempts, its cached refusals included, so a rerun with the same
  settings sends nothing for a request whose answers were all refused; a higher
  ``max_retries`` asks the next seeds.
- When a request runs out of attempts, the others still finish (and are cached); then one
  :class:`LLMRequestError` names each failed request and its last failure, so a rerun sends
  only the requests that got no answer.
"""

from __future__ import annotations

import argparse
import asyncio
import email.utils
import hashlib
import json
import logging
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from tqdm import tqdm

from actionlm.cli_args import non_negative_int, positive_float, positive_int
from actionlm.errors import ActionlmError
from actionlm.io import write_json

if TYPE_CHECKING:  # imported where requests are sent: a rerun from the cache never loads it
    import openai

log = logging.getLogger(__name__)

ENDPOINT = "chat.completions"
NO_KEY = "no-key"  # what the openai client sends to a server without authentication
CACHE_FORMAT = 2  # 1 (still read): accepted answers only, trimmed, under the seed-0 key
# Retry-After is honoured up to this; a longer one is a broken server, not a rate limit.
MAX_RETRY_AFTER_S = 300.0
# Statuses where resending the same request can succeed (OpenAI's own client agrees).
RETRYABLE_STATUS = frozenset({408, 409, 429})


class InvalidAnswer(ValueError):
    """Raised by a request's validator: this answer cannot be used, ask again."""


class LLMRequestError(ActionlmError):
    """Requests that failed for good; everything answered before is cached. When requests ran
    out of attempts (not after a fatal error), ``answers`` holds what :meth:`LLMClient.run`
    would have returned, with None at the ``failed`` positions, for callers that can do
    without them."""

    def __init__(self, message: str, answers: list | None = None, failed: tuple = ()):
        super().__init__(message)
        self.answers = answers
        self.failed = failed


@dataclass(frozen=True)
class Provider:
    """Where requests go: any OpenAI-compatible endpoint.

    ``base_url=None`` lets the openai client apply its own default (``OPENAI_BASE_URL``, else
    api.openai.com). The key is read from the environment variable ``api_key_env`` only when a
    request must be sent; ``None`` means a server without authentication. ``name`` labels
    answers in ``source`` (default: the endpoint's host). ``extra_body``: fields the endpoint
    needs beyond OpenAI's (e.g. transformers serve's ``generation_config``); they change the
    answer, so they are part of the cache key.
    """

    model: str
    base_url: str | None = None
    api_key_env: str | None = "OPENAI_API_KEY"
    name: str = ""
    extra_body: dict = field(default_factory=dict)

    @property
    def source(self) -> str:
        host = urlsplit(self.base_url or os.environ.get("OPENAI_BASE_URL", "")).hostname
        return f"{self.name or host or 'openai'}/{self.model}"

    def api_key(self) -> str:
        if self.api_key_env is None:
            return NO_KEY
        key = os.environ.get(self.api_key_env, "")
        if not key:
            raise ActionlmError(
                f"environment variable {self.api_key_env} is not set: it must hold the API key "
                f"for {self.source} (knowledge.provider.api_key_env names the variable)"
            )
        return key


Validator = Callable[[str], object]


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion: OpenAI ``messages`` (content may be a list of text/image_url parts)
    plus sampling parameters. ``label`` names it in progress and errors ("class 'drink water'
    (parts)"); ``validator(text)`` returns the parsed value or raises :class:`InvalidAnswer`.
    An answer cut at ``max_tokens`` is refused, unless ``trim_truncated(text)`` keeps its
    complete part (e.g. up to the last full sentence; "" = nothing usable). None of these
    three is part of the cache key."""

    messages: tuple[dict, ...] | list[dict]
    max_tokens: int = 256
    temperature: float = 0.7
    top_p: float | None = None
    seed: int = 0
    label: str = ""
    validator: Validator | None = field(default=None, compare=False)
    trim_truncated: Callable[[str], str] | None = field(default=None, compare=False)

    def sampling(self, bad_answers: int = 0) -> dict:
        """Sampling parameters as sent after ``bad_answers`` unusable answers (seed + k)."""
        params = {"max_tokens": self.max_tokens, "temperature": self.temperature,
                  "seed": self.seed + bad_answers}
        if self.top_p is not None:
            params["top_p"] = self.top_p
        return params

    def request_hash(self, model: str, extra_body: dict | None = None,
                     bad_answers: int = 0) -> str:
        """Cache key of the request as sent after ``bad_answers`` unusable answers."""
        key = {"endpoint": ENDPOINT, "model": model, "messages": list(self.messages),
               "sampling": self.sampling(bad_answers)}
        if extra_body:  # absent when empty: plain OpenAI requests keep the same keys
            key["extra_body"] = extra_body
        canonical = json.dumps(key, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def parse(self, text: str) -> object:
        return self.validator(text) if self.validator else text


@dataclass(frozen=True)
class Answer:
    request_hash: str  # cache key of the request (seed included) that this answer came from
    text: str
    value: object  # what the validator returned (the text when there is none)
    from_cache: bool


@dataclass
class CallStats:
    """Counts over one :meth:`LLMClient.run`, logged and stored in the output's metadata."""

    cache_hits: int = 0  # answers read from the cache, refused ones included
    requests: int = 0  # HTTP requests sent, retries included
    retries: int = 0
    bad_answers: int = 0  # answers refused (empty, cut, filtered, invalid), cached ones too
    trimmed: int = 0  # answers cut at max_tokens whose complete part was kept

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class RequestCache:
    """Answers on disk, one JSON file per request hash, sharded by the hash's first 2 chars."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, request_hash: str) -> Path:
        return self.root / request_hash[:2] / f"{request_hash}.json"

    def get(self, request_hash: str) -> dict | None:
        path = self.path(request_hash)
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            log.warning("ignoring unreadable cache entry %s: %s", path, err)
            return None
        return entry if isinstance(entry, dict) and isinstance(entry.get("text"), str) else None

    def put(self, request_hash: str, entry: dict) -> None:
        write_json(entry, self.path(request_hash))


def _without_image_data(messages: Sequence[dict]) -> list[dict]:
    """Messages for the cache entry, with inline (base64) images replaced by their digest:
    the entry stays small and readable; the hash already covers the full content."""
    out = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            content = [_digest_image(part) for part in content]
        out.append({**message, "content": content})
    return out


def _digest_image(part: dict) -> dict:
    url = (part.get("image_url") or {}).get("url", "") if part.get("type") == "image_url" else ""
    if not url.startswith("data:"):
        return part
    digest = hashlib.sha256(url.encode()).hexdigest()
    return {**part, "image_url": {**part["image_url"], "url": f"sha256:{digest}"}}


def _retry_after(headers) -> float | None:
    """Seconds from ``retry-after-ms`` / ``retry-after`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            date = email.utils.parsedate_to_datetime(value) if name == "retry-after" else None
            if date is not None:
                return max(0.0, date.timestamp() - time.time())
    return None


class _Retry(Exception):
    """One attempt failed in a way that another attempt may fix."""

    def __init__(self, reason: str, wait_s: float | None = None, bad_answer: bool = False):
        super().__init__(reason)
        self.wait_s = wait_s
        self.bad_answer = bad_answer


class _Fatal(Exception):
    """No attempt can succeed (unknown model, bad key, bad request): stop everything."""


class LLMClient:
    """Runs many :class:`ChatRequest` at once against one :class:`Provider`, through the cache.

    ``concurrency`` requests are in flight at most; each gets ``max_retries`` retries with
    backoff ``backoff_s * 2**n`` (jittered, capped at ``max_backoff_s``) or the server's
    ``Retry-After``.
    """

    def __init__(
        self,
        provider: Provider,
        cache_dir: str | os.PathLike,
        *,
        concurrency: int = 8,
        max_retries: int = 5,
        timeout_s: float = 120.0,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
    ):
        if concurrency < 1 or max_retries < 0:
            raise ActionlmError("LLM client: concurrency must be >= 1 and max_retries >= 0")
        self.provider = provider
        self.cache = RequestCache(cache_dir)
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.stats = CallStats()

    def request_hash(self, request: ChatRequest, bad_answers: int = 0) -> str:
        return request.request_hash(self.provider.model, self.provider.extra_body, bad_answers)

    def all_cached(self, requests: Sequence[ChatRequest]) -> bool:
        """Whether :meth:`run` would send nothing: every request is answered from the cache,
        or all its attempts are cached refusals."""
        return all(found is not None for _, found in map(self._replay, requests))

    def run(self, requests: Sequence[ChatRequest], progress: str | None = None) -> list[Answer]:
        """Answers in the order of ``requests``: cached ones first, the rest sent concurrently.

        Raises :class:`LLMRequestError` naming every request that failed, after the others
        finished and were cached (at once, cancelling the rest, on a fatal error), and
        :class:`ActionlmError` for a missing API key before anything is sent.
        """
        replays = [self._replay(request) for request in requests]
        answers = [found if isinstance(found, Answer) else None for _, found in replays]
        failures = {i: found for i, (_, found) in enumerate(replays) if isinstance(found, _Retry)}
        missing = {i: refused for i, (refused, found) in enumerate(replays) if found is None}
        self.stats.cache_hits += sum(refused + isinstance(found, Answer)
                                     for refused, found in replays)
        self.stats.bad_answers += sum(refused for refused, _ in replays)
        if missing:
            key = self.provider.api_key()
            bar = tqdm(total=len(requests), initial=len(requests) - len(missing), desc=progress,
                       unit="req", disable=progress is None)
            with bar:
                failures |= asyncio.run(self._send_all(requests, missing, answers, key, bar))
        log.info("%s: %d answers (%d from cache), %d requests sent, %d retries, %d bad answers",
                 self.provider.source, len(requests), len(requests) - len(missing),
                 self.stats.requests, self.stats.retries, self.stats.bad_answers)
        if failures:
            raise self._failed(failures, answers)
        return answers  # type: ignore[return-value]

    def _replay(self, request: ChatRequest) -> tuple[int, Answer | _Retry | None]:
        """What the cache holds for ``request``, seed after seed: the number of refused answers
        read, then the accepted answer, or the refusal that used the last attempt, or None
        (that seed was never asked)."""
        failure = None
        for bad_answers in range(self.max_retries + 1):
            entry = self.cache.get(self.request_hash(request, bad_answers))
            if entry is None:
                return bad_answers, None
            try:
                return bad_answers, self._accept(request, bad_answers, entry["text"],
                                                 entry.get("finish_reason"), from_cache=True)
            except _Retry as refused:
                log.debug("cached answer for %s refused: %s", request.label, refused)
                failure = refused
        return self.max_retries + 1, self._gave_up(request, failure)

    def _accept(self, request: ChatRequest, bad_answers: int, text: str,
                finish_reason: str | None, from_cache: bool) -> Answer:
        """The answer that a completion gives ``request``; raises _Retry(bad_answer=True)
        saying why it is refused."""
        text = text.strip()
        if finish_reason == "content_filter":
            raise _Retry("answer withheld by the provider's content filter", bad_answer=True)
        if finish_reason == "length":
            text = request.trim_truncated(text).strip() if request.trim_truncated else ""
            if not text:
                raise _Retry(f"answer cut at max_tokens={request.max_tokens} (finish_reason "
                             "length); raise max_tokens", bad_answer=True)
        if not text:
            raise _Retry("empty answer", bad_answer=True)
        try:
            value = request.parse(text)
        except InvalidAnswer as err:
            raise _Retry(f"answer refused: {err}; answer was {text[:200]!r}",
                         bad_answer=True) from None
        return Answer(self.request_hash(request, bad_answers), text, value, from_cache)

    def _gave_up(self, request: ChatRequest, failure: _Retry) -> _Retry:
        return _Retry(f"{request.label or self.request_hash(request)[:12]}: {failure}",
                      bad_answer=failure.bad_answer)

    def _failed(self, failures: dict[int, _Retry], answers: list) -> LLMRequestError:
        hint = ("; refused answers are cached too: a rerun asks for new ones (the next seeds) "
                "only with a higher max_retries" if any(f.bad_answer for f in failures.values())
                else "")
        return LLMRequestError(
            f"{len(failures)} of {len(answers)} requests to {self.provider.source} failed "
            f"after {self.max_retries + 1} attempts (every answer received is cached; a rerun "
            f"sends only the requests that got no answer{hint}):\n"
            + "\n".join(f"  {failures[i]}" for i in sorted(failures)),
            answers=answers, failed=tuple(sorted(failures)))

    async def _send_all(self, requests, missing: dict[int, int], answers, key: str,
                        bar) -> dict[int, _Retry]:
        """Send the ``missing`` requests (index -> refused answers cached) into ``answers``;
        returns the failures of those that ran out of attempts."""
        import openai

        slots = asyncio.Semaphore(self.concurrency)
        stop = asyncio.Event()  # set by a fatal error: requests still waiting are not sent
        api = openai.AsyncOpenAI(api_key=key, base_url=self.provider.base_url,
                                 timeout=self.timeout_s, max_retries=0)

        failures: dict[int, _Retry] = {}

        async def one(i: int) -> None:
            async with slots:
                if stop.is_set():
                    return
                try:
                    answers[i] = await self._complete(api, requests[i], key, missing[i])
                except _Retry as err:
                    failures[i] = err
                except _Fatal:
                    stop.set()
                    raise
            bar.update()

        tasks = [asyncio.create_task(one(i)) for i in missing]
        try:
            for done in asyncio.as_completed(tasks):
                await done
        except _Fatal as err:
            raise LLMRequestError(f"{err} (no further request was sent; answers received "
                                  "before are cached)") from None
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await api.close()
        return failures

    async def _complete(self, api: openai.AsyncOpenAI, request: ChatRequest, key: str,
                        bad_answers: int) -> Answer:
        """Ask ``request`` from seed + ``bad_answers`` on, caching every answer, until one is
        accepted; raises _Retry when the attempts left run out."""
        for attempt in range(bad_answers, self.max_retries + 1):
            try:
                self.stats.requests += 1
                text, finish_reason = await self._attempt(api, request, bad_answers, key)
                self._store(request, bad_answers, text, finish_reason)
                answer = self._accept(request, bad_answers, text, finish_reason,
                                      from_cache=False)
            except _Retry as failure:
                if failure.bad_answer:
                    bad_answers += 1
                    self.stats.bad_answers += 1
                if attempt == self.max_retries:
                    raise self._gave_up(request, failure) from None
                self.stats.retries += 1
                log.debug("retrying %s after: %s", request.label, failure)
                await asyncio.sleep(self._wait(attempt, failure))
            else:
                self.stats.trimmed += finish_reason == "length"
                return answer
        raise AssertionError("unreachable")

    def _store(self, request: ChatRequest, bad_answers: int, text: str,
               finish_reason: str) -> None:
        request_hash = self.request_hash(request, bad_answers)
        self.cache.put(request_hash, {
            "format": CACHE_FORMAT, "request_hash": request_hash, "endpoint": ENDPOINT,
            "model": self.provider.model, "source": self.provider.source,
            "messages": _without_image_data(request.messages),
            "sampling": request.sampling(bad_answers), "extra_body": self.provider.extra_body,
            "label": request.label, "text": text, "finish_reason": finish_reason,
            "created": time.time(),
        })

    def _wait(self, attempt: int, failure: _Retry) -> float:
        if failure.bad_answer:
            return 0.0  # the server is fine; the next seed asks for a different answer
        if failure.wait_s is not None:
            return min(failure.wait_s, MAX_RETRY_AFTER_S)
        return min(self.max_backoff_s, self.backoff_s * 2**attempt) * random.uniform(0.5, 1.0)

    async def _attempt(self, api: openai.AsyncOpenAI, request: ChatRequest, bad_answers: int,
                       key: str) -> tuple[str, str]:
        """One HTTP request; returns the answer's raw text and finish_reason, or raises _Retry
        or _Fatal."""
        import openai

        try:
            completion = await api.chat.completions.create(
                model=self.provider.model, messages=list(request.messages),
                extra_body=self.provider.extra_body or None, **request.sampling(bad_answers))
        except openai.APITimeoutError:
            raise _Retry(f"no answer within {self.timeout_s:g} s") from None
        except openai.APIConnectionError as err:
            raise _Retry(f"connection failed: {err.__cause__ or err}") from None
        except openai.APIStatusError as err:
            raise self._status_failure(err, key) from None
        except (openai.APIResponseValidationError, ValueError) as err:
            raise _Retry(f"malformed response: {err}"[:300]) from None
        choices = getattr(completion, "choices", None)
        if not choices:
            raise _Retry("malformed response: no choices")
        choice = choices[0]
        return (choice.message.content or "") if choice.message else "", choice.finish_reason

    def _status_failure(self, err: openai.APIStatusError, key: str) -> Exception:
        status = err.status_code
        detail = str(err.message).replace(key, "***")[:300]
        if status in RETRYABLE_STATUS and err.code != "insufficient_quota" or status >= 500:
            return _Retry(f"HTTP {status}: {detail}", wait_s=_retry_after(err.response.headers))
        where = f"{self.provider.source} at {err.request.url.copy_with(query=None)}"
        if status == 404:
            hint = f"unknown model {self.provider.model!r} or wrong base_url"
        elif status in (401, 403):
            hint = f"check the key in ${self.provider.api_key_env}"
        else:
            hint = "the request was refused"
        return _Fatal(f"HTTP {status} from {where}: {hint}: {detail}")


def add_client_arguments(parser: argparse.ArgumentParser, default_model: str) -> None:
    """The provider and client options that every stage calling a model shares."""
    group = parser.add_argument_group("language model provider")
    group.add_argument("--model", default=default_model, help="model name at the endpoint")
    group.add_argument("--base-url", default=None,
                       help="OpenAI-compatible endpoint (default: $OPENAI_BASE_URL, else OpenAI)")
    group.add_argument("--api-key-env", default="OPENAI_API_KEY",
                       help="name of the environment variable that holds the API key")
    group.add_argument("--provider-name", default="",
                       help="provider label in the output's `source` (default: endpoint host)")
    group.add_argument("--cache-dir", type=Path, default=Path("resources/cache/llm"),
                       help="request cache; keep it outside results/ so paid answers survive")
    group.add_argument("--concurrency", type=positive_int, default=8,
                       help="requests in flight at most")
    group.add_argument("--max-retries", type=non_negative_int, default=5,
                       help="retries per request")
    group.add_argument("--timeout", type=positive_float, default=120.0, help="seconds per request")


def client_from_args(args: argparse.Namespace, provider: Provider | None = None) -> LLMClient:
    """The client that :func:`add_client_arguments` describes; ``provider`` overrides the
    endpoint (a local server started by the stage)."""
    provider = provider or Provider(args.model, args.base_url, args.api_key_env,
                                    args.provider_name)
    return LLMClient(provider, args.cache_dir, concurrency=args.concurrency,
                     max_retries=args.max_retries, timeout_s=args.timeout)
