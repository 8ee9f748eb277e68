#!/usr/bin/env bash
# Issue 14, SciFact from its corpus alone, with claim-style queries (`generate-queries --template claim`).
# SciFact is searched with claims ("0-dimensional biomaterials lack inductive properties."), not questions;
# Promptagator's point is that the prompt should say what the task's queries look like. No SciFact query is
# read: the claim template's three examples are written for intdistill about made-up passages.
# Same 600 passages as scripts/scifact-corpus-only.sh (seed 0), same steps and settings as the pipeline there:
#   1. the local Qwen writes a claim about each sampled abstract; round trip: kept where MiniLM ranks the
#      source abstract in its top 20
#   2. source-first ranker on all kept claims but the last 100 (2 epochs, lr 1e-4), checked on the last 100
#      (their source abstracts as qrels: synthetic judgements)
#   3. stage 2 from that ranker over the same claims (1 epoch, 10 mined candidates, 128-token passes)
#   4. the 300 SciFact test queries with their real qrels judge base vs this retriever (paired test)
# usage: bash scripts/scifact-corpus-only-claims.sh   (WORK=work/scifact-claims; finished steps are skipped)
# The same claims with the ranker's lexical term and the method's SciFact stage 2 (README "From a corpus alone"):
#   OUT=work/scifact-claims/lexical NAME=source-first-claims-lexical RANKER_ARGS="--lexical-weight 30" \
#   RETRIEVER_ARGS="--epochs 2 --lr 2e-5 --max-length 128 --batch-size 8 --n-candidates 10 --eval-every 0" \
#   bash scripts/scifact-corpus-only-claims.sh
# (OUT: where the ranker, the retriever and claims.trec go, default WORK; the claims and lists are WORK's.)
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-work/scifact-claims}
N_GEN=${N_GEN:-600}
DATA=../shared/data/scifact
IDX=${IDX:-intdistill}
OUT=${OUT:-$WORK}
NAME=${NAME:-source-first-claims}
RANKER_ARGS=${RANKER_ARGS:-}
RETRIEVER_ARGS=${RETRIEVER_ARGS:---epochs 1 --max-length 128 --batch-size 8 --n-candidates 10 --dropout \
--dev-queries $WORK/heldout-queries.jsonl --dev-qrels $WORK/heldout-qrels.tsv}
C=(--corpus "$DATA/corpus.jsonl" --cache-dir "$WORK/emb-cache")
mkdir -p "$WORK" "$OUT"
t0=$(date +%s)
$IDX generate-queries "${C[@]}" -n "$N_GEN" --template claim --filter-top 20 --out "$WORK/gen.jsonl" \
  --llm local:qwen2.5-coder-1.5b --cache "$WORK/llm.sqlite"
echo "generation: $(( $(date +%s) - t0 )) s"
python scripts/hold_out.py "$WORK/gen.jsonl" "$WORK/gen.qrels.tsv" "$WORK"
N=$(( $(wc -l < "$WORK/gen.jsonl") - 100 ))
[ -f "$WORK/candidates.jsonl" ] || $IDX candidates "${C[@]}" --queries "$WORK/gen.jsonl" -n 10 --out "$WORK/candidates.jsonl"
[ -f "$WORK/heldout-candidates.jsonl" ] || $IDX candidates "${C[@]}" --queries "$WORK/heldout-queries.jsonl" -n 10 \
  --out "$WORK/heldout-candidates.jsonl"
if [ ! -f "$OUT/ranker/done" ]; then
  # shellcheck disable=SC2086
  $IDX train-ranker "${C[@]}" --queries "$WORK/gen.jsonl" --label-source source-first \
    --candidates "$WORK/candidates.jsonl" --out "$OUT/ranker" --max-queries "$N" --batch-size 16 --epochs 2 --lr 1e-4 \
    $RANKER_ARGS
  touch "$OUT/ranker/done"
fi
echo "== ranker check: the source-first ranker vs the first stage on the 100 held-out claims' lists"
$IDX label-report --ranker "$OUT/ranker" --candidates "$WORK/heldout-candidates.jsonl" --queries "$WORK/gen.jsonl" \
  "${C[@]}" --qrels "$WORK/heldout-qrels.tsv"
if [ ! -f "$OUT/retriever/config.json" ]; then
  s=$(date +%s)
  # shellcheck disable=SC2086
  $IDX train-retriever --ranker "$OUT/ranker" --queries "$WORK/gen.jsonl" --max-queries "$N" "${C[@]}" \
    --out "$OUT/retriever" $RETRIEVER_ARGS
  echo "stage 2: $(( $(date +%s) - s )) s"
fi
[ -f "$WORK/base.trec" ] || $IDX candidates "${C[@]}" --queries "$DATA/queries.jsonl" --qrels "$DATA/qrels/test.tsv" \
  -n 100 --out "$WORK/base.trec"
[ -f "$OUT/claims.trec" ] || $IDX candidates --corpus "$DATA/corpus.jsonl" --queries "$DATA/queries.jsonl" \
  --qrels "$DATA/qrels/test.tsv" -n 100 --retriever "$OUT/retriever" --out "$OUT/claims.trec"
$IDX evaluate --qrels "$DATA/qrels/test.tsv" --run base="$WORK/base.trec" --run "$NAME=$OUT/claims.trec" \
  -m nDCG@10 R@100 RR@10 --format markdown
echo "whole script: $(( $(date +%s) - t0 )) s"
