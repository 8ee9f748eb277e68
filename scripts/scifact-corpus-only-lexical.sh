#!/usr/bin/env bash
# Issue 14 with the lexical term: SciFact from its corpus alone, the claims of scripts/scifact-corpus-only-claims.sh
# (run it first: it generates them and makes their candidate lists), and a source-first ranker WITH the lexical
# term (--lexical-weight 30, BM25 fitted on the corpus; README "The lexical term"):
#   1. source-first ranker on all kept claims but the last 100 (2 epochs, lr 1e-4, + the lexical term), checked on
#      the last 100 (their source abstracts as qrels: synthetic judgements), also against its untrained anchor
#   2. stage 2 from that ranker over the same claims, with the method's SciFact settings (2 epochs, lr 2e-5,
#      10 mined candidates, 128-token passes, no dropout)
#   3. the 300 SciFact test queries with their real qrels judge base vs this retriever (paired test)
# No SciFact query or qrel is read before step 3.
# usage: bash scripts/scifact-corpus-only-lexical.sh   (WORK=work/scifact-claims OUT=$WORK/lexical; reruns skip
#        finished steps)
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-work/scifact-claims}
OUT=${OUT:-$WORK/lexical}
WEIGHT=${WEIGHT:-30}
DATA=../shared/data/scifact
IDX=${IDX:-intdistill}
C=(--corpus "$DATA/corpus.jsonl" --cache-dir "$WORK/emb-cache")
for f in gen.jsonl candidates.jsonl heldout-candidates.jsonl heldout-qrels.tsv; do
  [ -f "$WORK/$f" ] || { echo "no $WORK/$f: run scripts/scifact-corpus-only-claims.sh first" >&2; exit 2; }
done
mkdir -p "$OUT"
N=$(( $(wc -l < "$WORK/gen.jsonl") - 100 ))
t0=$(date +%s)
[ -f "$OUT/ranker/train_summary.json" ] || $IDX train-ranker "${C[@]}" --queries "$WORK/gen.jsonl" \
  --label-source source-first --candidates "$WORK/candidates.jsonl" --out "$OUT/ranker" --max-queries "$N" \
  --batch-size 16 --epochs 2 --lr 1e-4 --lexical-weight "$WEIGHT"
echo "ranker: $(( $(date +%s) - t0 )) s"
echo "== ranker check: the source-first ranker (+ lexical term) vs the first stage on the 100 held-out claims' lists"
$IDX label-report --ranker "$OUT/ranker" --candidates "$WORK/heldout-candidates.jsonl" --queries "$WORK/gen.jsonl" \
  "${C[@]}" --qrels "$WORK/heldout-qrels.tsv"
if [ ! -f "$OUT/retriever/config.json" ]; then
  s=$(date +%s)
  $IDX train-retriever --ranker "$OUT/ranker" --queries "$WORK/gen.jsonl" --max-queries "$N" "${C[@]}" \
    --out "$OUT/retriever" --epochs 2 --lr 2e-5 --max-length 128 --batch-size 8 --n-candidates 10 --eval-every 0
  echo "stage 2: $(( $(date +%s) - s )) s"
fi
[ -f "$WORK/base.trec" ] || $IDX candidates "${C[@]}" --queries "$DATA/queries.jsonl" --qrels "$DATA/qrels/test.tsv" \
  -n 100 --out "$WORK/base.trec"
[ -f "$OUT/test.trec" ] || $IDX candidates --corpus "$DATA/corpus.jsonl" --queries "$DATA/queries.jsonl" \
  --qrels "$DATA/qrels/test.tsv" -n 100 --retriever "$OUT/retriever" --out "$OUT/test.trec"
$IDX evaluate --qrels "$DATA/qrels/test.tsv" --run base="$WORK/base.trec" \
  --run source-first-claims-lexical="$OUT/test.trec" -m nDCG@10 R@100 RR@10 --format markdown
echo "whole script: $(( $(date +%s) - t0 )) s"
