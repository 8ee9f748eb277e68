//! Top-k selection over score matrices ([`topk_rows`]).
//!
//! Row `r` of the result holds the `k` best columns of `scores[r]`, best first, where "best" is the
//! largest score (`largest = true`) or the smallest, and **equal scores are ordered by column index,
//! lower first** — also at the `k`-th place. The result therefore equals the first `k` entries of a
//! stable sort (`np.argsort(-s, kind="stable")[:k]` for `largest`, `np.argsort(s, kind="stable")[:k]`
//! otherwise). `-0.0 == 0.0` (IEEE equality) so they tie; `±inf` are ordinary values. **NaN is an
//! error**: the wrapper raises `ValueError` naming the first NaN's row and column (a NaN score means
//! something upstream diverged; silently ranking it would hide that).
//!
//! Algorithm, per row (rayon across rows): the first `k` scores seed a buffer; a threshold holds the
//! current `k`-th best score. The rest of the row is scanned in chunks of 16 with one branch-free
//! comparison per score (`!(x <= thr)` is true for a better score *or* a NaN); only chunks with a
//! hit take the scalar path, which appends `(key, column)` to the buffer. When the buffer reaches
//! `k + max(k, 256)` entries it is cut back to the best `k` with `select_nth_unstable_by` and the
//! threshold rises. At the end one more selection and a sort of the `k` kept. A later score equal to
//! the threshold is never better (its column is larger), so `>` (not `>=`) is exact. Cost: `O(n)`
//! per row plus `O(k log k)`; no full sort.

use rayon::prelude::*;

// ------------------------------------------------------------------------------------------ top-k

/// A float score type: `f32` or `f64`.
pub trait Score: Copy + PartialOrd + Send + Sync + 'static {
    fn is_nan(self) -> bool;
    /// Order-preserving map to `u64` (`a < b` ⇔ `key(a) < key(b)` for non-NaN; `-0.0` and `0.0`
    /// map to the same key).
    fn key(self) -> u64;
}

impl Score for f32 {
    #[inline]
    fn is_nan(self) -> bool {
        self.is_nan()
    }
    #[inline]
    fn key(self) -> u64 {
        let b = if self == 0.0 { 0 } else { self.to_bits() };
        u64::from(if b & 0x8000_0000 != 0 {
            !b
        } else {
            b | 0x8000_0000
        })
    }
}

impl Score for f64 {
    #[inline]
    fn is_nan(self) -> bool {
        self.is_nan()
    }
    #[inline]
    fn key(self) -> u64 {
        let b = if self == 0.0 { 0 } else { self.to_bits() };
        if b & (1 << 63) != 0 {
            !b
        } else {
            b | (1 << 63)
        }
    }
}

/// Buffer entry: `(key, column)`; a larger key is better (the key is inverted for `largest=false`).
type Entry = (u64, usize);

#[inline]
fn better_first(a: &Entry, b: &Entry) -> std::cmp::Ordering {
    b.0.cmp(&a.0).then(a.1.cmp(&b.1))
}

#[inline]
fn entry_key<T: Score, const LARGEST: bool>(x: T) -> u64 {
    if LARGEST {
        x.key()
    } else {
        !x.key()
    }
}

/// Whether `x` is strictly better than `thr`, or NaN (the negated comparison is what makes NaN
/// count as a hit in the same single comparison).
#[inline(always)]
#[allow(clippy::neg_cmp_op_on_partial_ord)]
fn hit<T: Score, const LARGEST: bool>(x: T, thr: T) -> bool {
    if LARGEST {
        !(x <= thr)
    } else {
        !(x >= thr)
    }
}

/// Keep the best `k` entries of `buf` (unordered).
#[inline]
fn cut(buf: &mut Vec<Entry>, k: usize) {
    if buf.len() > k {
        buf.select_nth_unstable_by(k - 1, better_first);
        buf.truncate(k);
    }
}

const CHUNK: usize = 16;

