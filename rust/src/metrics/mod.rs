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

mod ann;
mod counting;
mod csr;
mod dicts;
mod measures;
#[cfg(feature = "python")]
mod py;

pub use ann::*;
pub use counting::*;
pub use csr::*;
pub use dicts::*;
pub use measures::*;

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
