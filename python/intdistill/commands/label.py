"""Label candidate lists with a black-box LLM (listwise re-ranking); resumable, every answer cached.

Reads the candidates JSONL of `intdistill candidates` and writes one label line per query to --out as soon
as it is finished. Rerunning the same command resumes; anything already answered comes from --cache for free.
A query whose calls still fail after every retry is listed in <out>.failed.jsonl and the others go on; the
command then exits 4, and a rerun retries only the failed ones.
"""

from __future__ import annotations

import sys

from intdistill.commands.common import add_llm_args, add_ray_arg, finish_llm_run, open_llm


def configure(p) -> None:
    p.add_argument("--candidates", required=True, help="candidates JSONL (from `intdistill candidates`)")
    p.add_argument("--corpus", required=True, help="corpus: JSONL, BEIR directory or SQuAD JSON")
    p.add_argument("--queries", help="queries file (default: the query texts stored in the candidates file)")
    p.add_argument("--out", required=True, help="labels JSONL (appended to; existing queries are skipped)")
    p.add_argument("--max-queries", type=int, help="label only the first N queries of the candidates file")
    p.add_argument("-n", "--top-n", type=int, help="use only each list's first N candidates")
    g = p.add_argument_group("listwise prompting")
    g.add_argument("--template", default="rankgpt", help="prompt template (see intdistill.llm.prompts.TEMPLATES)")
    g.add_argument("--window", type=int, default=20, help="candidates per call (default 20)")
    g.add_argument("--step", type=int, default=10, help="sliding-window step when a list is longer (default 10)")
    g.add_argument("--max-words", type=int, default=100, help="passage words shown to the LLM (default 100)")
    g.add_argument("--passes", type=int, default=1, help="independent rankings per query, Borda-aggregated")
    g.add_argument("--shuffle", action="store_true", help="shuffle the presented order in each pass (position bias)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--max-tokens", type=int, help="new tokens per call (default: 6 per candidate + 16)")
    add_llm_args(p, cache_default=None)
    add_ray_arg(p)


def run(args) -> int:
    from intdistill.candidates import Candidates
    from intdistill.cli import Stopped
    from intdistill.data import DataError, Query, load_corpus, load_queries
    from intdistill.labels import label_candidates
    from intdistill.llm.client import BudgetExceeded
    from intdistill.llm.listwise import ListwiseConfig

    try:
        cfg = ListwiseConfig(template=args.template, window=args.window, step=args.step, max_words=args.max_words,
                             passes=args.passes, shuffle=args.shuffle, seed=args.seed, max_tokens=args.max_tokens)
    except ValueError as e:
        raise DataError(None, None, str(e)) from None
    cands = Candidates.load(args.candidates)
    lists = {q: list(c.docids[: args.top_n] if args.top_n else c.docids) for q, c in cands.items()}
    if args.max_queries is not None:
        lists = dict(list(lists.items())[: args.max_queries])
    corpus = load_corpus(args.corpus)
    if args.queries:
        queries = load_queries(args.queries)
    else:
        queries = {q: Query(q, c.query) for q, c in cands.items() if c.query}
        if len(queries) < len(cands):
            raise DataError(args.candidates, None, "the candidates file holds no query texts: give --queries")
    with open_llm(args) as client:
        print(f"labelling {len(lists)} queries with {client.model} (window {cfg.window}, "
              f"{cfg.passes} pass(es), template {cfg.template})", file=sys.stderr)
        try:
            summary = label_candidates(lists, queries, corpus, client, args.out, cfg,
                                       max_consecutive_failures=args.max_consecutive_failures)
        except BudgetExceeded as e:
            raise Stopped(f"{e}; labels so far are in {args.out}, rerun to go on") from None
    return finish_llm_run(summary.lines(), client, summary.failed)