fn topk_row_impl<T: Score, const LARGEST: bool>(
    row: &[T],
    buf: &mut Vec<Entry>,
    out_idx: &mut [i64],
    out_vals: &mut [T],
) -> Result<(), usize> {
    let (n, k) = (row.len(), out_idx.len());
    debug_assert!(k >= 1 && k <= n && out_vals.len() == k);
    let cap = k + k.max(256);
    buf.clear();
    buf.reserve(cap);
    for (j, &x) in row[..k].iter().enumerate() {
        if x.is_nan() {
            return Err(j);
        }
        buf.push((entry_key::<T, LARGEST>(x), j));
    }
    if n > k {
        // The k-th best of the seed is the threshold: only strictly better scores can enter.
        buf.select_nth_unstable_by(k - 1, better_first);
        let mut thr = row[buf[k - 1].1];
        let mut base = k;
        while base < n {
            let end = (base + CHUNK).min(n);
            let chunk = &row[base..end];
            let any = chunk
                .iter()
                .fold(false, |acc, &x| acc | hit::<T, LARGEST>(x, thr));
            if any {
                for (off, &x) in chunk.iter().enumerate() {
                    if !hit::<T, LARGEST>(x, thr) {
                        continue;
                    }
                    if x.is_nan() {
                        return Err(base + off);
                    }
                    buf.push((entry_key::<T, LARGEST>(x), base + off));
                    if buf.len() == cap {
                        cut(buf, k);
                        thr = row[buf[k - 1].1];
                    }
                }
            }
            base = end;
        }
        cut(buf, k);
    }
    buf.sort_unstable_by(better_first);
    for (slot, &(_, j)) in buf.iter().enumerate() {
        out_idx[slot] = j as i64;
        out_vals[slot] = row[j];
    }
    Ok(())
}

/// Top-`k` of one row into `out_idx` / `out_vals` (both of length `k`, `1 <= k <= row.len()`),
/// best first, ties by lower column. `buf` is scratch. `Err(column)` on the first NaN met (not
/// necessarily the row's first NaN).
pub fn topk_row<T: Score>(
    row: &[T],
    largest: bool,
    buf: &mut Vec<Entry>,
    out_idx: &mut [i64],
    out_vals: &mut [T],
) -> Result<(), usize> {
    if largest {
        topk_row_impl::<T, true>(row, buf, out_idx, out_vals)
    } else {
        topk_row_impl::<T, false>(row, buf, out_idx, out_vals)
    }
}

/// Top-`k` of every row of a row-major `(rows, n)` matrix, rayon across rows.
/// Returns `(idx (rows*k), vals (rows*k))`, or `Err((row, column))` of the first NaN in row-major
/// order. Errors (as strings) when `k` is not in `1..=n`.
#[allow(clippy::type_complexity)]
pub fn topk_rows<T: Score + Default>(
    scores: &[T],
    n: usize,
    k: usize,
    largest: bool,
) -> Result<Result<(Vec<i64>, Vec<T>), (usize, usize)>, String> {
    if k == 0 || k > n {
        return Err(format!(
            "k: expected an int in [1, {n}] (the number of columns), got {k}"
        ));
    }
    if !scores.len().is_multiple_of(n) {
        return Err(format!(
            "scores: length {} is not a multiple of n = {n}",
            scores.len()
        ));
    }
    let rows = scores.len() / n;
    let mut idx = vec![0i64; rows * k];
    let mut vals = vec![T::default(); rows * k];
    let ok = idx
        .par_chunks_mut(k)
        .zip(vals.par_chunks_mut(k))
        .enumerate()
        .try_for_each_init(Vec::new, |buf, (r, (oi, ov))| {
            topk_row(&scores[r * n..(r + 1) * n], largest, buf, oi, ov)
        });
    if ok.is_err() {
        let p = scores
            .iter()
            .position(|x| x.is_nan())
            .expect("a NaN was met");
        return Ok(Err((p / n, p % n)));
    }
    Ok(Ok((idx, vals)))
}

// ------------------------------------------------------------------------------------- Python

#[cfg(feature = "python")]
mod py {
    use super::*;
    use numpy::{
        Element, PyArray1, PyArray2, PyArrayMethods,
        PyUntypedArrayMethods,
    };
    use pyo3::exceptions::PyValueError;
    use pyo3::prelude::*;
    

