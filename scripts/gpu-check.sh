#!/usr/bin/env bash
# The CUDA code paths against the CPU, on the shipped examples/squad-mini (189 paragraphs, 300 training and 100
# test questions): the same commands a user runs, with --device cuda in each precision, and --device cpu as the
# reference, on one machine with a GPU.
#   bash scripts/gpu-check.sh [OUT]      (default work/gpu-check; GPU=cuda:1 picks another device)
# 1. first-stage candidates on each device: the same lists (ids), scores within 1e-4;
# 2. the gold-first query-tower ranker with the lexical term (the SQuAD setting), on the first N training lists,
#    trained on cpu (fp32) and on the GPU (fp32, bf16, fp16), each checked on the next 50 lists on its device;
#    the other ranker kinds once each on the GPU (bf16);
# 3. stage 2 from the CPU-trained ranker on cpu (fp32) and on the GPU (bf16, fp16; fp32 under torchrun with one
#    process, nccl), then the 100 test questions judged by their answers against the base (Acc@1/5/20, paired
#    tests).
# RANKER_PRECS, S2_PRECS and KIND_PREC name the GPU's precisions (fp16 needs CUDA), KINDS the other ranker kinds,
# N the training lists, S2_MAX stage 2's questions; CPU_REF=0 skips every CPU run (the GPU's fp32 ranker then
# teaches stage 2). Every step's wall-clock goes to OUT/timings.txt and its output to OUT/NAME.log; OUT/summary.txt
# has the comparisons. Measured on an H200 on 2026-12-04: README, "On a GPU".
set -euo pipefail
cd "$(dirname "$0")/.."
O=${1:-work/gpu-check}
IDX=${IDX:-intdistill}
GPU=${GPU:-cuda}
N=${N:-250}                              # training lists (the next 50 are held out)
EPOCHS=${EPOCHS:-2}                      # the rankers' epochs
RANKER_PRECS=${RANKER_PRECS-fp32 bf16 fp16}
S2_PRECS=${S2_PRECS-bf16 fp16}
KIND_PREC=${KIND_PREC:-bf16}
S2_MAX=${S2_MAX:-300}                    # stage 2's training questions
KINDS=${KINDS-twin anchored-cross query-tower+cross cross}
CPU_REF=${CPU_REF:-1}                    # 0: no CPU reference runs (the GPU's fp32 ranker teaches stage 2)
S=examples/squad-mini
mkdir -p "$O"
: > "$O/timings.txt"
timed() {  # timed NAME COMMAND...: run it, log to OUT/NAME.log, append its seconds to timings.txt
    local name=$1 s=$EPOCHREALTIME
    shift
    if ! "$@" > "$O/$name.log" 2>&1; then
        tail -n 30 "$O/$name.log" >&2
        echo "$name: failed (log: $O/$name.log)" >&2
        exit 1
    fi
    awk -v n="$name" -v a="$s" -v b="$EPOCHREALTIME" 'BEGIN { printf "%s: %.1f s\n", n, b - a }' | tee -a "$O/timings.txt"
}
summary() { tee -a "$O/summary.txt"; }
: > "$O/summary.txt"
python3 -c "import torch; print('torch', torch.__version__, '| cuda', torch.cuda.is_available(), '|',
torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')" | summary

