"""One model served by several OpenAI-compatible endpoints (vLLM replicas, several API keys' gateways): the
calls fan out over them, while the cache, the ledger and the budget stay in this process, one of each.

:class:`FanOutClient` is an :class:`~intdistill.llm.client.LLMClient` (same ``chat``, cache, budgets, ledger,
errors) whose requests go to the endpoint with the fewest calls in flight. The senders are the endpoints' own
clients' ``send`` (threads in this process), or Ray actors' (:class:`intdistill.ray_backend.RayEndpoints`,
``--ray``). ``max_concurrency`` is the total over the endpoints.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from intdistill.llm.cache import ChatRequest, ChatResult
from intdistill.llm.client import LLMClient


class FanOutClient(LLMClient):
    """Requests of one ``model`` spread over ``base_urls``; see the module docstring. ``senders``: one callable
    per endpoint, ``request -> (ChatResult, retries, malformed)`` (default: a plain client per endpoint)."""

    def __init__(self, base_urls: Sequence[str], model: str, *, senders: Sequence[Callable] | None = None,
                 per_endpoint_concurrency: int = 4, **kwargs):
        if len(base_urls) < 1:
            raise ValueError("base_urls: expected at least one endpoint URL, got none")
        cache, max_calls, max_cost = kwargs.pop("cache", None), kwargs.pop("max_calls", None), kwargs.pop("max_cost", None)
        super().__init__(base_urls[0], model, cache=cache, max_calls=max_calls, max_cost=max_cost,
                         max_concurrency=per_endpoint_concurrency * len(base_urls), **kwargs)
        self.base_urls = list(base_urls)
        if senders is None:
            self._endpoints = [LLMClient(u, model, max_concurrency=per_endpoint_concurrency, **kwargs)
                               for u in self.base_urls]
            senders = [c.send for c in self._endpoints]
        else:
            self._endpoints = []
        if len(senders) != len(self.base_urls):
            raise ValueError(f"expected one sender per endpoint ({len(self.base_urls)}), got {len(senders)}")
        self._senders = list(senders)
        self._busy = [0] * len(self._senders)
        self._sent = [0] * len(self._senders)
        self._pick_lock = threading.Lock()
        from intdistill.llm.client import display_url

        self.endpoint = " + ".join(display_url(u) for u in self.base_urls)

    @property
    def sent(self) -> list[int]:
        """Requests sent to each endpoint so far (in ``base_urls`` order)."""
        with self._pick_lock:
            return list(self._sent)

    def _send(self, req: ChatRequest) -> tuple[ChatResult, int, int]:
        with self._pick_lock:
            i = min(range(len(self._senders)), key=lambda j: (self._busy[j], self._sent[j]))
            self._busy[i] += 1
            self._sent[i] += 1
        try:
            return self._senders[i](req)
        finally:
            with self._pick_lock:
                self._busy[i] -= 1

    def close(self) -> None:
        for c in self._endpoints:
            c.close()
        super().close()

    def __repr__(self) -> str:
        return f"FanOutClient({self.base_urls!r}, {self.model!r})"
