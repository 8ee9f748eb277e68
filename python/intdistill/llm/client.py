"""A chat client for any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp server, LM Studio).

    client = LLMClient("http://127.0.0.1:8080/v1", "qwen2.5-1.5b", cache=LLMCache("runs/llm.sqlite"))
    result = client.chat([{"role": "user", "content": "..."}], temperature=0.0, max_tokens=80, seed=0)
    results = client.chat_many(list_of_messages, max_tokens=80)   # bounded concurrency, input order
    print(client.ledger)                                          # calls, hits, retries, tokens, cost

Policies:
- API key: read only from the environment variable ``api_key_env`` (default ``OPENAI_API_KEY``). When it
  is unset (local servers need none) the placeholder ``"not-needed"`` is sent. The key is never logged,
  stored or put in an exception message (server text quoted in messages has it replaced by ``***``).
- Retries: done by the ``openai`` SDK itself (``max_retries``; exponential backoff from 0.5 s with
  jitter, capped at 8 s; a positive ``Retry-After`` / ``retry-after-ms`` is honoured up to the SDK's cap)
  on 408/409/429/5xx, timeouts and connection errors. This client counts every retry (an event hook on
  the SDK's HTTP client), logs it at INFO and adds it to the ledger. Exception: connection refused and
  DNS failures are not retried (nothing listens at ``base_url``; waiting will not help) and raise
  ``LLMUnreachable`` at once. That needs openai >= 2.31 (which passes its own errors from the transport
  through unretried); older SDKs retry them like other connection errors before the same exception.
- Malformed answers: an HTTP 200 whose body is not a usable chat completion (not JSON, e.g. a proxy's
  HTML error page; JSON that is not a completion; empty ``choices``; ``content`` null or missing) is asked
  again, up to ``max_retries`` times, with the SDK's backoff (0.5 s doubling, capped at 8 s, jittered).
  Each one counts in the ledger's ``malformed`` and ``retries``; the first of each kind is logged as a
  warning, later ones at DEBUG.
- Timeout: ``timeout`` seconds for each attempt (connect, send, wait for the answer, read).
- Budget: ``max_calls`` / ``max_cost`` are checked before each new call (cache hits are free) and
  count this client's calls only; ``cache.summary()`` sums all runs. When reached, ``BudgetExceeded``
  is raised after everything in flight has finished and been saved. ``max_cost`` can be overshot by
  the calls in flight (their cost is known only when they return).
- Cache: with ``cache=LLMCache(path)`` every answer is committed as it arrives; a request already in the
  cache makes no call (``ChatResult.cached``). See ``intdistill.llm.cache`` for the key policy.
- Errors: see ``intdistill.llm.errors`` for the exception tree.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Sequence
from urllib.parse import urlsplit

import openai

from intdistill.llm.cache import (
    ChatRequest,
    ChatResult,
    Ledger,
    LLMCache,
    call_cost,
    new_run_id,
)
from intdistill.llm.errors import (
    BudgetExceeded,
    CircuitOpen,
    LLMAuthError,
    LLMBadResponse,
    LLMError,
    LLMRateLimited,
    LLMRequestError,
    LLMServerError,
    LLMTimeout,
    LLMUnreachable,
)

__all__ = [
    "LLMClient",
    "ChatRequest",
    "ChatResult",
    "Ledger",
    "LLMCache",
    "LLMError",
    "LLMUnreachable",
    "LLMTimeout",
    "LLMRateLimited",
    "LLMServerError",
    "LLMAuthError",
    "LLMRequestError",
    "LLMBadResponse",
    "BudgetExceeded",
    "CircuitOpen",
    "PLACEHOLDER_API_KEY",
]

log = logging.getLogger(__name__)

from intdistill.llm.transport import (MAX_RETRY_DELAY_S, PLACEHOLDER_API_KEY, RETRY_DELAY_S,  # noqa: E402,F401
                                      _SNIPPET, _fail_fast_transport, _http_module, _is_loopback,
                                      _nothing_listening, _NothingListening, display_url, retry_delay)


class LLMClient:
    """Chat completions from one model at one OpenAI-compatible endpoint, cached, counted and budgeted.

    ``base_url``: e.g. ``https://api.openai.com/v1`` or ``http://127.0.0.1:8080/v1``. ``model``: the name
    the endpoint knows. ``timeout``: seconds per attempt. ``max_retries``: SDK retries per call.
    ``max_concurrency``: threads used by ``chat_many``. ``cache``: an ``LLMCache`` (the caller owns and
    closes it) or ``None``. ``max_calls`` / ``max_cost``: budget for this client (``None``: unlimited).
    ``price_in_per_m`` / ``price_out_per_m``: price per million prompt / completion tokens, for the cost
    estimate. ``run_id``: tags this client's rows in the cache ledger (default: time + pid).
    ``retry_delay_s``: the first wait before re-asking after a malformed answer (tests shorten it).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 60.0,
        max_retries: int = 5,
        max_concurrency: int = 4,
        cache: LLMCache | None = None,
        max_calls: int | None = None,
        max_cost: float | None = None,
        price_in_per_m: float = 0.0,
        price_out_per_m: float = 0.0,
        run_id: str | None = None,
        retry_delay_s: float = RETRY_DELAY_S,
    ):
        parts = urlsplit(base_url) if isinstance(base_url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url: expected an http(s) URL such as http://127.0.0.1:8080/v1, got {base_url!r}")
        if not isinstance(model, str) or not model:
            raise ValueError(f"model: expected a non-empty str, got {model!r}")
        if not (isinstance(timeout, (int, float)) and timeout > 0):
            raise ValueError(f"timeout: expected seconds > 0, got {timeout!r}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries: expected an int >= 0, got {max_retries!r}")
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ValueError(f"max_concurrency: expected an int >= 1, got {max_concurrency!r}")
        if max_calls is not None and (isinstance(max_calls, bool) or not isinstance(max_calls, int) or max_calls < 0):
            raise ValueError(f"max_calls: expected None or an int >= 0, got {max_calls!r}")
        for name, v in (("price_in_per_m", price_in_per_m), ("price_out_per_m", price_out_per_m)):
            if not (isinstance(v, (int, float)) and v >= 0):
                raise ValueError(f"{name}: expected a price >= 0, got {v!r}")
        if max_cost is not None:
            if not (isinstance(max_cost, (int, float)) and max_cost >= 0):
                raise ValueError(f"max_cost: expected None or a number >= 0, got {max_cost!r}")
            if price_in_per_m == 0 and price_out_per_m == 0:
                raise ValueError("max_cost is set but price_in_per_m and price_out_per_m are both 0: the cost would never grow")
        if cache is not None and not isinstance(cache, LLMCache):
            raise TypeError(f"cache: expected an LLMCache or None, got {type(cache).__name__}")

        self.base_url = base_url
        self.endpoint = display_url(base_url)
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.max_concurrency = max_concurrency
        self.cache = cache
        self.max_calls = max_calls
        self.max_cost = max_cost
        self.price_in_per_m = float(price_in_per_m)
        self.price_out_per_m = float(price_out_per_m)
        self.run_id = run_id or new_run_id()
        if not (isinstance(retry_delay_s, (int, float)) and retry_delay_s >= 0):
            raise ValueError(f"retry_delay_s: expected seconds >= 0, got {retry_delay_s!r}")
        self.retry_delay_s = float(retry_delay_s)
        self._malformed_seen: set[str] = set()  # kinds already logged as a warning

        key = os.environ.get(api_key_env) or ""
        self._key_is_set = bool(key)
        # Only for redacting server text; kept out of repr and of everything logged or stored.
        self._redact_key = key if len(key) >= 4 else ""
        self._lock = threading.Lock()
        self._counts = Ledger()
        self._state = threading.local()  # per-thread attempt counter for the call in progress
        http_client = openai.DefaultHttpxClient(
            event_hooks={"request": [self._on_request], "response": [self._on_response]},
            transport=_fail_fast_transport(max(10, 2 * max_concurrency)),
        )
        self._sdk = openai.OpenAI(
            base_url=base_url,
            api_key=key or PLACEHOLDER_API_KEY,
            timeout=self.timeout,
            max_retries=max_retries,
            http_client=http_client,
        )

    # -- public ----------------------------------------------------------------------------------
    @property
    def ledger(self) -> Ledger:
        """This client's counts so far (a snapshot)."""
        with self._lock:
            return self._counts

    def request(self, messages, **decoding) -> ChatRequest:
        """The ``ChatRequest`` (and so the cache key) that ``chat(messages, **decoding)`` would send."""
        return ChatRequest.build(self.model, messages, **decoding)

    def chat(self, messages, **decoding) -> ChatResult:
        """One chat completion. ``decoding``: ``temperature`` (default 0.0), ``max_tokens``, ``seed``,
        ``top_p``, ``stop``. Served from the cache when stored; otherwise checks the budget, calls the
        endpoint, stores the answer. Raises an ``LLMError`` subclass on failure."""
        req = self.request(messages, **decoding)
        if self.cache is not None:
            hit = self.cache.get(req.key())
            if hit is not None:
                self._record_hits([req])
                return hit
        self._reserve_call()
        return self._call(req)

    def chat_many(
        self,
        list_of_messages: Sequence,
        *,
        progress: bool = True,
        on_error: str = "raise",
        desc: str = "LLM",
        **decoding,
    ) -> list:
        """Chat completions for many prompts, at most ``max_concurrency`` at a time, results in input order.

        Cached prompts make no call; identical prompts are asked once. Each answer is stored as it
        arrives. ``on_error="raise"``: on the first ``LLMError`` stop starting calls, let those in flight
        finish (and be stored), then raise it. ``on_error="return"``: put the ``LLMError`` in that
        prompt's place and carry on. ``BudgetExceeded`` always stops the batch the same way (its
        ``results`` hold what was obtained). ``progress``: a tqdm bar on stderr (ETA, tokens/s).
        Returns ``list[ChatResult]`` (``list[ChatResult | LLMError]`` with ``on_error="return"``).
        Ctrl-C: calls in flight finish and are stored, then ``KeyboardInterrupt`` propagates.
        """
        if on_error not in ("raise", "return"):
            raise ValueError(f"on_error: expected 'raise' or 'return', got {on_error!r}")
        from intdistill.llm.items import run_items

        requests = [self.request(m, **decoding) for m in list_of_messages]
        positions: dict[str, list[int]] = {}
        for i, r in enumerate(requests):
            positions.setdefault(r.key(), []).append(i)
        results: list = [None] * len(requests)

        def put(req: ChatRequest, res) -> None:
            for i in positions[req.key()]:
                results[i] = res

        hits = self.cache.get_many(positions) if self.cache is not None else {}
        for k, res in hits.items():
            for i in positions[k]:
                results[i] = res
        self._record_hits([requests[i] for k in hits for i in positions[k]])
        todo = [requests[positions[k][0]] for k in positions if k not in hits]

        def work(req: ChatRequest) -> ChatResult:
            self._reserve_call()
            return self._call(req)

        def failed(req: ChatRequest, err: LLMError) -> None:
            if on_error == "raise":
                raise err  # stops the batch: calls in flight finish (and are stored), then this propagates
            put(req, err)

        try:
            run_items(todo, work, put, on_fail=failed, item_id=lambda r: r.key(), concurrency=self.max_concurrency,
                      max_consecutive_failures=0, client=self, progress=progress, desc=desc,
                      size=lambda r: len(positions[r.key()]),
                      total=sum(len(positions[r.key()]) for r in todo) + sum(len(positions[k]) for k in hits),
                      initial=sum(len(positions[k]) for k in hits))
        except BudgetExceeded as stop:
            raise BudgetExceeded(str(stop), ledger=self.ledger, results=results,
                                 base_url=self.endpoint, model=self.model) from None
        log.info("%s: %s", desc, self.ledger)
        return results

    def close(self) -> None:
        """Close the HTTP connections (the cache belongs to the caller)."""
        self._sdk.close()

    def __enter__(self) -> "LLMClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LLMClient({self.endpoint!r}, {self.model!r}, api_key_env={self.api_key_env!r})"

    # -- internals -------------------------------------------------------------------------------
    def _reserve_call(self) -> None:
        """Count one more call, or raise BudgetExceeded if the budget is spent."""
        with self._lock:
            led = self._counts
            reason = None
            if self.max_calls is not None and led.calls >= self.max_calls:
                reason = f"max_calls={self.max_calls} reached ({led.calls} calls made)"
            elif self.max_cost is not None and led.cost >= self.max_cost:
                reason = f"max_cost={self.max_cost:g} reached (estimated cost {led.cost:.4f})"
            if reason is None:
                self._counts = Ledger(**{**led.as_dict(), "calls": led.calls + 1})
                return
        raise BudgetExceeded(f"budget reached: {reason}; every answer so far is saved, a rerun resumes",
                             ledger=led, base_url=self.endpoint, model=self.model)

    def _add(self, **delta) -> None:
        with self._lock:
            d = self._counts.as_dict()
            for k, v in delta.items():
                d[k] += v
            self._counts = Ledger(**d)

    def _record_hits(self, reqs: list[ChatRequest]) -> None:
        if not reqs:
            return
        self._add(cache_hits=len(reqs))
        if self.cache is not None:
            self.cache.record_hits([(r.key(), r.model) for r in reqs], run_id=self.run_id, endpoint=self.endpoint)
        log.debug("%d answer(s) from the cache", len(reqs))

    def _on_request(self, request) -> None:
        st = self._state
        st.attempts = getattr(st, "attempts", 0) + 1
        if st.attempts > 1:
            log.info("%s: retry %d of %d (last attempt: %s)", self.endpoint, st.attempts - 1, self.max_retries,
                     f"HTTP {st.last_status}" if st.last_status else "no response")
        st.last_status = None

    def _on_response(self, response) -> None:
        self._state.last_status = response.status_code
        if response.status_code >= 400:
            log.debug("%s: HTTP %d", self.endpoint, response.status_code)

    def send(self, req: ChatRequest) -> tuple[ChatResult, int, int]:
        """Send ``req`` to this endpoint: ``(result, retries, malformed)``. No cache, budget or ledger: the
        caller keeps those (``_call`` here; the fan-out client on Ray's driver). A malformed HTTP 200 is asked
        again (up to ``max_retries`` times, with backoff); other errors were retried by the SDK. An
        ``LLMError`` carries ``retries`` and ``malformed``."""
        st = self._state
        key = req.key()
        t0 = time.perf_counter()
        retries = malformed = 0
        try:
            while True:
                st.attempts, st.last_status = 0, None
                try:
                    raw = self._sdk.chat.completions.with_raw_response.create(
                        model=req.model, messages=list(req.messages), **req.decoding()
                    )
                    body = raw.http_response.text
                except openai.APIError as e:
                    retries += max(st.attempts - 1, 0)
                    # Not chained: the SDK's message quotes the server verbatim, which may echo the key;
                    # ours carries the cause (redacted) instead.
                    raise self._map_error(e, max(st.attempts, 1)) from None
                retries += max(st.attempts - 1, 0)
                try:
                    return self._parse(body, key, time.perf_counter() - t0, max(st.attempts, 1)), retries, malformed
                except LLMBadResponse as bad:
                    malformed += 1
                    self._note_malformed(bad)
                    if malformed > self.max_retries:
                        raise
                    retries += 1
                    time.sleep(retry_delay(malformed - 1, self.retry_delay_s))
        except LLMError as err:
            err.retries, err.malformed = retries, malformed
            err.latency_s = time.perf_counter() - t0
            raise

    def _send(self, req: ChatRequest) -> tuple[ChatResult, int, int]:
        """Where ``_call`` sends a request: this endpoint (a fan-out client overrides it)."""
        return self.send(req)

    def _call(self, req: ChatRequest) -> ChatResult:
        """Send ``req`` (budget already reserved), store and count the outcome."""
        t0 = time.perf_counter()
        try:
            result, retries, malformed = self._send(req)
        except LLMError as err:
            retries, malformed = err.retries, getattr(err, "malformed", 0)
            self._add(failures=1, retries=retries, malformed=malformed)
            if self.cache is not None:
                self.cache.record_failure(req, error=type(err).__name__, retries=retries,
                                          latency_s=time.perf_counter() - t0, run_id=self.run_id,
                                          endpoint=self.endpoint, malformed=malformed)
            log.warning("%s", err)
            raise
        cost = call_cost(result.prompt_tokens, result.completion_tokens, self.price_in_per_m, self.price_out_per_m)
        if self.cache is not None:
            self.cache.put(req, result, retries=retries, cost=cost, run_id=self.run_id, endpoint=self.endpoint,
                           malformed=malformed)
        self._add(retries=retries, prompt_tokens=result.prompt_tokens or 0,
                  completion_tokens=result.completion_tokens or 0, cost=cost, malformed=malformed)
        log.debug("%s: answer %s in %.2f s (%d retries, %s/%s tokens)", self.endpoint, req.key()[:12],
                  result.latency_s, retries, result.prompt_tokens, result.completion_tokens)
        return result

    def _note_malformed(self, bad: LLMBadResponse) -> None:
        """Log a malformed answer: a warning for the first of its kind, DEBUG after that."""
        with self._lock:
            first = bad.kind not in self._malformed_seen
            self._malformed_seen.add(bad.kind)
        if first:
            log.warning("%s: a malformed answer (%s), asked again; later ones of this kind are logged at DEBUG: %s",
                        self.endpoint, bad.kind, bad)
        else:
            log.debug("%s: malformed answer (%s): %s", self.endpoint, bad.kind, bad)

    def _redact(self, text: str) -> str:
        if self._redact_key:
            text = text.replace(self._redact_key, "***")
        return text

    def _snippet(self, text: str) -> str:
        text = self._redact(text)
        return text if len(text) <= _SNIPPET else text[:_SNIPPET] + f"... ({len(text)} characters)"

    def _map_error(self, e: openai.APIError, attempts: int) -> LLMError:
        where = f"{self.endpoint} (model {self.model!r})"
        tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
        kw = dict(base_url=self.endpoint, model=self.model, retries=attempts - 1)
        if isinstance(e, openai.APITimeoutError):
            return LLMTimeout(f"no answer from {where} within the {self.timeout:g} s timeout ({tries}); "
                              "raise the timeout or check the server's load", **kw)
        if isinstance(e, openai.APIConnectionError):
            cause = _nothing_listening(e) or e.__cause__ or e
            hint = ("; for a local model start a server with `intdistill llm serve`" if _is_loopback(self.base_url)
                    else "; check the URL and the network")
            return LLMUnreachable(f"cannot reach the LLM endpoint {self.endpoint} ({type(cause).__name__}: "
                                  f"{self._redact(str(cause))}; {tries}){hint}", **kw)
        if isinstance(e, openai.APIStatusError):
            code = e.status_code
            kw["status"] = code
            said = self._snippet(e.response.text)  # the SDK has read the body before raising
            if code in (401, 403):
                state = "it is set but was rejected" if self._key_is_set else "it is not set"
                return LLMAuthError(f"HTTP {code} from {where}: not authorised. Set the environment variable "
                                    f"{self.api_key_env} to a valid API key ({state})", **kw)
            if code == 408:
                return LLMTimeout(f"HTTP 408 (request timeout) from {where} on all {tries}. The server said: {said}", **kw)
            if code == 429:
                return LLMRateLimited(f"HTTP 429 (rate limited) from {where} on all {tries}; lower max_concurrency "
                                      f"or try later. The server said: {said}", **kw)
            if code >= 500:
                return LLMServerError(f"HTTP {code} from {where} on all {tries}. The server said: {said}", **kw)
            return LLMRequestError(f"HTTP {code} from {where}: the request was refused. The server said: {said}", **kw)
        return LLMBadResponse(f"expected a chat completion from {where}, got an SDK error "
                              f"{type(e).__name__}: {self._snippet(str(e))}", kind="sdk", **kw)

    def _parse(self, body: str, key: str, latency: float, attempts: int) -> ChatResult:
        """A ``ChatResult`` from the raw response body, or ``LLMBadResponse`` saying what came."""
        where = f"{self.endpoint} (model {self.model!r})"
        kw = dict(base_url=self.endpoint, model=self.model, retries=attempts - 1, status=200)
        try:
            doc = json.loads(body)
        except ValueError:
            raise LLMBadResponse(f"expected a chat completion (JSON) from {where}, got a body that is not JSON: "
                                 f"{self._snippet(body)!r}", kind="not_json", **kw) from None
        if not isinstance(doc, dict):
            raise LLMBadResponse(f"expected a chat completion (a JSON object) from {where}, got JSON "
                                 f"{type(doc).__name__}: {self._snippet(body)!r}", kind="not_completion", **kw)
        choices = doc.get("choices")
        if not isinstance(choices, list) or not choices:
            raise LLMBadResponse(f"expected a non-empty 'choices' list in the chat completion from {where}, got "
                                 f"choices={self._snippet(json.dumps(choices))}",
                                 kind="empty_choices" if isinstance(choices, list) else "not_completion", **kw)
        choice = choices[0] if isinstance(choices[0], dict) else {}
        message = choice.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str):
            raise LLMBadResponse(f"expected choices[0].message.content to be a string in the chat completion from "
                                 f"{where}, got choices[0]={self._snippet(json.dumps(choices[0]))}", kind="no_content",
                                 **kw)
        usage = doc.get("usage") if isinstance(doc.get("usage"), dict) else {}

        def count(name):
            v = usage.get(name)
            return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None

        finish = choice.get("finish_reason")
        return ChatResult(
            text=content,
            prompt_tokens=count("prompt_tokens"),
            completion_tokens=count("completion_tokens"),
            latency_s=latency,
            cached=False,
            finish_reason=finish if isinstance(finish, str) else None,
            key=key,
        )

