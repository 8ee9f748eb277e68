#!/usr/bin/env bash
# Issue 14, SciFact from its corpus alone: the choices made on held-out GENERATED queries (no SciFact train
# query is read; the test split only reports at the end). Reads the work directory of
# scripts/scifact-corpus-only.sh (its 573 kept generated queries, their top-10 lists and source qrels):
#   rankers  source-first, trained on the first 473 generated queries' lists (as the pipeline does), each judged
#            by `intdistill label-report --ranker` on the last 100 generated queries' lists (their source
#            passages as qrels: synthetic judgements);
#   stage 2  from the best ranker, over the same 473 queries, 2 epochs, judged after each epoch by retrieval over
#            the whole corpus for the 100 held-out generated queries; the best epoch is kept;
#   test     that retriever against the base on the 300 SciFact test queries (paired test).
# usage: bash scripts/scifact-corpus-only-tune.sh [WORK]   (WORK=work/scifact-corpus-only; finished steps are skipped)
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-work/scifact-corpus-only}
T=$WORK/tune
DATA=../shared/data/scifact
IDX=${IDX:-intdistill}
Q=$WORK/generated-queries.jsonl
mkdir -p "$T"
python scripts/hold_out.py "$Q" "$WORK/generated-queries.qrels.tsv" "$T"
N=$(( $(wc -l < "$Q") - 100 ))
ranker() {  # name, flags
  local n=$1; shift
  if [ ! -f "$T/$n/done" ]; then
    local s=$(date +%s)
    $IDX train-ranker --corpus "$DATA/corpus.jsonl" --queries "$Q" --label-source source-first \
      --candidates "$WORK/candidates.jsonl" --out "$T/$n" --max-queries "$N" --batch-size 16 \
      --cache-dir "$WORK/emb-cache" --no-progress "$@" > "$T/$n.log" 2>&1
    echo "$(( $(date +%s) - s ))" > "$T/$n/done"
  fi
  [ -f "$T/$n.check.json" ] || $IDX label-report --ranker "$T/$n" --candidates "$WORK/ranker-check-gold-first.jsonl" \
    --queries "$Q" --corpus "$DATA/corpus.jsonl" --qrels "$WORK/generated-queries.qrels.tsv" \
    --cache-dir "$WORK/emb-cache" --format json > "$T/$n.check.json" 2> "$T/$n.check.err"
  python - "$T/$n.check.json" "$n ($*; trained in $(cat "$T/$n/done") s)" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]}: held-out nDCG@10 {r['first_stage']['nDCG@10']:.4f} -> {r['teacher']['nDCG@10']:.4f} "
      f"(p={r['p_values']['nDCG@10']:.3f}), Success@1 {r['first_stage']['Success@1']:.2f} -> {r['teacher']['Success@1']:.2f}")
PY
}
ranker r-e2 --epochs 2 --lr 1e-4
ranker r-e4 --epochs 4 --lr 1e-4
ranker r-e4-lr2 --epochs 4 --lr 2e-4
ranker r-e8-lr2 --epochs 8 --lr 2e-4
# the ranker with the best held-out nDCG@10 (the first listed wins a tie)
BEST=${BEST:-$(python -c "
import json, sys
names = sys.argv[1:]
print(max(names, key=lambda n: (json.load(open(f'$T/{n}.check.json'))['teacher']['nDCG@10'], -names.index(n))))
" r-e2 r-e4 r-e4-lr2 r-e8-lr2)}
echo "== stage 2 from $BEST (2 epochs over the $N training queries; the held-out 100 pick the epoch)"
if [ ! -f "$T/s2/config.json" ]; then
  s=$(date +%s)
  $IDX train-retriever --ranker "$T/$BEST" --queries "$Q" --max-queries "$N" --corpus "$DATA/corpus.jsonl" \
    --out "$T/s2" --cache-dir "$WORK/emb-cache" --epochs 2 --max-length 128 --batch-size 8 --n-candidates 10 \
    --dropout \
    --dev-queries "$T/heldout-queries.jsonl" --dev-qrels "$T/heldout-qrels.tsv" --no-progress > "$T/s2.log" 2>&1
  echo "stage 2: $(( $(date +%s) - s )) s"
fi
grep -iE "epoch|dev|best" "$T/s2.log" | grep -v "%|" | tail -8
[ -f "$T/heldout-base.trec" ] || $IDX candidates --corpus "$DATA/corpus.jsonl" --queries "$T/heldout-queries.jsonl" -n 100 \
  --out "$T/heldout-base.trec" --cache-dir "$WORK/emb-cache" 2> /dev/null
echo "the base retriever on the same held-out generated queries:"
$IDX evaluate --qrels "$T/heldout-qrels.tsv" --run "base=$T/heldout-base.trec" -m nDCG@10 R@100 2> /dev/null
R=$T/s2; [ -f "$T/s2/best/config.json" ] && R=$T/s2/best
mkdir -p "$WORK/forced"
[ -f "$WORK/forced/base.trec" ] || $IDX candidates --corpus "$DATA/corpus.jsonl" --queries "$DATA/queries.jsonl" \
  --qrels "$DATA/qrels/test.tsv" -n 100 --out "$WORK/forced/base.trec" --cache-dir "$WORK/emb-cache"
$IDX candidates --corpus "$DATA/corpus.jsonl" --queries "$DATA/queries.jsonl" --qrels "$DATA/qrels/test.tsv" \
  -n 100 --retriever "$R" --out "$T/s2-test.trec"
$IDX evaluate --qrels "$DATA/qrels/test.tsv" --run base="$WORK/forced/base.trec" \
  --run source-first-1ep="$WORK/forced/source-first.trec" --run "source-first-tuned=$T/s2-test.trec" \
  -m nDCG@10 R@100 RR@10 --format markdown