# 1. candidates
devices=("$GPU")
[ "$CPU_REF" = 0 ] || devices=(cpu "$GPU")
G=${GPU//:/}
R=cpu
[ "$CPU_REF" != 0 ] || R=$G
for d in "${devices[@]}"; do
    tag=${d//:/}
    timed "cands-$tag" $IDX candidates --corpus $S/corpus.jsonl --queries $S/train-queries.jsonl -n 10 \
        --out "$O/cands-$tag.jsonl" --device "$d"
    timed "base-$tag" $IDX candidates --corpus $S/corpus.jsonl --queries $S/test-queries.jsonl -n 20 \
        --out "$O/base-$tag.trec" --device "$d"
done
[ "$CPU_REF" = 0 ] || python3 - "$O/cands-cpu.jsonl" "$O/cands-$G.jsonl" <<'EOF' | summary
import json, sys
a, b = ([json.loads(line) for line in open(p)] for p in sys.argv[1:])
same = sum(x["cands"] == y["cands"] for x, y in zip(a, b))
diff = max(abs(s - t) for x, y in zip(a, b) for s, t in zip(x["scores"], y["scores"]) if x["cands"] == y["cands"])
print(f"candidates: {same}/{len(a)} lists identical on cpu and the GPU; largest score difference {diff:.2e}")
assert len(a) == len(b) and same >= len(a) - 2 and diff < 1e-4, "the GPU's candidates differ from the CPU's"
EOF
head -n "$N" "$O/cands-$R.jsonl" > "$O/train-lists.jsonl"
sed -n "$((N + 1)),$((N + 50))p" "$O/cands-$R.jsonl" > "$O/heldout.jsonl"

# 2. rankers
check() {  # check RANKER DEVICE: the ranker check's nDCG@10 and Acc@1 lines on the held-out lists
    $IDX label-report --ranker "$1" --candidates "$O/heldout.jsonl" --queries $S/train-queries.jsonl \
        --corpus $S/corpus.jsonl --device "$2" 2>> "$O/checks.log" | grep -E "^(nDCG@10|Acc@1) " | head -n 2 | sed "s|^|$1: |"
}
specs=()
[ "$CPU_REF" = 0 ] && specs+=("$GPU:fp32") || specs+=(cpu:fp32)
for p in $RANKER_PRECS; do [ "$CPU_REF:$p" = 0:fp32 ] || specs+=("$GPU:$p"); done
for spec in "${specs[@]}"; do
    d=${spec%:*} p=${spec##*:} tag=${spec//:/}
    timed "ranker-$tag" $IDX train-ranker --label-source gold-first --candidates "$O/train-lists.jsonl" \
        --queries $S/train-queries.jsonl --corpus $S/corpus.jsonl --out "$O/ranker-$tag" --epochs "$EPOCHS" \
        --lr 1e-4 --batch-size 16 --lexical-weight 30 --device "$d" --precision "$p" --no-progress
    check "$O/ranker-$tag" "$d" | summary
done
for kind in $KINDS; do
    timed "ranker-$kind" $IDX train-ranker --label-source gold-first --candidates "$O/train-lists.jsonl" \
        --queries $S/train-queries.jsonl --corpus $S/corpus.jsonl --out "$O/ranker-$kind" --epochs 1 \
        --lr 5e-5 --batch-size 8 --kind "$kind" --train-max-length 128 --device "$GPU" --precision "$KIND_PREC" --no-progress
    check "$O/ranker-$kind" "$GPU" | summary
done

# 3. stage 2 from the CPU-trained ranker (CPU_REF=0: the GPU's fp32 one)
s2=(--ranker "$O/ranker-${R}fp32" --queries $S/train-queries.jsonl --corpus $S/corpus.jsonl --epochs 1
    --max-length 256 --lr 5e-5 --batch-size 8 --n-candidates 10 --eval-every 0 --max-queries "$S2_MAX" --no-progress)
runs=(--run base="$O/base-$R.trec")
specs=()
[ "$CPU_REF" = 0 ] || specs+=(cpu:fp32)
for p in $S2_PRECS; do specs+=("$GPU:$p"); done
for spec in "${specs[@]}"; do
    d=${spec%:*} p=${spec##*:} tag=${spec//:/}
    timed "retriever-$tag" $IDX train-retriever "${s2[@]}" --out "$O/retriever-$tag" --device "$d" --precision "$p"
    timed "test-$tag" $IDX candidates --corpus $S/corpus.jsonl --queries $S/test-queries.jsonl -n 20 \
        --retriever "$O/retriever-$tag" --out "$O/test-$tag.trec" --device "$d"
    runs+=(--run "$tag=$O/test-$tag.trec")
done
if [[ $GPU == cuda* ]]; then
    timed "retriever-torchrun" python3 -m torch.distributed.run --standalone --nproc_per_node 1 -m intdistill train-retriever "${s2[@]}" \
        --out "$O/retriever-torchrun" --precision fp32
    timed "test-torchrun" $IDX candidates --corpus $S/corpus.jsonl --queries $S/test-queries.jsonl -n 20 \
        --retriever "$O/retriever-torchrun" --out "$O/test-torchrun.trec" --device "$GPU"
    runs+=(--run "torchrun-fp32=$O/test-torchrun.trec")
fi
$IDX evaluate --queries $S/test-queries.jsonl --corpus $S/corpus.jsonl "${runs[@]}" -m Acc@1 Acc@5 Acc@20 \
    --format markdown | summary
cat "$O/timings.txt"
