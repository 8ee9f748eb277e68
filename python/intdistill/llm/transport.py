"""The HTTP side of the LLM client: retry pacing, URLs shown without secrets, and a transport that fails fast
when nothing listens on a loopback port."""

from __future__ import annotations

import importlib
import socket
from urllib.parse import urlsplit, urlunsplit

import openai


PLACEHOLDER_API_KEY = "not-needed"
_SNIPPET = 300  # characters of server text quoted in an error message
# The openai SDK's backoff (openai._constants INITIAL_RETRY_DELAY / MAX_RETRY_DELAY), for malformed 200s
RETRY_DELAY_S = 0.5
MAX_RETRY_DELAY_S = 8.0


def retry_delay(attempt: int, initial: float = RETRY_DELAY_S) -> float:
    """Seconds to wait before re-asking after ``attempt`` (0-based) malformed answers: ``initial * 2**attempt``
    capped at :data:`MAX_RETRY_DELAY_S`, minus up to 25 % jitter (as the SDK does)."""
    import random

    return min(initial * 2.0 ** attempt, MAX_RETRY_DELAY_S) * (1 - 0.25 * random.random())


def display_url(url: str) -> str:
    """``url`` without user/password (safe to log, show and store)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _is_loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


def _nothing_listening(exc: BaseException) -> BaseException | None:
    """The ``ConnectionRefusedError`` / ``socket.gaierror`` behind ``exc``, if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (ConnectionRefusedError, socket.gaierror)):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


class _NothingListening(openai.APIConnectionError):
    """Raised by the fail-fast transport; the SDK passes its own errors through without retrying."""


def _http_module():
    """The HTTP library the installed ``openai`` SDK is built on (``httpx2`` for openai 3.x, ``httpx`` before)."""
    for cls in openai.DefaultHttpxClient.__mro__:
        top = cls.__module__.split(".")[0]
        if cls.__name__ == "Client" and top in ("httpx", "httpx2"):
            return importlib.import_module(top)
    return None


def _fail_fast_transport(max_connections: int):
    """The SDK's default transport, except that refused connections and DNS failures raise at once
    instead of being retried. ``None`` if the HTTP library is not one we know (then the SDK retries them)."""
    mod = _http_module()
    if mod is None:
        return None
    inner = mod.HTTPTransport(limits=mod.Limits(max_connections=max_connections, max_keepalive_connections=max_connections))

    class FailFastTransport(mod.BaseTransport):
        def handle_request(self, request):
            try:
                return inner.handle_request(request)
            except mod.ConnectError as e:
                cause = _nothing_listening(e)
                if cause is None:
                    raise
                raise _NothingListening(message=f"{type(cause).__name__}: {cause}", request=request) from e

        def close(self):
            inner.close()

    return FailFastTransport()
