#!/usr/bin/env bash
# Hybrid serving (`intdistill candidates --lexical-weight 30`: the dense top 100 re-scored by 20 x cosine +
# 30 x BM25 / max_q, W = 30 as chosen on training lists by scripts/lexical_grid.py) against dense retrieval, on the
# test splits: the SQuAD dev part's 300 test questions (Acc@1/5/20 by answers) and SciFact's 300 test queries
# (nDCG@10, RR@10 by qrels), for the base all-MiniLM-L6-v2 and, when given, a distilled retriever.
#   SQUAD_RETRIEVER=work/squad-distill-lex30-256-lr5e-5/retriever bash scripts/hybrid-serving.sh [OUT]
#   (default work/hybrid; SCIFACT_RETRIEVER=DIR adds a distilled SciFact retriever; needs work/squad-dev from
#   make_squad_fixture.py --all-articles --n-train 1000 --n-test 300 and ../shared/data/scifact; RAG_QUESTIONS: below)
set -euo pipefail
cd "$(dirname "$0")/.."
O=${1:-work/hybrid}
IDX=${IDX:-intdistill}
S=${SQUAD:-work/squad-dev}
D=${SCIFACT:-../shared/data/scifact}
W=${W:-30}
mkdir -p "$O"
run() {  # run OUT.trec ARGS...: skip when done
    local out=$1
    shift
    [ -f "$out" ] || $IDX candidates "$@" --out "$out"
}
sq=(--corpus "$S/corpus.jsonl" --queries "$S/test-queries.jsonl" -n 20)
run "$O/squad-base.trec" "${sq[@]}"
run "$O/squad-base-bm25.trec" "${sq[@]}" --lexical-weight "$W"
runs=(--run base="$O/squad-base.trec" --run base+bm25="$O/squad-base-bm25.trec")
if [ -n "${SQUAD_RETRIEVER:-}" ]; then
    run "$O/squad-distilled.trec" "${sq[@]}" --retriever "$SQUAD_RETRIEVER"
    run "$O/squad-distilled-bm25.trec" "${sq[@]}" --retriever "$SQUAD_RETRIEVER" --lexical-weight "$W"
    runs+=(--run distilled="$O/squad-distilled.trec" --run distilled+bm25="$O/squad-distilled-bm25.trec")
fi
echo "SQuAD dev part, 300 test questions"
$IDX evaluate --queries "$S/test-queries.jsonl" --corpus "$S/corpus.jsonl" "${runs[@]}" -m Acc@1 Acc@5 Acc@20 \
    --format markdown
sf=(--corpus "$D" --queries "$D/queries.jsonl" --qrels "$D/qrels/test.tsv" -n 100)
run "$O/scifact-base.trec" "${sf[@]}"
run "$O/scifact-base-bm25.trec" "${sf[@]}" --lexical-weight "$W"
runs=(--run base="$O/scifact-base.trec" --run base+bm25="$O/scifact-base-bm25.trec")
if [ -n "${SCIFACT_RETRIEVER:-}" ]; then
    run "$O/scifact-distilled.trec" "${sf[@]}" --retriever "$SCIFACT_RETRIEVER"
    run "$O/scifact-distilled-bm25.trec" "${sf[@]}" --retriever "$SCIFACT_RETRIEVER" --lexical-weight "$W"
    runs+=(--run distilled="$O/scifact-distilled.trec" --run distilled+bm25="$O/scifact-distilled-bm25.trec")
fi
echo "SciFact, 300 test queries"
$IDX evaluate --qrels "$D/qrels/test.tsv" "${runs[@]}" -m nDCG@10 RR@10 R@100 --format markdown
# RAG_QUESTIONS=N: the first N SQuAD test questions answered by the local Qwen2.5-Coder-1.5B from the top 3 of
# the base's index, dense and hybrid (EM/F1 of the answers, Acc@3 of the passages; ~8 s a question on 2 cores)
if [ -n "${RAG_QUESTIONS:-}" ]; then
    [ -f "$O/squad-index/meta.json" ] || $IDX index --corpus "$S/corpus.jsonl" --out "$O/squad-index" --check-sample 0
    for w in 0 "$W"; do
        echo "RAG, lexical weight $w"
        $IDX rag --index "$O/squad-index" --queries "$S/test-queries.jsonl" -k 3 --max-queries "$RAG_QUESTIONS" \
            --llm local:qwen2.5-coder-1.5b --cache "$O/llm-cache.sqlite" --out "$O/rag-w$w.jsonl" --lexical-weight "$w"
    done
fi
