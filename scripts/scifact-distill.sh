#!/usr/bin/env bash
# Issue 4's experiment on the shared SciFact data, run through the CLI only:
#   base all-MiniLM-L6-v2 vs retrievers distilled from rankers trained with label sources
#   gold-first / llm (the shared Qwen labels) / first-stage (control) on the same 237 labelled train queries,
#   and the gold-first training-set-size curve (100 / 250 / 500 / 809 train queries).
# Every stage is timed into $WORK/timings.tsv; scripts/scifact_report.py turns the runs into a table with
# paired tests against the base and a PNG of the curve.
#
# usage: scripts/scifact-distill.sh [WORK_DIR]      (env: SHARED=../shared, IDX="python -m intdistill")
# A rerun skips what is finished (trainers resume from their checkpoints; finished runs are kept).
set -euo pipefail

SHARED=${SHARED:-../shared}
D=$SHARED/data/scifact
LABELS=$SHARED/data/scifact-llm-labels/labels.qwen2.5-coder-1.5b.n10.jsonl
W=${1:-work/scifact-distill}
IDX=${IDX:-python -m intdistill}
EMB=${EMB:-$W/emb-cache}
# CPU budget knobs (2 cores): 2 ranker epochs (the new head at --head-lr), 1 retriever epoch, 128-token
# training passes in bf16 autocast, 10 candidates. The ranker is scored on the test candidate lists once, after
# its last epoch (no epoch is picked by it).
THREADS=${THREADS:-2}
RANKER_ARGS=${RANKER_ARGS:---epochs 2 --eval-every 2 --lr 5e-5 --head-lr 2e-3 --max-length 128 --batch-size 4 --precision bf16}
RETRIEVER_ARGS=${RETRIEVER_ARGS:---epochs 1 --lr 2e-5 --max-length 128 --batch-size 8 --n-candidates 10 --precision bf16}
mkdir -p "$W"
T=$W/timings.tsv
[ -f "$T" ] || printf 'stage\tname\tseconds\n' > "$T"

timed() {  # timed STAGE NAME cmd...: run, append the wall-clock seconds
    local stage=$1 name=$2 t0
    shift 2
    t0=$(date +%s.%N)
    "$@"
    printf '%s\t%s\t%.1f\n' "$stage" "$name" "$(echo "$(date +%s.%N) - $t0" | bc)" >> "$T"
}

# Training queries in the labels' order (a fixed random order of the train queries), then the other train
# queries: --max-queries N then takes the same N queries in both stages, and N = 237 is exactly the labelled set.
if [ ! -f "$W/train-queries.jsonl" ]; then
    python - "$D" "$LABELS" "$W/train-queries.jsonl" <<'EOF'
import sys
from intdistill import data
d, labels, out = sys.argv[1:]
queries, qrels = data.load_queries(f"{d}/queries.jsonl"), data.load_qrels(f"{d}/qrels/train.tsv")
first = [r["qid"] for _, r in data.iter_jsonl(labels)]
order = first + [q for q in queries if q in qrels and q not in set(first)]
data.dump_jsonl(({"_id": q, "text": queries[q].text} for q in order), out)
print(f"{len(order)} train queries ({len(first)} labelled first) -> {out}", file=sys.stderr)
EOF
fi

[ -f "$W/train-cands.jsonl" ] || timed candidates train-top10 $IDX candidates --corpus "$D" \
    --queries "$W/train-queries.jsonl" --qrels "$D/qrels/train.tsv" -n 10 --out "$W/train-cands.jsonl" --cache-dir "$EMB"
[ -f "$W/test-cands.jsonl" ] || timed candidates test-top10 $IDX candidates --corpus "$D" \
    --queries "$D/queries.jsonl" --qrels "$D/qrels/test.tsv" -n 10 --out "$W/test-cands.jsonl" --cache-dir "$EMB"
[ -f "$W/base.trec" ] || timed evaluate-run base $IDX candidates --corpus "$D" \
    --queries "$D/queries.jsonl" --qrels "$D/qrels/test.tsv" -n 100 --out "$W/base.trec" --cache-dir "$EMB"

variant() {  # variant NAME N SOURCE-ARGS...: ranker on the first N train queries, retriever on the same N
    local name=$1 n=$2
    shift 2
    local r=$W/$name
    mkdir -p "$r"
    if [ ! -f "$r/ranker/train_summary.json" ]; then
        timed train-ranker "$name" $IDX train-ranker --corpus "$D" --out "$r/ranker" --max-queries "$n" "$@" \
            --dev-candidates "$W/test-cands.jsonl" --dev-qrels "$D/qrels/test.tsv" \
            --threads "$THREADS" $RANKER_ARGS 2>&1 | tee "$r/ranker.log"
    fi
    if [ ! -f "$r/retriever/train_summary.json" ]; then
        timed train-retriever "$name" $IDX train-retriever --ranker "$r/ranker" --queries "$W/train-queries.jsonl" \
            --max-queries "$n" --corpus "$D" --out "$r/retriever" --cache-dir "$EMB" --eval-every 0 \
            --threads "$THREADS" $RETRIEVER_ARGS 2>&1 | tee "$r/retriever.log"
    fi
    if [ ! -f "$r/test.trec" ]; then
        timed evaluate-run "$name" $IDX candidates --corpus "$D" --queries "$D/queries.jsonl" \
            --qrels "$D/qrels/test.tsv" -n 100 --retriever "$r/retriever" --out "$r/test.trec"
    fi
}

CANDS=(--candidates "$W/train-cands.jsonl")
variant gold-first-809 809 --label-source gold-first "${CANDS[@]}" --qrels "$D/qrels/train.tsv"
variant llm-237 237 --label-source llm --labels "$LABELS" --queries "$D/queries.jsonl"
variant first-stage-237 237 --label-source first-stage "${CANDS[@]}"
for n in 100 250 500 237; do
    variant "gold-first-$n" "$n" --label-source gold-first "${CANDS[@]}" --qrels "$D/qrels/train.tsv"
done
echo "done: python scripts/scifact_report.py $W" >&2