    fn type_name(obj: &Bound<'_, PyAny>) -> String {
        obj.get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "?".to_string())
    }

    fn topk_typed<'py, T: Score + Default + Element>(
        py: Python<'py>,
        arr: &Bound<'py, PyArray2<T>>,
        k: i64,
        largest: bool,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        let ro = arr.readonly();
        let (rows, n) = (ro.shape()[0], ro.shape()[1]);
        if k < 1 || k as u64 > n as u64 {
            return Err(PyValueError::new_err(format!(
                "k: expected an int in [1, {n}] (the number of columns), got {k}"
            )));
        }
        let k = k as usize;
        let s = ro.as_slice().map_err(|_| {
            PyValueError::new_err("scores: expected a C-contiguous array, got a strided view")
        })?;
        let res = py
            .detach(|| super::topk_rows(s, n, k, largest))
            .map_err(PyValueError::new_err)?;
        let (idx, vals) = res.map_err(|(r, c)| {
            PyValueError::new_err(format!(
                "scores: expected no NaN, got NaN at row {r}, column {c}"
            ))
        })?;
        Ok((
            PyArray1::from_vec(py, idx).reshape([rows, k])?.into_any(),
            PyArray1::from_vec(py, vals).reshape([rows, k])?.into_any(),
        ))
    }

    /// topk(scores, k, *, largest=True) -> (idx int64 (nq, k), vals (nq, k))
    ///
    /// The `k` best columns of each row of a C-contiguous float32 or float64 `(nq, n)` array, best
    /// first (largest scores, or smallest with `largest=False`); equal scores by lower column first,
    /// so rows equal `np.argsort(-s, kind="stable")[:k]`. `vals` has the dtype of `scores`.
    /// `1 <= k <= n`. NaN raises ValueError naming the first NaN's row and column. Rayon across rows,
    /// GIL released.
    #[pyfunction(name = "topk", signature = (scores, k, *, largest = true))]
    fn py_topk<'py>(
        py: Python<'py>,
        scores: &Bound<'py, PyAny>,
        k: i64,
        largest: bool,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        if let Ok(a) = scores.cast::<PyArray2<f32>>() {
            return topk_typed(py, a, k, largest);
        }
        if let Ok(a) = scores.cast::<PyArray2<f64>>() {
            return topk_typed(py, a, k, largest);
        }
        let what = match scores.getattr("dtype").and_then(|d| {
            let nd = scores.getattr("ndim")?;
            Ok(format!("{} array with ndim {}", d.str()?, nd.str()?))
        }) {
            Ok(s) => s,
            Err(_) => type_name(scores),
        };
        Err(PyValueError::new_err(format!(
            "scores: expected a 2-D float32 or float64 numpy array, got {what}"
        )))
    }

    pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add_function(wrap_pyfunction!(py_topk, m)?)?;
        Ok(())
    }
}

#[cfg(feature = "python")]
pub use py::register;

#[cfg(test)]
mod tests {
    use super::*;

    /// SplitMix64 (Steele, Lea & Flood 2014) with Lemire's unbiased bounded integers: the seeded
    /// stream of the long-row test.
    struct SplitMix64(u64);

    impl SplitMix64 {
        fn new(seed: u64) -> Self {
            SplitMix64(seed)
        }

        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn below(&mut self, s: u64) -> u64 {
            let mut m = u128::from(self.next_u64()) * u128::from(s);
            if (m as u64) < s {
                let t = s.wrapping_neg() % s;
                while (m as u64) < t {
                    m = u128::from(self.next_u64()) * u128::from(s);
                }
            }
            (m >> 64) as u64
        }
    }

    /// Stable-sort reference: columns by (score desc, column asc), first k.
    fn naive<T: Score>(row: &[T], k: usize, largest: bool) -> Vec<usize> {
        let mut o: Vec<usize> = (0..row.len()).collect();
        o.sort_by(|&a, &b| {
            let (x, y) = (row[a].key(), row[b].key());
            if largest {
                y.cmp(&x)
            } else {
                x.cmp(&y)
            }
        });
        o.truncate(k);
        o
    }

