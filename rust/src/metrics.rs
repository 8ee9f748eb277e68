//! Retrieval metrics with trec_eval's semantics, ANN recall, and Kendall's tau.
//!
//! # Conventions (those of trec_eval 9.x, as bundled by pytrec_eval)
//! - A query's ranking: scores are rounded to `f32` (trec_eval stores `float sim`), sorted descending;
//!   equal scores are ordered by doc id **descending** (`strcmp`, i.e. byte order of UTF-8, which is
//!   also Python's `str` order). [`score_key`] encodes the rounded score as an order-preserving `u32`.
//! - Relevance is an integer. A doc is *relevant* when `rel >= 1`; its gain is `rel`. Judged docs with
//!   `rel <= 0` (trec_eval reads negative as "in pool, unjudged") are not relevant and have no gain.
//! - `R` = number of relevant judged docs of the query (retrieved or not). `rank` is 1-based.
//! - `nDCG@k = DCG@k / IDCG@k`, `DCG@k = Σ_{rank<=k} rel / log2(rank + 1)`, IDCG@k the same over the
//!   query's positive judged rels sorted descending (trec_eval `ndcg_cut`); 0 when IDCG is 0.
//! - `R@k = |relevant in top k| / R` (0 when R = 0), `P@k = |relevant in top k| / k` (always divided
//!   by k, even when fewer than k docs are retrieved).
//! - `RR@k = 1 / rank of the first relevant doc` if that rank is <= k, else 0.
//! - `AP@k = Σ_{relevant at rank r <= k} (relevant in top r) / r  /  R` (trec_eval `map_cut`).
//! - `Success@k = 1` if a relevant doc is ranked <= k, else 0.
//!
//! A query with no relevant judged doc scores 0 on every measure (as trec_eval/pytrec_eval, which
//! keep it in the average). Which queries are averaged is the caller's policy (see `evaluate.py`).
//!
//! Two entry points compute the same numbers:
//! - [`evaluate_csr`]: queries as CSR arrays with *order-preserving* integer doc codes (code order ==
//!   doc id string order), so ties break without strings. Parallel over queries (rayon).
//! - the Python-facing `evaluate_dicts`, which reads `{qid: {docid: score}}` dicts directly: for each
//!   relevant retrieved doc it counts the docs that rank above it (no sorting, no doc id interning),
//!   and only touches doc id strings when scores tie exactly.

use rayon::prelude::*;

/// Which measure; the `k` cutoff lives in [`Measure`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Ndcg,
    Recall,
    Precision,
    RecipRank,
    AveragePrecision,
    Success,
}

impl Kind {
    /// The names the Python layer passes (`evaluate.py` maps `nDCG@10` etc. onto these).
    pub const NAMES: [(&'static str, Kind); 6] = [
        ("ndcg", Kind::Ndcg),
        ("recall", Kind::Recall),
        ("precision", Kind::Precision),
        ("rr", Kind::RecipRank),
        ("ap", Kind::AveragePrecision),
        ("success", Kind::Success),
    ];

    pub fn parse(name: &str) -> Result<Kind, String> {
        Kind::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, k)| *k)
            .ok_or_else(|| {
                let known: Vec<&str> = Kind::NAMES.iter().map(|(n, _)| *n).collect();
                format!(
                    "unknown measure kind {name:?}; expected one of {}",
                    known.join(", ")
                )
            })
    }
}

/// A measure at a cutoff `k >= 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Measure {
    pub kind: Kind,
    pub k: usize,
}

impl Measure {
    pub fn new(kind: Kind, k: usize) -> Result<Measure, String> {
        if k == 0 {
            return Err(format!("measure cutoff k must be >= 1, got k={k}"));
        }
        Ok(Measure { kind, k })
    }
}

/// The deepest rank any of `measures` looks at.
pub fn max_depth(measures: &[Measure]) -> usize {
    measures.iter().map(|m| m.k).max().unwrap_or(0)
}

