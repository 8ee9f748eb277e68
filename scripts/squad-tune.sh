#!/usr/bin/env bash
# Gold-first rankers on the SQuAD dev part, chosen on training data only: each variant learns the first 800
# training lists of an `intdistill run examples/squad-dev.toml` work directory and is checked on the 200 held-out
# lists that run's ranker check used (questions 801-1,000). Variants named own-* take the gold from each
# question's own paragraph (the fixture's train-qrels.tsv) instead of answer containment, and are checked both
# ways (own paragraph; answers). Without that run directory, the same lists are made here by `intdistill
# candidates` (MiniLM's top 10 of each training question; the last 200 held out), with no LLM call.
#
# usage: scripts/squad-tune.sh [RUN_DIR] [SQUAD_DIR] [OUT]   (defaults work/squad-dev-run work/squad-dev work/squad-tune)
#        VARIANTS="own own-twin": only those (default: all). lex30 / own-lex30: the query tower with the lexical
#        term (--lexical-weight 30: BM25 fitted on the corpus, normalised per query); lexical-only: the untrained
#        query tower with that term (no labels: what BM25 alone adds), checked like the others
set -euo pipefail
W=${1:-work/squad-dev-run}
S=${2:-work/squad-dev}
O=${3:-work/squad-tune}
IDX=${IDX:-python -m intdistill}
VARIANTS=${VARIANTS:-}
mkdir -p "$O" "$W"
[ -f "$W/candidates.jsonl" ] || $IDX candidates --corpus "$S/corpus.jsonl" --queries "$S/train-queries.jsonl" -n 10 \
    --out "$W/candidates.jsonl" --cache-dir "$W/emb-cache"
[ -f "$W/ranker-check-gold-first.jsonl" ] || tail -n 200 "$W/candidates.jsonl" > "$W/ranker-check-gold-first.jsonl"
if { [ -z "$VARIANTS" ] || [[ " $VARIANTS " == *" lexical-only "* ]]; } && [ ! -f "$O/lexical-only/intdistill_ranker.json" ]; then
    python - "$S/corpus.jsonl" "$O/lexical-only" <<'EOF'
import sys
from intdistill import data
from intdistill.models import Ranker
corpus = data.load_corpus(sys.argv[1])
Ranker.build(lexical_weight=30, lexical_corpus=(p.full_text() for p in corpus.values())).save(sys.argv[2])
EOF
fi
for v in "lexical-only:" "top1:--listmle-top 1 --epochs 2 --lr 1e-4" "e4:--epochs 4 --lr 2e-4" "top1e4:--listmle-top 1 --epochs 4 --lr 2e-4" \
         "own:--epochs 2 --lr 1e-4" "own-e4:--epochs 4 --lr 2e-4" \
         "own-twin:--kind twin --epochs 1 --lr 5e-5 --batch-size 4 --train-max-length 128" \
         "lex30:--epochs 2 --lr 1e-4 --lexical-weight 30" "own-lex30:--epochs 2 --lr 1e-4 --lexical-weight 30"; do
    n=${v%%:*}
    a=${v#*:}
    [ -z "$VARIANTS" ] || [[ " $VARIANTS " == *" $n "* ]] || continue
    own=()
    [[ $n == own* ]] && own=(--qrels "$S/train-qrels.tsv")
    [ -f "$O/$n/train_summary.json" ] || [ "$n" = lexical-only ] || $IDX train-ranker --corpus "$S/corpus.jsonl" --queries "$S/train-queries.jsonl" \
        "${own[@]}" --label-source gold-first --candidates "$W/candidates.jsonl" --out "$O/$n" --max-queries 800 \
        --batch-size 16 --cache-dir "$W/emb-cache" --no-progress $a > "$O/$n.log" 2>&1
    for judge in own answers; do
        [[ $judge == own && $n != own* ]] && continue
        j=()
        [[ $judge == own ]] && j=(--qrels "$S/train-qrels.tsv")
        $IDX label-report --ranker "$O/$n" --candidates "$W/ranker-check-gold-first.jsonl" --queries "$S/train-queries.jsonl" \
            --corpus "$S/corpus.jsonl" --cache-dir "$W/emb-cache" "${j[@]}" 2>&1 | grep -E "judged|nDCG@10|Acc@1|verdict" \
            | sed "s/^/$n ($judge): /"
    done
done
