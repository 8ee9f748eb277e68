//! ANN recall: approximate against exact nearest neighbours, row by row.

use rayon::prelude::*;

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