    fn run<T: Score + Default>(row: &[T], k: usize, largest: bool) -> Vec<i64> {
        topk_rows(row, row.len(), k, largest).unwrap().unwrap().0
    }

    #[test]
    fn keys_order_floats() {
        let xs = [
            f32::NEG_INFINITY,
            -1e30,
            -1.0,
            -1e-40,
            0.0,
            1e-40,
            1.0,
            f32::INFINITY,
        ];
        for w in xs.windows(2) {
            assert!(w[0].key() < w[1].key(), "{} {}", w[0], w[1]);
            assert!((w[0] as f64).key() < (w[1] as f64).key());
        }
        assert_eq!((-0.0f32).key(), 0.0f32.key());
        assert_eq!((-0.0f64).key(), 0.0f64.key());
    }

    #[test]
    fn topk_hand_values() {
        let s = [0.5f32, 2.0, -1.0, 2.0, 7.0, 0.5];
        assert_eq!(run(&s, 3, true), vec![4, 1, 3]);
        assert_eq!(run(&s, 3, false), vec![2, 0, 5]);
        let (idx, vals) = topk_rows(&s, 3, 2, true).unwrap().unwrap();
        // rows [0.5, 2, -1] and [2, 7, 0.5]
        assert_eq!(idx, vec![1, 0, 1, 0]);
        assert_eq!(vals, vec![2.0, 0.5, 7.0, 2.0]);
        // -0.0 ties with 0.0; -inf is an ordinary value; k = n is a full stable sort.
        let z = [-0.0f64, f64::NEG_INFINITY, 0.0, f64::INFINITY];
        assert_eq!(run(&z, 4, true), vec![3, 0, 2, 1]);
        assert_eq!(run(&z, 4, false), vec![1, 0, 2, 3]);
        assert_eq!(run(&[3.0f32], 1, true), vec![0]);
    }

    #[test]
    fn topk_errors() {
        assert!(topk_rows(&[1.0f32, 2.0], 2, 3, true).is_err());
        assert!(topk_rows(&[1.0f32, 2.0], 2, 0, true).is_err());
        let s = [1.0f32, 2.0, 3.0, 4.0, 5.0, f32::NAN, 0.0, f32::NAN];
        assert_eq!(topk_rows(&s, 4, 2, true).unwrap(), Err((1, 1)));
        assert_eq!(topk_rows(&s, 4, 2, false).unwrap(), Err((1, 1)));
        // NaN inside the seed and far into a long row.
        let mut long = vec![1.0f32; 1000];
        long[999] = f32::NAN;
        assert_eq!(topk_rows(&long, 1000, 3, true).unwrap(), Err((0, 999)));
        long[999] = 0.0;
        long[1] = f32::NAN;
        assert_eq!(topk_rows(&long, 1000, 3, false).unwrap(), Err((0, 1)));
    }

    #[test]
    fn topk_matches_stable_sort_on_long_rows() {
        // Enough columns to force many buffer cuts; few distinct values for many ties; an
        // ascending row (every score enters the buffer) and a descending one.
        let mut rng = SplitMix64::new(7);
        for &(n, k, distinct) in &[
            (5000usize, 10usize, 7u64),
            (5000, 300, 50),
            (3000, 1, 1000),
            (777, 777, 5),
        ] {
            let row: Vec<f32> = (0..n).map(|_| rng.below(distinct) as f32 - 3.0).collect();
            for largest in [true, false] {
                assert_eq!(
                    run(&row, k, largest),
                    naive(&row, k, largest)
                        .into_iter()
                        .map(|i| i as i64)
                        .collect::<Vec<_>>()
                );
            }
        }
        let asc: Vec<f64> = (0..4000).map(f64::from).collect();
        assert_eq!(run(&asc, 3, true), vec![3999, 3998, 3997]);
        assert_eq!(run(&asc, 3, false), vec![0, 1, 2]);
    }
}
