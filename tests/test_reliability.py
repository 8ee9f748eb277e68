"""Long LLM jobs through a flaky endpoint (issue 12): malformed answers are retried, failures are per item,
the circuit breaker stops a run whose endpoint is down, and progress moves item by item. Everything runs
against the fake OpenAI-compatible server over real HTTP, through the real CLI."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_openai import (  # noqa: E402
    FakeOpenAI,
    empty_choices,
    free_closed_port,
    html,
    malformed,
    no_content,
    ok,
    status,
)

from intdistill import cli  # noqa: E402
from intdistill.journal import Journal, failed_path  # noqa: E402
from intdistill.labels import load_labels  # noqa: E402
from intdistill.llm.errors import (  # noqa: E402
    BudgetExceeded,
    CircuitOpen,
    LLMAuthError,
    LLMServerError,
    LLMUnreachable,
)
from intdistill.llm.items import run_items  # noqa: E402


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


def _about(body) -> str:
    """The query a labelling request is about ("Search Query: query 7" -> "7")."""
    text = " ".join(str(m.get("content", "")) for m in (body or {}).get("messages", []))
    i = text.find("topic-")
    return text[i + 6 : text.index(" ", i + 6)] if i >= 0 else ""


def _files(tmp_path: Path, n: int) -> dict[str, Path]:
    corpus = [{"_id": f"d{i}-{j}", "text": f"passage {j} about topic-{i} here"} for i in range(n) for j in range(3)]
    cands = [{"qid": f"q{i}", "cands": [f"d{i}-{j}" for j in range(3)], "scores": [3.0, 2.0, 1.0],
              "retriever": "toy", "query": f"what about topic-{i} ?"} for i in range(n)]
    paths = {"corpus": tmp_path / "corpus.jsonl", "cands": tmp_path / "cands.jsonl"}
    for key, rows in (("corpus", corpus), ("cands", cands)):
        paths[key].write_text("".join(json.dumps(r) + "\n" for r in rows))
    return paths


def _label_argv(fake, paths, out, *extra):
    return ["label", "--candidates", str(paths["cands"]), "--corpus", str(paths["corpus"]), "--out", str(out),
            "--llm-base-url", fake.base_url, "--llm-model", "fake-model", "--cache", str(out.parent / "cache.sqlite"),
            "--max-retries", "3", "--concurrency", "4", *extra]


def _fast_malformed_retries(monkeypatch):
    """The client's malformed-answer backoff starts at 0.5 s like the SDK's; 1 ms keeps the tests short."""
    from intdistill.llm import client as client_mod

    monkeypatch.setattr(client_mod, "RETRY_DELAY_S", 0.001)
    real = client_mod.LLMClient.__init__

    def init(self, *a, **kw):
        kw.setdefault("retry_delay_s", 0.001)
        real(self, *a, **kw)

    monkeypatch.setattr(client_mod.LLMClient, "__init__", init)


def test_label_finishes_in_one_run_through_malformed_answers(fake, tmp_path, capsys, monkeypatch):
    """HTTP 200 answers whose body is not JSON (an HTML proxy page, cut JSON), has empty choices or has no content,
    spread over the queries: every query is labelled in ONE invocation. The faults are keyed to each query's own
    attempts, not to a global request count that concurrent workers interleave, so no query meets more bad answers
    in a row (at most 3) than --max-retries 3 allows and the run is the same on every machine."""
    _fast_malformed_retries(monkeypatch)
    lock, attempts = threading.Lock(), {}
    plan = {0: (html, malformed, empty_choices), 1: (empty_choices,), 2: (no_content, malformed), 3: (malformed,)}

    def flaky(body):  # query i meets plan[i % 5] in turn on its first attempts, then a good answer
        about = _about(body)
        with lock:
            k = attempts[about] = attempts.get(about, 0) + 1
        faults = plan.get(int(about) % 5, ()) if about.isdigit() else ()
        return faults[k - 1]() if k <= len(faults) else None

    fake.rule = flaky
    paths = _files(tmp_path, 60)
    out = tmp_path / "labels.jsonl"
    assert cli.main(_label_argv(fake, paths, out)) == 0
    err = capsys.readouterr().err
    labels = load_labels(out)
    assert sorted(labels) == sorted(f"q{i}" for i in range(60))
    assert all(lab.permutation == (2, 1, 0) for lab in labels.values())  # the fake's reversed order
    bad = sum(1 for r in fake.requests if r["behaviour"].kind != "ok")
    assert bad == 12 * (3 + 1 + 2 + 1)  # the faults really happened, each one as planned
    assert f"{bad} malformed answers" in err and "60 labelled now, 0 already done, 0 failed" in err
    assert not failed_path(out).exists()


def test_one_item_always_fails_the_rest_finish_exit_4_then_a_rerun_asks_only_for_it(fake, tmp_path, capsys):
    fault = {"on": True}
    fake.rule = lambda body: status(500, retry_after_ms="1") if fault["on"] and _about(body) == "7" else None
    paths = _files(tmp_path, 12)
    out = tmp_path / "labels.jsonl"
    argv = _label_argv(fake, paths, out)
    assert cli.main(argv) == cli.EXIT_ITEMS_FAILED == 4
    err = capsys.readouterr().err
    assert "11 labelled now, 0 already done, 1 failed, 12 in all" in err
    assert "FAILED: 1 queries could not be labelled" in err and "labels.failed.jsonl" in err
    assert sorted(load_labels(out)) == sorted(f"q{i}" for i in range(12) if i != 7)
    failed = [json.loads(line) for line in failed_path(out).read_text().splitlines()]
    assert [(f["id"], f["error"], f["retries"]) for f in failed] == [("q7", "LLMServerError", 3)]
    assert "HTTP 500" in failed[0]["message"]
    # the fault clears: the rerun labels q7 with one call and repeats nothing else
    fault["on"] = False
    n = fake.n_requests
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    assert fake.n_requests == n + 1 and "1 labelled now, 11 already done, 0 failed" in err
    assert len(load_labels(out)) == 12 and not failed_path(out).exists()


def test_circuit_breaker_on_a_dead_endpoint(tmp_path, capsys):
    paths = _files(tmp_path, 50)
    out = tmp_path / "labels.jsonl"
    argv = ["label", "--candidates", str(paths["cands"]), "--corpus", str(paths["corpus"]), "--out", str(out),
            "--llm-base-url", f"http://127.0.0.1:{free_closed_port()}/v1", "--llm-model", "m", "--concurrency", "4"]
    t0 = time.perf_counter()
    assert cli.main(argv) == cli.EXIT_FAILED
    assert time.perf_counter() - t0 < 10
    err = capsys.readouterr().err
    assert "LLM error (LLMUnreachable): stopped early: cannot reach the LLM endpoint" in err
    assert "Traceback" not in err and len(err.strip().splitlines()[-2]) < 400


def test_circuit_breaker_after_n_failures_in_a_row(fake, tmp_path, capsys):
    fake.default = status(503, retry_after_ms="1")
    paths = _files(tmp_path, 50)
    out = tmp_path / "labels.jsonl"
    t0 = time.perf_counter()
    assert cli.main(_label_argv(fake, paths, out, "--max-consecutive-failures", "3", "--concurrency", "2")) == 1
    assert time.perf_counter() - t0 < 30
    err = capsys.readouterr().err
    assert "LLM error (LLMServerError): stopped early: 3 items failed in a row" in err
    assert fake.n_requests <= 4 * 4  # at most 4 items tried (3 + the other in flight), 4 requests each
    assert len([json.loads(x) for x in failed_path(out).read_text().splitlines()]) in (3, 4)


def test_auth_error_and_unknown_model_stop_at_once(fake, tmp_path, capsys):
    paths = _files(tmp_path, 20)
    for behaviour, name in ((status(401), "LLMAuthError"),
                            (status(404, body='{"error": {"message": "model m not found"}}'), "LLMRequestError")):
        fake.reset()
        fake.default = behaviour
        out = tmp_path / f"labels-{name}.jsonl"
        assert cli.main(_label_argv(fake, paths, out, "--concurrency", "1")) == 1
        assert f"LLM error ({name}): stopped early" in capsys.readouterr().err
        assert fake.n_requests == 1  # neither is retried, and no second item starts


def test_rag_finishes_with_a_failed_question_then_the_rerun_answers_it(fake, tmp_path, capsys, monkeypatch,
                                                                        tiny_bert_dir):
    """`intdistill rag`: malformed answers retried, one question that keeps failing is left for the rerun."""
    from test_rag import CASES, CORPUS, _queries_file  # the questions and passages of the RAG tests

    _fast_malformed_retries(monkeypatch)
    fault, lock, attempts = {"on": True}, threading.Lock(), {}

    def rule(body):  # each question: a cut JSON body, then empty choices, then a good answer (per question, so
        text = json.dumps(body)  # the concurrent workers' interleaving cannot change what any question meets)
        if fault["on"] and "Who wrote Hamlet?" in text:
            return status(502, retry_after_ms="1")
        with lock:
            k = attempts[text] = attempts.get(text, 0) + 1
        return malformed() if k == 1 else empty_choices() if k == 2 else None

    fake.rule = rule
    corpus_file = tmp_path / "corpus.jsonl"
    corpus_file.write_text("".join(json.dumps({"_id": p.id, "title": p.title, "text": p.text}) + "\n"
                                   for p in CORPUS.values()))
    idx = tmp_path / "idx"
    assert cli.main(["index", "--retriever", str(tiny_bert_dir), "--corpus", str(corpus_file), "--out", str(idx),
                     "--check-sample", "0", "--device", "cpu"]) == 0
    queries = _queries_file(tmp_path / "q.jsonl", CASES)
    preds = tmp_path / "preds.jsonl"
    argv = ["rag", "--index", str(idx), "--queries", str(queries), "-k", "2", "--out", str(preds), "--device", "cpu",
            "--llm-base-url", fake.base_url, "--llm-model", "fake-model", "--max-retries", "3", "--concurrency", "2",
            "--cache", str(tmp_path / "cache.sqlite")]
    assert cli.main(argv) == 4
    err = capsys.readouterr().err
    assert "FAILED: 1 questions could not be answered" in err
    from intdistill.rag import load_predictions

    everest = [q for q, case in CASES.items() if case[0] == "Who wrote Hamlet?"]
    assert len(load_predictions(preds)) == len(CASES) - 1
    assert [json.loads(x)["id"] for x in failed_path(preds).read_text().splitlines()] == everest
    fault["on"] = False
    fake.rule = None
    n = fake.n_requests
    assert cli.main(argv) == 0
    assert fake.n_requests == n + 1 and len(load_predictions(preds)) == len(CASES)


# ---------------------------------------------------------------------------------------------- run_items


def test_progress_moves_as_each_item_finishes_whatever_the_input_order():
    delays = {"a": 0.3, "b": 0.05, "c": 0.2, "d": 0.01}
    seen = []
    run_items(list(delays), lambda x: time.sleep(delays[x]) or x.upper(), lambda x, r: seen.append((x, r)),
              on_fail=lambda x, e: None, concurrency=4, progress=False)
    assert seen == [("d", "D"), ("b", "B"), ("c", "C"), ("a", "A")]  # completion order, not input order


def test_run_items_budget_and_bugs_stop_after_the_items_in_flight():
    done = []

    def work(x):
        if x == 3:
            raise BudgetExceeded("budget reached", ledger=None)
        time.sleep(0.01)
        return x

    with pytest.raises(BudgetExceeded):
        run_items(range(100), work, lambda x, r: done.append(x), on_fail=lambda x, e: None, concurrency=2,
                  progress=False)
    assert 3 not in done and len(done) < 10  # no new item started after the stop
    with pytest.raises(ZeroDivisionError):
        run_items([1, 0, 2], lambda x: 1 / x, lambda x, r: None, on_fail=lambda x, e: None, progress=False)


def test_run_items_failures_in_a_row_reset_on_success():
    failed = []

    def work(x):
        if x % 3 != 2:  # two failures, then a success, again and again: never 3 in a row
            raise LLMServerError("HTTP 500")
        return x

    out = run_items(range(30), work, lambda x, r: None, on_fail=lambda x, e: failed.append(x),
                    concurrency=1, max_consecutive_failures=3, progress=False)
    assert out.done == 10 and len(out.failed) == 20 == len(failed)
    with pytest.raises(CircuitOpen, match="3 items failed in a row"):
        run_items(range(30), lambda x: (_ for _ in ()).throw(LLMServerError("HTTP 500")), lambda x, r: None,
                  on_fail=lambda x, e: None, concurrency=1, max_consecutive_failures=3, progress=False)
    for fatal in (LLMAuthError("401"), LLMUnreachable("refused")):
        with pytest.raises(CircuitOpen) as e:
            run_items(range(5), lambda x, f=fatal: (_ for _ in ()).throw(f), lambda x, r: None,
                      on_fail=lambda x, e: None, progress=False)
        assert e.value.last is fatal
    with pytest.raises(ValueError, match="concurrency: expected an int >= 1"):
        run_items([1], str, print, on_fail=print, concurrency=0)


# ---------------------------------------------------------------------------------------------- the journal


def test_journal_resumes_repairs_a_cut_line_and_tracks_failures(tmp_path):
    path = tmp_path / "j.jsonl"
    with Journal(path) as j:
        j.append({"qid": "a", "x": 1})
        j.fail("b", LLMServerError("HTTP 500 from the endpoint", retries=2))
        assert "b" in j.failures
    with open(path, "a") as f:
        f.write('{"qid": "c", "x"')  # killed mid-write
    rec = json.loads(failed_path(path).read_text())
    assert (rec["id"], rec["error"], rec["retries"]) == ("b", "LLMServerError", 2)
    with Journal(path) as j:
        assert list(j.done) == ["a"] and "b" in j.failures
        j.append({"qid": "b", "x": 2})  # the failed item succeeds on the rerun: it leaves the failure log
        assert "b" not in j.failures and not failed_path(path).exists()
    assert [json.loads(x)["qid"] for x in path.read_text().splitlines()] == ["a", "b"]
    with pytest.raises(ValueError, match="settings"):
        Journal(path, check=lambda done: (_ for _ in ()).throw(ValueError("other settings")))
    assert failed_path(tmp_path / "rag-base.jsonl").name == "rag-base.failed.jsonl"


@pytest.mark.parametrize("name", ["out.jsonl", "out.jsonl.gz"])
def test_atomic_writer_replaces_whole_or_keeps_the_old_file(tmp_path, name):
    import gzip

    from intdistill.journal import atomic_writer

    path = tmp_path / name
    read = (lambda: gzip.decompress(path.read_bytes()).decode()) if name.endswith(".gz") else path.read_text
    with atomic_writer(path, newline="\n") as f:
        f.write("old\n")
    assert read() == "old\n"
    with pytest.raises(RuntimeError), atomic_writer(path) as f:
        f.write("half of the new")
        raise RuntimeError("killed")
    assert read() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temporary left
    with atomic_writer(path) as f:
        f.write("new\n")
    assert read() == "new\n"
