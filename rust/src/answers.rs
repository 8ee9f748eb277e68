//! Answer strings: SQuAD v1.1 normalisation, exact match and token F1; DPR-style has-answer.
//!
//! Both halves reproduce a Python original character for character, Unicode included, so that
//! numbers computed here equal the ones the community computes with those scripts:
//!
//! * SQuAD v1.1 (`evaluate-v1.1.py`, Rajpurkar et al., 2016):
//!   `normalize(s) = white_space_fix(remove_articles(remove_punc(lower(s))))` where
//!   - `lower` is Python's `str.lower()`: full Unicode lower-case mapping, with `Σ → ς` in the
//!     Final_Sigma context (Rust's `str::to_lowercase` implements the same rule);
//!   - `remove_punc` drops the 32 characters of Python's `string.punctuation` (ASCII only);
//!   - `remove_articles` is `re.sub(r'\b(a|an|the)\b', ' ', text)`. With Python's Unicode `\w`
//!     (letters `L*`, numbers `N*` and `_`), that pattern matches exactly the maximal runs of word
//!     characters that equal `a`, `an` or `the`; each is replaced by one space;
//!   - `white_space_fix` is `' '.join(text.split())`: Python's `str.isspace()` is Unicode
//!     White_Space plus U+001C..U+001F (bidi class B/S), so those four split too.
//!
//!   `EM = max_g [normalize(pred) == normalize(g)]`,
//!   `F1 = max_g 2PR/(P+R)` over whitespace tokens of the normalised strings, with
//!   `P = |pred ∩ g| / |pred|`, `R = |pred ∩ g| / |g|` (multiset intersection, Python's
//!   `Counter & Counter`) and `F1 = 0` when the intersection is empty. The float operations are
//!   the official script's, in its order, so results are bit-identical.
//!
//! * DPR has-answer (Karpukhin et al., 2020; `dpr/data/qa_validation.py` with `SimpleTokenizer`):
//!   text and answers are NFD-normalised, then tokenised by the regex
//!   `([\p{L}\p{N}\p{M}]+)|([^\p{Z}\p{C}])`: a token is a maximal run of letters, numbers and marks,
//!   or any single character that is none of those and is not a separator (`Z*`) or an "other"
//!   (`C*`: controls, format, private use, unassigned) character; each token is lower-cased with
//!   `str.lower()`. A passage has the answer when any answer's token sequence is a contiguous
//!   subsequence of the passage's tokens. One deviation: DPR counts an answer with no tokens (say
//!   `"  "`) as found in every passage; here it is rejected as an input error.
//!
//! Unicode tables: the Rust side uses those of std (lower-casing, White_Space),
//! `unicode-general-category` (Unicode 16) and `unicode-normalization`; the Python originals use
//! the running interpreter's (`unicodedata.unidata_version`, 14.0 for Python 3.11; the `regex`
//! module has its own). They agree on every code point assigned in the interpreter's version (the
//! tests sweep them all); code points unassigned there may be treated differently.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use rayon::prelude::*;
use unicode_general_category::{get_general_category, GeneralCategory as Gc};
use unicode_normalization::{is_nfd_quick, IsNormalized, UnicodeNormalization};

/// A bad argument; the message names the offending index/value and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerError(pub String);

impl fmt::Display for AnswerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AnswerError {}

/// `major_category` of the ASCII characters.
const ASCII_CATEGORY: [u8; 128] = {
    let mut t = [b'P'; 128];
    let mut i = 0;
    while i < 128 {
        let c = i as u8;
        t[i] = match c {
            b'a'..=b'z' | b'A'..=b'Z' => b'L',
            b'0'..=b'9' => b'N',
            b' ' => b'Z',
            0..=0x1f | 0x7f => b'C',
            b'$' | b'+' | b'<' | b'=' | b'>' | b'^' | b'`' | b'|' | b'~' => b'S',
            _ => b'P',
        };
        i += 1;
    }
    t
};

