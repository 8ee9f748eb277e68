//! The dict entry point's pure core: the queries read from `{qid: {docid: ...}}` dicts as flat buffers,
//! ranked by counting (no sorting, no doc ids) and measured. The pyo3 glue only fills [`DictQueries`]
//! and breaks exact score ties by doc id (the one step that needs the strings).

use super::*;
use rayon::prelude::*;

/// Flat buffers of the judged queries, in order. Query `q`:
/// - `keys[key_off[q]..key_off[q + 1]]`: the [`score_key`] of every retrieved doc (left empty when none of
///   them is relevant: every measure is then 0);
/// - `hit_keys`/`hit_rels[hit_off[q]..hit_off[q + 1]]`: key and relevance of each relevant retrieved doc;
/// - `ideal[ideal_off[q]..ideal_off[q + 1]]`: the query's positive judged rels, descending (see [`ideal_gains`]).
#[derive(Clone, Debug)]
pub struct DictQueries {
    pub keys: Vec<u32>,
    pub key_off: Vec<usize>,
    pub hit_keys: Vec<u32>,
    pub hit_rels: Vec<i64>,
    pub hit_off: Vec<usize>,
    pub ideal: Vec<i64>,
    pub ideal_off: Vec<usize>,
}

impl Default for DictQueries {
    fn default() -> Self {
        DictQueries {
            keys: Vec::new(),
            key_off: vec![0],
            hit_keys: Vec::new(),
            hit_rels: Vec::new(),
            hit_off: vec![0],
            ideal: Vec::new(),
            ideal_off: vec![0],
        }
    }
}

