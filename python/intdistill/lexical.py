"""A BM25 term for the ranker: exact word matches, which a small bi-encoder blurs.

``bm25(q, p) = Σ_{t ∈ q} idf(t) · tf(t, p) / (tf(t, p) + k1 · (1 − b + b · |p| / avgdl))``

with Lucene's ``idf(t) = ln(1 + (N − df(t) + 0.5) / (df(t) + 0.5))`` over the corpus it was fitted on (the
formula of Lucene ≥ 8, which drops the constant factor ``k1 + 1``, and ``bm25s``'s default; tests check it
against ``bm25s``). Terms are
lowercased word tokens of two or more characters (``bm25s``'s and scikit-learn's pattern), without Lucene's
English stop words, Snowball-stemmed (``PyStemmer``); each distinct query term counts once.

The ranker adds ``weight · bm25(q, p) / max_q`` where ``max_q = Σ_{t ∈ q} idf(t)`` is the score
no passage can reach (``tf → ∞``). The normalised score lies in ``[0, 1)``, does not depend on the other
passages of a list and is comparable across queries of different lengths, so one ``weight`` serves every
query and a score of one pair is the same wherever it is computed (training lists, stage 2, the check).

:class:`BM25` is fitted once on the corpus (:meth:`BM25.fit`) and saved with the ranker as a JSON file
(:meth:`BM25.save` / :meth:`BM25.load`): the vocabulary's document frequencies, the corpus size and mean
length, ``k1``, ``b`` and the tokenizer's settings. Scoring needs only the texts.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

FORMAT = 1
FILE = "intdistill_lexical.json"
TOKEN_PATTERN = r"(?u)\b\w\w+\b"
#: Lucene's EnglishAnalyzer default stop set (also ``bm25s``'s "en" list).
STOPWORDS_EN = frozenset((
    "a an and are as at be but by for if in into is it no not of on or such that the their then there these "
    "they this to was will with"
).split())
DEFAULT_K1 = 1.5
DEFAULT_B = 0.75


def check_weight(value, what: str) -> float:
    """``value`` as a float when it is a finite number >= 0 (a lexical weight), else a ValueError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise ValueError(f"{what}: expected a finite number >= 0, got {value!r}")
    return float(value)


def _stemmer(language: str | None):
    if language is None:
        return None
    try:
        import Stemmer
    except ImportError as exc:  # pragma: no cover - PyStemmer is a dependency
        raise ImportError("the lexical term stems with PyStemmer: pip install PyStemmer") from exc
    try:
        return Stemmer.Stemmer(language)
    except KeyError:
        raise ValueError(f"stemmer: PyStemmer has no {language!r} stemmer; expected one of "
                         f"{', '.join(Stemmer.algorithms())}, or none") from None