/// Order-preserving `u32` of `score` rounded to `f32` (round to nearest, as C's `double -> float`).
/// `-0.0` and `0.0` map to the same key (they compare equal in C). NaN must be rejected before.
#[inline]
pub fn score_key(score: f64) -> u32 {
    let f = score as f32;
    let f = if f == 0.0 { 0.0f32 } else { f };
    let b = f.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// Values of `measures` for one query.
///
/// `hits`: `(rank, rel)` of every retrieved doc with `rel >= 1`, ranks 1-based, sorted ascending
/// (only ranks `<= max_depth(measures)` matter). `ideal`: the query's judged rels `>= 1`, sorted
/// descending (so `R = ideal.len()`). Writes one value per measure into `out`.
/// Sums run in rank order with `rel / log2(rank + 1)` terms, as trec_eval does.
pub fn query_values(hits: &[(u64, i64)], ideal: &[i64], measures: &[Measure], out: &mut [f64]) {
    let n_rel = ideal.len();
    for (m, slot) in measures.iter().zip(out.iter_mut()) {
        let k = m.k as u64;
        let within = hits.iter().take_while(|(r, _)| *r <= k);
        *slot = match m.kind {
            Kind::Ndcg => {
                let dcg: f64 =
                    within.fold(0.0, |s, &(r, g)| s + g as f64 / ((r + 1) as f64).log2());
                let idcg: f64 = ideal
                    .iter()
                    .take(m.k)
                    .enumerate()
                    .fold(0.0, |s, (i, &g)| s + g as f64 / ((i + 2) as f64).log2());
                if idcg > 0.0 {
                    dcg / idcg
                } else {
                    0.0
                }
            }
            Kind::Recall => {
                if n_rel == 0 {
                    0.0
                } else {
                    within.count() as f64 / n_rel as f64
                }
            }
            Kind::Precision => within.count() as f64 / m.k as f64,
            Kind::RecipRank => hits
                .first()
                .filter(|(r, _)| *r <= k)
                .map_or(0.0, |&(r, _)| 1.0 / r as f64),
            Kind::AveragePrecision => {
                if n_rel == 0 {
                    0.0
                } else {
                    let sum = within
                        .enumerate()
                        .fold(0.0, |s, (j, &(r, _))| s + (j + 1) as f64 / r as f64);
                    sum / n_rel as f64
                }
            }
            Kind::Success => {
                if hits.first().is_some_and(|(r, _)| *r <= k) {
                    1.0
                } else {
                    0.0
                }
            }
        };
    }
}

/// Positive rels of `rels`, sorted descending: the ideal ranking's gains.
pub fn ideal_gains(rels: impl Iterator<Item = i64>) -> Vec<i64> {
    let mut g: Vec<i64> = rels.filter(|&r| r >= 1).collect();
    g.sort_unstable_by(|a, b| b.cmp(a));
    g
}

/// Checks CSR offsets: `offsets[0] == 0`, non-decreasing, last == `len`. `what` names the array.
pub fn check_offsets(offsets: &[i64], len: usize, what: &str) -> Result<(), String> {
    if offsets.is_empty() {
        return Err(format!(
            "{what}: offsets must have n_queries + 1 >= 1 entries, got 0"
        ));
    }
    if offsets[0] != 0 {
        return Err(format!("{what}: offsets[0] must be 0, got {}", offsets[0]));
    }
    for (i, w) in offsets.windows(2).enumerate() {
        if w[1] < w[0] {
            return Err(format!(
                "{what}: offsets must be non-decreasing, got offsets[{}]={} > offsets[{}]={}",
                i,
                w[0],
                i + 1,
                w[1]
            ));
        }
    }
    let last = *offsets.last().unwrap();
    if last != len as i64 {
        return Err(format!(
            "{what}: offsets[-1] must equal the number of entries {len}, got {last}"
        ));
    }
    Ok(())
}

/// Qrels and run of `n` queries as CSR arrays sharing one doc code space.
///
/// Query `i`'s judgements are `qrels_docs/qrels_rels[qrels_offsets[i]..qrels_offsets[i+1]]` and its
/// results `run_docs/run_scores[run_offsets[i]..run_offsets[i+1]]`. Doc codes must be in `[0, 2^32)`
/// and ordered as the doc id strings are (e.g. rank of the id in the sorted vocabulary): equal
/// scores then break by code, descending, exactly as trec_eval breaks them by id. A doc may appear
/// at most once per query in the qrels (checked) and in the run (the caller's contract).
pub struct CsrInput<'a> {
    pub qrels_offsets: &'a [i64],
    pub qrels_docs: &'a [i64],
    pub qrels_rels: &'a [i64],
    pub run_offsets: &'a [i64],
    pub run_docs: &'a [i64],
    pub run_scores: &'a [f64],
}

impl CsrInput<'_> {
    /// Validates shapes, offsets, codes and scores; returns the number of queries.
    pub fn validate(&self) -> Result<usize, String> {
        if self.qrels_docs.len() != self.qrels_rels.len() {
            return Err(format!(
                "qrels_docs and qrels_rels must have the same length, got {} and {}",
                self.qrels_docs.len(),
                self.qrels_rels.len()
            ));
        }
        if self.run_docs.len() != self.run_scores.len() {
            return Err(format!(
                "run_docs and run_scores must have the same length, got {} and {}",
                self.run_docs.len(),
                self.run_scores.len()
            ));
        }
        if self.qrels_offsets.len() != self.run_offsets.len() {
            return Err(format!(
                "qrels_offsets and run_offsets must have the same length (n_queries + 1), got {} and {}",
                self.qrels_offsets.len(),
                self.run_offsets.len()
            ));
        }
        check_offsets(self.qrels_offsets, self.qrels_docs.len(), "qrels")?;
        check_offsets(self.run_offsets, self.run_docs.len(), "run")?;
        for (name, docs) in [("qrels_docs", self.qrels_docs), ("run_docs", self.run_docs)] {
            if let Some((i, &d)) = docs
                .iter()
                .enumerate()
                .find(|(_, &d)| !(0..=u32::MAX as i64).contains(&d))
            {
                return Err(format!(
                    "{name}[{i}]: doc codes must be in [0, 2^32), got {d}"
                ));
            }
        }
        if let Some(i) = self.run_scores.iter().position(|s| s.is_nan()) {
            return Err(format!("run_scores[{i}]: scores must be numbers, got NaN"));
        }
        Ok(self.qrels_offsets.len() - 1)
    }
}

/// Per-thread scratch buffers for [`csr_query`].
#[derive(Default)]
pub struct CsrScratch {
    judged: Vec<(u32, i64)>,
    keys: Vec<u64>,
    hits: Vec<(u64, i64)>,
}

