"""Write training queries from the corpus with the LLM (InPars / Promptagator style): for a corpus without queries.

Samples -n passages (seeded; round-robin over documents where titles group passages), asks the LLM for one
question about each (few-shot: --examples, a queries file of your own, else a built-in set), keeps each raw
answer in <out stem>.journal.jsonl (a rerun makes no call for what is there), drops empty, overlong, copied
and duplicate queries (counted), and with --filter-top K keeps only queries whose source passage the first
stage ranks in its top K (the round-trip filter). Writes the kept queries to --out (a queries JSONL whose
lines also name their "source" passage) and <out stem>.qrels.tsv (the source as the relevant passage): train
with `train-ranker --label-source source-first --queries OUT`, or judge with the qrels.
"""

from __future__ import annotations

import sys

from intdistill.commands.common import (add_encoding_args, add_llm_args, add_ray_arg, finish_llm_run, open_llm,
                                        positive_int, ray_encoder)


def configure(p) -> None:
    from intdistill.llm.generate import DEFAULT_TEMPLATE, TEMPLATES

    p.add_argument("--corpus", required=True, help="corpus: JSONL, TSV, BEIR directory or SQuAD JSON")
    p.add_argument("--out", required=True, help="the generated queries (JSONL); the journal and qrels go beside it")
    p.add_argument("-n", type=positive_int, required=True, help="passages to write a query about")
    p.add_argument("--seed", type=int, default=0, help="passage sample seed (default 0)")
    g = p.add_argument_group("the prompt")
    g.add_argument("--examples", help="a queries file of your own: the first --n-examples show the LLM their style")
    g.add_argument("--n-examples", type=positive_int, default=8, help="style examples taken from --examples (default 8)")
    g.add_argument("--template", choices=tuple(TEMPLATES), default=DEFAULT_TEMPLATE, help="prompt template")
    g.add_argument("--max-words", type=positive_int, default=120, help="passage words shown to the LLM (default 120)")
    g.add_argument("--max-tokens", type=positive_int, default=48, help="new tokens per answer (default 48)")
    f = p.add_argument_group("filters")
    f.add_argument("--max-query-words", type=positive_int, default=32, help="longer queries are dropped (default 32)")
    f.add_argument("--filter-top", type=positive_int, default=None, metavar="K",
                   help="round trip: keep a query only when the first stage (--retriever) ranks its source passage "
                        "in its top K")
    f.add_argument("--retriever", default=None, help="first stage for --filter-top (default: bundled all-MiniLM-L6-v2)")
    add_encoding_args(f)
    add_llm_args(p, cache_default=None)
    add_ray_arg(p)


def run(args) -> int:
    from intdistill.cli import Stopped
    from intdistill.data import load_corpus, load_queries
    from intdistill.llm.errors import BudgetExceeded
    from intdistill.llm.generate import generate_queries

    corpus = load_corpus(args.corpus)
    examples = [q.text for q in load_queries(args.examples).values()][: args.n_examples] if args.examples else []
    round_trip = None
    if args.filter_top:
        def round_trip(texts):
            from intdistill.candidates import encode_corpus, exact_search
            from intdistill.models import Retriever

            retriever = Retriever.load(args.retriever, device=args.device)
            emb = encode_corpus(retriever, corpus, batch_size=args.batch_size, progress=sys.stderr.isatty(),
                                cache_dir=args.cache_dir, encode=ray_encoder(args, retriever))
            ids, _ = exact_search(retriever.encode_queries(texts, batch_size=args.batch_size), emb,
                                  min(args.filter_top, len(corpus)), metric="ip")
            docids = list(corpus)
            return [[docids[i] for i in row] for row in ids]

    with open_llm(args) as client:
        print(f"writing queries about {min(args.n, len(corpus))} of {len(corpus)} passages with {client.model} "
              f"({'your ' + str(len(examples)) if examples else 'built-in'} examples)", file=sys.stderr)
        try:
            summary = generate_queries(corpus, client, args.out, n=args.n, seed=args.seed, examples=examples,
                                       template=args.template, max_words=args.max_words, max_tokens=args.max_tokens,
                                       max_query_words=args.max_query_words, round_trip=round_trip,
                                       round_trip_k=args.filter_top,
                                       max_consecutive_failures=args.max_consecutive_failures)
        except BudgetExceeded as e:
            raise Stopped(f"{e}; answers so far are in the journal beside {args.out}, rerun to go on") from None
    return finish_llm_run(summary.lines(), client, summary.failed)
