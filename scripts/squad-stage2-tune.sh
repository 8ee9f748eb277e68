#!/usr/bin/env bash
# Stage 2 on the SQuAD dev part, chosen on TRAINING questions only: each variant distils a ranker trained on the
# first 800 training questions (scripts/squad-tune.sh, e.g. lex30) over those same 800 questions (plus, for the
# x* variants, unlabelled extra questions), and is judged by retrieval over the whole corpus for the other 200
# training questions (Acc@1/5/20 by their answers, paired tests against the base all-MiniLM-L6-v2). The test
# questions are never read.
#   RANKER=work/squad-tune/lex30 bash scripts/squad-stage2-tune.sh [SQUAD_DIR] [OUT]
#   (defaults work/squad-dev work/squad-stage2-tune; VARIANTS="e1-128 e2-128": only those; finished runs are skipped)
#   The e1-256-* variants vary one setting of e1-256 each: the learning rate (default 2e-5), the teacher's
#   temperature (default 1) or the mined candidates (default 10). x2000-e1-256-lr5e-5 and e2-256-lr5e-5 add the
#   2,000 extra questions, or a second epoch, to the chosen e1-256-lr5e-5; e1-256-lr5e-5-tt2/-tt0.5 soften or
#   sharpen its teacher, and e1-256-lr5e-5-s1/-s2 repeat it with other seeds (how much one seed moves the score).
set -euo pipefail
cd "$(dirname "$0")/.."
S=${1:-work/squad-dev}
O=${2:-work/squad-stage2-tune}
RANKER=${RANKER:-work/squad-tune/lex30}
IDX=${IDX:-intdistill}
EMB=${EMB:-work/squad-dev-run/emb-cache}
VARIANTS=${VARIANTS:-e1-128 e2-128 e1-256 x2000-e1-128}
mkdir -p "$O"
[ -f "$O/train-800.jsonl" ] || head -n 800 "$S/train-queries.jsonl" > "$O/train-800.jsonl"
[ -f "$O/heldout-200.jsonl" ] || tail -n 200 "$S/train-queries.jsonl" > "$O/heldout-200.jsonl"
[ -f "$O/base.trec" ] || $IDX candidates --corpus "$S/corpus.jsonl" --queries "$O/heldout-200.jsonl" -n 20 \
  --out "$O/base.trec" --cache-dir "$EMB"
runs=(--run base="$O/base.trec")
for v in "e1-128:--epochs 1 --max-length 128" "e2-128:--epochs 2 --max-length 128" \
         "e1-256:--epochs 1 --max-length 256" \
         "e1-256-lr5e-5:--epochs 1 --max-length 256 --lr 5e-5" "e1-256-lr1e-4:--epochs 1 --max-length 256 --lr 1e-4" \
         "e1-256-tt2:--epochs 1 --max-length 256 --tau-teacher 2" "e1-256-n20:--epochs 1 --max-length 256 --n-candidates 20" \
         "x2000-e1-128:--epochs 1 --max-length 128 --extra-queries $S/extra-queries.jsonl" \
         "x2000-e1-256-lr5e-5:--epochs 1 --max-length 256 --lr 5e-5 --extra-queries $S/extra-queries.jsonl" \
         "e2-256-lr5e-5:--epochs 2 --max-length 256 --lr 5e-5" \
         "e1-256-lr5e-5-tt2:--epochs 1 --max-length 256 --lr 5e-5 --tau-teacher 2" \
         "e1-256-lr5e-5-tt0.5:--epochs 1 --max-length 256 --lr 5e-5 --tau-teacher 0.5" \
         "e1-256-lr5e-5-s1:--epochs 1 --max-length 256 --lr 5e-5 --seed 1" \
         "e1-256-lr5e-5-s2:--epochs 1 --max-length 256 --lr 5e-5 --seed 2"; do
  n=${v%%:*}
  a=${v#*:}
  [[ " $VARIANTS " == *" $n "* ]] || continue
  if [[ $n == x2000* ]] && [ ! -f "$S/extra-queries.jsonl" ]; then
    echo "$n: skipped: no $S/extra-queries.jsonl (make_squad_fixture.py ... --n-extra 2000 writes it)" >&2
    continue
  fi
  if [ ! -f "$O/$n/retriever/config.json" ]; then
    s=$(date +%s)
    # shellcheck disable=SC2086
    $IDX train-retriever --ranker "$RANKER" --queries "$O/train-800.jsonl" --corpus "$S/corpus.jsonl" \
      --out "$O/$n/retriever" --cache-dir "$EMB" --eval-every 0 --batch-size 8 --n-candidates 10 $a \
      > "$O/$n.log" 2>&1 || { tail -n 20 "$O/$n.log" >&2; echo "$n: stage 2 failed (log: $O/$n.log)" >&2; exit 1; }
    echo "$n: stage 2 $(( $(date +%s) - s )) s" | tee -a "$O/timings.txt"
  fi
  [ -f "$O/$n/heldout.trec" ] || $IDX candidates --corpus "$S/corpus.jsonl" --queries "$O/heldout-200.jsonl" -n 20 \
    --retriever "$O/$n/retriever" --out "$O/$n/heldout.trec"
  runs+=(--run "$n=$O/$n/heldout.trec")
done
$IDX evaluate --queries "$O/heldout-200.jsonl" --corpus "$S/corpus.jsonl" "${runs[@]}" -m Acc@1 Acc@5 Acc@20 \
  --format markdown
