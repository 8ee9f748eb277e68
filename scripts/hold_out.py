"""Hold out the last N generated queries (default 100) to judge by: writes OUT/heldout-queries.jsonl and
OUT/heldout-qrels.tsv (their source passages) from a generate-queries output and its qrels.

    python scripts/hold_out.py QUERIES.jsonl QRELS.tsv OUT_DIR [N]
"""

import sys

from intdistill import data

queries, qrels_file, out = sys.argv[1:4]
n = int(sys.argv[4]) if len(sys.argv) > 4 else 100
rows = [r for _, r in data.iter_jsonl(queries)]
qrels = data.load_qrels(qrels_file)
held = rows[-n:]
data.dump_jsonl(held, f"{out}/heldout-queries.jsonl")
data.save_qrels({r["_id"]: qrels[r["_id"]] for r in held}, f"{out}/heldout-qrels.tsv")
print(f"{len(rows)} generated queries: the first {len(rows) - len(held)} train, the last {len(held)} judge", file=sys.stderr)
