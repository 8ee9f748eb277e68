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
both() {  # both SET NAME ARGS...: `candidates ARGS` dense and hybrid (skipped when done), added to runs as NAME
    local set=$1 name=$2 w
    shift 2
    for w in 0 "$W"; do  # weight 0: dense only
        local out=$O/$set-$name.trec tag=$name
        [ "$w" = 0 ] || { out=$O/$set-$name-bm25.trec; tag=$name+bm25; }
        [ -f "$out" ] || $IDX candidates "$@" --lexical-weight "$w" --out "$out"
        runs+=(--run "$tag=$out")
    done
}
runs=()
sq=(--corpus "$S/corpus.jsonl" --queries "$S/test-queries.jsonl" -n 20)
both squad base "${sq[@]}"
[ -z "${SQUAD_RETRIEVER:-}" ] || both squad distilled "${sq[@]}" --retriever "$SQUAD_RETRIEVER"
echo "SQuAD dev part, 300 test questions"
$IDX evaluate --queries "$S/test-queries.jsonl" --corpus "$S/corpus.jsonl" "${runs[@]}" -m Acc@1 Acc@5 Acc@20 \
    --format markdown
runs=()
sf=(--corpus "$D" --queries "$D/queries.jsonl" --qrels "$D/qrels/test.tsv" -n 100)
both scifact base "${sf[@]}"
[ -z "${SCIFACT_RETRIEVER:-}" ] || both scifact distilled "${sf[@]}" --retriever "$SCIFACT_RETRIEVER"
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
