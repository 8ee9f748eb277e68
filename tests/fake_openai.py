"""A fake OpenAI-compatible chat endpoint for tests (stdlib ``http.server`` in a thread).

It answers ``POST /v1/chat/completions`` on 127.0.0.1 (a free port), so the real ``openai`` SDK talks
to it over real HTTP. Each request takes the next scripted behaviour (first in, first out); once the
script is empty it uses ``default``. Behaviours (``Behaviour`` records, or the helpers below):

- ``ok()``: a good chat completion whose text is a deterministic ranking derived from the prompt:
  the ``[i]`` ids found in the last user message, in reverse order (``[3] > [2] > [1]``); without ids
  it echoes ``echo: <last user message>``. Usage counts whitespace-separated words.
- ``status(code, retry_after=None, retry_after_ms=None, body=None)``: an error status such as 429 or 500,
  optionally with ``Retry-After`` / ``retry-after-ms``.
- ``slow(seconds)``: sleep, then answer as ``ok()`` (used to go past the client's timeout).
- ``malformed()``: HTTP 200 with a body that is not JSON.
- ``empty_choices()``: a JSON completion with ``"choices": []``.
- ``no_content()``: a completion whose message has no ``content``.
- ``html()``: HTTP 200 with a proxy's HTML error page (``text/html``), as gateways send.

``rule``: an optional ``callable(body) -> Behaviour | None`` asked first for every request (e.g. "every
request about query 7 fails", or a seeded 10 % of malformed answers); ``None`` falls through to the script.

Every request is recorded (``requests``: parsed JSON body and headers) and counted (``n_requests``).
Use as a context manager or call ``start()`` / ``stop()``.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Behaviour:
    """What the fake does with one request. ``kind``: ok | status | malformed | empty_choices | no_content."""

    kind: str = "ok"
    delay: float = 0.0  # seconds to sleep before answering
    status: int = 200
    retry_after: str | None = None
    retry_after_ms: str | None = None
    body: str | None = None  # error body override (JSON text)


def ok(delay: float = 0.0) -> Behaviour:
    return Behaviour("ok", delay=delay)


def slow(seconds: float) -> Behaviour:
    return Behaviour("ok", delay=seconds)


def status(code: int, retry_after=None, retry_after_ms=None, body: str | None = None) -> Behaviour:
    return Behaviour(
        "status",
        status=code,
        retry_after=None if retry_after is None else str(retry_after),
        retry_after_ms=None if retry_after_ms is None else str(retry_after_ms),
        body=body,
    )


def malformed() -> Behaviour:
    return Behaviour("malformed")


def empty_choices() -> Behaviour:
    return Behaviour("empty_choices")


def no_content() -> Behaviour:
    return Behaviour("no_content")


def html() -> Behaviour:
    return Behaviour("html")


_ID = re.compile(r"^\[(\d+)\]", flags=re.M)


def ranking_for(messages: list[dict]) -> str:
    """The fake's answer for a prompt: the ``[i]`` ids of the last user message, reversed."""
    user = [m.get("content") or "" for m in messages if m.get("role") == "user"]
    last = user[-1] if user else ""
    # Passage ids start a line; the instruction's example ("in the form [2] > [1] > [3]") does not.
    ids = _ID.findall(last)
    if not ids:
        return f"echo: {last}"
    return " > ".join(f"[{i}]" for i in reversed(ids))


class FakeOpenAI:
    """The fake server. ``base_url`` is ``http://127.0.0.1:<port>/v1``."""

    def __init__(self, default: Behaviour | None = None):
        self.default = default or ok()
        self.rule = None  # callable(body) -> Behaviour | None, asked before the script
        self._script: deque[Behaviour] = deque()
        self._lock = threading.Lock()
        self.requests: list[dict] = []  # {"body": parsed JSON or None, "headers": {lower-name: value}, "behaviour": ...}
        self.max_in_flight = 0  # most requests answered at the same time since the last reset()
        self._gen = 0  # bumped by reset(): requests still running from before it are not counted
        self._active: dict[int, int] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- scripting ---------------------------------------------------------------------------------
    def script(self, *behaviours: Behaviour) -> "FakeOpenAI":
        """Queue behaviours for the next requests, in order (after any still queued)."""
        with self._lock:
            self._script.extend(behaviours)
        return self

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self.rule = None
            self.requests.clear()
            self._gen += 1
            self.max_in_flight = 0

    @property
    def n_requests(self) -> int:
        with self._lock:
            return len(self.requests)

    @property
    def in_flight(self) -> int:
        """Requests (since the last reset()) being answered now."""
        with self._lock:
            return self._active.get(self._gen, 0)

    @property
    def pending(self) -> int:
        """Scripted behaviours not yet used."""
        with self._lock:
            return len(self._script)

    def _next(self, body, headers) -> Behaviour:
        ruled = self.rule(body) if self.rule is not None else None
        with self._lock:
            b = ruled or (self._script.popleft() if self._script else self.default)
            self.requests.append({"body": body, "headers": headers, "behaviour": b})
            return b

    # -- lifecycle ---------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "FakeOpenAI":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # noqa: A002 - keep test output quiet
                pass

            def do_POST(self):  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                headers = {k.lower(): v for k, v in self.headers.items()}
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, json.dumps({"error": {"message": f"no route {self.path}"}}))
                    return
                b = fake._next(body, headers)
                with fake._lock:
                    gen = fake._gen
                    fake._active[gen] = fake._active.get(gen, 0) + 1
                    fake.max_in_flight = max(fake.max_in_flight, fake._active[gen])
                try:
                    if b.delay:
                        time.sleep(b.delay)
                    self._answer(b, body or {})
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout); nothing to do
                finally:
                    with fake._lock:
                        fake._active[gen] -= 1

            def _answer(self, b: Behaviour, body: dict) -> None:
                model = body.get("model", "fake-model")
                if b.kind == "status":
                    extra = {}
                    if b.retry_after is not None:
                        extra["Retry-After"] = b.retry_after
                    if b.retry_after_ms is not None:
                        extra["retry-after-ms"] = b.retry_after_ms
                    text = b.body or json.dumps({"error": {"message": f"fake error {b.status}", "code": b.status}})
                    self._send(b.status, text, extra)
                    return
                if b.kind == "malformed":
                    self._send(200, '{"id": "x", "choices": [ this is not json')
                    return
                if b.kind == "html":
                    self._send(200, "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway"
                                    "</h1><hr>nginx</body></html>", content_type="text/html")
                    return
                messages = body.get("messages") or []
                text = ranking_for(messages)
                prompt_words = sum(len(str(m.get("content", "")).split()) for m in messages)
                completion = {
                    "id": f"chatcmpl-fake-{fake.n_requests}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                    ],
                    "usage": {
                        "prompt_tokens": prompt_words,
                        "completion_tokens": len(text.split()),
                        "total_tokens": prompt_words + len(text.split()),
                    },
                }
                if b.kind == "empty_choices":
                    completion["choices"] = []
                elif b.kind == "no_content":
                    del completion["choices"][0]["message"]["content"]
                self._send(200, json.dumps(completion))

            def _send(self, code: int, text: str, extra: dict | None = None,
                      content_type: str = "application/json") -> None:
                data = text.encode()
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeOpenAI":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def free_closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":  # run standalone for manual poking: python tests/fake_openai.py
    with FakeOpenAI() as f:
        print(f.base_url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
