"""Training queries written by the LLM from the corpus (InPars, Bonifacio et al. 2022; Promptagator, Dai et al.
2022; GPL, Wang et al. 2022): for users with a corpus and no queries.

1. :func:`sample_passages`: a seeded sample of passages across the corpus; where titles group passages into
   documents (SQuAD's articles), round-robin over the documents so no document dominates.
2. :func:`generation_messages`: a few-shot prompt per passage (:data:`TEMPLATES`, named and hashed like the
   ranking prompts). The examples are the user's own queries (``--examples``: their style) or a small
   built-in set of (passage, question) pairs written for this project.
3. :func:`generate_queries`: one call per passage through the item runner (per-item failures, circuit
   breaker, budgets, Ctrl-C), every raw answer in the journal ``<out stem>.journal.jsonl``; a rerun makes no
   call for what is there.
4. :func:`filter_queries`: the answer's question (:func:`parse_query`) is dropped when it is empty, overlong,
   unrelated to the passage (no content word in common: e.g. a question about a few-shot example instead),
   copied from the passage, or a duplicate, each counted; optionally the round-trip consistency filter
   (Promptagator, InPars-v2) keeps a query only where the first stage ranks its source passage in its top K.

The kept queries are written as a queries JSONL (``_id``, ``text``, ``source`` = the passage written from,
``model``, ``template``, ``prompt_hash``, ``output``) plus ``<out stem>.qrels.tsv`` (the source passage as
the one relevant passage): the "source-first" labels and the synthetic judgements of the teacher gate.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from intdistill.data import DataError, Passage

DROP_REASONS = ("empty", "overlong", "unrelated", "copied", "duplicate", "round_trip")


@dataclass(frozen=True)
class GenerationTemplate:
    """A query-writing prompt: ``system``, an ``intro``, each example as ``example`` (fields ``{passage}``,
    ``{query}``) or, for query-only examples, ``style_example`` (``{query}``), and the ``task`` (``{passage}``)."""

    name: str
    system: str
    intro: str
    example: str
    style_intro: str
    style_example: str
    task: str
    #: the built-in (passage, query) examples shown when the user gives none
    builtin: tuple[tuple[str, str], ...] = ()

    @property
    def hash(self) -> str:
        doc = {k: getattr(self, k) for k in ("system", "intro", "example", "style_intro", "style_example", "task")}
        doc["builtin"] = [list(e) for e in self.builtin]
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:12]


#: Built-in few-shot examples (written for intdistill; no data set's text): general, short, varied.
BUILTIN_EXAMPLES: tuple[tuple[str, str], ...] = (
    ("Insulin is a hormone made by the beta cells of the pancreas. It lets cells take up glucose from the "
     "blood; without it, blood sugar rises, as in type 1 diabetes.",
     "which cells in the pancreas produce insulin"),
    ("The bridge was finished in 1937 after four years of work. At 1,280 metres its main span was the longest "
     "in the world until 1964.",
     "how long did it take to build the bridge and when did it open"),
    ("Regular aerobic exercise lowered resting blood pressure by about 4 mmHg on average across the 90 "
     "trials, with larger effects in people who had hypertension.",
     "does aerobic exercise reduce blood pressure in hypertensive patients"),
)


#: Claim-style examples for the same passages (SciFact-like corpora, fact checking): a finding restated.
BUILTIN_CLAIMS: tuple[tuple[str, str], ...] = (
    (BUILTIN_EXAMPLES[0][0], "Without insulin from the pancreas, cells cannot take glucose out of the blood."),
    (BUILTIN_EXAMPLES[1][0], "The bridge held the record for the longest main span for almost three decades."),
    (BUILTIN_EXAMPLES[2][0], "Aerobic training lowers blood pressure most in people with hypertension."),
)


TEMPLATES = {
    "inpars": GenerationTemplate(
        name="inpars",
        system="You write the search queries that people type to find documents.",
        intro="Write one question that someone could type into a search engine and that the passage answers. "
              "Use your own words; do not copy sentences from the passage. Reply with the question only.\n",
        example="\nExample passage: {passage}\nExample question: {query}\n",
        style_intro="\nQuestions people asked look like these:\n",
        style_example="- {query}\n",
        task="\nNow the passage to write a question about (not the examples):\nPassage: {passage}\nQuestion:",
        builtin=BUILTIN_EXAMPLES,
    ),
    # Promptagator's point: the prompt says what the target task's queries look like. Claim-verification
    # corpora (SciFact, FEVER, Climate-FEVER) are searched with statements, not questions.
    "claim": GenerationTemplate(
        name="claim",
        system="You write the claims that people check against the scientific literature.",
        intro="Write one short claim: a single declarative sentence stating a specific finding that the passage "
              "supports, in your own words, as someone citing the passage would. Do not copy its title or its "
              "sentences, and do not ask a question. Reply with the claim only.\n",
        example="\nExample passage: {passage}\nExample claim: {query}\n",
        style_intro="\nClaims people checked look like these:\n",
        style_example="- {query}\n",
        task="\nNow the passage to write a claim about (not the examples):\nPassage: {passage}\nClaim:",
        builtin=BUILTIN_CLAIMS,
    ),
}
DEFAULT_TEMPLATE = "inpars"


def _words(text: str, limit: int) -> str:
    words = text.split()
    return " ".join(words[:limit]) + (" ..." if len(words) > limit else "")


def generation_messages(passage: str, *, examples: Sequence[str] = (), template: str = DEFAULT_TEMPLATE,
                        max_words: int = 120) -> list[dict]:
    """The chat messages asking for one query about ``passage`` (cut to ``max_words`` words). ``examples``:
    the user's own queries (style examples); none = the template's built-in (passage, query) pairs."""
    t = TEMPLATES[template]
    parts = [t.intro]
    if examples:
        parts.append(t.style_intro)
        parts += [t.style_example.format(query=" ".join(q.split())) for q in examples]
    else:
        parts += [t.example.format(passage=_words(p, max_words), query=q) for p, q in t.builtin]
    parts.append(t.task.format(passage=_words(" ".join(passage.split()), max_words)))
    return [{"role": "system", "content": t.system}, {"role": "user", "content": "".join(parts)}]


# ------------------------------------------------------------------------------------------------ sampling


def sample_passages(corpus: Mapping[str, Passage], n: int, seed: int = 0) -> list[str]:
    """``n`` passage ids (all when the corpus is smaller), seeded. Passages sharing a title are one
    document: documents are visited round-robin in a seeded order, a random unused passage of each per
    round, so a long document cannot crowd out the others; without shared titles this is a uniform sample."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected an int >= 1, got {n!r}")
    rng = random.Random(seed)
    docs: dict[str, list[str]] = defaultdict(list)
    for pid, p in corpus.items():
        docs[p.title or pid].append(pid)
    groups = list(docs.values())
    rng.shuffle(groups)
    for g in groups:
        rng.shuffle(g)
    out: list[str] = []
    depth = 0
    while len(out) < min(n, len(corpus)):
        for g in groups:
            if depth < len(g):
                out.append(g[depth])
                if len(out) == n:
                    break
        depth += 1
    return out


