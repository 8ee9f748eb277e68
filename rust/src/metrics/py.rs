//! The pyo3 glue: checks at the boundary, the GIL released around the work.

use super::*;
use rayon::prelude::*;
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

    // Phase 1 (GIL): read the dicts into flat buffers (DictQueries, the pure core in dicts.rs).
    let qids = PyList::empty(py);
    let mut run_dicts: Vec<Option<Bound<'py, PyDict>>> = Vec::new();
    let mut hit_docs: Vec<Bound<'py, PyAny>> = Vec::new(); // doc id of each relevant retrieved doc
    let mut flat = DictQueries::default();
    let mut n_missing = 0usize;
    let mut positive: Vec<(Bound<'py, PyAny>, i64)> = Vec::new();
    let mut hits: Vec<(u32, i64)> = Vec::new();
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
        let ideal = ideal_gains(positive.iter().map(|(_, r)| *r));
        qids.append(&qid)?;

        let results = match run.get_item(&qid)? {
            None => {
                n_missing += 1;
                None
            }
            Some(r) => Some(as_dict(&r, || Ok(format!("run[{}]", qid.repr()?)))?.clone()),
        };
        hits.clear();
        if let Some(results) = &results {
            for (doc, rel) in positive.iter() {
                if let Some(value) = results.get_item(doc)? {
                    hits.push((score_key(score_of(&qid, doc, &value)?), *rel));
                    hit_docs.push(doc.clone());
                }
            }
            push_keys(&qid, results, &mut flat.keys)?; // validates every score, even with no hit
        }
        flat.end_query(&hits, &ideal); // no hit: the keys are dropped, every measure is 0
        run_dicts.push(results);
    }
    let nq = flat.len();
    let mut n_ignored = 0usize;
    for qid in run.keys() {
        match qrels.get_item(&qid)? {
            Some(j) if j.len().unwrap_or(0) > 0 => {}
            _ => n_ignored += 1,
        }
    }

    // Phase 2 (no GIL, parallel): ranks of relevant retrieved docs by counting.
    let mut counted: Vec<CountedQuery> = py.detach(|| flat.count());

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
            let (key, doc) = (flat.hit_keys[flat.hit_off[q] + h], &hit_docs[flat.hit_off[q] + h]);
            for (other, value) in results.iter() {
                if score_key(score_of(&qid, &other, &value)?) == key && other.gt(doc)? {
                    cq.hits[h].0 += 1;
                }
            }
        }
    }

    // Phase 4 (no GIL, parallel): measure values.
    let values = py.detach(|| flat.values(&mut counted, &measures));
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