/// First letter of the Unicode general category (`'L'`, `'N'`, `'M'`, `'Z'`, `'C'`, `'P'`, `'S'`).
#[inline]
fn major_category(c: char) -> u8 {
    if c.is_ascii() {
        return ASCII_CATEGORY[c as usize];
    }
    match get_general_category(c) {
        Gc::UppercaseLetter
        | Gc::LowercaseLetter
        | Gc::TitlecaseLetter
        | Gc::ModifierLetter
        | Gc::OtherLetter => b'L',
        Gc::DecimalNumber | Gc::LetterNumber | Gc::OtherNumber => b'N',
        Gc::NonspacingMark | Gc::SpacingMark | Gc::EnclosingMark => b'M',
        Gc::SpaceSeparator | Gc::LineSeparator | Gc::ParagraphSeparator => b'Z',
        Gc::Control | Gc::Format | Gc::Surrogate | Gc::PrivateUse | Gc::Unassigned => b'C',
        Gc::ConnectorPunctuation
        | Gc::DashPunctuation
        | Gc::OpenPunctuation
        | Gc::ClosePunctuation
        | Gc::InitialPunctuation
        | Gc::FinalPunctuation
        | Gc::OtherPunctuation => b'P',
        Gc::MathSymbol | Gc::CurrencySymbol | Gc::ModifierSymbol | Gc::OtherSymbol => b'S',
        // The enum is non-exhaustive; a future category counts as "other" (as unassigned would).
        #[allow(unreachable_patterns)]
        _ => b'C',
    }
}

/// Python `re`'s Unicode `\w`: `str.isalnum()` (general categories `L*` and `N*`) or `_`.
fn is_py_word(c: char) -> bool {
    c == '_' || matches!(major_category(c), b'L' | b'N')
}

/// Python's `str.isspace()`: Unicode White_Space plus U+001C..U+001F.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `re.sub(r'\b(a|an|the)\b', ' ', text)` with Python's Unicode `\b`: every maximal run of word
/// characters equal to `a`, `an` or `the` becomes one space; everything else is kept.
fn remove_articles(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run_start: Option<usize> = None;
    let flush = |out: &mut String, run: &str| {
        if matches!(run, "a" | "an" | "the") {
            out.push(' ');
        } else {
            out.push_str(run);
        }
    };
    for (i, c) in text.char_indices() {
        if is_py_word(c) {
            run_start.get_or_insert(i);
        } else {
            if let Some(s) = run_start.take() {
                flush(&mut out, &text[s..i]);
            }
            out.push(c);
        }
    }
    if let Some(s) = run_start {
        flush(&mut out, &text[s..]);
    }
    out
}

/// SQuAD v1.1 `normalize_answer`: lower → drop ASCII punctuation → drop articles → collapse
/// whitespace (tokens joined by single spaces, no leading/trailing space).
pub fn normalize_answer(s: &str) -> String {
    let no_punc: String = s
        .to_lowercase()
        .chars()
        .filter(|c| !c.is_ascii_punctuation())
        .collect();
    let no_articles = remove_articles(&no_punc);
    let mut out = String::with_capacity(no_articles.len());
    for tok in no_articles.split(is_py_space).filter(|t| !t.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(tok);
    }
    out
}

/// Whitespace tokens of an already normalised string (`normalized.split()`).
fn tokens(normalized: &str) -> Vec<&str> {
    normalized.split(' ').filter(|t| !t.is_empty()).collect()
}

/// Token F1 of two token lists, as the official `f1_score` (0 when no token is shared).
fn f1_tokens(pred: &[&str], gold: &[&str]) -> f64 {
    let mut gold_counts: HashMap<&str, usize> = HashMap::with_capacity(gold.len());
    for t in gold {
        *gold_counts.entry(t).or_insert(0) += 1;
    }
    let mut num_same = 0usize;
    for t in pred {
        if let Some(c) = gold_counts.get_mut(t) {
            if *c > 0 {
                *c -= 1;
                num_same += 1;
            }
        }
    }
    if num_same == 0 {
        return 0.0;
    }
    let precision = num_same as f64 / pred.len() as f64;
    let recall = num_same as f64 / gold.len() as f64;
    (2.0 * precision * recall) / (precision + recall)
}

/// `(EM, F1)` of one prediction, each the maximum over `golds` (0 for an empty `golds`).
pub fn em_f1<S: AsRef<str>>(pred: &str, golds: &[S]) -> (f64, f64) {
    let pred_norm = normalize_answer(pred);
    let pred_toks = tokens(&pred_norm);
    let (mut em, mut f1) = (0.0f64, 0.0f64);
    for g in golds {
        let gold_norm = normalize_answer(g.as_ref());
        if gold_norm == pred_norm {
            em = 1.0;
        }
        f1 = f1.max(f1_tokens(&pred_toks, &tokens(&gold_norm)));
    }
    (em, f1)
}

