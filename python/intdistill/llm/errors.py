"""The LLM client's exception tree.

```
LLMError                     any failure to get a chat answer (has .base_url, .model, .retries, .status)
├── LLMUnreachable           no connection: refused, DNS failure, reset (after retries; refused/DNS fail fast)
├── LLMTimeout               no answer within the client's timeout (after retries)
├── LLMRateLimited           HTTP 429 still returned after all retries
├── LLMServerError           HTTP 5xx still returned after all retries
├── LLMAuthError             HTTP 401/403: names the environment variable to set (never the key)
├── LLMRequestError          any other HTTP 4xx (unknown model, prompt too long, bad parameter): not retried
├── LLMBadResponse           HTTP 200 but not a chat completion (not JSON, no choices, no message content),
│                            on every attempt (.kind says which)
├── CircuitOpen              a run over many items stopped early: the endpoint looks down (auth, unknown
│                            model, unreachable, or N item failures in a row); carries the last error
└── BudgetExceeded           max_calls / max_cost reached before a new call; carries the ledger
```

Policy: the ``openai`` SDK does the retrying (exponential backoff with jitter, ``Retry-After`` honoured)
on 408/409/429/5xx, timeouts and connection errors; these exceptions are raised once it has given up. A
malformed HTTP 200 (``LLMBadResponse``) is retried by the client with the same bounded backoff.
Messages say what was expected and what came, and never contain the API key (server text is redacted
before it is quoted). ``BudgetExceeded`` is a stop on purpose, not a failure: everything finished
before it is already saved in the cache (the CLI maps it to exit code 3).
"""

from __future__ import annotations


class LLMError(Exception):
    """Base class: a chat call did not produce an answer.

    Attributes: ``base_url`` (credentials stripped), ``model``, ``retries`` (retries the SDK made before
    giving up), ``status`` (the last HTTP status, ``None`` when no response came).
    """

    def __init__(
        self,
        message: str,
        *,
        base_url: str | None = None,
        model: str | None = None,
        retries: int = 0,
        status: int | None = None,
    ):
        super().__init__(message)
        self.base_url = base_url
        self.model = model
        self.retries = retries
        self.status = status


class LLMUnreachable(LLMError):
    """No connection to ``base_url`` (refused, DNS failure, connection reset after retries)."""


class LLMTimeout(LLMError):
    """The endpoint did not answer within the client's timeout, on every attempt."""


class LLMRateLimited(LLMError):
    """HTTP 429 on every attempt (the SDK waited as ``Retry-After`` asked between attempts)."""


class LLMServerError(LLMError):
    """HTTP 5xx on every attempt."""


class LLMAuthError(LLMError):
    """HTTP 401/403: the API key is missing or wrong. The message names the environment variable."""


class LLMRequestError(LLMError):
    """HTTP 4xx other than 401/403/429: the request itself is wrong (model name, prompt length, ...)."""


class LLMBadResponse(LLMError):
    """The endpoint answered HTTP 200 with something that is not a usable chat completion, on every attempt.

    ``kind``: ``"not_json"`` (e.g. a proxy's HTML error page), ``"not_completion"`` (JSON, but not a chat
    completion object), ``"empty_choices"``, ``"no_content"`` (content null or missing), ``"sdk"`` (the SDK
    could not read it)."""

    KINDS = ("not_json", "not_completion", "empty_choices", "no_content", "sdk")

    def __init__(self, message: str, *, kind: str = "sdk", **kwargs):
        super().__init__(message, **kwargs)
        self.kind = kind


class CircuitOpen(LLMError):
    """A run over many items (labels, RAG answers, generated queries) stopped early because the endpoint
    looks down: an error no retry can fix (authentication, an unknown model, nothing listening) or
    ``max_consecutive_failures`` failed items in a row. ``last`` is the error that tripped it. Everything
    finished before is saved; a rerun resumes."""

    def __init__(self, message: str, *, last: LLMError | None = None, **kwargs):
        super().__init__(message, **kwargs)
        self.last = last


class BudgetExceeded(LLMError):
    """``max_calls`` or ``max_cost`` was reached before a new call.

    Raised only after every call already in flight has finished and been saved. ``ledger`` is the
    client's ``Ledger`` at that point; ``results`` (from ``chat_many``) holds the answers obtained,
    in input order, with ``None`` where no answer was obtained.
    """

    def __init__(self, message: str, *, ledger, results=None, **kwargs):
        super().__init__(message, **kwargs)
        self.ledger = ledger
        self.results = results
