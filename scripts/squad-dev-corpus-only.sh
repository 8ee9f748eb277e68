#!/usr/bin/env bash
# Issue 14's SQuAD measurement, end to end: the corpus-only pipeline (examples/squad-dev-corpus-only.toml) on
# the shared SQuAD dev part's 1,458 paragraphs; where a check stops it before stage 2, stage 2 is forced by hand
# from the source-first ranker with the pipeline's own settings; the 300 test questions judge base vs
# source-first by their answers (Acc@k). No training question is read.
#   python scripts/make_squad_fixture.py --all-articles --n-train 1000 --n-test 300 --out work/squad-dev
#   bash scripts/squad-dev-corpus-only.sh            (WORK=work/squad-dev-corpus-only by default)
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-work/squad-dev-corpus-only}
DATA=work/squad-dev
intdistill run examples/squad-dev-corpus-only.toml --work "$WORK" --until evaluate || echo "pipeline exit $? (3: stopped by a check)"
if [ ! -f "$WORK/retriever-source-first/config.json" ]; then
  intdistill train-retriever --ranker "$WORK/ranker-gold-first" --queries "$WORK/generated-queries.jsonl" \
    --qrels "$WORK/generated-queries.qrels.tsv" --corpus "$DATA/corpus.jsonl" --out "$WORK/retriever-source-first" \
    --cache-dir "$WORK/emb-cache" --eval-every 0 --epochs 1 --max-length 128 --batch-size 8 --n-candidates 10 --dropout
fi
mkdir -p "$WORK/forced"
intdistill candidates --corpus "$DATA/corpus.jsonl" --queries "$DATA/test-queries.jsonl" \
  -n 20 --out "$WORK/forced/base.trec" --cache-dir "$WORK/emb-cache"
intdistill candidates --corpus "$DATA/corpus.jsonl" --queries "$DATA/test-queries.jsonl" \
  -n 20 --retriever "$WORK/retriever-source-first" --out "$WORK/forced/source-first.trec"
intdistill evaluate --queries "$DATA/test-queries.jsonl" --corpus "$DATA/corpus.jsonl" --run base="$WORK/forced/base.trec" \
  --run source-first="$WORK/forced/source-first.trec" -m Acc@1 Acc@5 Acc@20 --format markdown