/// Values of one query of a validated [`CsrInput`] (see there). Selects the top `max_depth` docs by
/// `(f32 score, code)` descending, then looks each one's rel up in the sorted judgements.
pub fn csr_query(
    input: &CsrInput<'_>,
    q: usize,
    measures: &[Measure],
    depth: usize,
    scratch: &mut CsrScratch,
    out: &mut [f64],
) -> Result<(), String> {
    let (qa, qb) = (
        input.qrels_offsets[q] as usize,
        input.qrels_offsets[q + 1] as usize,
    );
    let (ra, rb) = (
        input.run_offsets[q] as usize,
        input.run_offsets[q + 1] as usize,
    );
    let judged = &mut scratch.judged;
    judged.clear();
    judged.extend(
        input.qrels_docs[qa..qb]
            .iter()
            .zip(&input.qrels_rels[qa..qb])
            .map(|(&d, &r)| (d as u32, r)),
    );
    judged.sort_unstable_by_key(|&(d, _)| d);
    if let Some(w) = judged.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(format!(
            "qrels of query {q}: doc code {} is judged twice",
            w[0].0
        ));
    }
    let ideal = ideal_gains(judged.iter().map(|&(_, r)| r));

    let keys = &mut scratch.keys;
    keys.clear();
    keys.extend(
        input.run_docs[ra..rb]
            .iter()
            .zip(&input.run_scores[ra..rb])
            .map(|(&d, &s)| ((score_key(s) as u64) << 32) | d as u64),
    );
    if keys.len() > depth {
        keys.select_nth_unstable_by(depth - 1, |a, b| b.cmp(a));
        keys.truncate(depth);
    }
    keys.sort_unstable_by(|a, b| b.cmp(a));

    let hits = &mut scratch.hits;
    hits.clear();
    if !ideal.is_empty() {
        for (i, &key) in keys.iter().enumerate() {
            let code = key as u32;
            if let Ok(p) = judged.binary_search_by_key(&code, |&(d, _)| d) {
                if judged[p].1 >= 1 {
                    hits.push((i as u64 + 1, judged[p].1));
                }
            }
        }
    }
    query_values(hits, &ideal, measures, out);
    Ok(())
}

/// All queries of `input`: a row-major `(n_queries, measures.len())` matrix. Parallel over queries.
pub fn evaluate_csr(input: &CsrInput<'_>, measures: &[Measure]) -> Result<Vec<f64>, String> {
    let n = input.validate()?;
    let nm = measures.len();
    let depth = max_depth(measures);
    let mut values = vec![0.0; n * nm];
    if nm == 0 {
        return Ok(values);
    }
    values
        .par_chunks_mut(nm)
        .enumerate()
        .try_for_each_init(CsrScratch::default, |scratch, (q, row)| {
            csr_query(input, q, measures, depth, scratch, row)
        })?;
    Ok(values)
}

/// For each relevant retrieved doc (its key in `hit_keys`), `(n_above, n_equal)` among the query's
/// score keys `keys`: how many keys are strictly greater, and how many are equal *besides itself*
/// (those tie on the rounded score and must be ordered by doc id).
pub fn count_above(keys: &[u32], hit_keys: &[u32]) -> Vec<(u64, u64)> {
    hit_keys
        .iter()
        .map(|&h| {
            let above = keys.iter().filter(|&&k| k > h).count() as u64;
            let equal = keys.iter().filter(|&&k| k == h).count() as u64;
            (above, equal.saturating_sub(1))
        })
        .collect()
}

/// One query of the counting form: relevant retrieved docs as `(key, rel)` and their ranks.
#[derive(Clone, Debug, Default)]
pub struct CountedQuery {
    /// `(rank, rel)` of relevant retrieved docs; ranks filled by [`count_ranks`] (before ties).
    pub hits: Vec<(u64, i64)>,
    /// Indices into `hits` whose rank still needs the doc id tie-break (equal rounded scores).
    pub tied: Vec<usize>,
}

/// Counting form of the ranking: `keys` are the query's score keys, `hit_keys` those of its relevant
/// retrieved docs (with `hit_rels`). Returns the ranks ignoring ties (`1 + n_above`) and which hits
/// tie with other docs.
pub fn count_ranks(keys: &[u32], hit_keys: &[u32], hit_rels: &[i64]) -> CountedQuery {
    let counts = count_above(keys, hit_keys);
    let mut cq = CountedQuery::default();
    for (i, ((above, equal), &rel)) in counts.into_iter().zip(hit_rels).enumerate() {
        cq.hits.push((above + 1, rel));
        if equal > 0 {
            cq.tied.push(i);
        }
    }
    cq
}

/// Kendall's tau between two rankings of the same items.
///
/// `a` and `b` list the same distinct item ids, best first. With no ties possible (a permutation),
/// tau-a = tau-b = `(concordant - discordant) / (n (n - 1) / 2)`, computed in `O(n log n)` by counting
/// inversions. `n >= 2` is required (tau is undefined for fewer items).
pub fn kendall_tau(a: &[i64], b: &[i64]) -> Result<f64, String> {
    let n = a.len();
    if b.len() != n {
        return Err(format!(
            "the two rankings must have the same length, got {} and {}",
            n,
            b.len()
        ));
    }
    if n < 2 {
        return Err(format!("Kendall's tau needs at least 2 items, got {n}"));
    }
    // position of each item in `b`
    let mut b_pos: Vec<(i64, usize)> = b.iter().copied().enumerate().map(|(i, x)| (x, i)).collect();
    b_pos.sort_unstable();
    if let Some(w) = b_pos.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(format!("second ranking lists item {} twice", w[0].0));
    }
    let mut seq = Vec::with_capacity(n);
    for &x in a {
        match b_pos.binary_search_by_key(&x, |&(item, _)| item) {
            Ok(p) => seq.push(b_pos[p].1),
            Err(_) => {
                return Err(format!(
                    "item {x} of the first ranking is missing from the second"
                ))
            }
        }
    }
    // `a` has n entries, each found in `b` (n distinct): a duplicate in `a` would leave an item of `b`
    // unmatched, which shows up as a repeated position.
    let mut seen = vec![false; n];
    for (&p, &x) in seq.iter().zip(a) {
        if std::mem::replace(&mut seen[p], true) {
            return Err(format!("first ranking lists item {x} twice"));
        }
    }
    let inversions = count_inversions(&mut seq);
    let pairs = (n as f64) * (n as f64 - 1.0) / 2.0;
    Ok((pairs - 2.0 * inversions as f64) / pairs)
}

