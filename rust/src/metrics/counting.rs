//! Rank counting without sorting (the dict entry point's core), and Kendall's tau by merge-sort inversions.


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
