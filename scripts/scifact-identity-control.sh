#!/usr/bin/env bash
# Issue 11's first-stage control, isolated: stage 2 taught by a ranker that IS the first stage (the default
# composite ranker at step 0, never trained: 20·cos of all-MiniLM-L6-v2, its order exactly MiniLM's), over the
# 809 SciFact train queries (1 epoch, 10 mined candidates). Whatever this retriever gains or loses is stage 2's
# machinery alone: the teacher knows nothing the student does not, except what it reads past the student's
# training length. Run with the student's training passes at 128 tokens (the method's setting; the teacher
# reads 256) and, with LENGTHS="128 256", also at 256 (teacher and student read the same tokens); with
# DROPOUT="on off", also with the student's dropout off (`train-retriever --no-dropout`): at 256 tokens that
# student's gradient is zero, since the teacher's scores are its own.
#   bash scripts/scifact-identity-control.sh      (WORK=work/identity-control; finished steps are skipped)
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-work/identity-control}
LENGTHS=${LENGTHS:-128}
DROPOUT=${DROPOUT:-on}
DATA=../shared/data/scifact
IDX=${IDX:-intdistill}
mkdir -p "$WORK"
[ -f "$WORK/ranker-step0/intdistill_ranker.json" ] || python - "$WORK/ranker-step0" <<'PY'
import sys
from intdistill.models import Ranker
Ranker.build(device="cpu").save(sys.argv[1])  # the default kind, untrained: the first stage's order exactly
print(f"saved the untrained default ranker to {sys.argv[1]}", file=sys.stderr)
PY
[ -f "$WORK/base.trec" ] || $IDX candidates --corpus "$DATA/corpus.jsonl" --queries "$DATA/queries.jsonl" \
  --qrels "$DATA/qrels/test.tsv" -n 100 --out "$WORK/base.trec" --cache-dir "$WORK/emb-cache"
runs=(--run base="$WORK/base.trec")
for L in $LENGTHS; do
  for DO in $DROPOUT; do
    case $DO in
      on) name=$L; flag=--dropout ;;
      off) name=$L-no-dropout; flag=--no-dropout ;;
      *) echo "DROPOUT: expected words 'on' and/or 'off', got '$DO'" >&2; exit 2 ;;
    esac
    if [ ! -f "$WORK/retriever-$name/config.json" ]; then
      s=$(date +%s)
      $IDX train-retriever --ranker "$WORK/ranker-step0" --queries "$DATA/queries.jsonl" \
        --qrels "$DATA/qrels/train.tsv" --corpus "$DATA/corpus.jsonl" --out "$WORK/retriever-$name" \
        --cache-dir "$WORK/emb-cache" --eval-every 0 --epochs 1 --max-length "$L" --batch-size 8 --n-candidates 10 $flag
      echo "stage 2 at $L tokens, dropout $DO: $(( $(date +%s) - s )) s"
    fi
    [ -f "$WORK/identity-$name.trec" ] || $IDX candidates --corpus "$DATA/corpus.jsonl" \
      --queries "$DATA/queries.jsonl" --qrels "$DATA/qrels/test.tsv" -n 100 --retriever "$WORK/retriever-$name" \
      --out "$WORK/identity-$name.trec"
    runs+=(--run "identity-teacher-$name=$WORK/identity-$name.trec")
  done
done
$IDX evaluate --qrels "$DATA/qrels/test.tsv" "${runs[@]}" -m nDCG@10 R@100 RR@10 --format markdown
