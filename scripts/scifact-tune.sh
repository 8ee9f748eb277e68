#!/usr/bin/env bash
# Issue 11's choices, made on held-out TRAINING data only (the SciFact test split is never read here):
#   rankers   trained on the first 709 of the 809 SciFact train queries (gold-first labels), each judged by
#             `intdistill label-report --ranker` on the last 100 train queries' candidate lists (paired test
#             against the first stage's order);
#   stage 2   retrievers distilled over the same 709 queries, judged by retrieval over the whole corpus for
#             the 100 held-out queries (train-retriever's dev evaluation; the base retriever's dev run is
#             scored the same way).
# Every run goes through the CLI. scripts/scifact_tune_report.py turns $W into a table.
#
# usage: scripts/scifact-tune.sh [WORK_DIR] [RUN ...]     (env: SHARED=../shared, IDX="python -m intdistill")
#   RUN names a ranker (r-...) or a stage-2 run (s-...) below; none = all. Finished runs are skipped.
set -euo pipefail

SHARED=${SHARED:-../shared}
D=$SHARED/data/scifact
LABELS=$SHARED/data/scifact-llm-labels/labels.qwen2.5-coder-1.5b.n10.jsonl
W=${1:-work/scifact-tune}
shift || true
IDX=${IDX:-python -m intdistill}
EMB=${EMB:-work/emb-cache}
THREADS=${THREADS:-2}
N_TRAIN=709
mkdir -p "$W" "$EMB"
T=$W/timings.tsv
[ -f "$T" ] || printf 'run\tseconds\n' > "$T"

# Train queries in a fixed order (the shared labels' queries first, then the other judged train queries, as
# scripts/scifact-distill.sh orders them); the last 100 are held out.
if [ ! -f "$W/heldout-qrels.tsv" ]; then
    python - "$D" "$LABELS" "$W" <<'EOF'
import sys
from intdistill import data
d, labels, w = sys.argv[1:]
queries, qrels = data.load_queries(f"{d}/queries.jsonl"), data.load_qrels(f"{d}/qrels/train.tsv")
first = [r["qid"] for _, r in data.iter_jsonl(labels)]
order = first + [q for q in queries if q in qrels and q not in set(first)]
data.dump_jsonl(({"_id": q, "text": queries[q].text} for q in order), f"{w}/train-queries.jsonl")
held = order[-100:]
data.dump_jsonl(({"_id": q, "text": queries[q].text} for q in held), f"{w}/heldout-queries.jsonl")
data.save_qrels({q: qrels[q] for q in held}, f"{w}/heldout-qrels.tsv")
print(f"{len(order)} train queries, the last {len(held)} held out", file=sys.stderr)
EOF
fi
for n in 10 20; do
    [ -f "$W/train-cands$n.jsonl" ] || $IDX candidates --corpus "$D" --queries "$W/train-queries.jsonl" \
        --qrels "$D/qrels/train.tsv" -n $n --out "$W/train-cands$n.jsonl" --cache-dir "$EMB"
    [ -f "$W/heldout-cands$n.jsonl" ] || tail -n 100 "$W/train-cands$n.jsonl" > "$W/heldout-cands$n.jsonl"
done
[ -f "$W/base-heldout.trec" ] || $IDX candidates --corpus "$D" --queries "$W/heldout-queries.jsonl" \
    --qrels "$W/heldout-qrels.tsv" -n 100 --out "$W/base-heldout.trec" --cache-dir "$EMB"

