#!/usr/bin/env bash
# Issue 11's results on the shared SciFact data, through the CLI only (settings chosen on held-out training
# data by scripts/scifact-tune.sh; the test split is read only by the final `candidates` runs below):
#   gold-first-809   ranker on the first 709 train queries' gold-first lists, checked on the last 100 (never
#                    trained on), retriever distilled over all 809 train queries
#   first-stage-809  the control: the same, but the ranker learns the first stage's own top place
#   llm-237          the ranker learns the 237 shared Qwen2.5-Coder-1.5B labels; the check decides whether its
#                    retriever is trained (FORCE_LLM=1 trains it anyway, to see what the prior alone does)
#   gold-first-N     the training-set-size curve: rankers on the first N = 100 / 250 / 500 lists, the same
#                    check and stage 2 over all 809 queries
#   lexical-only-809 no labels: the untrained default ranker with the lexical term (weight $LEXICAL_ONLY, default
#                    30; BM25 on the corpus), checked like the others and, if better, distilled over all 809
#                    queries: what the lexical term gives without labels (not in the default VARIANTS; its
#                    directory is reused as it is, so remove it before changing LEXICAL_ONLY)
# Each ranker's check is `intdistill label-report --ranker` on the 100 held-out lists; a ranker that is not
# significantly better than the first stage gets no retriever (as `intdistill run` does), unless forced.
# Every stage is timed into $W/timings.tsv; scripts/scifact_report.py makes the tables and the curve.
#
# usage: scripts/scifact-distill.sh [WORK_DIR]   (env: SHARED=../shared, IDX="python -m intdistill", FORCE_LLM=0,
#        VARIANTS="gold-first-809 first-stage-809 llm-237 gold-first-100 gold-first-250 gold-first-500": which to run,
#        NO_RETRIEVER="": variants that stop after their ranker check, e.g. the curve's when time is short)
# A rerun skips what is finished.
set -euo pipefail

SHARED=${SHARED:-../shared}
D=$SHARED/data/scifact
LABELS=$SHARED/data/scifact-llm-labels/labels.qwen2.5-coder-1.5b.n10.jsonl
W=${1:-work/scifact-distill}
IDX=${IDX:-python -m intdistill}
EMB=${EMB:-work/emb-cache}
THREADS=${THREADS:-2}
FORCE_LLM=${FORCE_LLM:-0}
VARIANTS=${VARIANTS:-gold-first-809 first-stage-809 llm-237 gold-first-100 gold-first-250 gold-first-500}
NO_RETRIEVER=${NO_RETRIEVER:-}
N_CANDS=${N_CANDS:-10}
LEXICAL_ONLY=${LEXICAL_ONLY:-30}
# The defaults of `train-ranker` (query-tower, top-k ListMLE) and these stage-2 settings (scripts/scifact-tune.sh)
RANKER_ARGS=${RANKER_ARGS:---kind query-tower --lr 1e-4 --epochs 2 --batch-size 16}
RETRIEVER_ARGS=${RETRIEVER_ARGS:---epochs 2 --lr 2e-5 --max-length 128 --batch-size 8 --n-candidates 10}
mkdir -p "$W" "$EMB"
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
# queries: --max-queries N takes the same N queries everywhere, N = 237 is exactly the labelled set, and the
# last 100 are held out for the ranker check.
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

[ -f "$W/train-cands.jsonl" ] || timed candidates train-top$N_CANDS $IDX candidates --corpus "$D" \
    --queries "$W/train-queries.jsonl" --qrels "$D/qrels/train.tsv" -n "$N_CANDS" --out "$W/train-cands.jsonl" \
    --cache-dir "$EMB"
[ -f "$W/heldout-cands.jsonl" ] || tail -n 100 "$W/train-cands.jsonl" > "$W/heldout-cands.jsonl"
[ -f "$W/test-cands.jsonl" ] || timed candidates test-top10 $IDX candidates --corpus "$D" \
    --queries "$D/queries.jsonl" --qrels "$D/qrels/test.tsv" -n 10 --out "$W/test-cands.jsonl" --cache-dir "$EMB"
