#!/usr/bin/env bash
# Issue 15's figures on this machine (2 CPU cores: a correctness check more than a speed one):
#   1. corpus encoding (SciFact, 5,183 abstracts, MiniLM at 256 tokens): one process (torch's 2 threads), and Ray
#      with 1 and 2 workers (one thread each), from `intdistill candidates --ray --ray-workers N` (no cache);
#   2. one training epoch of stage 2 (train-retriever, the first 200 SciFact train queries, 10 candidates,
#      128-token passes): one process with one thread at batch 8, and `torchrun --nproc_per_node 2` at batch 4
#      per process (the same global batch), one thread each;
#   3. the done-when run: stage 2 over all 809 train queries, 1 epoch, from the gold-first-809 ranker of
#      scripts/scifact-distill.sh: one process (2 threads) at batch 8 and torchrun 2 x batch 4 (one thread each;
#      the same global batch), then
#      both SciFact test runs.
# Writes $W/scaling.tsv (what, seconds) and $W/dist-809/test.trec.
#
# usage: scripts/scaling.sh [WORK_DIR] [DISTILL_DIR]   (env: SHARED=../shared, PARTS="1 2 3": which parts to run)
set -euo pipefail
SHARED=${SHARED:-../shared}
D=$SHARED/data/scifact
W=${1:-work/scaling}
DISTILL=${2:-work/scifact-distill}
IDX="python -m intdistill"
mkdir -p "$W"
T=$W/scaling.tsv
[ -f "$T" ] || printf 'what\tseconds\n' > "$T"
timed() {
    local what=$1 t0
    shift
    t0=$(date +%s.%N)
    "$@"
    printf '%s\t%.1f\n' "$what" "$(echo "$(date +%s.%N) - $t0" | bc)" >> "$T"
}
PARTS=${PARTS:-1 2 3}
part() { case " $PARTS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
Q=$DISTILL/train-queries.jsonl
head -n 200 "$Q" > "$W/train-200.jsonl"
R=$DISTILL/gold-first-809/ranker

# 1. encoding (candidates for 10 queries: the time is the corpus pass)
if part 1; then
head -n 10 "$Q" > "$W/q10.jsonl"
timed "encode 5183 passages: 1 process (2 threads)" $IDX candidates --corpus "$D" --queries "$W/q10.jsonl" -n 10 \
    --out "$W/c-one.jsonl"
timed "encode 5183 passages: Ray, 1 worker (1 thread)" $IDX candidates --corpus "$D" --queries "$W/q10.jsonl" -n 10 \
    --out "$W/c-ray1.jsonl" --ray --ray-workers 1
timed "encode 5183 passages: Ray, 2 workers (1 thread each)" $IDX candidates --corpus "$D" --queries "$W/q10.jsonl" \
    -n 10 --out "$W/c-ray2.jsonl" --ray --ray-workers 2
cmp <(python -c "import json,sys; [print(json.loads(l)['cands']) for l in open(sys.argv[1])]" "$W/c-one.jsonl") \
    <(python -c "import json,sys; [print(json.loads(l)['cands']) for l in open(sys.argv[1])]" "$W/c-ray2.jsonl") \
    && echo "Ray candidates identical to one process's" >&2
fi

# 2. one stage-2 epoch, 1 vs 2 processes, the same global batch
if part 2; then
S2=(--ranker "$R" --queries "$W/train-200.jsonl" --corpus "$D" --n-candidates 10 --max-length 128 --epochs 1
    --lr 2e-5 --eval-every 0 --no-progress --threads 1 --cache-dir work/emb-cache --dropout)
rm -rf "$W/epoch-one" "$W/epoch-two"
timed "stage-2 epoch, 200 queries: 1 process, batch 8" $IDX train-retriever "${S2[@]}" --out "$W/epoch-one" --batch-size 8
timed "stage-2 epoch, 200 queries: torchrun 2 processes, batch 4 each" \
    torchrun --nproc_per_node 2 -m intdistill train-retriever "${S2[@]}" --out "$W/epoch-two" --batch-size 4
fi

# 3. the SciFact run: one process vs torchrun, 1 epoch, the same global batch
if part 3; then
ONE=(--ranker "$R" --queries "$Q" --corpus "$D" --cache-dir work/emb-cache --eval-every 0 --epochs 1
     --lr 2e-5 --max-length 128 --n-candidates 10 --dropout)
if [ ! -f "$W/one-809/retriever/train_summary.json" ]; then
    timed "stage 2, 809 queries, 1 epoch: 1 process x batch 8 (2 threads)" \
        $IDX train-retriever "${ONE[@]}" --out "$W/one-809/retriever" --batch-size 8 --threads 2
fi
if [ ! -f "$W/dist-809/retriever/train_summary.json" ]; then
    timed "stage 2, 809 queries, 1 epoch: torchrun 2 processes x batch 4 (1 thread each)" \
        torchrun --nproc_per_node 2 -m intdistill train-retriever "${ONE[@]}" --out "$W/dist-809/retriever" --batch-size 4 \
        --threads 1
fi
if [ ! -f "$W/one-809-seed1/retriever/train_summary.json" ]; then  # the noise: the same run, another seed
    $IDX train-retriever "${ONE[@]}" --out "$W/one-809-seed1/retriever" --batch-size 8 --threads 2 --seed 1
fi
for r in one-809 one-809-seed1 dist-809; do
    [ -f "$W/$r/test.trec" ] || $IDX candidates --corpus "$D" --queries "$D/queries.jsonl" --qrels "$D/qrels/test.tsv" \
        -n 100 --retriever "$W/$r/retriever" --out "$W/$r/test.trec"
done
$IDX evaluate --qrels "$D/qrels/test.tsv" -m nDCG@10 R@100 --run "base=$DISTILL/base.trec" \
    --run "one-process=$W/one-809/test.trec" --run "one-process-seed1=$W/one-809-seed1/test.trec" \
    --run "torchrun-2=$W/dist-809/test.trec"
fi
cat "$T"