want() {  # want NAME: is NAME asked for (no RUN arguments = all)
    [ ${#RUNS[@]} -eq 0 ] && return 0
    local r
    for r in "${RUNS[@]}"; do [ "$r" = "$1" ] && return 0; done
    return 1
}
timed() {  # timed NAME cmd...
    local name=$1 t0
    shift
    t0=$(date +%s.%N)
    "$@"
    printf '%s\t%.1f\n' "$name" "$(echo "$(date +%s.%N) - $t0" | bc)" >> "$T"
}

ranker() {  # ranker NAME N_CANDS ARGS...: gold-first ranker on the first 709 lists, then the held-out check
    local name=$1 n=$2
    shift 2
    want "$name" || return 0
    local r=$W/$name
    mkdir -p "$r"
    if [ ! -f "$r/ranker/train_summary.json" ]; then
        timed "$name" $IDX train-ranker --corpus "$D" --candidates "$W/train-cands$n.jsonl" --label-source gold-first \
            --qrels "$D/qrels/train.tsv" --max-queries $N_TRAIN --out "$r/ranker" --cache-dir "$EMB" \
            --threads "$THREADS" --eval-every 0 "$@" 2>&1 | tee "$r/ranker.log"
    fi
    if [ ! -f "$r/check.json" ]; then
        $IDX label-report --ranker "$r/ranker" --candidates "$W/heldout-cands$n.jsonl" --qrels "$D/qrels/train.tsv" \
            --corpus "$D" --cache-dir "$EMB" --format json > "$r/check.json.tmp" && mv "$r/check.json.tmp" "$r/check.json"
    fi
}

student() {  # student NAME RANKER_RUN ARGS...: stage 2 over the first 709 queries, dev = the 100 held out
    local name=$1 from=$2
    shift 2
    want "$name" || return 0
    local r=$W/$name
    mkdir -p "$r"
    if [ ! -f "$r/retriever/train_summary.json" ]; then
        timed "$name" $IDX train-retriever --ranker "$W/$from/ranker" --queries "$W/train-queries.jsonl" \
            --max-queries $N_TRAIN --corpus "$D" --out "$r/retriever" --cache-dir "$EMB" \
            --dev-queries "$W/train-queries.jsonl" --dev-qrels "$W/heldout-qrels.tsv" \
            --threads "$THREADS" "$@" 2>&1 | tee "$r/retriever.log"
    fi
}

RUNS=("$@")
# In the order the decisions need them. Rankers: kinds, ListMLE's learned places, rates, epochs, list length.
# Stage 2: candidates, teacher temperature, epochs, the student's dropout (from the default ranker). fp32
# throughout: bf16 autocast is slower than fp32 on this CPU (MiniLM forward+backward, 40 passages x 128 tokens:
# 3.6 s vs 2.7 s).
S2="--epochs 1 --lr 2e-5 --max-length 128 --batch-size 8 --dropout"  # dropout: the default until 2026-12-03
ranker r-qt-top         10 --kind query-tower --lr 1e-4 --epochs 2 --batch-size 16
ranker r-qt-all         10 --kind query-tower --lr 1e-4 --epochs 2 --batch-size 16 --listmle-top all
student s-n10           r-qt-top     $S2 --n-candidates 10
ranker r-qt-top-n20     20 --kind query-tower --lr 1e-4 --epochs 2 --batch-size 16
student s-n20           r-qt-top-n20 $S2 --n-candidates 20
student s-n10-tt05      r-qt-top     $S2 --n-candidates 10 --tau-teacher 0.5
student s-n10-ep2       r-qt-top     --epochs 2 --lr 2e-5 --max-length 128 --batch-size 8 --n-candidates 10 --dropout
student s-n10-ep2-nodrop r-qt-top    --epochs 2 --lr 2e-5 --max-length 128 --batch-size 8 --n-candidates 10 --no-dropout
ranker r-qt-top-ep4     10 --kind query-tower --lr 5e-5 --epochs 4 --batch-size 16
ranker r-twin-top       10 --kind twin --lr 5e-5 --epochs 1 --batch-size 4 --train-max-length 128
ranker r-ac-top         10 --kind anchored-cross --lr 5e-5 --head-lr 2e-3 --epochs 1 --batch-size 4 --max-length 128
echo "done: python scripts/scifact_tune_report.py $W" >&2