# ------------------------------------------------------------------------------------------------ parsing


_THINK = re.compile(r"<think>.*?(</think>|$)", re.S | re.I)
_PREFIX = re.compile(r"^\s*(?:[-*•]\s*|\d+[.)]\s*|(?:question|query|claim|q)\s*[:：]\s*)+", re.I)
_CHATTER = re.compile(r"^(sure|here|okay|ok|certainly|of course|i (?:would|will|can)|the question)\b.*[:!.]$", re.I)


def parse_query(output: str) -> str:
    """The question in an answer: ``<think>`` blocks and chatter lines ("Sure! Here is a question:") skipped,
    list markers and "Question:" prefixes and surrounding quotes removed; the first line ending in "?" wins,
    else the first remaining line. ``""`` when nothing is left."""
    lines = []
    for line in _THINK.sub("", output or "").splitlines():
        line = _PREFIX.sub("", line).strip().strip('"“”\'` ').strip()
        if line and re.search(r"\w", line) and not _CHATTER.match(line):
            lines.append(line)
    if not lines:
        return ""
    return next((ln for ln in lines if ln.endswith("?")), lines[0])


def _norm_tokens(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


_STOP = frozenset("what which who whom whose when where why how does did do is are was were the a an of in on "
                  "for to and or with by from at as that this these those there their its it be been can could "
                  "would should will may might about into than then any some".split())


def _unrelated(query: str, passage: str) -> bool:
    """No content word of the query (3+ letters, not a stop word; a plural's stem too) occurs in the passage."""
    words = {w for w in _norm_tokens(query) if len(w) >= 3 and w not in _STOP and not w.isdigit()}
    if not words:
        return False
    text = set(_norm_tokens(passage))
    return not any(w in text or w.rstrip("s") in text or w + "s" in text for w in words)


def _copied(query: str, passage: str, min_tokens: int = 6, share: float = 0.8) -> bool:
    """The query is (nearly) a span of the passage: its longest run of tokens found contiguous in the passage
    covers >= ``share`` of it (queries of >= ``min_tokens`` tokens; shorter ones only when fully inside)."""
    q, p = _norm_tokens(query), _norm_tokens(passage)
    if not q:
        return False
    text = " " + " ".join(p) + " "
    if " " + " ".join(q) + " " in text:
        return len(q) >= 3
    if len(q) < min_tokens:
        return False
    best = 0
    for i in range(len(q)):  # longest contiguous run of query tokens that appears in the passage
        for j in range(len(q), i + best, -1):
            if " " + " ".join(q[i:j]) + " " in text:
                best = j - i
                break
    return best >= share * len(q)


@dataclass(frozen=True)
class FilterReport:
    """What :func:`filter_queries` kept and dropped."""

    generated: int
    kept: int
    dropped: Mapping[str, int]  # reason -> count (DROP_REASONS)
    round_trip_k: int | None = None

    def lines(self) -> list[str]:
        drops = ", ".join(f"{r} {self.dropped.get(r, 0)}" for r in DROP_REASONS
                          if r != "round_trip" or self.round_trip_k)
        rt = f" (round trip: source in the first stage's top {self.round_trip_k})" if self.round_trip_k else ""
        return [f"queries: {self.kept} kept of {self.generated} generated; dropped: {drops}{rt}"]


@dataclass(frozen=True)
class Generated:
    """One journal line: a passage and what the LLM wrote about it."""

    source: str
    output: str
    query: str = field(default="")
    model: str = ""
    template: str = ""
    prompt_hash: str = ""


def filter_queries(
    generated: Sequence[Generated],
    corpus: Mapping[str, Passage],
    *,
    max_words: int = 32,
    round_trip=None,
    round_trip_k: int | None = None,
) -> tuple[list[Generated], dict[str, str], FilterReport]:
    """Apply the filters in order (empty, overlong > ``max_words`` words, copied from the passage, duplicate
    of an earlier kept query, then the round trip). ``round_trip(queries: list[str]) -> list[list[docid]]``
    returns each query's first-stage top ``round_trip_k``. Returns ``(kept, source -> drop reason, report)``."""
    kept: list[Generated] = []
    why: dict[str, str] = {}
    seen: set[str] = set()
    for g in generated:
        q = g.query
        key = " ".join(_norm_tokens(q))
        if not key:
            why[g.source] = "empty"
        elif len(q.split()) > max_words:
            why[g.source] = "overlong"
        elif _unrelated(q, corpus[g.source].full_text()):
            why[g.source] = "unrelated"
        elif _copied(q, corpus[g.source].full_text()):
            why[g.source] = "copied"
        elif key in seen:
            why[g.source] = "duplicate"
        else:
            seen.add(key)
            kept.append(g)
    if round_trip is not None and round_trip_k and kept:
        tops = round_trip([g.query for g in kept])
        survivors = []
        for g, top in zip(kept, tops):
            if g.source in list(top)[:round_trip_k]:
                survivors.append(g)
            else:
                why[g.source] = "round_trip"
        kept = survivors
    counts = Counter(why.values())
    return kept, why, FilterReport(len(generated), len(kept), {r: counts.get(r, 0) for r in DROP_REASONS},
                                   round_trip_k if round_trip is not None else None)


# ------------------------------------------------------------------------------------------------ the driver


@dataclass(frozen=True)
class GenerationSummary:
    sampled: int
    done_before: int
    generated_now: int
    failed: int
    failed_path: str
    calls: int
    cache_hits: int
    seconds: float
    report: FilterReport
    out: str

    def lines(self) -> list[str]:
        out = [f"passages: {self.sampled} sampled; {self.generated_now} written about now, {self.done_before} "
               f"already in the journal, {self.failed} failed",
               f"calls: {self.calls} ({self.cache_hits} from cache); {self.seconds:.1f} s "
               f"({self.seconds / max(self.generated_now, 1):.2f} s per generated query)",
               *self.report.lines(), f"wrote {self.report.kept} queries to {self.out}"]
        if self.failed:
            out.insert(1, f"FAILED: {self.failed} passages got no answer (their calls failed after every retry); "
                          f"they are listed in {self.failed_path}, and rerunning the same command retries only them")
        return out


def journal_path(out) -> Path:
    out = Path(out)
    stem = out.name[: -len(".jsonl")] if out.name.endswith(".jsonl") else out.name
    return out.with_name(stem + ".journal.jsonl")


def qrels_path(out) -> Path:
    out = Path(out)
    stem = out.name[: -len(".jsonl")] if out.name.endswith(".jsonl") else out.name
    return out.with_name(stem + ".qrels.tsv")


def generate_queries(
    corpus: Mapping[str, Passage],
    client,
    out,
    *,
    n: int,
    seed: int = 0,
    examples: Sequence[str] = (),
    template: str = DEFAULT_TEMPLATE,
    max_words: int = 120,
    max_tokens: int = 48,
    max_query_words: int = 32,
    round_trip=None,
    round_trip_k: int | None = None,
    progress: bool = True,
    max_consecutive_failures: int | None = None,
) -> GenerationSummary:
    """Sample ``n`` passages, ask the LLM for a query about each (resumable journal beside ``out``), filter,
    and write the kept queries to ``out`` and their qrels beside it. See the module docstring."""
    from intdistill.data import dump_jsonl, save_qrels
    from intdistill.journal import Journal
    from intdistill.llm.items import DEFAULT_MAX_CONSECUTIVE_FAILURES, run_items

    if template not in TEMPLATES:
        raise DataError(None, None, f"template: expected one of {', '.join(TEMPLATES)}, got {template!r}")
    t = TEMPLATES[template]
    sample = sample_passages(corpus, n, seed)
    jpath = journal_path(out)

    # the user's examples and the passage cut are part of the prompt too ("" for the built-in examples, so
    # journals written before this field existed still resume)
    shown = ("" if not examples else
             hashlib.sha256(json.dumps([list(examples), max_words]).encode()).hexdigest()[:12])

    def same_settings(done) -> None:
        for rec in done.values():
            if (rec.get("model"), rec.get("prompt_hash")) != (client.model, t.hash):
                raise DataError(jpath, None, f"the journal holds queries from model {rec.get('model')!r} / prompt "
                                             f"{rec.get('prompt_hash')!r}, this run uses {client.model!r} / "
                                             f"{t.hash!r}: write to another --out")
            if rec.get("examples_hash", "") != shown:
                raise DataError(jpath, None, "the journal holds queries written with other --examples (or "
                                             "--max-words) than this run's: write to another --out")

    stats = Counter()
    t0 = time.perf_counter()
    with Journal(jpath, key="source", check=same_settings) as journal:
        done_before = sum(1 for s in sample if s in journal.done)
        todo = [s for s in sample if s not in journal.done]

        def work(pid: str):
            msgs = generation_messages(corpus[pid].full_text(), examples=examples, template=template,
                                       max_words=max_words)
            return client.chat(msgs, temperature=0.0, max_tokens=max_tokens, seed=seed)

        def finished(pid: str, res) -> None:
            stats["done"] += 1
            stats["calls"] += 1
            stats["cache_hits"] += int(res.cached)
            journal.append({"source": pid, "output": res.text, "query": parse_query(res.text), "model": client.model,
                            "template": template, "prompt_hash": t.hash, "examples_hash": shown})

        run_items(todo, work, finished, on_fail=journal.fail,
                  concurrency=int(getattr(client, "max_concurrency", 1) or 1),
                  max_consecutive_failures=(DEFAULT_MAX_CONSECUTIVE_FAILURES if max_consecutive_failures is None
                                            else max_consecutive_failures),
                  client=client if hasattr(client, "ledger") else None, progress=progress, desc="generate",
                  total=len(sample), initial=done_before)
        records = [Generated(**{k: journal.done[s][k] for k in ("source", "output", "query", "model", "template",
                                                                   "prompt_hash")})
                   for s in sample if s in journal.done]
        n_failed = sum(1 for s in sample if s in journal.failures)
        failed_file = str(journal.failures.path)
    kept, _, report = filter_queries(records, corpus, max_words=max_query_words, round_trip=round_trip,
                                     round_trip_k=round_trip_k)
    dump_jsonl(({"_id": f"gen-{g.source}", "text": g.query, "source": g.source, "model": g.model,
                 "template": g.template, "prompt_hash": g.prompt_hash, "output": g.output} for g in kept), out)
    save_qrels({f"gen-{g.source}": {g.source: 1} for g in kept}, qrels_path(out))
    return GenerationSummary(len(sample), done_before, stats["done"], n_failed, failed_file, stats["calls"],
                             stats["cache_hits"], time.perf_counter() - t0, report, str(out))