/// Number of pairs `i < j` with `v[i] > v[j]` (merge sort; sorts `v`).
pub fn count_inversions(v: &mut [usize]) -> u64 {
    let mut buf = v.to_vec();
    fn rec(v: &mut [usize], buf: &mut [usize]) -> u64 {
        let n = v.len();
        if n < 2 {
            return 0;
        }
        let mid = n / 2;
        let mut inv = rec(&mut v[..mid], &mut buf[..mid]) + rec(&mut v[mid..], &mut buf[mid..]);
        let (mut i, mut j, mut o) = (0, mid, 0);
        while i < mid && j < n {
            if v[i] <= v[j] {
                buf[o] = v[i];
                i += 1;
            } else {
                buf[o] = v[j];
                inv += (mid - i) as u64;
                j += 1;
            }
            o += 1;
        }
        buf[o..o + mid - i].copy_from_slice(&v[i..mid]);
        o += mid - i;
        buf[o..o + n - j].copy_from_slice(&v[j..n]);
        v.copy_from_slice(&buf[..n]);
        inv
    }
    rec(v, &mut buf)
}

/// ANN recall@k of one query: `|set(approx[..k]) ∩ set(exact[..k])| / k`. Negative ids are padding
/// (e.g. a search that found fewer than k results) and never match. Requires `k <= len` of both.
pub fn ann_recall_row(approx: &[i64], exact: &[i64], k: usize) -> f64 {
    let mut a: Vec<i64> = approx[..k].iter().copied().filter(|&x| x >= 0).collect();
    let mut e: Vec<i64> = exact[..k].iter().copied().filter(|&x| x >= 0).collect();
    a.sort_unstable();
    a.dedup();
    e.sort_unstable();
    e.dedup();
    let (mut i, mut j, mut hit) = (0, 0, 0usize);
    while i < a.len() && j < e.len() {
        match a[i].cmp(&e[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                hit += 1;
                i += 1;
                j += 1;
            }
        }
    }
    hit as f64 / k as f64
}

/// ANN recall@k per query for row-major `approx (nq, wa)` and `exact (nq, we)`; parallel over rows.
pub fn ann_recall(
    approx: &[i64],
    wa: usize,
    exact: &[i64],
    we: usize,
    k: usize,
) -> Result<Vec<f64>, String> {
    if k == 0 {
        return Err(format!("k must be >= 1, got k={k}"));
    }
    if k > wa || k > we {
        return Err(format!(
            "k={k} exceeds the result width: approx has {wa} columns, exact has {we}"
        ));
    }
    let nq = approx.len() / wa;
    if exact.len() / we != nq {
        return Err(format!(
            "approx and exact must have the same number of rows, got {} and {}",
            nq,
            exact.len() / we
        ));
    }
    Ok((0..nq)
        .into_par_iter()
        .map(|q| {
            ann_recall_row(
                &approx[q * wa..(q + 1) * wa],
                &exact[q * we..(q + 1) * we],
                k,
            )
        })
        .collect())
}

#[cfg(feature = "python")]
mod py {
    use super::*;
    use numpy::{
        PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2,
        PyUntypedArrayMethods,
    };
    use pyo3::exceptions::PyValueError;
    use pyo3::prelude::*;
    use pyo3::types::{PyDict, PyList};