/// Per-item SQuAD EM and F1 (each in [0, 1], max over that item's golds), in parallel.
/// Errors when the lengths differ or an item has no gold answer.
pub fn squad_em_f1<P, G>(preds: &[P], golds: &[Vec<G>]) -> Result<(Vec<f64>, Vec<f64>), AnswerError>
where
    P: AsRef<str> + Sync,
    G: AsRef<str> + Sync,
{
    if preds.len() != golds.len() {
        return Err(AnswerError(format!(
            "preds and golds differ in length: expected len(golds) == len(preds) == {}, got {}",
            preds.len(),
            golds.len()
        )));
    }
    if let Some(i) = golds.iter().position(|g| g.is_empty()) {
        return Err(AnswerError(format!(
            "golds[{i}] is empty: expected at least one gold answer per prediction"
        )));
    }
    let pairs: Vec<(f64, f64)> = preds
        .par_iter()
        .zip(golds.par_iter())
        .map(|(p, g)| em_f1(p.as_ref(), g))
        .collect();
    Ok(pairs.into_iter().unzip())
}

/// Tokens of one text, lower-cased, stored back to back in one buffer (no allocation per token).
#[derive(Debug, Default)]
struct Tokens {
    buf: String,
    /// Byte range of each token in `buf`.
    spans: Vec<(usize, usize)>,
}

impl Tokens {
    fn len(&self) -> usize {
        self.spans.len()
    }

    fn get(&self, i: usize) -> &str {
        let (s, e) = self.spans[i];
        &self.buf[s..e]
    }

    /// Append `tok` lower-cased with Python's `str.lower()` (Final_Sigma within the token).
    fn push_lower(&mut self, tok: &str) {
        let start = self.buf.len();
        if tok.is_ascii() {
            self.buf
                .extend(tok.bytes().map(|b| b.to_ascii_lowercase() as char));
        } else {
            self.buf.push_str(&tok.to_lowercase());
        }
        self.spans.push((start, self.buf.len()));
    }

    /// Replace the contents with the DPR tokens of `text` (see `dpr_tokenize`).
    fn tokenize(&mut self, text: &str) {
        self.buf.clear();
        self.spans.clear();
        let nfd: Cow<'_, str> = if is_nfd_quick(text.chars()) == IsNormalized::Yes {
            Cow::Borrowed(text)
        } else {
            Cow::Owned(text.nfd().collect())
        };
        let bytes = nfd.as_bytes();
        let mut run_start: Option<usize> = None;
        let mut i = 0;
        while i < bytes.len() {
            // ASCII is most text: classify the byte without decoding a char.
            let (cat, width) = if bytes[i].is_ascii() {
                (major_category(bytes[i] as char), 1)
            } else {
                let c = nfd[i..].chars().next().expect("i is on a char boundary");
                (major_category(c), c.len_utf8())
            };
            match cat {
                b'L' | b'N' | b'M' => {
                    run_start.get_or_insert(i);
                }
                _ => {
                    if let Some(s) = run_start.take() {
                        self.push_lower(&nfd[s..i]);
                    }
                    if cat != b'Z' && cat != b'C' {
                        self.push_lower(&nfd[i..i + width]);
                    }
                }
            }
            i += width;
        }
        if let Some(s) = run_start {
            self.push_lower(&nfd[s..]);
        }
    }

    /// Whether `needle` (non-empty) occurs as a contiguous run of these tokens.
    fn contains_seq(&self, needle: &[String]) -> bool {
        let (n, m) = (self.len(), needle.len());
        m <= n && (0..=n - m).any(|s| needle.iter().enumerate().all(|(j, t)| self.get(s + j) == t))
    }
}

/// DPR `SimpleTokenizer` + `words(uncased=True)` on NFD-normalised text: maximal runs of
/// letters/numbers/marks and single characters that are not separators or "other", lower-cased.
pub fn dpr_tokenize(text: &str) -> Vec<String> {
    let mut toks = Tokens::default();
    toks.tokenize(text);
    (0..toks.len()).map(|i| toks.get(i).to_owned()).collect()
}

