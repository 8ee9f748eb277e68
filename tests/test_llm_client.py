"""LLMClient against a fake OpenAI-compatible server, spoken to by the real ``openai`` SDK over HTTP.

Covers: answers and caching, every failure mode (right exception, or a successful retry, and the retry
count in the ledger), budgets, bounded concurrency and input order, durability under SIGKILL / Ctrl-C
of a labelling-like subprocess, and that the API key never reaches a log, the cache or an exception.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import intdistill

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_openai import (  # noqa: E402
    FakeOpenAI,
    empty_choices,
    free_closed_port,
    malformed,
    no_content,
    ok,
    ranking_for,
    slow,
    status,
)

from intdistill.llm.cache import ChatRequest, Ledger, LLMCache  # noqa: E402
from intdistill.llm.client import (  # noqa: E402
    BudgetExceeded,
    LLMAuthError,
    LLMBadResponse,
    LLMClient,
    LLMError,
    LLMRateLimited,
    LLMRequestError,
    LLMServerError,
    LLMTimeout,
    LLMUnreachable,
)
from intdistill.llm.prompts import build_messages  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FAST = "1"  # retry-after-ms: the SDK waits 1 ms instead of its 0.5 s+ backoff


def prompt(i: int, n: int = 3) -> list[dict]:
    return build_messages("compact", f"query {i}", [f"passage {i}.{j}" for j in range(n)])


def want(i: int, n: int = 3) -> str:
    return " > ".join(f"[{j}]" for j in range(n, 0, -1))


@pytest.fixture(scope="module")
def server():
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def fake(server, monkeypatch):
    server.reset()
    server.default = ok()
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    return server


@pytest.fixture
def cache(tmp_path):
    with LLMCache(tmp_path / "llm.sqlite") as c:
        yield c


def client(fake, cache=None, **kw) -> LLMClient:
    kw.setdefault("timeout", 5.0)
    kw.setdefault("max_retries", 3)
    return LLMClient(fake.base_url, "fake-model", cache=cache, **kw)


# -- answers and cache ---------------------------------------------------------------------------
def test_answer_then_cache_hit(fake, cache):
    c = client(fake, cache)
    r = c.chat(prompt(1), max_tokens=20, seed=0)
    assert (r.text, r.finish_reason, r.cached) == ("[3] > [2] > [1]", "stop", False)
    assert r.prompt_tokens == sum(len(m["content"].split()) for m in prompt(1)) and r.completion_tokens == 5
    assert r.latency_s > 0 and r.key == c.request(prompt(1), max_tokens=20, seed=0).key()
    body = fake.requests[0]["body"]
    assert body["model"] == "fake-model" and body["max_tokens"] == 20 and body["seed"] == 0 and body["temperature"] == 0.0
    assert fake.requests[0]["headers"]["authorization"] == "Bearer not-needed"  # placeholder when no key is set

    again = c.chat(prompt(1), max_tokens=20, seed=0)
    assert again.cached and again.text == r.text and fake.n_requests == 1
    assert c.ledger == Ledger(calls=1, cache_hits=1, prompt_tokens=r.prompt_tokens, completion_tokens=5)
    assert cache.summary() == c.ledger

    # The endpoint is not part of the key: the same model elsewhere hits the cache.
    other = LLMClient(fake.base_url.replace("127.0.0.1", "localhost"), "fake-model", cache=cache)
    assert other.chat(prompt(1), max_tokens=20, seed=0).cached and fake.n_requests == 1
    c.chat(prompt(1), max_tokens=21, seed=0)  # other decoding: a new call
    assert fake.n_requests == 2


def test_cost_estimate(fake):
    c = client(fake, price_in_per_m=2.0, price_out_per_m=10.0)
    r = c.chat(prompt(1))
    assert c.ledger.cost == pytest.approx((r.prompt_tokens * 2.0 + r.completion_tokens * 10.0) / 1e6)


# -- failure modes -------------------------------------------------------------------------------
def test_rate_limit_retried_honouring_retry_after(fake, cache, caplog):
    caplog.set_level(logging.INFO, logger="intdistill")
    fake.script(status(429, retry_after="0.3"), ok())
    c = client(fake, cache)
    t0 = time.perf_counter()
    r = c.chat(prompt(1))
    assert time.perf_counter() - t0 >= 0.3  # the SDK waited as Retry-After asked
    assert r.text == want(1) and fake.n_requests == 2
    assert c.ledger.retries == 1 and c.ledger.failures == 0 and cache.summary().retries == 1
    assert "retry 1 of 3 (last attempt: HTTP 429)" in caplog.text


def test_rate_limit_gives_up(fake, cache):
    fake.script(*[status(429, retry_after_ms=FAST)] * 4)
    c = client(fake, cache, max_retries=3)
    with pytest.raises(LLMRateLimited) as e:
        c.chat(prompt(1))
    assert e.value.status == 429 and e.value.retries == 3 and "4 attempts" in str(e.value)
    assert fake.n_requests == 4
    assert c.ledger == Ledger(calls=1, retries=3, failures=1) == cache.summary()
    assert len(cache) == 0


def test_server_error_retried_then_ok(fake):
    fake.script(status(500, retry_after_ms=FAST), status(503, retry_after_ms=FAST), ok())
    c = client(fake)
    assert c.chat(prompt(2)).text == want(2)
    assert c.ledger.retries == 2 and fake.n_requests == 3


def test_server_error_gives_up(fake):
    fake.script(*[status(500, retry_after_ms=FAST, body='{"error": "boom"}')] * 3)
    with pytest.raises(LLMServerError, match=r"HTTP 500 .* on all 3 attempts.*boom") as e:
        client(fake, max_retries=2).chat(prompt(1))
    assert e.value.status == 500 and e.value.retries == 2


def test_timeout_retried_then_gives_up(fake):
    c = client(fake, timeout=0.5, max_retries=1)
    fake.script(slow(1.5), ok())
    assert c.chat(prompt(1)).text == want(1)
    assert c.ledger.retries == 1
    fake.script(slow(1.5), slow(1.5))
    with pytest.raises(LLMTimeout, match=r"within the 0.5 s timeout \(2 attempts\)") as e:
        c.chat(prompt(2))
    assert e.value.retries == 1 and c.ledger.failures == 1 and c.ledger.retries == 2


@pytest.mark.parametrize(
    "behaviour, says",
    [
        (malformed(), r"not JSON: .*this is not json"),
        (empty_choices(), r"non-empty 'choices' list.*got choices=\[\]"),
        (no_content(), r"message.content to be a string.*\"role\": \"assistant\"\}"),
    ],
)
def test_bad_responses_are_retried_then_raised(fake, cache, behaviour, says, caplog):
    """A malformed HTTP 200 is asked again with backoff (issue 12); one that never heals raises after
    max_retries re-asks, counted in the ledger under `malformed` and `retries`."""
    fake.default = behaviour
    c = client(fake, cache, retry_delay_s=0.01)
    with caplog.at_level(logging.DEBUG, logger="intdistill.llm.client"):
        with pytest.raises(LLMBadResponse, match=says) as e:
            c.chat(prompt(1))
    assert fake.n_requests == 4  # the first answer and 3 re-asks
    assert e.value.retries == 3 and e.value.kind in LLMBadResponse.KINDS
    assert (c.ledger.failures, c.ledger.malformed, c.ledger.retries) == (1, 4, 3)
    assert len(cache) == 0 and cache.summary().failures == 1 and cache.summary().malformed == 4
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and "malformed answer" in r.message]
    assert len(warned) == 1  # once per kind; the rest at DEBUG
    fake.default = ok()
    assert c.chat(prompt(1)).text == want(1)  # not cached: asked again


@pytest.mark.parametrize("behaviour", [malformed(), empty_choices(), no_content()])
def test_a_malformed_answer_then_a_good_one_succeeds(fake, cache, behaviour):
    fake.script(behaviour, behaviour)
    c = client(fake, cache, retry_delay_s=0.01)
    assert c.chat(prompt(2)).text == want(2)
    assert fake.n_requests == 3
    assert (c.ledger.failures, c.ledger.malformed, c.ledger.retries) == (0, 2, 2)
    assert cache.summary().malformed == 2 and "2 malformed answers" in str(c.ledger)


def test_malformed_and_http_errors_mixed(fake, cache):
    fake.script(status(500, retry_after_ms=FAST), malformed(), status(429, retry_after_ms=FAST), empty_choices())
    c = client(fake, cache, retry_delay_s=0.01)
    assert c.chat(prompt(3)).text == want(3)
    assert fake.n_requests == 5
    assert (c.ledger.malformed, c.ledger.retries, c.ledger.failures) == (2, 4, 0)


def test_an_old_cache_gains_the_malformed_column(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite"
    with LLMCache(path) as c:
        c.put(ChatRequest.build("m", [{"role": "user", "content": "x"}]),
              intdistill.llm.cache.ChatResult("a", 1, 1, 0.1, False, "stop"), retries=2)
    db = sqlite3.connect(path)  # make it look like schema 1 (no malformed column)
    db.executescript("ALTER TABLE calls DROP COLUMN malformed; PRAGMA user_version=1;")
    db.close()
    with LLMCache(path) as c:
        assert c.summary().retries == 2 and c.summary().malformed == 0 and len(c) == 1


def test_auth_error_names_the_variable(fake, monkeypatch):
    fake.script(status(401))
    with pytest.raises(LLMAuthError, match="Set the environment variable MY_LLM_KEY .*it is not set"):
        client(fake, api_key_env="MY_LLM_KEY").chat(prompt(1))
    monkeypatch.setenv("MY_LLM_KEY", "abc-123-def")
    fake.script(status(403))
    with pytest.raises(LLMAuthError, match="HTTP 403.*MY_LLM_KEY .*set but was rejected"):
        client(fake, api_key_env="MY_LLM_KEY").chat(prompt(1))
    assert fake.requests[-1]["headers"]["authorization"] == "Bearer abc-123-def"
    assert fake.n_requests == 2  # 401/403 are not retried


def test_other_client_errors(fake):
    fake.script(status(404, body='{"error": {"message": "model fake-model not found"}}'))
    with pytest.raises(LLMRequestError, match="HTTP 404.*model fake-model not found"):
        client(fake).chat(prompt(1))


def test_unreachable_fails_fast_with_the_url():
    port = free_closed_port()
    c = LLMClient(f"http://127.0.0.1:{port}/v1", "m", max_retries=5)
    t0 = time.perf_counter()
    with pytest.raises(LLMUnreachable) as e:
        c.chat(prompt(1))
    assert time.perf_counter() - t0 < 2.0  # refused connections are not retried
    msg = str(e.value)
    assert f"http://127.0.0.1:{port}/v1" in msg and "intdistill llm serve" in msg and "refused" in msg
    assert c.ledger == Ledger(calls=1, failures=1)


def test_unreachable_remote_name():
    c = LLMClient("http://no-such-host.invalid:9/v1", "m", max_retries=5)
    with pytest.raises(LLMUnreachable, match=r"no-such-host.invalid:9/v1.*check the URL") as e:
        c.chat(prompt(1))
    assert "intdistill llm serve" not in str(e.value)


# -- batches -------------------------------------------------------------------------------------
def test_chat_many_bounded_concurrency_input_order_and_dedup(fake, cache, capsys):
    fake.default = ok(delay=0.2)
    prompts = [prompt(i, n=2 + i % 4) for i in range(9)] + [prompt(0, n=2)]  # last one repeats the first
    c = client(fake, cache, max_concurrency=3)
    res = c.chat_many(prompts, progress=True, desc="label")
    assert [r.text for r in res] == [want(i, 2 + i % 4) for i in range(9)] + [want(0, 2)]
    assert fake.n_requests == 9  # the repeated prompt was asked once
    assert fake.max_in_flight == 3
    err = capsys.readouterr().err
    assert "label" in err and "10/10" in err and "tok_s" in err
    # Rerun: all cached, zero calls.
    fake.reset()
    res2 = client(fake, cache).chat_many(prompts, progress=False)
    assert fake.n_requests == 0 and all(r.cached for r in res2)
    assert [r.text for r in res2] == [r.text for r in res]


def test_chat_many_on_error_return_and_raise(fake, cache):
    c = client(fake, cache, max_concurrency=1, max_retries=0)
    fake.script(ok(), status(500))
    res = c.chat_many([prompt(i) for i in range(4)], progress=False, on_error="return")
    assert isinstance(res[1], LLMServerError) and [r.text for r in res if not isinstance(r, LLMError)] == [want(0)] * 3
    assert c.ledger.failures == 1 and len(cache) == 3

    fake.reset()
    fake.script(ok(), status(500))
    with pytest.raises(LLMServerError):
        c.chat_many([prompt(i) for i in range(10, 15)], progress=False)
    assert fake.n_requests == 2 and len(cache) == 4  # stopped starting calls; the one done is saved


def test_budget_max_calls_stops_cleanly(fake, cache):
    prompts = [prompt(i) for i in range(8)]
    c = client(fake, cache, max_calls=3, max_concurrency=2)
    with pytest.raises(BudgetExceeded, match="max_calls=3 reached") as e:
        c.chat_many(prompts, progress=False)
    assert e.value.ledger.calls == 3 and fake.n_requests == 3 and len(cache) == 3
    assert [r is not None for r in e.value.results] == [True] * 3 + [False] * 5
    # Cache hits are free; a new call is refused before it is made.
    assert c.chat(prompts[0]).cached
    with pytest.raises(BudgetExceeded):
        c.chat(prompts[5])
    assert fake.n_requests == 3
    # A rerun without the limit resumes: 3 hits, 5 calls.
    c2 = client(fake, cache)
    assert [r.text for r in c2.chat_many(prompts, progress=False)] == [want(i) for i in range(8)]
    assert c2.ledger.cache_hits == 3 and c2.ledger.calls == 5 and fake.n_requests == 8


def test_budget_max_cost(fake):
    c = client(fake, max_cost=0.0, price_in_per_m=1.0)
    with pytest.raises(BudgetExceeded, match="max_cost"):
        c.chat(prompt(1))
    assert fake.n_requests == 0
    one = client(fake, price_in_per_m=1e5).chat(prompt(1)).prompt_tokens * 0.1  # cost of one call at $1e5/M
    c = client(fake, max_cost=2.5 * one, price_in_per_m=1e5, max_concurrency=1)
    with pytest.raises(BudgetExceeded, match="max_cost"):
        c.chat_many([prompt(i) for i in range(100, 110)], progress=False)
    assert c.ledger.calls == 3  # before calls 1, 2, 3 the cost (0, 1, 2 calls) is below 2.5 calls' worth
    with pytest.raises(ValueError, match="price_in_per_m and price_out_per_m are both 0"):
        client(fake, max_cost=1.0)


def test_bad_client_arguments():
    with pytest.raises(ValueError, match="base_url"):
        LLMClient("127.0.0.1:8080", "m")
    with pytest.raises(ValueError, match="max_concurrency"):
        LLMClient("http://127.0.0.1:1/v1", "m", max_concurrency=0)
    with pytest.raises(TypeError, match="cache"):
        LLMClient("http://127.0.0.1:1/v1", "m", cache="llm.sqlite")
    with pytest.raises(ValueError, match="on_error"):
        LLMClient("http://127.0.0.1:1/v1", "m").chat_many([], on_error="ignore")


# -- secrets -------------------------------------------------------------------------------------
SECRET = "sk-test-SECRET-9f8e7d6c5b4a"


def test_api_key_never_logged_stored_or_shown(fake, cache, tmp_path, caplog, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    caplog.set_level(logging.DEBUG)  # every logger: intdistill, openai, httpx2/httpx, httpcore
    c = client(fake, cache, max_retries=1)
    errors = []
    fake.script(status(429, retry_after_ms=FAST), ok())
    c.chat(prompt(1))
    for behaviours in (
        [status(500, retry_after_ms=FAST, body=json.dumps({"error": f"bad key {SECRET}"}))] * 2,
        [malformed()] * 2,  # asked again once (max_retries=1), malformed again
        [status(401, body=json.dumps({"error": {"message": f"Incorrect API key provided: {SECRET}"}}))],
        [status(400, body=json.dumps({"error": {"message": f"echo {SECRET}"}}))],
    ):
        fake.script(*behaviours)
        with pytest.raises(LLMError) as e:
            c.chat(prompt(len(errors) + 10))
        errors.append(e.value)
    with pytest.raises(LLMUnreachable) as e:
        LLMClient(f"http://127.0.0.1:{free_closed_port()}/v1", "m").chat(prompt(1))
    errors.append(e.value)
    c.chat_many([prompt(i) for i in range(20, 24)], progress=False)

    assert fake.requests[0]["headers"]["authorization"] == f"Bearer {SECRET}"  # the key really was used
    names = {r.name.split(".")[0] for r in caplog.records}
    assert {"intdistill", "openai"} <= names, names  # the SDK's debug logs were captured too
    assert SECRET not in caplog.text
    for rec in caplog.records:
        assert SECRET not in str(rec.args)
    for err in errors:
        chain = err  # what a traceback would print: causes, and contexts unless suppressed
        while chain is not None:
            assert SECRET not in str(chain) and SECRET not in repr(chain)
            chain = chain.__cause__ or (None if chain.__suppress_context__ else chain.__context__)
    assert "***" in str(errors[0])  # server text quoting the key is redacted
    assert SECRET not in repr(c)
    cache.close()
    for f in tmp_path.iterdir():
        assert SECRET.encode() not in f.read_bytes(), f


# -- durability of a labelling run in another process ------------------------------------------
CHILD = textwrap.dedent(
    """
    import json, signal, sys
    # Ctrl-C as a terminal delivers it, whatever this test runs under (a shell's background job ignores SIGINT,
    # and a child inherits that)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.path.insert(0, {python!r})
    from intdistill.llm.cache import LLMCache
    from intdistill.llm.client import LLMClient
    base_url, db, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    prompts = [[{{"role": "user", "content": f"rank for query {{i}}\\n" + "\\n".join(f"[{{j}}] p{{i}}.{{j}}" for j in range(1, 2 + i % 5))}}]
               for i in range(n)]
    with LLMCache(db) as cache:
        client = LLMClient(base_url, "fake-model", cache=cache, max_concurrency=2, max_retries=0, timeout=10)
        results = client.chat_many(prompts, progress=False)
        print(json.dumps({{"texts": [r.text for r in results], "ledger": client.ledger.as_dict()}}))
    """
)


def _child(fake, tmp_path, n):
    script = tmp_path / "label.py"
    script.write_text(CHILD.format(python=str(Path(intdistill.__file__).resolve().parents[1])))
    return subprocess.Popen([sys.executable, str(script), fake.base_url, str(tmp_path / "llm.sqlite"), str(n)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _expected(n):
    return [" > ".join(f"[{j}]" for j in range(1 + i % 5, 0, -1)) for i in range(n)]


def _interrupt_midway(fake, proc, sig, after):
    deadline = time.monotonic() + 60
    while fake.n_requests < after:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "child made no progress"
        time.sleep(0.005)
    proc.send_signal(sig)
    proc.communicate(timeout=60)


def test_sigkill_midway_loses_only_calls_in_flight(fake, tmp_path):
    n = 24
    fake.default = ok(delay=0.1)
    proc = _child(fake, tmp_path, n)
    _interrupt_midway(fake, proc, signal.SIGKILL, after=8)
    assert proc.returncode == -signal.SIGKILL
    time.sleep(0.2)  # let the server finish answering the orphaned requests
    sent_first = fake.n_requests
    with LLMCache(tmp_path / "llm.sqlite") as c:
        saved = len(c)
    print(f"killed after {sent_first} requests, {saved} answers saved")
    assert 8 <= sent_first < n and sent_first - 2 <= saved <= sent_first  # at most max_concurrency lost

    proc = _child(fake, tmp_path, n)  # rerun: finishes, asking only what is not saved
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    doc = json.loads(out)
    assert doc["texts"] == _expected(n)
    assert doc["ledger"]["calls"] == n - saved and doc["ledger"]["cache_hits"] == saved
    assert fake.n_requests == sent_first + n - saved <= n + 2

    before = fake.n_requests
    proc = _child(fake, tmp_path, n)  # everything cached: zero calls
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert fake.n_requests == before and json.loads(out)["ledger"]["calls"] == 0


def test_ctrl_c_midway_saves_the_calls_in_flight(fake, tmp_path):
    n = 24
    fake.default = ok(delay=0.1)
    proc = _child(fake, tmp_path, n)
    _interrupt_midway(fake, proc, signal.SIGINT, after=6)
    assert proc.returncode != 0
    with LLMCache(tmp_path / "llm.sqlite") as c:
        saved = len(c)
    assert 6 <= saved < n and saved == fake.n_requests  # every call that was sent got saved
