//! The CSR entry point: queries as arrays with order-preserving integer doc codes, parallel over queries.

use super::*;
use rayon::prelude::*;

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