class BM25:
    """Corpus statistics and the scoring of :mod:`intdistill.lexical` (module docstring)."""

    def __init__(self, df: dict[str, int], n_docs: int, avgdl: float, *, k1: float = DEFAULT_K1,
                 b: float = DEFAULT_B, stemmer: str | None = "english", stopwords: bool = True):
        if not (isinstance(n_docs, int) and not isinstance(n_docs, bool) and n_docs >= 1):
            raise ValueError(f"n_docs: expected an int >= 1, got {n_docs!r}")
        for name, value, low in (("k1", k1, 0.0), ("avgdl", avgdl, 0.0)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (low < value < math.inf):
                raise ValueError(f"{name}: expected a finite number > {low}, got {value!r}")
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not 0.0 <= b <= 1.0:
            raise ValueError(f"b: expected a number in [0, 1], got {b!r}")
        self.df = df
        self.n_docs = n_docs
        self.avgdl = float(avgdl)
        self.k1 = float(k1)
        self.b = float(b)
        self.stemmer_name = stemmer
        self.stopwords = bool(stopwords)
        self._stemmer = _stemmer(stemmer)
        self._pattern = re.compile(TOKEN_PATTERN)
        self._tf_cache: dict[str, tuple[Counter, int]] = {}

    # ------------------------------------------------------------------ text
    def tokenize(self, text: str) -> list[str]:
        """The terms of ``text``: lowercased word tokens (2+ characters), stop words dropped, stemmed."""
        words = self._pattern.findall(text.lower())
        if self.stopwords:
            words = [w for w in words if w not in STOPWORDS_EN]
        if self._stemmer is not None and words:
            words = self._stemmer.stemWords(words)
        return words

    def idf(self, term: str) -> float:
        df = self.df.get(term, 0)
        return math.log(1.0 + (self.n_docs - df + 0.5) / (df + 0.5))

    # ------------------------------------------------------------------ fitting and saving
    @classmethod
    def fit(cls, texts: Iterable[str], **kwargs) -> "BM25":
        """Document frequencies and the mean length of ``texts`` (the corpus: title and text as the first
        stage embeds them). ``kwargs``: ``k1``, ``b``, ``stemmer``, ``stopwords``."""
        probe = cls({}, 1, 1.0, **kwargs)
        df: Counter = Counter()
        n = total = 0
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}]: expected str, got {type(text).__name__}")
            terms = probe.tokenize(text)
            df.update(set(terms))
            total += len(terms)
            n += 1
        if n == 0:
            raise ValueError("BM25.fit: expected at least one text, got none")
        return cls(dict(df), n, max(total / n, 1e-9), **kwargs)

    def to_json(self) -> dict:
        return {"format": FORMAT, "k1": self.k1, "b": self.b, "stemmer": self.stemmer_name,
                "stopwords": self.stopwords, "n_docs": self.n_docs, "avgdl": self.avgdl,
                "df": dict(sorted(self.df.items()))}

    def save(self, directory: str | os.PathLike) -> Path:
        path = Path(directory) / FILE
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_json()), encoding="utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "BM25":
        path = Path(directory) / FILE
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no lexical statistics (the ranker was saved with a lexical weight)"
                                    ) from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
            raise ValueError(f"{path}: format {got!r} is not supported; expected {FORMAT}")
        missing = [k for k in ("df", "n_docs", "avgdl", "k1", "b", "stemmer", "stopwords") if k not in meta]
        if missing:
            raise ValueError(f"{path}: missing field {missing[0]!r}")
        df, n_docs = meta["df"], meta["n_docs"]
        if not isinstance(df, dict) or not all(type(v) is int and 1 <= v <= (n_docs if type(n_docs) is int else 0)
                                               for v in df.values()):
            raise ValueError(f"{path}: df: expected an object of term -> document count in [1, n_docs]")
        if not isinstance(meta["stopwords"], bool):
            raise ValueError(f"{path}: stopwords: expected true or false, got {meta['stopwords']!r}")
        if meta["stemmer"] is not None and not isinstance(meta["stemmer"], str):
            raise ValueError(f"{path}: stemmer: expected a language name or null, got {meta['stemmer']!r}")
        try:
            return cls(df, n_docs, meta["avgdl"], k1=meta["k1"], b=meta["b"], stemmer=meta["stemmer"],
                       stopwords=meta["stopwords"])
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None

    # ------------------------------------------------------------------ scoring
    def _doc(self, text: str) -> tuple[Counter, int]:
        got = self._tf_cache.get(text)
        if got is None:
            terms = self.tokenize(text)
            got = (Counter(terms), len(terms))
            if len(self._tf_cache) < 1_000_000:
                self._tf_cache[text] = got
        return got

    def _query(self, query: str) -> list[tuple[str, float]]:
        return [(t, self.idf(t)) for t in dict.fromkeys(self.tokenize(query))]

    def scores(self, query: str, passages: Sequence[str]) -> np.ndarray:
        """Raw BM25 ``(len(passages),)`` float64 of one query against each passage."""
        terms = self._query(query)
        out = np.zeros(len(passages), dtype=np.float64)
        for i, text in enumerate(passages):
            tf, length = self._doc(text)
            norm = self.k1 * (1.0 - self.b + self.b * length / self.avgdl)
            out[i] = sum(idf * tf[t] / (tf[t] + norm) for t, idf in terms if t in tf)
        return out

    def max_score(self, query: str) -> float:
        """``Σ_{t ∈ q} idf(t)``: the bound no passage reaches (0 for a query without terms)."""
        return sum(idf for _, idf in self._query(query))

    def normalized(self, query: str, passages: Sequence[str]) -> np.ndarray:
        """``bm25 / max_q`` in ``[0, 1)`` (all 0 for a query without terms)."""
        top = self.max_score(query)
        raw = self.scores(query, passages)
        return raw / top if top > 0 else raw

    def normalized_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """:meth:`normalized` of each ``(query, passage)`` pair, float32 ``(len(pairs),)``, in input order."""
        out = np.zeros(len(pairs), dtype=np.float32)
        by_query: dict[str, list[int]] = {}
        for i, (q, _) in enumerate(pairs):
            by_query.setdefault(q, []).append(i)
        for q, rows in by_query.items():
            out[rows] = self.normalized(q, [pairs[i][1] for i in rows])
        return out

    def padded(self, queries: Sequence[str], lists: Sequence[Sequence[str]], width: int) -> np.ndarray:
        """:meth:`normalized` of each query against its list, float32 ``(len(queries), width)``, right-padded
        with 0."""
        out = np.zeros((len(queries), width), dtype=np.float32)
        for row, (query, texts) in enumerate(zip(queries, lists)):
            out[row, : len(texts)] = self.normalized(query, texts)
        return out
