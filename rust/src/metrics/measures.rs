//! Measures: their names, cutoffs, the order-preserving score key and one query's values from its hits.


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