[ -f "$W/base.trec" ] || timed evaluate-run base $IDX candidates --corpus "$D" \
    --queries "$D/queries.jsonl" --qrels "$D/qrels/test.tsv" -n 100 --out "$W/base.trec" --cache-dir "$EMB"

variant() {  # variant NAME N_RANKER FORCE SOURCE-ARGS...: ranker on the first N_RANKER lists, check, stage 2 on 809
    local name=$1 n=$2 force=$3
    shift 3
    local r=$W/$name
    case " $VARIANTS " in *" $name "*) ;; *) return 0 ;; esac
    mkdir -p "$r"
    if [ "$name" = lexical-only-809 ] && [ ! -f "$r/ranker/intdistill_ranker.json" ]; then
        timed build-ranker "$name" python - "$D" "$r/ranker" "$LEXICAL_ONLY" <<'EOF'
import sys
from intdistill import data
from intdistill.models import Ranker
d, out, weight = sys.argv[1], sys.argv[2], float(sys.argv[3])
corpus = data.load_corpus(d)
Ranker.build(lexical_weight=weight, lexical_corpus=(p.full_text() for p in corpus.values())).save(out)
print(f"untrained default ranker + lexical term (weight {weight:g}) -> {out}", file=sys.stderr)
EOF
    fi
    if [ ! -f "$r/ranker/train_summary.json" ] && [ "$name" != lexical-only-809 ]; then
        timed train-ranker "$name" $IDX train-ranker --corpus "$D" --out "$r/ranker" --max-queries "$n" "$@" \
            --cache-dir "$EMB" --eval-every 0 --threads "$THREADS" $RANKER_ARGS 2>&1 | tee "$r/ranker.log"
    fi
    if [ ! -f "$r/check.json" ]; then
        timed ranker-check "$name" $IDX label-report --ranker "$r/ranker" --candidates "$W/heldout-cands.jsonl" \
            --qrels "$D/qrels/train.tsv" --corpus "$D" --cache-dir "$EMB" --format json > "$r/check.json.tmp"
        mv "$r/check.json.tmp" "$r/check.json"
    fi
    local verdict
    verdict=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['verdict'])" "$r/check.json")
    echo "$name: ranker check verdict: $verdict" >&2
    if [ "$verdict" != "better" ] && [ "$force" != 1 ]; then
        echo "$name: not better than the first stage on the held-out lists: no retriever (stage 2 has nothing to teach)" >&2
        return 0
    fi
    case " $NO_RETRIEVER " in *" $name "*) echo "$name: ranker only (NO_RETRIEVER)" >&2; return 0 ;; esac
    if [ ! -f "$r/retriever/train_summary.json" ]; then
        timed train-retriever "$name" $IDX train-retriever --ranker "$r/ranker" --queries "$W/train-queries.jsonl" \
            --corpus "$D" --out "$r/retriever" --cache-dir "$EMB" --eval-every 0 \
            --threads "$THREADS" $RETRIEVER_ARGS 2>&1 | tee "$r/retriever.log"
    fi
    if [ ! -f "$r/test.trec" ]; then
        timed evaluate-run "$name" $IDX candidates --corpus "$D" --queries "$D/queries.jsonl" \
            --qrels "$D/qrels/test.tsv" -n 100 --retriever "$r/retriever" --out "$r/test.trec"
    fi
}

CANDS=(--candidates "$W/train-cands.jsonl")
variant gold-first-809 709 0 --label-source gold-first "${CANDS[@]}" --qrels "$D/qrels/train.tsv"
variant first-stage-809 709 1 --label-source first-stage "${CANDS[@]}" --listmle-top 1
variant llm-237 237 "$FORCE_LLM" --label-source llm --labels "$LABELS" --queries "$D/queries.jsonl"
variant lexical-only-809 0 0
for n in 100 250 500; do
    variant "gold-first-$n" "$n" 0 --label-source gold-first "${CANDS[@]}" --qrels "$D/qrels/train.tsv"
done
echo "done: python scripts/scifact_report.py $W" >&2