/// For each passage, whether any of `answers` occurs in it (DPR-style, see the module docs).
/// `answer_tokens` are `dpr_tokenize`d answers, each non-empty.
fn has_answer_one<P: AsRef<str>>(passages: &[P], answer_tokens: &[Vec<String>]) -> Vec<bool> {
    let mut toks = Tokens::default();
    passages
        .iter()
        .map(|p| {
            toks.tokenize(p.as_ref());
            answer_tokens.iter().any(|a| toks.contains_seq(a))
        })
        .collect()
}

/// `out[i][j]`: whether passage `passages[i][j]` contains any answer of `answers[i]` (DPR-style;
/// an empty `answers[i]` gives all false), in parallel over queries. Errors when the lengths
/// differ or an answer has no tokens.
pub fn has_answer<P, A>(
    passages: &[Vec<P>],
    answers: &[Vec<A>],
) -> Result<Vec<Vec<bool>>, AnswerError>
where
    P: AsRef<str> + Sync,
    A: AsRef<str> + Sync,
{
    if passages.len() != answers.len() {
        return Err(AnswerError(format!(
            "passages and answers differ in length: expected len(answers) == len(passages) == {}, got {}",
            passages.len(),
            answers.len()
        )));
    }
    let answer_tokens: Vec<Vec<Vec<String>>> = answers
        .par_iter()
        .map(|ans| ans.iter().map(|a| dpr_tokenize(a.as_ref())).collect())
        .collect();
    for (i, toks) in answer_tokens.iter().enumerate() {
        if let Some(j) = toks.iter().position(|t| t.is_empty()) {
            return Err(AnswerError(format!(
                "answers[{i}][{j}] = {:?} has no tokens: expected an answer with at least one \
                 letter, number, mark, punctuation or symbol",
                answers[i][j].as_ref()
            )));
        }
    }
    Ok(passages
        .par_iter()
        .zip(answer_tokens.par_iter())
        .map(|(ps, ans)| has_answer_one(ps, ans))
        .collect())
}

#[cfg(feature = "python")]
mod py {
    use numpy::{IntoPyArray, PyArray1};
    use pyo3::exceptions::PyValueError;
    use pyo3::prelude::*;

    /// Per-item (EM, F1) arrays.
    type EmF1<'py> = (Bound<'py, PyArray1<f64>>, Bound<'py, PyArray1<f64>>);

    /// normalize_answer(s: str) -> str
    ///
    /// SQuAD v1.1 answer normalisation: lower, drop ASCII punctuation, drop the articles
    /// a/an/the (whole words), collapse whitespace.
    #[pyfunction]
    #[pyo3(name = "normalize_answer")]
    pub fn normalize_answer(s: &str) -> String {
        super::normalize_answer(s)
    }

    /// squad_em_f1(preds: list[str], golds: list[list[str]]) -> tuple[ndarray, ndarray]
    ///
    /// Per-item SQuAD v1.1 exact match and token F1 (float64, in [0, 1]), each the maximum over
    /// that item's gold answers. ValueError on a length mismatch or an empty gold list.
    #[pyfunction]
    #[pyo3(name = "squad_em_f1")]
    pub fn squad_em_f1<'py>(
        py: Python<'py>,
        preds: Vec<String>,
        golds: Vec<Vec<String>>,
    ) -> PyResult<EmF1<'py>> {
        let (em, f1) = py
            .detach(|| super::squad_em_f1(&preds, &golds))
            .map_err(|e| PyValueError::new_err(e.0))?;
        Ok((em.into_pyarray(py), f1.into_pyarray(py)))
    }

    /// dpr_tokenize(text: str) -> list[str]
    ///
    /// DPR SimpleTokenizer tokens of NFD(text), lower-cased (what has_answer compares).
    #[pyfunction]
    #[pyo3(name = "dpr_tokenize")]
    pub fn dpr_tokenize(text: &str) -> Vec<String> {
        super::dpr_tokenize(text)
    }

    /// has_answer(passages: list[list[str]], answers: list[list[str]]) -> list[list[bool]]
    ///
    /// out[i][j]: whether passages[i][j] contains any of answers[i] as a contiguous token
    /// sequence (DPR SimpleTokenizer, NFD, uncased). ValueError on a length mismatch or an
    /// answer without tokens.
    #[pyfunction]
    #[pyo3(name = "has_answer")]
    pub fn has_answer(
        py: Python<'_>,
        passages: Vec<Vec<String>>,
        answers: Vec<Vec<String>>,
    ) -> PyResult<Vec<Vec<bool>>> {
        py.detach(|| super::has_answer(&passages, &answers))
            .map_err(|e| PyValueError::new_err(e.0))
    }
}