impl DictQueries {
    /// Number of queries.
    pub fn len(&self) -> usize {
        self.key_off.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Append a query: its retrieved keys, its relevant retrieved docs `(key, rel)` and its ideal gains.
    pub fn push(&mut self, keys: &[u32], hits: &[(u32, i64)], ideal: &[i64]) {
        self.keys.extend_from_slice(keys);
        self.end_query(hits, ideal);
    }

    /// Close the query whose retrieved keys were appended to `self.keys` since the last one (the glue writes
    /// them in place, saving a copy): record its hits and ideal gains.
    pub fn end_query(&mut self, hits: &[(u32, i64)], ideal: &[i64]) {
        if hits.is_empty() {
            let start = *self.key_off.last().expect("key_off starts with 0");
            self.keys.truncate(start); // nothing relevant retrieved: every measure is 0
        }
        self.key_off.push(self.keys.len());
        for &(k, r) in hits {
            self.hit_keys.push(k);
            self.hit_rels.push(r);
        }
        self.hit_off.push(self.hit_keys.len());
        self.ideal.extend_from_slice(ideal);
        self.ideal_off.push(self.ideal.len());
    }

    /// Ranks of every query's relevant retrieved docs by counting (parallel over queries); the hits that
    /// tie with another doc's rounded score are listed in `tied` for the doc id tie-break.
    pub fn count(&self) -> Vec<CountedQuery> {
        (0..self.len())
            .into_par_iter()
            .map(|q| {
                let (ha, hb) = (self.hit_off[q], self.hit_off[q + 1]);
                count_ranks(
                    &self.keys[self.key_off[q]..self.key_off[q + 1]],
                    &self.hit_keys[ha..hb],
                    &self.hit_rels[ha..hb],
                )
            })
            .collect()
    }

    /// The measures of every query (`len() * measures.len()`, row-major), from its counted hits with the
    /// ties already broken (parallel over queries).
    pub fn values(&self, counted: &mut [CountedQuery], measures: &[Measure]) -> Vec<f64> {
        let nm = measures.len();
        let mut values = vec![0.0; self.len() * nm];
        if nm == 0 {
            return values;
        }
        values
            .par_chunks_mut(nm)
            .zip(counted.par_iter_mut())
            .enumerate()
            .for_each(|(q, (row, cq))| {
                cq.hits.sort_unstable();
                query_values(&cq.hits, &self.ideal[self.ideal_off[q]..self.ideal_off[q + 1]], measures, row);
            });
        values
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A seeded stream (SplitMix64) for the comparison with the CSR entry point.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
    }

    fn all_measures() -> Vec<Measure> {
        [Kind::Ndcg, Kind::Recall, Kind::Precision, Kind::RecipRank, Kind::AveragePrecision, Kind::Success]
            .iter()
            .flat_map(|&k| [1usize, 3, 10].map(move |c| Measure::new(k, c).unwrap()))
            .collect()
    }

    #[test]
    fn hand_computed_query() {
        // 4 retrieved docs scored 0.9, 0.8, 0.7, 0.1; the 2nd (rel 2) and 4th (rel 1) relevant; one more
        // relevant doc (rel 1) not retrieved
        let keys: Vec<u32> = [0.9, 0.8, 0.7, 0.1].iter().map(|&s| score_key(s)).collect();
        let mut dq = DictQueries::default();
        dq.push(&keys, &[(keys[1], 2), (keys[3], 1)], &[2, 1, 1]);
        dq.push(&[], &[], &[1]); // judged, nothing relevant retrieved
        let mut counted = dq.count();
        assert_eq!(counted[0].hits, vec![(2, 2), (4, 1)]);
        assert!(counted[0].tied.is_empty());
        let ms = [Measure::new(Kind::RecipRank, 10).unwrap(), Measure::new(Kind::Recall, 3).unwrap(),
                  Measure::new(Kind::Ndcg, 10).unwrap()];
        let v = dq.values(&mut counted, &ms);
        let dcg = 2.0 / 3f64.log2() + 1.0 / 5f64.log2();
        let idcg = 2.0 + 1.0 / 3f64.log2() + 1.0 / 4f64.log2();
        assert_eq!(v[0], 0.5);
        assert!((v[1] - 1.0 / 3.0).abs() < 1e-12);
        assert!((v[2] - dcg / idcg).abs() < 1e-12);
        assert_eq!(&v[3..], &[0.0, 0.0, 0.0]);
    }

    #[test]
    fn equals_the_csr_entry_point_on_random_queries_without_ties() {
        let mut rng = Rng(11);
        let measures = all_measures();
        for _ in 0..20 {
            let nq = 1 + (rng.next() % 30) as usize;
            let (mut q_off, mut q_docs, mut q_rels) = (vec![0i64], vec![], vec![]);
            let (mut r_off, mut r_docs, mut r_scores) = (vec![0i64], vec![], vec![]);
            let mut dq = DictQueries::default();
            for _ in 0..nq {
                let n_docs = 1 + (rng.next() % 40) as i64;
                // judged docs: a random subset with rels in -1..=3
                let mut judged: Vec<(i64, i64)> = Vec::new();
                let mut retrieved: Vec<(i64, f64)> = Vec::new();
                for d in 0..n_docs {
                    if rng.next() % 3 == 0 {
                        judged.push((d, (rng.next() % 5) as i64 - 1));
                    }
                    // retrieved docs: another random subset with distinct scores (no ties)
                    if rng.next() % 2 == 0 {
                        retrieved.push((d, d as f64 * 0.37 + (rng.next() % 1000) as f64 * 1000.0));
                    }
                }
                if judged.is_empty() {
                    judged.push((0, 1));
                }
                for &(d, r) in &judged {
                    q_docs.push(d);
                    q_rels.push(r);
                }
                q_off.push(q_docs.len() as i64);
                for &(d, s) in &retrieved {
                    r_docs.push(d);
                    r_scores.push(s);
                }
                r_off.push(r_docs.len() as i64);
                let keys: Vec<u32> = retrieved.iter().map(|&(_, s)| score_key(s)).collect();
                let hits: Vec<(u32, i64)> = retrieved
                    .iter()
                    .filter_map(|&(d, s)| {
                        judged.iter().find(|&&(j, r)| j == d && r >= 1).map(|&(_, r)| (score_key(s), r))
                    })
                    .collect();
                let ideal = ideal_gains(judged.iter().map(|&(_, r)| r));
                dq.push(&keys, &hits, &ideal);
            }
            let input = CsrInput {
                qrels_offsets: &q_off,
                qrels_docs: &q_docs,
                qrels_rels: &q_rels,
                run_offsets: &r_off,
                run_docs: &r_docs,
                run_scores: &r_scores,
            };
            let want = evaluate_csr(&input, &measures).unwrap();
            let mut counted = dq.count();
            assert!(counted.iter().all(|c| c.tied.is_empty()));
            let got = dq.values(&mut counted, &measures);
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-12, "{g} vs {w}");
            }
        }
    }
}
