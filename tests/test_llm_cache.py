"""The durable answer cache and ledger: keys, storage, durability across reopen, threads, summaries."""

from __future__ import annotations

import hashlib
import sqlite3
import threading

import pytest

from intdistill.llm.cache import ChatRequest, ChatResult, Ledger, LLMCache, call_cost

MSG = [{"role": "user", "content": "hi"}]


def test_canonical_json_and_key_by_hand():
    r = ChatRequest.build("m", MSG)
    want = '{"decoding":{"temperature":0.0},"messages":[{"content":"hi","role":"user"}],"model":"m","v":1}'
    assert r.canonical() == want
    assert r.key() == hashlib.sha256(want.encode()).hexdigest()


def test_key_policy():
    base = ChatRequest.build("m", MSG, temperature=0, max_tokens=5, seed=0, stop="x")
    assert base.key() == ChatRequest.build("m", MSG, temperature=0.0, max_tokens=5, seed=0, stop=["x"]).key()
    assert base.key() == ChatRequest.build("m", [dict(MSG[0])], max_tokens=5, seed=0, stop=("x",)).key()
    assert ChatRequest.build("m", MSG).key() == ChatRequest.build("m", MSG, seed=None, top_p=None).key()
    others = [
        ChatRequest.build("m2", MSG, temperature=0, max_tokens=5, seed=0, stop="x"),
        ChatRequest.build("m", [{"role": "user", "content": "hi "}], temperature=0, max_tokens=5, seed=0, stop="x"),
        ChatRequest.build("m", MSG, temperature=0.7, max_tokens=5, seed=0, stop="x"),
        ChatRequest.build("m", MSG, temperature=0, max_tokens=6, seed=0, stop="x"),
        ChatRequest.build("m", MSG, temperature=0, max_tokens=5, seed=1, stop="x"),
        ChatRequest.build("m", MSG, temperature=0, max_tokens=5, seed=0, stop="y"),
        ChatRequest.build("m", MSG, temperature=0, max_tokens=5, seed=0, stop="x", top_p=0.9),
    ]
    keys = {base.key()} | {o.key() for o in others}
    assert len(keys) == 1 + len(others)
    assert base.decoding() == {"temperature": 0.0, "max_tokens": 5, "seed": 0, "stop": ["x"]}


def test_bad_requests_name_the_bad_value():
    with pytest.raises(ValueError, match=r"messages\[0\]\['role'\].*'robot'"):
        ChatRequest.build("m", [{"role": "robot", "content": "x"}])
    with pytest.raises(ValueError, match=r"extra keys \['name'\]"):
        ChatRequest.build("m", [{"role": "user", "content": "x", "name": "n"}])
    with pytest.raises(ValueError, match=r"content.*int"):
        ChatRequest.build("m", [{"role": "user", "content": 3}])
    with pytest.raises(ValueError, match="non-empty list"):
        ChatRequest.build("m", "hello")
    with pytest.raises(TypeError, match=r"\['temprature'\]"):
        ChatRequest.build("m", MSG, temprature=0)
    with pytest.raises(ValueError, match="temperature"):
        ChatRequest.build("m", MSG, temperature=float("nan"))
    with pytest.raises(ValueError, match="max_tokens"):
        ChatRequest.build("m", MSG, max_tokens=0)
    with pytest.raises(ValueError, match="seed"):
        ChatRequest.build("m", MSG, seed=1.5)


def _result(text="[1] > [2]", pt=10, ct=4, key=""):
    return ChatResult(text, pt, ct, 0.5, False, "stop", key)