    /// `(qids, values (n_queries, n_measures), n_missing, n_ignored)`
    type DictsResult<'py> = (Bound<'py, PyList>, Bound<'py, PyArray2<f64>>, usize, usize);
    /// `(offsets, docs, scores)`
    type RunCsr<'py> = (
        Bound<'py, PyArray1<i64>>,
        Bound<'py, PyArray1<i64>>,
        Bound<'py, PyArray1<f64>>,
    );

    fn parse_measures(measures: Vec<(String, usize)>) -> PyResult<Vec<Measure>> {
        measures
            .into_iter()
            .map(|(name, k)| Kind::parse(&name).and_then(|kind| Measure::new(kind, k)))
            .collect::<Result<_, _>>()
            .map_err(PyValueError::new_err)
    }

    fn matrix<'py>(
        py: Python<'py>,
        values: Vec<f64>,
        rows: usize,
        cols: usize,
    ) -> PyResult<Bound<'py, PyArray2<f64>>> {
        PyArray1::from_vec(py, values).reshape([rows, cols])
    }

    /// evaluate_csr(qrels_offsets, qrels_docs, qrels_rels, run_offsets, run_docs, run_scores, measures)
    /// -> float64 array (n_queries, n_measures)
    ///
    /// Queries as CSR arrays (int64 offsets of length n_queries + 1) sharing one order-preserving doc
    /// code space (code order == doc id string order; codes in [0, 2^32)); `measures` is a list of
    /// `(kind, k)` with kind in ndcg, recall, precision, rr, ap, success. Runs without the GIL,
    /// parallel over queries.
    #[pyfunction(name = "evaluate_csr")]
    #[allow(clippy::too_many_arguments)]
    fn py_evaluate_csr<'py>(
        py: Python<'py>,
        qrels_offsets: PyReadonlyArray1<'py, i64>,
        qrels_docs: PyReadonlyArray1<'py, i64>,
        qrels_rels: PyReadonlyArray1<'py, i64>,
        run_offsets: PyReadonlyArray1<'py, i64>,
        run_docs: PyReadonlyArray1<'py, i64>,
        run_scores: PyReadonlyArray1<'py, f64>,
        measures: Vec<(String, usize)>,
    ) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let measures = parse_measures(measures)?;
        let input = CsrInput {
            qrels_offsets: qrels_offsets.as_slice()?,
            qrels_docs: qrels_docs.as_slice()?,
            qrels_rels: qrels_rels.as_slice()?,
            run_offsets: run_offsets.as_slice()?,
            run_docs: run_docs.as_slice()?,
            run_scores: run_scores.as_slice()?,
        };
        let nm = measures.len();
        let values = py
            .detach(|| super::evaluate_csr(&input, &measures))
            .map_err(PyValueError::new_err)?;
        let nq = input.qrels_offsets.len() - 1;
        matrix(py, values, nq, nm)
    }

    fn score_of(
        qid: &Bound<'_, PyAny>,
        doc: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<f64> {
        match value.extract::<f64>() {
            Ok(s) if !s.is_nan() => Ok(s),
            _ => Err(PyValueError::new_err(format!(
                "run[{}][{}]: score must be a number, got {}",
                qid.repr()?,
                doc.repr()?,
                value.repr()?
            ))),
        }
    }

    /// Appends the score keys of all values of `results` to `keys`.
    ///
    /// Fast path: the values are copied into a list through the values view (iterating the dict
    /// itself reads every key's cached hash, a cache miss per result when doc id strings are shared
    /// across queries, which made this 2-3x slower) and read through borrowed pointers while they are
    /// exact `float`s; no Python code runs meanwhile. Any other value (int, numpy scalar, NaN, a
    /// non-number) sends the whole query through the checked path, which converts with `float()`
    /// semantics and names the bad value.
    fn push_keys(
        qid: &Bound<'_, PyAny>,
        results: &Bound<'_, PyDict>,
        keys: &mut Vec<u32>,
    ) -> PyResult<()> {
        let start = keys.len();
        // list(results.values()): the values view iterator reads entries without touching the keys
        // (PyDict_Values and PyDict_Next read each key's hash on CPython 3.11)
        let view = results.call_method0(pyo3::intern!(results.py(), "values"))?;
        // SAFETY: PySequence_List returns a new reference or NULL with an exception set.
        let values = unsafe {
            Bound::from_owned_ptr_or_err(results.py(), pyo3::ffi::PySequence_List(view.as_ptr()))?
        };
        let values = values.cast_into::<PyList>().map_err(PyErr::from)?;
        let n = values.len();
        keys.reserve(n);
        let mut all_floats = true;
        for i in 0..n {
            // SAFETY: the GIL is held and `values` is a list we own of length n; PyList_GetItem
            // returns a borrowed reference kept alive by the list.
            let value =
                unsafe { pyo3::ffi::PyList_GetItem(values.as_ptr(), i as pyo3::ffi::Py_ssize_t) };
            if value.is_null() || unsafe { pyo3::ffi::PyFloat_CheckExact(value) } == 0 {
                all_floats = false;
                break;
            }
            let s = unsafe { pyo3::ffi::PyFloat_AsDouble(value) };
            if s.is_nan() {
                all_floats = false;
                break;
            }
            keys.push(score_key(s));
        }
        if !all_floats {
            keys.truncate(start);
            for (doc, value) in results.iter() {
                keys.push(score_key(score_of(qid, &doc, &value)?));
            }
        }
        Ok(())
    }

    fn as_dict<'a, 'py>(
        obj: &'a Bound<'py, PyAny>,
        what: impl FnOnce() -> PyResult<String>,
    ) -> PyResult<&'a Bound<'py, PyDict>> {
        obj.cast::<PyDict>().map_err(|_| {
            let type_name = obj
                .get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_else(|_| "?".into());
            match what() {
                Ok(w) => PyValueError::new_err(format!("{w} must be a dict, got {type_name}")),
                Err(e) => e,
            }
        })
    }

    /// evaluate_dicts(qrels, run, measures) -> (qids, values, n_missing, n_ignored)
    ///
    /// `qrels` `{qid: {docid: int rel}}`, `run` `{qid: {docid: score}}` (dicts or dict subclasses).
    /// Scores every query of `qrels` that has at least one judgement, in qrels order: `qids` (list) and
    /// `values` (float64 `(len(qids), n_measures)`). A judged query absent from `run` scores 0
    /// (`n_missing` counts them); run queries with no judgements are not scored (`n_ignored`).
    /// Reads the dicts with the GIL held, then ranks relevant docs by counting, without the GIL,
    /// parallel over queries; exact score ties are broken by comparing doc id strings.
    #[pyfunction(name = "evaluate_dicts")]
    fn py_evaluate_dicts<'py>(
        py: Python<'py>,
        qrels: &Bound<'py, PyAny>,
        run: &Bound<'py, PyAny>,
        measures: Vec<(String, usize)>,
    ) -> PyResult<DictsResult<'py>> {
        let measures = parse_measures(measures)?;
        let qrels = as_dict(qrels, || Ok("qrels".to_string()))?;
        let run = as_dict(run, || Ok("run".to_string()))?;
        let nm = measures.len();

        // Phase 1 (GIL): read the dicts into flat buffers.
        let qids = PyList::empty(py);
        let mut run_dicts: Vec<Option<Bound<'py, PyDict>>> = Vec::new();
        let mut hit_docs: Vec<Bound<'py, PyAny>> = Vec::new(); // doc id of each relevant retrieved doc
        let mut keys: Vec<u32> = Vec::new(); // score keys of all results of queries with hits
        let mut key_off: Vec<usize> = vec![0];
        let mut hit_keys: Vec<u32> = Vec::new();
        let mut hit_rels: Vec<i64> = Vec::new();
        let mut hit_off: Vec<usize> = vec![0];
        let mut ideal: Vec<i64> = Vec::new();
        let mut ideal_off: Vec<usize> = vec![0];
        let mut n_missing = 0usize;
        let mut positive: Vec<(Bound<'py, PyAny>, i64)> = Vec::new();
        for (qid, judged) in qrels.iter() {
            let judged = as_dict(&judged, || Ok(format!("qrels[{}]", qid.repr()?)))?;
            if judged.is_empty() {
                continue;
            }
            positive.clear();
            for (doc, rel) in judged.iter() {
                let rel: i64 = rel.extract().map_err(|_| {
                    let msg = || -> PyResult<String> {
                        Ok(format!(
                            "qrels[{}][{}]: relevance must be an integer, got {}",
                            qid.repr()?,
                            doc.repr()?,
                            rel.repr()?
                        ))
                    };
                    match msg() {
                        Ok(m) => PyValueError::new_err(m),
                        Err(e) => e,
                    }
                })?;
                if rel >= 1 {
                    positive.push((doc, rel));
                }
            }
            let mut gains: Vec<i64> = positive.iter().map(|(_, r)| *r).collect();
            gains.sort_unstable_by(|a, b| b.cmp(a));
            ideal.extend_from_slice(&gains);
            ideal_off.push(ideal.len());
            qids.append(&qid)?;

            let results = match run.get_item(&qid)? {
                None => {
                    n_missing += 1;
                    None
                }
                Some(r) => Some(as_dict(&r, || Ok(format!("run[{}]", qid.repr()?)))?.clone()),
            };
            if let Some(results) = &results {
                let before = hit_keys.len();
                for (doc, rel) in positive.iter() {
                    if let Some(value) = results.get_item(doc)? {
                        hit_keys.push(score_key(score_of(&qid, doc, &value)?));
                        hit_rels.push(*rel);
                        hit_docs.push(doc.clone());
                    }
                }
                let start = keys.len();
                push_keys(&qid, results, &mut keys)?;
                if hit_keys.len() == before {
                    // nothing relevant retrieved: every measure is 0 (the scores were still validated)
                    keys.truncate(start);
                }
            }
            key_off.push(keys.len());
            hit_off.push(hit_keys.len());
            run_dicts.push(results);
        }
        let nq = run_dicts.len();
        let mut n_ignored = 0usize;
        for qid in run.keys() {
            match qrels.get_item(&qid)? {
                Some(j) if j.len().unwrap_or(0) > 0 => {}
                _ => n_ignored += 1,
            }
        }

        // Phase 2 (no GIL, parallel): ranks of relevant retrieved docs by counting.
        let mut counted: Vec<CountedQuery> = py.detach(|| {
            (0..nq)
                .into_par_iter()
                .map(|q| {
                    let (ha, hb) = (hit_off[q], hit_off[q + 1]);
                    count_ranks(
                        &keys[key_off[q]..key_off[q + 1]],
                        &hit_keys[ha..hb],
                        &hit_rels[ha..hb],
                    )
                })
                .collect()
        });

        // Phase 3 (GIL, rare): exact score ties, broken by doc id descending (Python str order ==
        // UTF-8 byte order == strcmp).
        for (q, cq) in counted.iter_mut().enumerate() {
            if cq.tied.is_empty() {
                continue;
            }
            let results = run_dicts[q]
                .as_ref()
                .expect("a query with hits has results");
            let qid = qids.get_item(q)?;
            for &h in &cq.tied {
                let (key, doc) = (hit_keys[hit_off[q] + h], &hit_docs[hit_off[q] + h]);
                for (other, value) in results.iter() {
                    if score_key(score_of(&qid, &other, &value)?) == key && other.gt(doc)? {
                        cq.hits[h].0 += 1;
                    }
                }
            }
        }

        // Phase 4 (no GIL, parallel): measure values.
        let mut values = vec![0.0; nq * nm];
        py.detach(|| {
            if nm == 0 {
                return;
            }
            values
                .par_chunks_mut(nm)
                .zip(counted.par_iter_mut())
                .enumerate()
                .for_each(|(q, (row, cq))| {
                    cq.hits.sort_unstable();
                    query_values(
                        &cq.hits,
                        &ideal[ideal_off[q]..ideal_off[q + 1]],
                        &measures,
                        row,
                    );
                });
        });
        Ok((qids, matrix(py, values, nq, nm)?, n_missing, n_ignored))
    }

    /// run_csr(qids, run, codes) -> (offsets int64 (len(qids)+1,), docs int64, scores float64)
    ///
    /// The results of each query of `qids` (in that order; an absent query has none) as CSR arrays:
    /// doc ids mapped through the dict `codes` (doc id -> int code), scores as float64 (finite or
    /// infinite numbers; NaN and non-numbers are rejected, naming the query and doc).
    #[pyfunction(name = "run_csr")]
    fn py_run_csr<'py>(
        py: Python<'py>,
        qids: &Bound<'py, PyList>,
        run: &Bound<'py, PyAny>,
        codes: &Bound<'py, PyDict>,
    ) -> PyResult<RunCsr<'py>> {
        let run = as_dict(run, || Ok("run".to_string()))?;
        let mut offsets: Vec<i64> = Vec::with_capacity(qids.len() + 1);
        offsets.push(0);
        let mut docs: Vec<i64> = Vec::new();
        let mut scores: Vec<f64> = Vec::new();
        for qid in qids.iter() {
            if let Some(results) = run.get_item(&qid)? {
                let results = as_dict(&results, || Ok(format!("run[{}]", qid.repr()?)))?;
                docs.reserve(results.len());
                scores.reserve(results.len());
                for (doc, value) in results.iter() {
                    let code = match codes.get_item(&doc)? {
                        Some(c) => c.extract::<i64>()?,
                        None => {
                            return Err(PyValueError::new_err(format!(
                                "run[{}][{}]: doc id has no code",
                                qid.repr()?,
                                doc.repr()?
                            )))
                        }
                    };
                    docs.push(code);
                    scores.push(score_of(&qid, &doc, &value)?);
                }
            }
            offsets.push(docs.len() as i64);
        }
        Ok((
            PyArray1::from_vec(py, offsets),
            PyArray1::from_vec(py, docs),
            PyArray1::from_vec(py, scores),
        ))
    }

    /// kendall_tau(a, b) -> float64 array (n_rows,)
    ///
    /// Kendall's tau between row `i` of `a` and row `i` of `b` (int64, shape (n_rows, n), n >= 2): two
    /// rankings of the same distinct items, best first. No ties are possible, so tau-a == tau-b.
    #[pyfunction(name = "kendall_tau")]
    fn py_kendall_tau<'py>(
        py: Python<'py>,
        a: PyReadonlyArray2<'py, i64>,
        b: PyReadonlyArray2<'py, i64>,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        if a.shape() != b.shape() {
            return Err(PyValueError::new_err(format!(
                "a and b must have the same shape, got {:?} and {:?}",
                a.shape(),
                b.shape()
            )));
        }
        let (rows, n) = (a.shape()[0], a.shape()[1]);
        let (a, b) = (a.as_slice()?, b.as_slice()?);
        let taus = py
            .detach(|| {
                (0..rows)
                    .into_par_iter()
                    .map(|r| {
                        super::kendall_tau(&a[r * n..(r + 1) * n], &b[r * n..(r + 1) * n])
                            .map_err(|e| format!("row {r}: {e}"))
                    })
                    .collect::<Result<Vec<f64>, String>>()
            })
            .map_err(PyValueError::new_err)?;
        Ok(PyArray1::from_vec(py, taus))
    }

    /// ann_recall(approx, exact, k) -> float64 array (n_queries,)
    ///
    /// Per query `|set(approx[q, :k]) ∩ set(exact[q, :k])| / k` for int64 id arrays of shape
    /// (n_queries, >= k). Negative ids are padding and never match.
    #[pyfunction(name = "ann_recall")]
    fn py_ann_recall<'py>(
        py: Python<'py>,
        approx: PyReadonlyArray2<'py, i64>,
        exact: PyReadonlyArray2<'py, i64>,
        k: usize,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let (na, wa) = (approx.shape()[0], approx.shape()[1]);
        let (ne, we) = (exact.shape()[0], exact.shape()[1]);
        if na != ne {
            return Err(PyValueError::new_err(format!(
                "approx and exact must have the same number of rows, got {na} and {ne}"
            )));
        }
        if k == 0 || k > wa || k > we {
            return Err(PyValueError::new_err(format!(
                "k must be in [1, min(columns)], got k={k} with approx {wa} columns and exact {we}"
            )));
        }
        let (a, e) = (approx.as_slice()?, exact.as_slice()?);
        let r = py
            .detach(|| super::ann_recall(a, wa, e, we, k))
            .map_err(PyValueError::new_err)?;
        Ok(PyArray1::from_vec(py, r))
    }

    pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add_function(wrap_pyfunction!(py_evaluate_csr, m)?)?;
        m.add_function(wrap_pyfunction!(py_evaluate_dicts, m)?)?;
        m.add_function(wrap_pyfunction!(py_run_csr, m)?)?;
        m.add_function(wrap_pyfunction!(py_kendall_tau, m)?)?;
        m.add_function(wrap_pyfunction!(py_ann_recall, m)?)?;
        let names: Vec<&str> = Kind::NAMES.iter().map(|(n, _)| *n).collect();
        m.add("METRIC_KINDS", names)?;
        Ok(())
    }
}