#[cfg(feature = "python")]
use pyo3::prelude::*;

#[cfg(feature = "python")]
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(py::normalize_answer, m)?)?;
    m.add_function(wrap_pyfunction!(py::squad_em_f1, m)?)?;
    m.add_function(wrap_pyfunction!(py::dpr_tokenize, m)?)?;
    m.add_function(wrap_pyfunction!(py::has_answer, m)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_squad() {
        assert_eq!(normalize_answer("The Cat sat!"), "cat sat");
        assert_eq!(normalize_answer("  an apple,  a pear "), "apple pear");
        // Articles only as whole words; punctuation is removed first, so "the-end" → "theend".
        assert_eq!(
            normalize_answer("theatre and the-end"),
            "theatre and theend"
        );
        assert_eq!(normalize_answer("a_b"), "ab");
        // Unicode: lower-casing and a Unicode \b ("é" is a word character, "°" is not).
        assert_eq!(normalize_answer("ÉCOLE a°the"), "école °");
        assert_eq!(normalize_answer("theé"), "theé");
        assert_eq!(normalize_answer("ΟΔΟΣ"), "οδος");
        // U+001C splits in Python's str.split() but is not Unicode White_Space.
        assert_eq!(normalize_answer("x\u{1c}y"), "x y");
        assert_eq!(normalize_answer(""), "");
    }

    #[test]
    fn hand_computed_em_f1() {
        // pred tokens [cat, sat], gold tokens [cat, sat, down]: P = 1, R = 2/3, F1 = 0.8.
        let (em, f1) = em_f1("the Cat sat", &["a cat sat down"]);
        assert_eq!(em, 0.0);
        assert!((f1 - 0.8).abs() < 1e-12);
        assert_eq!(em_f1("The cat.", &["dog", "cat"]), (1.0, 1.0));
        // Counter overlap of "x x y" and "x y y" is {x, y}: 2 tokens, P = R = 2/3.
        let (_, f1) = em_f1("x x y", &["x y y"]);
        assert!((f1 - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(em_f1("", &["the"]), (1.0, 0.0));
    }

    #[test]
    fn squad_errors_name_the_value() {
        let e = squad_em_f1(&["a"], &[] as &[Vec<&str>]).unwrap_err();
        assert!(
            e.0.contains("expected len(golds) == len(preds) == 1, got 0"),
            "{e}"
        );
        let e = squad_em_f1(&["a", "b"], &[vec!["a"], vec![]]).unwrap_err();
        assert!(e.0.contains("golds[1] is empty"), "{e}");
    }

    #[test]
    fn ascii_table_matches_general_category() {
        for b in 0u8..128 {
            let from_table = major_category(b as char);
            let from_ucd = get_general_category(b as char).abbreviation().as_bytes()[0];
            assert_eq!(from_table, from_ucd, "{b:#x}");
        }
    }

    #[test]
    fn dpr_tokens() {
        assert_eq!(
            dpr_tokenize("Hello, World-2!"),
            ["hello", ",", "world", "-", "2", "!"]
        );
        // NFD splits "é" into "e" + U+0301 (a mark, kept inside the run).
        assert_eq!(dpr_tokenize("Café\u{200b}x"), ["cafe\u{301}", "x"]);
        assert_eq!(dpr_tokenize(" \t\n"), Vec::<String>::new());
    }

    #[test]
    fn has_answer_contiguous_tokens() {
        let passages = vec![vec!["The year 1990s was fine.", "In 1990, it rained."]];
        let got = has_answer(&passages, &[vec!["1990"]]).unwrap();
        assert_eq!(got, vec![vec![false, true]]);
        let got = has_answer(&passages, &[vec!["RAINED", "fine"]]).unwrap();
        assert_eq!(got, vec![vec![true, true]]);
        let got = has_answer(&passages, &[Vec::<&str>::new()]).unwrap();
        assert_eq!(got, vec![vec![false, false]]);
        let e = has_answer(&passages, &[vec!["x", " "]]).unwrap_err();
        assert!(e.0.contains("answers[0][1] = \" \" has no tokens"), "{e}");
        let e = has_answer(&passages, &[] as &[Vec<&str>]).unwrap_err();
        assert!(e.0.contains("got 0"), "{e}");
    }
}
