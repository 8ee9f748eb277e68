#!/usr/bin/env python3
"""Make examples/squad-mini/ (the data set README's first command runs on) from the shared SQuAD v1.1 dev part.

    python scripts/make_squad_fixture.py [--squad ../shared/data/squad-dev/dev-v1.1.part.json] [--out examples/squad-mini]
    python scripts/make_squad_fixture.py --all-articles --n-train 1000 --n-test 300 --out work/squad-dev   # issue 5's set

Takes every paragraph of eight whole articles (the passages, ids ``<title>#<paragraph index>`` as
``intdistill.data.load_squad`` names them) and splits their questions by a seeded shuffle into 300 training
and 100 test questions (each with its gold answers). Deterministic: the same input gives byte-identical files.
SQuAD is CC BY-SA 4.0 (Rajpurkar et al., 2016); the written README.md says so and what was changed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from pathlib import Path

ARTICLES = ("Sky_(United_Kingdom)", "Victoria_(Australia)", "1973_oil_crisis", "Packet_switching", "Black_Death",
            "Geology", "Amazon_rainforest", "Pharmacy")
N_TRAIN, N_TEST, SEED = 300, 100, 0

README = """# {name}: an open-domain QA set cut from SQuAD v1.1 dev

Made by `scripts/make_squad_fixture.py` from `../shared/data/squad-dev/dev-v1.1.part.json` (sha256 {sha}).

- `corpus.jsonl`: all {n_passages} paragraphs of {n_articles} SQuAD v1.1 dev articles ({articles}), one passage
  each: `{{"_id": "<title>#<paragraph index>", "title", "text"}}`.
- `train-queries.jsonl` ({n_train}) and `test-queries.jsonl` ({n_test}): questions of those paragraphs with their
  gold answer strings, `{{"_id", "text", "answers"}}`, split by a seeded shuffle (seed {seed}) of all {n_questions}
  questions. A question's own paragraph is its relevant passage (`train-qrels.tsv`, `test-qrels.tsv`: BEIR
  TSV, one line per question); retrieval is scored by answer containment (Acc@k), reading by SQuAD EM/F1.

Changes from the original: only these articles and a sample of their questions are kept; the JSON is
reshaped into the JSON Lines above. Text is unchanged.

License: CC BY-SA 4.0 (https://creativecommons.org/licenses/by-sa/4.0/). SQuAD: Pranav Rajpurkar, Jian Zhang,
Konstantin Lopyrev, Percy Liang, "SQuAD: 100,000+ Questions for Machine Comprehension of Text", EMNLP 2016.
These files are shared under the same license.
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--squad", default=str(Path(__file__).resolve().parents[1].parent / "shared/data/squad-dev/dev-v1.1.part.json"))
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "examples/squad-mini"))
    ap.add_argument("--all-articles", action="store_true",
                    help="every article of the input (e.g. the whole shared SQuAD part) instead of the eight")
    ap.add_argument("--n-train", type=int, default=N_TRAIN)
    ap.add_argument("--n-test", type=int, default=N_TEST)
    ap.add_argument("--n-extra", type=int, default=0,
                    help="also write extra-queries.jsonl: the next N questions of the same shuffle, after the test "
                         "ones (unlabelled training questions for stage 2; never test questions)")
    args = ap.parse_args(argv)
    raw = Path(args.squad).read_bytes()
    doc = json.loads(raw)
    by_title = {a["title"]: a for a in doc["data"]}
    articles = list(by_title) if args.all_articles else list(ARTICLES)
    missing = [t for t in articles if t not in by_title]
    if missing:
        print(f"error: {args.squad}: expected the articles {missing}, not found", file=sys.stderr)
        return 2
    passages, questions, own = [], [], {}
    for title in articles:
        for pi, para in enumerate(by_title[title]["paragraphs"]):
            passages.append({"_id": f"{title}#{pi}", "title": title.replace("_", " "), "text": para["context"]})
            for qa in para["qas"]:
                answers = list(dict.fromkeys(a["text"] for a in qa["answers"] if a["text"].strip()))
                if answers:
                    questions.append({"_id": qa["id"], "text": qa["question"], "answers": answers})
                    own[qa["id"]] = f"{title}#{pi}"
    order = list(range(len(questions)))
    random.Random(SEED).shuffle(order)
    if args.n_extra < 0 or args.n_train + args.n_test + args.n_extra > len(questions):
        print(f"error: expected at most {len(questions)} questions in all, got --n-train {args.n_train} + "
              f"--n-test {args.n_test} + --n-extra {args.n_extra}", file=sys.stderr)
        return 2
    train = [questions[i] for i in order[: args.n_train]]
    test = [questions[i] for i in order[args.n_train : args.n_train + args.n_test]]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("corpus.jsonl", passages), ("train-queries.jsonl", train), ("test-queries.jsonl", test)):
        with open(out / name, "w", encoding="utf-8", newline="\n") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    if args.n_extra:  # only when asked: the fixture's files stay byte-identical
        start = args.n_train + args.n_test
        with open(out / "extra-queries.jsonl", "w", encoding="utf-8", newline="\n") as f:
            for i in order[start : start + args.n_extra]:
                f.write(json.dumps(questions[i], ensure_ascii=False) + "\n")
    for name, rows in (("train-qrels.tsv", train), ("test-qrels.tsv", test)):  # each question's own paragraph
        with open(out / name, "w", encoding="utf-8", newline="\n") as f:
            f.write("query-id\tcorpus-id\tscore\n")
            f.writelines(f"{r['_id']}\t{own[r['_id']]}\t1\n" for r in rows)
    (out / "README.md").write_text(README.format(
        name=out.name, sha=hashlib.sha256(raw).hexdigest(), n_passages=len(passages), n_articles=len(articles),
        articles=", ".join(articles) if len(articles) <= 10 else f"all {len(articles)} of the input", n_train=len(train), n_test=len(test), seed=SEED, n_questions=len(questions)),
        encoding="utf-8")
    print(f"{len(passages)} passages, {len(train)} train and {len(test)} test questions -> {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