def test_put_get_and_first_answer_wins(tmp_path):
    path = tmp_path / "sub" / "llm.sqlite"
    r = ChatRequest.build("m", MSG)
    with LLMCache(path) as c:
        assert c.get(r.key()) is None and len(c) == 0
        c.put(r, _result(), retries=2, cost=0.25, run_id="run1", endpoint="http://x/v1")
        c.put(r, _result(text="other"), run_id="run1")  # same key again: kept, only ledger grows
        got = c.get(r.key())
        assert got == ChatResult("[1] > [2]", 10, 4, 0.5, True, "stop", r.key())
        assert c.request_of(r.key()) == {"v": 1, "model": "m", "messages": MSG, "decoding": {"temperature": 0.0}}
        assert len(c) == 1
    # Durable: a new connection (a new process would be the same) sees it.
    with LLMCache(path) as c:
        assert c.get(r.key()).text == "[1] > [2]"
        assert c.summary() == Ledger(calls=2, retries=2, prompt_tokens=20, completion_tokens=8, cost=0.25)
        assert c._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_summary_over_runs_and_models(tmp_path):
    with LLMCache(tmp_path / "c.sqlite") as c:
        a, b = ChatRequest.build("m", MSG), ChatRequest.build("n", [{"role": "user", "content": "yo"}])
        c.put(a, _result(pt=100, ct=10), cost=call_cost(100, 10, 2.0, 8.0), run_id="r1")
        c.record_failure(b, error="LLMServerError", retries=5, latency_s=1.0, run_id="r1")
        c.record_hits([(a.key(), "m"), (a.key(), "m")], run_id="r2")
        c.put(b, _result(pt=50, ct=5), retries=1, cost=call_cost(50, 5, 2.0, 8.0), run_id="r2")
        total = c.summary()
        assert total == Ledger(calls=3, cache_hits=2, retries=6, failures=1, prompt_tokens=150, completion_tokens=15,
                               cost=pytest.approx((150 * 2.0 + 15 * 8.0) / 1e6))
        assert c.summary(run_id="r1") == Ledger(calls=2, retries=5, failures=1, prompt_tokens=100, completion_tokens=10,
                                                cost=pytest.approx(280 / 1e6))
        assert c.summary(run_id="r2") + c.summary(run_id="r1") == total
        assert c.summary(model="n").failures == 1 and c.summary(model="m").cache_hits == 2
        assert c.run_ids() == ["r1", "r2"]
        assert c.summary(run_id="none") == Ledger()


def test_call_cost_by_hand():
    # 1,000 tokens in at $2.50/M + 200 out at $10/M = 0.0025 + 0.002
    assert call_cost(1000, 200, 2.5, 10.0) == pytest.approx(0.0045)
    assert call_cost(None, None, 2.5, 10.0) == 0.0


def test_ledger_text_and_sum():
    led = Ledger(calls=3, cache_hits=4, retries=2, failures=1, prompt_tokens=1234, completion_tokens=56, cost=0.5)
    assert str(led) == "3 calls (1 failed, 2 retries), 4 cache hits, 1,234 tokens in / 56 out, est. cost $0.5000"
    assert led + Ledger(calls=1, cost=0.25) == Ledger(4, 4, 2, 1, 1234, 56, 0.75)


def test_many_threads_write_safely(tmp_path):
    cache = LLMCache(tmp_path / "c.sqlite")

    def work(t):
        for i in range(40):
            r = ChatRequest.build("m", [{"role": "user", "content": f"{t}-{i}"}])
            cache.put(r, _result(key=r.key()), run_id="threads")
            assert cache.get(r.key()) is not None

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(cache) == 240 and cache.summary().calls == 240
    keys = [ChatRequest.build("m", [{"role": "user", "content": f"{t}-{i}"}]).key() for t in range(6) for i in range(40)]
    assert set(cache.get_many(keys + ["missing"])) == set(keys)  # more keys than one SQL statement takes
    cache.close()


def test_not_a_cache_file_is_reported(tmp_path):
    bad = tmp_path / "labels.jsonl"
    bad.write_text('{"qid": "1"}\n' * 100)
    with pytest.raises(ValueError, match="labels.jsonl: not a usable LLM cache"):
        LLMCache(bad)
    newer = tmp_path / "newer.sqlite"
    con = sqlite3.connect(newer)
    con.execute("PRAGMA user_version=7")
    con.close()
    with pytest.raises(ValueError, match="schema version 7, expected 2"):
        LLMCache(newer)