#[cfg(feature = "python")]
pub use py::register;

#[cfg(test)]
mod tests {
    use super::*;

    fn m(kind: Kind, k: usize) -> Measure {
        Measure::new(kind, k).unwrap()
    }

    #[test]
    fn score_key_orders_like_f32_and_merges_zeros() {
        let xs = [
            -1e30,
            -2.5,
            -1.0,
            -1e-30,
            0.0,
            1e-30,
            0.5,
            1.0,
            3.0,
            1e30,
            f64::INFINITY,
        ];
        for w in xs.windows(2) {
            assert!(score_key(w[0]) <= score_key(w[1]), "{} vs {}", w[0], w[1]);
        }
        assert_eq!(score_key(-0.0), score_key(0.0));
        assert!(score_key(f64::NEG_INFINITY) < score_key(-1e30));
        // distinct f64s that round to the same f32 tie, as in trec_eval
        assert_eq!(score_key(1.0), score_key(1.0 + 1e-9));
        assert!(score_key(1.0) < score_key(1.0 + 1e-6));
    }

    #[test]
    fn hand_computed_values() {
        // ranking rels: [0, 2, 0, 1, 0] (ranks 1..5); judged rels: 2, 1, 3 (doc with 3 not retrieved)
        let hits = [(2u64, 2i64), (4, 1)];
        let ideal = [3i64, 2, 1];
        let ms = [
            m(Kind::Ndcg, 5),
            m(Kind::Recall, 5),
            m(Kind::Precision, 5),
            m(Kind::RecipRank, 5),
            m(Kind::AveragePrecision, 5),
            m(Kind::Success, 1),
            m(Kind::Success, 2),
            m(Kind::RecipRank, 1),
            m(Kind::Recall, 3),
        ];
        let mut out = vec![0.0; ms.len()];
        query_values(&hits, &ideal, &ms, &mut out);
        let dcg = 2.0 / 3f64.log2() + 1.0 / 5f64.log2();
        let idcg = 3.0 + 2.0 / 3f64.log2() + 1.0 / 2.0;
        let want = [
            dcg / idcg,
            2.0 / 3.0,
            0.4,
            0.5,
            (1.0 / 2.0 + 2.0 / 4.0) / 3.0,
            0.0,
            1.0,
            0.0,
            1.0 / 3.0,
        ];
        for (g, w) in out.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{out:?} vs {want:?}");
        }
    }

    #[test]
    fn no_relevant_docs_score_zero() {
        let ms = [
            m(Kind::Ndcg, 10),
            m(Kind::Recall, 10),
            m(Kind::AveragePrecision, 10),
            m(Kind::Precision, 3),
        ];
        let mut out = vec![1.0; ms.len()];
        query_values(&[], &[], &ms, &mut out);
        assert_eq!(out, vec![0.0; 4]);
    }

    #[test]
    fn csr_breaks_ties_by_code_descending() {
        // one query, three docs with equal scores; codes 0,1,2; only code 0 relevant -> rank 3
        let input = CsrInput {
            qrels_offsets: &[0, 1],
            qrels_docs: &[0],
            qrels_rels: &[1],
            run_offsets: &[0, 3],
            run_docs: &[0, 1, 2],
            run_scores: &[1.0, 1.0, 1.0],
        };
        let v = evaluate_csr(&input, &[m(Kind::RecipRank, 10)]).unwrap();
        assert_eq!(v, vec![1.0 / 3.0]);
        // a higher score wins over the code order; f32 rounding makes 1 + 1e-9 tie with 1
        let input = CsrInput {
            run_scores: &[1.5, 1.0, 1.0 + 1e-9],
            ..input
        };
        assert_eq!(
            evaluate_csr(&input, &[m(Kind::RecipRank, 10)]).unwrap(),
            vec![1.0]
        );
    }

    #[test]
    fn csr_selects_top_depth_only() {
        // 6 docs, descending scores by code; relevant codes 5 (rank 1) and 0 (rank 6)
        let input = CsrInput {
            qrels_offsets: &[0, 2],
            qrels_docs: &[0, 5],
            qrels_rels: &[2, 1],
            run_offsets: &[0, 6],
            run_docs: &[0, 1, 2, 3, 4, 5],
            run_scores: &[0.0, 0.1, 0.2, 0.3, 0.4, 0.5],
        };
        let v = evaluate_csr(
            &input,
            &[
                m(Kind::Recall, 3),
                m(Kind::Recall, 6),
                m(Kind::AveragePrecision, 6),
            ],
        )
        .unwrap();
        assert_eq!(v, vec![0.5, 1.0, (1.0 + 2.0 / 6.0) / 2.0]);
    }

    #[test]
    fn csr_validation_names_the_bad_value() {
        let good = CsrInput {
            qrels_offsets: &[0, 1],
            qrels_docs: &[0],
            qrels_rels: &[1],
            run_offsets: &[0, 1],
            run_docs: &[0],
            run_scores: &[1.0],
        };
        assert!(good.validate().is_ok());
        let e = CsrInput {
            run_scores: &[f64::NAN],
            ..good
        }
        .validate()
        .unwrap_err();
        assert!(e.contains("NaN"), "{e}");
        let e = CsrInput {
            run_docs: &[-3],
            ..good
        }
        .validate()
        .unwrap_err();
        assert!(e.contains("-3"), "{e}");
        let e = CsrInput {
            run_offsets: &[0, 2],
            ..good
        }
        .validate()
        .unwrap_err();
        assert!(e.contains("got 2"), "{e}");
        let e = CsrInput {
            qrels_rels: &[1, 2],
            ..good
        }
        .validate()
        .unwrap_err();
        assert!(e.contains("1 and 2"), "{e}");
        let dup = CsrInput {
            qrels_offsets: &[0, 2],
            qrels_docs: &[4, 4],
            qrels_rels: &[1, 0],
            ..good
        };
        let e = evaluate_csr(&dup, &[m(Kind::Recall, 1)]).unwrap_err();
        assert!(e.contains("judged twice"), "{e}");
        assert!(Measure::new(Kind::Ndcg, 0).unwrap_err().contains("k=0"));
        assert!(Kind::parse("map").unwrap_err().contains("ndcg"));
    }

    #[test]
    fn counting_matches_sorting() {
        let keys = [5u32, 9, 7, 7, 1];
        let cq = count_ranks(&keys, &[7, 9, 1], &[1, 2, 3]);
        assert_eq!(cq.hits, vec![(2, 1), (1, 2), (5, 3)]);
        assert_eq!(cq.tied, vec![0]);
    }

    #[test]
    fn kendall_tau_hand_values() {
        assert_eq!(kendall_tau(&[0, 1, 2, 3], &[0, 1, 2, 3]).unwrap(), 1.0);
        assert_eq!(kendall_tau(&[0, 1, 2, 3], &[3, 2, 1, 0]).unwrap(), -1.0);
        // one swapped adjacent pair among 6 pairs: (5 - 1) / 6
        assert!(
            (kendall_tau(&[10, 20, 30, 40], &[20, 10, 30, 40]).unwrap() - 4.0 / 6.0).abs() < 1e-15
        );
        assert!(kendall_tau(&[1], &[1]).unwrap_err().contains("at least 2"));
        assert!(kendall_tau(&[1, 2], &[1, 3])
            .unwrap_err()
            .contains("missing"));
        assert!(kendall_tau(&[1, 1], &[1, 2]).unwrap_err().contains("twice"));
        assert!(kendall_tau(&[1, 2], &[2, 2]).unwrap_err().contains("twice"));
    }

    #[test]
    fn inversions_brute_force() {
        let v = [3usize, 1, 4, 1, 5, 9, 2, 6, 5, 3];
        let brute = (0..v.len())
            .flat_map(|i| (i + 1..v.len()).map(move |j| (i, j)))
            .filter(|&(i, j)| v[i] > v[j])
            .count();
        assert_eq!(count_inversions(&mut v.to_vec()), brute as u64);
    }

    #[test]
    fn ann_recall_hand_values() {
        // row 0: {1,2,3} vs {3,2,7} -> 2/3; row 1: padding -1 never matches -> 1/3
        let approx = [1, 2, 3, 9, 4, -1, -1, 0];
        let exact = [3, 2, 7, 5, 4, -1, -1, 8];
        let r = ann_recall(&approx, 4, &exact, 4, 3).unwrap();
        assert!(
            (r[0] - 2.0 / 3.0).abs() < 1e-15 && (r[1] - 1.0 / 3.0).abs() < 1e-15,
            "{r:?}"
        );
        assert!(ann_recall(&approx, 4, &exact, 4, 5)
            .unwrap_err()
            .contains("k=5"));
        assert!(ann_recall(&approx, 4, &exact, 4, 0)
            .unwrap_err()
            .contains("k=0"));
    }
}
