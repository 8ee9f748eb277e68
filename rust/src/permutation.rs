//! Parse an LLM's listwise ranking text into a full, valid permutation, with repair stats; and the
//! sliding-window merge used by RankGPT-style back-to-front windows.
//!
//! The prompt shows `n` candidates as `[1]` .. `[n]` (1-based, first-stage order); the parsed
//! permutation is 0-based: `perm[r]` is the first-stage index of the candidate ranked `r`-th.
//! Canonical text form: `[a] > [b] > ...` (1-based), written by [`format_permutation`]; parsing it
//! gives the permutation back.
//!
//! # Grammar (the reference in `tests/reference_permutation.py` implements exactly this)
//!
//! Character classes (all ASCII unless named):
//! - `WS`   = space, `\t`, `\n`, `\r`, `\x0b`, `\x0c` (no Unicode spaces);
//! - `WORD` = `A-Z a-z 0-9 _`; digits are `0-9` only (no Unicode digits);
//! - `SEP`  = `WS`, `>` `,` `;` `|` `-` `=` `"` `'` `[` `]` `(` `)` `*` `#`, the backtick, and
//!   `→` (U+2192), `»` (U+00BB), `≫` (U+226B), `≻` (U+227B). Not `<` (it would reverse the order)
//!   and not `:` (`Rank 1: 3` must not join `1` and `3`).
//!
//! Keywords and tags match ASCII case-insensitively.
//!
//! 1. **Reasoning blocks.** Tags are `<think>`, `<thinking>` (openers) and `</think>`,
//!    `</thinking>` (closers), found left to right. Outside a block, an opener starts a block and
//!    the text before it is kept; inside, the first closer ends it (further openers are ignored).
//!    A closer outside any block drops everything before it (the reasoning began in the prompt, as
//!    with chat templates that pre-fill `<think>`). An unclosed block runs to the end: an output
//!    that starts with `<think>` and never closes it has no answer yet. The kept pieces are joined
//!    with `\n`; this is the *visible text* `V`.
//! 2. **Bracketed ids** `\[WS*([0-9]+)WS*\]`. If `V` has at least one, the ids are all of them,
//!    in order, and nothing else is read (the prompt's own format wins over everything).
//! 3. Otherwise two readings are compared and the one with more ids wins, mentions on a tie:
//!    - **mentions** `(?<!WORD)(passage|document|doc)WS*#?WS*([0-9]+)`: all of them, in order
//!      (`Passage 3, Passage 1`; `1. Passage 3` on numbered lines; prose such as
//!      `passage 2 is best, then passage 3`);
//!    - **sequence**: first, list numbers at line starts, `^[ \t]*[0-9]+[.)]` followed by a space
//!      or tab, are blanked to spaces (in `1. 3\n2. 1` the `1.`/`2.` are list numbers, not ids).
//!      Then the id tokens are the maximal digit runs not glued to a letter or `_` on either side
//!      (`10th`, `x2`, `3rd` are not ids). Two consecutive tokens belong to the same *run* when
//!      the text between them consists only of `SEP` characters, `.` followed by `WS`, and the
//!      words `passage(s)`, `document(s)`, `doc(s)`. The reading is the longest run, the first
//!      one on ties. This reads `3 > 1 > 2`, `3, 1, 2`, `3 -> 1`, JSON / Python arrays
//!      `[3, 1, 2]` and `["3", "1"]`, one id per line, numbered lines, and `Passage 3 > 1 > 2`,
//!      while chatter numbers (`Here are the 10 passages:`, `in 2024`) stay out of the run.
//!    - If neither reading has an id, the output is *unparseable*.
//! 4. **Repair.** Each id `k` (its digits read exactly; any size, `99999999999999999999`
//!    included) maps to index `k-1` when `1 <= k <= n`; otherwise it is *out of range* (an
//!    invented id: `0` or `> n`) and dropped. A repeat of an index already taken is a *duplicate*
//!    and dropped, so first occurrences keep their order. Indices never mentioned are *missing* and
//!    appended in first-stage order (ascending). `unparseable` means no id survived (the result
//!    is the first-stage order); `identity` means the result is `0..n-1`.
//!
//! Steps 2 and 3 read `V` as is, except that the list-number blanking applies to the sequence
//! reading only. Ids are reported (by [`extract_ids`]) saturated at `u64::MAX`.
//!
//! # Batch
//! [`parse_permutations_padded`] runs over many outputs with rayon, one reusable [`Scratch`] per
//! worker. The Python wrapper works in blocks of 16,384 texts: it joins a block with NUL and
//! encodes it once (copying item by item when a text contains NUL), releases the GIL to parse the
//! block, and finally returns a padded `(B, max n)` int32 array (`-1` pads) plus one numpy array
//! per repair stat.

use std::borrow::Cow;

use rayon::prelude::*;

/// What the parser had to do to turn an output into a full permutation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RepairStats {
    /// In-range ids dropped because their candidate was already placed.
    pub duplicates: usize,
    /// Ids dropped because they were `0` or `> n` (invented ids).
    pub out_of_range: usize,
    /// Candidates never mentioned, appended in first-stage order.
    pub missing: usize,
    /// No usable id at all: the whole first-stage order was appended.
    pub unparseable: bool,
    /// The result is `0..n-1` (the first-stage order).
    pub identity: bool,
}

/// Which reading of the visible text supplied the ids (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdFormat {
    Bracket,
    Mention,
    Sequence,
    Nothing,
}

impl IdFormat {
    pub fn name(self) -> &'static str {
        match self {
            IdFormat::Bracket => "bracket",
            IdFormat::Mention => "mention",
            IdFormat::Sequence => "sequence",
            IdFormat::Nothing => "none",
        }
    }
}

#[inline]
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

#[inline]
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

#[inline]
fn is_glue(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

#[inline]
fn is_sep_char(c: char) -> bool {
    matches!(
        c,
        ' ' | '\t'
            | '\n'
            | '\r'
            | '\x0b'
            | '\x0c'
            | '>'
            | ','
            | ';'
            | '|'
            | '-'
            | '='
            | '"'
            | '\''
            | '['
            | ']'
            | '('
            | ')'
            | '*'
            | '`'
            | '#'
            | '\u{2192}'
            | '\u{00BB}'
            | '\u{226B}'
            | '\u{227B}'
    )
}

/// Value of an ASCII digit run, saturating at `u64::MAX` (far above any candidate count, so a huge
/// id is simply out of range).
#[inline]
fn digits_value(d: &[u8]) -> u64 {
    let mut v: u64 = 0;
    for &c in d {
        v = v.saturating_mul(10).saturating_add(u64::from(c - b'0'));
    }
    v
}

/// Position of the first `needle` in `hay` (word-at-a-time: outputs are mostly long runs of bytes
/// the grammar does not care about).
#[inline]
fn find_byte(hay: &[u8], needle: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pattern = LO.wrapping_mul(u64::from(needle));
    let mut i = 0usize;
    while i + 8 <= hay.len() {
        let word = u64::from_le_bytes(hay[i..i + 8].try_into().expect("8 bytes")) ^ pattern;
        if word.wrapping_sub(LO) & !word & HI != 0 {
            break;
        }
        i += 8;
    }
    hay[i..].iter().position(|&c| c == needle).map(|p| p + i)
}

#[inline]
fn starts_with_ci(b: &[u8], at: usize, word: &[u8]) -> bool {
    b.len() >= at + word.len() && b[at..at + word.len()].eq_ignore_ascii_case(word)
}

/// A `<think>`-family tag starting at `b[i] == b'<'`: `(end, is_closer)`.
fn match_tag(b: &[u8], i: usize) -> Option<(usize, bool)> {
    let mut j = i + 1;
    let closer = b.get(j) == Some(&b'/');
    if closer {
        j += 1;
    }
    if !starts_with_ci(b, j, b"think") {
        return None;
    }
    j += 5;
    match b.get(j) {
        Some(b'>') => Some((j + 1, closer)),
        _ if starts_with_ci(b, j, b"ing") && b.get(j + 3) == Some(&b'>') => Some((j + 4, closer)),
        _ => None,
    }
}

/// Step 1 of the grammar: the text outside reasoning blocks, pieces joined with `\n`.
pub fn visible_text(text: &str) -> Cow<'_, str> {
    let b = text.as_bytes();
    let mut kept: Vec<(usize, usize)> = Vec::new();
    let mut inside = false;
    let mut seg_start = 0usize;
    let mut any_tag = false;
    let mut i = 0usize;
    while let Some(p) = find_byte(&b[i..], b'<') {
        i += p;
        {
            if let Some((end, closer)) = match_tag(b, i) {
                any_tag = true;
                match (inside, closer) {
                    (false, false) => {
                        kept.push((seg_start, i));
                        inside = true;
                    }
                    (true, true) => {
                        inside = false;
                        seg_start = end;
                    }
                    (false, true) => {
                        kept.clear();
                        seg_start = end;
                    }
                    (true, false) => {}
                }
                i = end;
                continue;
            }
        }
        i += 1;
    }
    if !any_tag {
        return Cow::Borrowed(text);
    }
    if !inside {
        kept.push((seg_start, b.len()));
    }
    let mut out = String::with_capacity(text.len());
    for (k, &(s, e)) in kept.iter().enumerate() {
        if k > 0 {
            out.push('\n');
        }
        out.push_str(&text[s..e]);
    }
    Cow::Owned(out)
}

/// Step 2: all `[k]` ids in order. (The hot loop: most outputs are `[a] > [b] > ...`.)
fn bracket_ids(b: &[u8], out: &mut Vec<u64>) {
    let len = b.len();
    let mut i = 0usize;
    while i < len {
        let c = b[i];
        i += 1;
        if c != b'[' {
            continue;
        }
        // `i` is just past `[`; on failure the scan resumes there.
        let mut j = i;
        while j < len && is_ws(b[j]) {
            j += 1;
        }
        let d0 = j;
        let mut v: u64 = 0;
        while j < len {
            let d = b[j].wrapping_sub(b'0');
            if d > 9 {
                break;
            }
            v = v.saturating_mul(10).saturating_add(u64::from(d));
            j += 1;
        }
        if j == d0 {
            continue;
        }
        while j < len && is_ws(b[j]) {
            j += 1;
        }
        if j < len && b[j] == b']' {
            out.push(v);
            i = j + 1;
        }
    }
}

const KEYWORDS: [&[u8]; 3] = [b"passage", b"document", b"doc"];

/// A mention at `i`: keyword, `WS* #? WS*`, digits. Returns `(digits_start, digits_end)`.
fn match_mention(b: &[u8], i: usize) -> Option<(usize, usize)> {
    for kw in KEYWORDS {
        if !starts_with_ci(b, i, kw) {
            continue;
        }
        let mut j = i + kw.len();
        while j < b.len() && is_ws(b[j]) {
            j += 1;
        }
        if j < b.len() && b[j] == b'#' {
            j += 1;
        }
        while j < b.len() && is_ws(b[j]) {
            j += 1;
        }
        let d0 = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if j > d0 {
            return Some((d0, j));
        }
    }
    None
}

/// Step 3, first reading: all keyword mentions in order.
fn mention_ids(b: &[u8], out: &mut Vec<u64>) {
    let mut i = 0usize;
    while i < b.len() {
        if matches!(b[i], b'p' | b'P' | b'd' | b'D') && (i == 0 || !is_word(b[i - 1])) {
            if let Some((d0, d1)) = match_mention(b, i) {
                out.push(digits_value(&b[d0..d1]));
                i = d1;
                continue;
            }
        }
        i += 1;
    }
}

/// Blank list numbers at line starts (`^[ \t]*[0-9]+[.)]` before a space or tab) to spaces.
fn blank_list_numbers(b: &mut [u8]) {
    let mut ls = 0usize;
    loop {
        let mut j = ls;
        while j < b.len() && (b[j] == b' ' || b[j] == b'\t') {
            j += 1;
        }
        let d0 = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if j > d0
            && j + 1 < b.len()
            && (b[j] == b'.' || b[j] == b')')
            && (b[j + 1] == b' ' || b[j + 1] == b'\t')
        {
            for c in &mut b[ls..=j] {
                *c = b' ';
            }
        }
        // Next line start.
        match b[ls..].iter().position(|&c| c == b'\n') {
            Some(p) => ls += p + 1,
            None => break,
        }
    }
}

/// Whether the text between two tokens keeps them in one run.
fn is_run_gap(gap: &str) -> bool {
    let g = gap.as_bytes();
    let mut i = 0usize;
    while i < g.len() {
        let c = g[i];
        if c < 0x80 {
            if is_sep_char(c as char) {
                i += 1;
                continue;
            }
            if c == b'.' && i + 1 < g.len() && is_ws(g[i + 1]) {
                i += 1;
                continue;
            }
            if matches!(c, b'p' | b'P' | b'd' | b'D') {
                // passages? | documents? | docs?  (longest first; see the module doc)
                let mut matched = 0usize;
                for kw in KEYWORDS {
                    if starts_with_ci(g, i, kw) {
                        matched = kw.len();
                        if g.get(i + matched).is_some_and(|&s| s == b's' || s == b'S') {
                            matched += 1;
                        }
                        break;
                    }
                }
                if matched > 0 {
                    i += matched;
                    continue;
                }
            }
            return false;
        }
        // A non-ASCII character: decode it (the gap is valid UTF-8 and `i` is a boundary).
        let ch = gap[i..].chars().next().expect("char boundary");
        if !is_sep_char(ch) {
            return false;
        }
        i += ch.len_utf8();
    }
    true
}

/// Step 3, second reading: the longest run of id tokens (list numbers blanked first).
fn sequence_ids(v: &str, out: &mut Vec<u64>, buf: &mut Vec<u8>, tokens: &mut Vec<(usize, usize)>) {
    buf.clear();
    buf.extend_from_slice(v.as_bytes());
    blank_list_numbers(buf);
    let b = &buf[..];
    // Blanking only replaces ASCII bytes by spaces, so `buf` is still valid UTF-8.
    let s = std::str::from_utf8(b).expect("blanking keeps UTF-8 valid");
    tokens.clear();
    let mut i = 0usize;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let d0 = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let glued_before = d0 > 0 && is_glue(b[d0 - 1]);
            let glued_after = i < b.len() && is_glue(b[i]);
            if !glued_before && !glued_after {
                tokens.push((d0, i));
            }
        } else {
            i += 1;
        }
    }
    if tokens.is_empty() {
        return;
    }
    let (mut best_start, mut best_len) = (0usize, 1usize);
    let mut run_start = 0usize;
    for t in 1..tokens.len() {
        if !is_run_gap(&s[tokens[t - 1].1..tokens[t].0]) {
            run_start = t;
        }
        let len = t - run_start + 1;
        if len > best_len {
            best_start = run_start;
            best_len = len;
        }
    }
    for &(d0, d1) in &tokens[best_start..best_start + best_len] {
        out.push(digits_value(&b[d0..d1]));
    }
}

/// Reusable buffers, so that parsing many outputs allocates only while they grow.
#[derive(Default)]
pub struct Scratch {
    ids: Vec<u64>,
    mentions: Vec<u64>,
    blanked: Vec<u8>,
    tokens: Vec<(usize, usize)>,
    seen: Vec<bool>,
    /// The permutation written by the last [`parse_with`] call.
    pub perm: Vec<usize>,
}

/// Steps 1-3 into `sc.ids`; returns the reading used.
fn extract_into(text: &str, sc: &mut Scratch) -> IdFormat {
    let v = visible_text(text);
    let b = v.as_bytes();
    sc.ids.clear();
    bracket_ids(b, &mut sc.ids);
    if !sc.ids.is_empty() {
        return IdFormat::Bracket;
    }
    sc.mentions.clear();
    mention_ids(b, &mut sc.mentions);
    sequence_ids(&v, &mut sc.ids, &mut sc.blanked, &mut sc.tokens);
    if !sc.mentions.is_empty() && sc.mentions.len() >= sc.ids.len() {
        std::mem::swap(&mut sc.ids, &mut sc.mentions);
        IdFormat::Mention
    } else if !sc.ids.is_empty() {
        IdFormat::Sequence
    } else {
        IdFormat::Nothing
    }
}

/// The 1-based ids the output names, in order, and which reading supplied them (steps 1-3).
pub fn extract_ids(text: &str) -> (IdFormat, Vec<u64>) {
    let mut sc = Scratch::default();
    let fmt = extract_into(text, &mut sc);
    (fmt, sc.ids)
}

/// Step 4 into `perm`, using `seen` as scratch.
fn repair_into(ids: &[u64], n: usize, seen: &mut Vec<bool>, perm: &mut Vec<usize>) -> RepairStats {
    seen.clear();
    seen.resize(n, false);
    perm.clear();
    let mut stats = RepairStats::default();
    for &k in ids {
        if k == 0 || k > n as u64 {
            stats.out_of_range += 1;
            continue;
        }
        let idx = (k - 1) as usize;
        if seen[idx] {
            stats.duplicates += 1;
        } else {
            seen[idx] = true;
            perm.push(idx);
        }
    }
    stats.unparseable = perm.is_empty();
    stats.missing = n - perm.len();
    for (idx, &s) in seen.iter().enumerate() {
        if !s {
            perm.push(idx);
        }
    }
    stats.identity = perm.iter().enumerate().all(|(r, &idx)| r == idx);
    stats
}

/// Step 4: 1-based ids -> a permutation of `0..n`, dropping duplicates and out-of-range ids and
/// appending missing indices in ascending order.
pub fn repair(ids: &[u64], n: usize) -> (Vec<usize>, RepairStats) {
    let mut perm = Vec::with_capacity(n);
    let stats = repair_into(ids, n, &mut Vec::new(), &mut perm);
    (perm, stats)
}

/// [`parse_permutation`] reusing `sc`; the permutation is left in `sc.perm`.
pub fn parse_with(text: &str, n: usize, sc: &mut Scratch) -> RepairStats {
    extract_into(text, sc);
    repair_into(&sc.ids, n, &mut sc.seen, &mut sc.perm)
}

/// Parse one output for `n` candidates: a permutation of `0..n` and what was repaired.
pub fn parse_permutation(text: &str, n: usize) -> (Vec<usize>, RepairStats) {
    let mut sc = Scratch::default();
    let stats = parse_with(text, n, &mut sc);
    (sc.perm, stats)
}

/// [`parse_permutation`] over many outputs in parallel (`ns[i]` candidates for `texts[i]`).
pub fn parse_permutations(texts: &[&str], ns: &[usize]) -> Vec<(Vec<usize>, RepairStats)> {
    assert_eq!(texts.len(), ns.len(), "one candidate count per text");
    texts
        .par_iter()
        .zip(ns.par_iter())
        .map_init(Scratch::default, |sc, (t, &n)| {
            let stats = parse_with(t, n, sc);
            (sc.perm.clone(), stats)
        })
        .collect()
}

/// Batch parse into a padded row-major `(texts.len(), width)` buffer (`-1` after `ns[i]` entries)
/// and one [`RepairStats`] per text. `width` must be at least every `ns[i]`; `width == 0` needs
/// every `ns[i] == 0`.
pub fn parse_permutations_padded(
    texts: &[&str],
    ns: &[usize],
    width: usize,
    out: &mut [i32],
    stats: &mut [RepairStats],
) {
    assert_eq!(texts.len(), ns.len(), "one candidate count per text");
    assert_eq!(stats.len(), texts.len(), "one stats slot per text");
    assert_eq!(
        out.len(),
        texts.len() * width,
        "out must be texts.len() * width"
    );
    assert!(
        ns.iter().all(|&n| n <= width),
        "width must be at least every n"
    );
    if width == 0 {
        stats
            .par_iter_mut()
            .zip(texts.par_iter())
            .for_each(|(st, t)| *st = parse_permutation(t, 0).1);
        return;
    }
    // Rows per task: enough work per task to amortise scheduling.
    const ROWS: usize = 256;
    out.par_chunks_mut(width * ROWS)
        .zip(stats.par_chunks_mut(ROWS))
        .zip(texts.par_chunks(ROWS).zip(ns.par_chunks(ROWS)))
        .for_each_init(Scratch::default, |sc, ((rows, sts), (ts, ks))| {
            for (((row, st), t), &n) in rows.chunks_mut(width).zip(sts.iter_mut()).zip(ts).zip(ks) {
                *st = parse_with(t, n, sc);
                for (slot, &p) in row.iter_mut().zip(sc.perm.iter()) {
                    *slot = p as i32;
                }
                for slot in row[n..].iter_mut() {
                    *slot = -1;
                }
            }
        });
}

/// The canonical text of a permutation: `[a] > [b] > ...` with 1-based ids (`""` when empty).
pub fn format_permutation(perm: &[usize]) -> String {
    let mut s = String::with_capacity(perm.len() * 6);
    for (r, &p) in perm.iter().enumerate() {
        if r > 0 {
            s.push_str(" > ");
        }
        s.push('[');
        s.push_str(&(p + 1).to_string());
        s.push(']');
    }
    s
}

/// `Err(message)` unless `perm` is a permutation of `0..perm.len()`.
pub fn check_permutation(perm: &[usize]) -> Result<(), String> {
    let mut seen = vec![false; perm.len()];
    for (pos, &p) in perm.iter().enumerate() {
        if p >= perm.len() {
            return Err(format!(
                "expected a permutation of 0..{}, got {} at position {}",
                perm.len(),
                p,
                pos
            ));
        }
        if seen[p] {
            return Err(format!(
                "expected a permutation of 0..{}, got {} twice (again at position {})",
                perm.len(),
                p,
                pos
            ));
        }
        seen[p] = true;
    }
    Ok(())
}

/// Merge one sliding window's ranking into the global order: with `w = window_perm.len()`, the
/// slice `order[start..start+w]` is replaced by `[order[start + window_perm[r]] for r in 0..w]`;
/// everything else stays. `window_perm` is the window's parsed permutation (0-based, local).
pub fn apply_window<T: Copy>(
    order: &[T],
    start: usize,
    window_perm: &[usize],
) -> Result<Vec<T>, String> {
    let w = window_perm.len();
    if start > order.len() || w > order.len() - start {
        return Err(format!(
            "window [{}, {}) does not fit in an order of length {}",
            start,
            start as u128 + w as u128,
            order.len()
        ));
    }
    check_permutation(window_perm).map_err(|e| format!("window_perm: {e}"))?;
    let mut out = order.to_vec();
    for (r, &p) in window_perm.iter().enumerate() {
        out[start + r] = order[start + p];
    }
    Ok(out)
}

/// Window starts for RankGPT's back-to-front sliding window over `n` candidates: `n - window`,
/// `n - window - step`, ... while positive, then `0` (so the last window is clamped to the top).
/// One window `[0]` when `0 < n <= window`; none when `n == 0`. Requires `window >= 1` and
/// `1 <= step <= window` (a larger step would leave candidates that no window ever sees).
pub fn window_starts(n: usize, window: usize, step: usize) -> Result<Vec<usize>, String> {
    if window == 0 {
        return Err("window must be >= 1, got 0".to_string());
    }
    if step == 0 || step > window {
        return Err(format!(
            "step must be in 1..={window} (the window size), got {step}"
        ));
    }
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut starts = Vec::new();
    let mut s = n.saturating_sub(window);
    while s > 0 {
        starts.push(s);
        s = s.saturating_sub(step);
    }
    starts.push(0);
    Ok(starts)
}

#[cfg(feature = "python")]
mod py {
    use super::*;
    use numpy::{PyArray1, PyArray2, PyArrayMethods};
    use pyo3::exceptions::PyValueError;
    use pyo3::prelude::*;
    use pyo3::types::{PyBytes, PyDict, PyList, PyString};

    fn stats_dict<'py>(py: Python<'py>, s: &RepairStats) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("duplicates", s.duplicates)?;
        d.set_item("out_of_range", s.out_of_range)?;
        d.set_item("missing", s.missing)?;
        d.set_item("unparseable", s.unparseable)?;
        d.set_item("identity", s.identity)?;
        Ok(d)
    }

    /// Append a Python str as UTF-8: one encode and one copy; lone surrogates become U+FFFD.
    fn push_text(buf: &mut String, s: &Bound<'_, PyString>) {
        match s.encode_utf8() {
            // CPython's UTF-8 encoder only produces valid UTF-8.
            Ok(bytes) => buf.push_str(
                std::str::from_utf8(bytes.as_bytes()).expect("CPython emits valid UTF-8"),
            ),
            Err(_) => buf.push_str(&s.to_string_lossy()),
        }
    }

    fn check_n(n: i64, what: impl FnOnce() -> String) -> PyResult<usize> {
        if n < 1 || n > i32::MAX as i64 {
            return Err(PyValueError::new_err(format!(
                "{}: expected a candidate count in 1..={}, got {n}",
                what(),
                i32::MAX
            )));
        }
        Ok(n as usize)
    }

    /// parse_permutation(text: str, n: int) -> (list[int], dict)
    ///
    /// Parse an LLM's ranking of `n` candidates (shown as `[1]`..`[n]`) into a permutation of
    /// `0..n-1`. The dict has `duplicates`, `out_of_range`, `missing` (ints) and `unparseable`,
    /// `identity` (bools). Grammar: see the `permutation` module doc.
    #[pyfunction]
    #[pyo3(name = "parse_permutation")]
    fn py_parse_permutation<'py>(
        py: Python<'py>,
        text: &Bound<'py, PyString>,
        n: i64,
    ) -> PyResult<(Vec<usize>, Bound<'py, PyDict>)> {
        let n = check_n(n, || "n".to_string())?;
        let t = text.to_string_lossy();
        let (perm, stats) = super::parse_permutation(&t, n);
        Ok((perm, stats_dict(py, &stats)?))
    }

    /// extract_ids(text: str) -> (str, list[int])
    ///
    /// The 1-based ids the output names, before any repair, and which reading supplied them:
    /// "bracket", "mention", "sequence" or "none". Ids above 2**64-1 are reported as 2**64-1.
    #[pyfunction]
    #[pyo3(name = "extract_ids")]
    fn py_extract_ids(text: &Bound<'_, PyString>) -> (&'static str, Vec<u64>) {
        let t = text.to_string_lossy();
        let (fmt, ids) = super::extract_ids(&t);
        (fmt.name(), ids)
    }

    /// Texts per GIL round trip in `parse_permutations`: joined, encoded and parsed a block at a
    /// time so the buffers stay small (cache-resident, reused by the allocator).
    const BLOCK: usize = 1 << 14;

    /// `texts[lo..hi]` as one UTF-8 buffer plus `(start, end)` byte ranges, lone surrogates
    /// replaced by U+FFFD. Fast path: one `"\0".join` and one encode; a text that itself contains
    /// NUL, or an item that is not a str, sends the block to the item-by-item copy (which names a
    /// bad item).
    fn block_texts(
        py: Python<'_>,
        list: &Bound<'_, PyList>,
        lo: usize,
        hi: usize,
        buf: &mut String,
        bounds: &mut Vec<(usize, usize)>,
    ) -> PyResult<()> {
        buf.clear();
        bounds.clear();
        let block = list.get_slice(lo, hi);
        let joined = PyString::new(py, "\0")
            .call_method1("join", (&block,))
            .and_then(|j| j.call_method1("encode", ("utf-8", "surrogatepass")));
        if let Ok(bytes) = joined {
            if let Ok(bytes) = bytes.cast::<PyBytes>() {
                buf.push_str(&String::from_utf8_lossy(bytes.as_bytes()));
                let mut start = 0usize;
                for (k, _) in buf.match_indices('\0') {
                    bounds.push((start, k));
                    start = k + 1;
                }
                bounds.push((start, buf.len()));
                if bounds.len() == hi - lo {
                    return Ok(());
                }
                buf.clear();
                bounds.clear();
            }
        }
        for (k, item) in block.iter().enumerate() {
            let s = item.cast::<PyString>().map_err(|_| {
                let tname = item
                    .get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_else(|_| "?".to_string());
                PyValueError::new_err(format!("texts[{}]: expected str, got {tname}", lo + k))
            })?;
            let start = buf.len();
            push_text(buf, s);
            bounds.push((start, buf.len()));
        }
        Ok(())
    }

    /// parse_permutations(texts: list[str], n: int | list[int]) -> (ndarray, dict[str, ndarray])
    ///
    /// Batch `parse_permutation` (rayon, GIL released). Returns `perms`, an int32 array of shape
    /// `(len(texts), max n)` whose row `i` holds the permutation in its first `n_i` entries and
    /// `-1` after them, and a dict of arrays of length `len(texts)`: `duplicates`,
    /// `out_of_range`, `missing` (int64) and `unparseable`, `identity` (bool). `n` is one count
    /// for every text or one per text (a sequence or an int64 array).
    #[pyfunction]
    #[pyo3(name = "parse_permutations")]
    #[allow(clippy::type_complexity)]
    fn py_parse_permutations<'py>(
        py: Python<'py>,
        texts: &Bound<'py, PyAny>,
        n: &Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyArray2<i32>>, Bound<'py, PyDict>)> {
        if texts.is_instance_of::<PyString>() {
            return Err(PyValueError::new_err(
                "texts: expected a sequence of str, got a single str",
            ));
        }
        let list = match texts.cast::<PyList>() {
            Ok(l) => l.clone(),
            Err(_) => PyList::new(py, texts.try_iter()?.collect::<PyResult<Vec<_>>>()?)?,
        };
        let count = list.len();
        let mut width = 0usize;
        let ns: Vec<usize> = if let Ok(k) = n.extract::<i64>() {
            width = check_n(k, || "n".to_string())?;
            vec![width; count]
        } else {
            let given: Vec<i64> = if let Ok(arr) = n.cast::<PyArray1<i64>>() {
                arr.to_vec()
                    .map_err(|e| PyValueError::new_err(format!("n: {e}")))?
            } else {
                n.extract().map_err(|_| {
                    PyValueError::new_err(format!(
                        "n: expected an int or a sequence of ints (one per text), got {}",
                        n.get_type()
                            .name()
                            .map(|t| t.to_string())
                            .unwrap_or_else(|_| "?".to_string())
                    ))
                })?
            };
            if given.len() != count {
                return Err(PyValueError::new_err(format!(
                    "n: expected one candidate count per text ({count}), got {}",
                    given.len()
                )));
            }
            given
                .iter()
                .enumerate()
                .map(|(i, &k)| check_n(k, || format!("n[{i}]")))
                .collect::<PyResult<_>>()?
        };
        let width = ns.iter().copied().max().unwrap_or(width);

        let mut flat = vec![-1i32; count * width];
        let mut stats = vec![RepairStats::default(); count];
        let (mut buf, mut bounds) = (String::new(), Vec::new());
        let mut lo = 0usize;
        while lo < count {
            let hi = (lo + BLOCK).min(count);
            block_texts(py, &list, lo, hi, &mut buf, &mut bounds)?;
            let rows = &mut flat[lo * width..hi * width];
            let sts = &mut stats[lo..hi];
            let ks = &ns[lo..hi];
            let (b, bd) = (&buf, &bounds);
            py.detach(|| {
                let strs: Vec<&str> = bd.iter().map(|&(s, e)| &b[s..e]).collect();
                super::parse_permutations_padded(&strs, ks, width, rows, sts);
            });
            lo = hi;
        }
        let perms = PyArray1::from_vec(py, flat).reshape([count, width])?;
        let d = PyDict::new(py);
        let col = |f: fn(&RepairStats) -> i64| stats.iter().map(f).collect::<Vec<i64>>();
        d.set_item(
            "duplicates",
            PyArray1::from_vec(py, col(|s| s.duplicates as i64)),
        )?;
        d.set_item(
            "out_of_range",
            PyArray1::from_vec(py, col(|s| s.out_of_range as i64)),
        )?;
        d.set_item("missing", PyArray1::from_vec(py, col(|s| s.missing as i64)))?;
        let flag = |f: fn(&RepairStats) -> bool| stats.iter().map(f).collect::<Vec<bool>>();
        d.set_item(
            "unparseable",
            PyArray1::from_vec(py, flag(|s| s.unparseable)),
        )?;
        d.set_item("identity", PyArray1::from_vec(py, flag(|s| s.identity)))?;
        Ok((perms, d))
    }

    fn to_perm(perm: &[i64], what: &str) -> PyResult<Vec<usize>> {
        let p: Vec<usize> = perm
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                usize::try_from(v).map_err(|_| {
                    PyValueError::new_err(format!(
                        "{what}: expected indices >= 0, got {v} at position {i}"
                    ))
                })
            })
            .collect::<PyResult<_>>()?;
        check_permutation(&p).map_err(|e| PyValueError::new_err(format!("{what}: {e}")))?;
        Ok(p)
    }

    /// format_permutation(perm: list[int]) -> str
    ///
    /// The canonical text `[a] > [b] > ...` (1-based) of a permutation of `0..len(perm)-1`.
    #[pyfunction]
    #[pyo3(name = "format_permutation")]
    fn py_format_permutation(perm: Vec<i64>) -> PyResult<String> {
        let p = to_perm(&perm, "perm")?;
        Ok(super::format_permutation(&p))
    }

    /// apply_window(order: list[int], start: int, window_perm: list[int]) -> list[int]
    ///
    /// Replace `order[start:start+w]` (`w = len(window_perm)`) by
    /// `[order[start + p] for p in window_perm]`; the rest of `order` is unchanged.
    #[pyfunction]
    #[pyo3(name = "apply_window")]
    fn py_apply_window(order: Vec<i64>, start: i64, window_perm: Vec<i64>) -> PyResult<Vec<i64>> {
        let start = usize::try_from(start)
            .map_err(|_| PyValueError::new_err(format!("start: expected >= 0, got {start}")))?;
        let wp = to_perm(&window_perm, "window_perm")?;
        super::apply_window(&order, start, &wp).map_err(PyValueError::new_err)
    }

    /// window_starts(n: int, window: int, step: int) -> list[int]
    ///
    /// Back-to-front window starts: `n-window, n-window-step, ...` while positive, then `0`;
    /// `[0]` when `0 < n <= window`, `[]` when `n == 0`. Requires `1 <= step <= window`.
    #[pyfunction]
    #[pyo3(name = "window_starts")]
    fn py_window_starts(n: i64, window: i64, step: i64) -> PyResult<Vec<usize>> {
        let nonneg = |v: i64, what: &str| {
            usize::try_from(v)
                .map_err(|_| PyValueError::new_err(format!("{what}: expected >= 0, got {v}")))
        };
        let (n, window, step) = (
            nonneg(n, "n")?,
            nonneg(window, "window")?,
            nonneg(step, "step")?,
        );
        super::window_starts(n, window, step).map_err(PyValueError::new_err)
    }

    pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add_function(wrap_pyfunction!(py_parse_permutation, m)?)?;
        m.add_function(wrap_pyfunction!(py_parse_permutations, m)?)?;
        m.add_function(wrap_pyfunction!(py_extract_ids, m)?)?;
        m.add_function(wrap_pyfunction!(py_format_permutation, m)?)?;
        m.add_function(wrap_pyfunction!(py_apply_window, m)?)?;
        m.add_function(wrap_pyfunction!(py_window_starts, m)?)?;
        Ok(())
    }
}

#[cfg(feature = "python")]
pub use py::register;

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str, n: usize) -> Vec<usize> {
        parse_permutation(text, n).0
    }

    #[test]
    fn formats() {
        assert_eq!(p("[3] > [1] > [2]", 3), vec![2, 0, 1]);
        assert_eq!(p("3 > 1 > 2", 3), vec![2, 0, 1]);
        assert_eq!(p("Passage 3, Passage 1", 3), vec![2, 0, 1]);
        assert_eq!(p("[3], [1]", 3), vec![2, 0, 1]);
        assert_eq!(p("[3, 1, 2]", 3), vec![2, 0, 1]);
        assert_eq!(p("1. [3]\n2. [1]\n3. [2]", 3), vec![2, 0, 1]);
        assert_eq!(p("1. 3\n2. 1\n3. 2", 3), vec![2, 0, 1]);
        assert_eq!(p("1. Passage 3\n2. Passage 1", 3), vec![2, 0, 1]);
        assert_eq!(
            p("<think>[1] > [2] > [3]</think>[3] > [2]", 3),
            vec![2, 1, 0]
        );
        assert_eq!(
            p(
                "Here is the ranking of the 10 passages: 3 > 1 > 2. I hope this helps!",
                10
            )[..3],
            [2, 0, 1]
        );
    }

    #[test]
    fn think_blocks() {
        // Unclosed at the start: no answer yet.
        let (perm, st) = parse_permutation("<think>[2] > [1] so far", 3);
        assert_eq!(perm, vec![0, 1, 2]);
        assert!(st.unparseable && st.identity);
        assert_eq!(st.missing, 3);
        // Orphan closer: the reasoning began in the prompt.
        assert_eq!(p("[1] is good </THINK> [2] > [3] > [1]", 3), vec![1, 2, 0]);
        assert_eq!(visible_text("a<thinking>b</think>c<think>d"), "a\nc");
    }

    #[test]
    fn repairs_counted() {
        let (perm, st) =
            parse_permutation("[2] > [2] > [0] > [7] > [99999999999999999999999] > [4]", 5);
        assert_eq!(perm, vec![1, 3, 0, 2, 4]);
        assert_eq!(
            st,
            RepairStats {
                duplicates: 1,
                out_of_range: 3,
                missing: 3,
                unparseable: false,
                identity: false
            }
        );
        let (perm, st) = parse_permutation("I cannot rank these.", 4);
        assert_eq!(perm, vec![0, 1, 2, 3]);
        assert!(st.unparseable && st.identity);
        assert_eq!(st.missing, 4);
    }

    #[test]
    fn sequence_runs() {
        // Chatter number glued to a word or separated by prose stays out of the run.
        assert_eq!(
            extract_ids("Top 10th: see below\n2 > 3 > 1\nPassage 2 wins").1,
            vec![2, 3, 1, 2]
        );
        assert_eq!(extract_ids("3. 1. 2.").1, vec![1, 2]);
        assert_eq!(extract_ids("scores 0.5 and 0.7").1, vec![0]);
        assert_eq!(extract_ids("[\"3\", \"1\"]").0, IdFormat::Sequence);
        assert_eq!(
            extract_ids("passage 2 is best, then passage 3 and doc #1").1,
            vec![2, 3, 1]
        );
        assert_eq!(
            extract_ids("Passage 3 > 1 > 2"),
            (IdFormat::Sequence, vec![3, 1, 2])
        );
        assert_eq!(extract_ids("no ids here"), (IdFormat::Nothing, vec![]));
    }

    #[test]
    fn find_byte_matches_naive() {
        let hay = b"abcdefgh[ijklmnopqrstu<vwxyz[";
        for start in 0..hay.len() {
            for needle in [b'[', b'<', b'z', b'#'] {
                assert_eq!(
                    find_byte(&hay[start..], needle),
                    hay[start..].iter().position(|&c| c == needle)
                );
            }
        }
        assert_eq!(find_byte(&[0x80, 0x5b, 0xff], b'['), Some(1));
    }

    #[test]
    fn tokens_and_gaps() {
        // Unicode digits are not ids; fullwidth digits neither.
        assert_eq!(
            extract_ids("\u{0663} > \u{FF12}"),
            (IdFormat::Nothing, vec![])
        );
        // Huge ids saturate and are out of range; no panic.
        let (perm, st) = parse_permutation(&format!("{} > 2", "9".repeat(400)), 2);
        assert_eq!((perm, st.out_of_range, st.missing), (vec![1, 0], 1, 1));
        // Non-ASCII separators join a run; other non-ASCII characters break it.
        assert_eq!(extract_ids("3 \u{2192} 1 \u{00e9} 2").1, vec![3, 1]);
        assert!(is_run_gap(" > Documents #"));
        assert!(is_run_gap(". "));
        assert!(!is_run_gap("."));
        assert!(!is_run_gap(": "));
        assert!(!is_run_gap(" and "));
        // A mention needs a word boundary before its keyword.
        let mut m = Vec::new();
        mention_ids(b"subpassage 3, passage 2, Passage#4, doc5, docs 6", &mut m);
        assert_eq!(m, vec![2, 4, 5]);
        // `<` does not join (it would mean the reverse order).
        assert_eq!(extract_ids("3 < 1 < 2").1, vec![3]);
        // List numbers are blanked only at line starts and only before a space or tab.
        assert_eq!(extract_ids("\t10) 4\n11) 2").1, vec![4, 2]);
        // A decimal point is no separator: "1.5 2" has runs [1] and [5, 2].
        assert_eq!(extract_ids("1.5 2").1, vec![5, 2]);
    }

    #[test]
    fn canonical_round_trip() {
        let perm = vec![4, 0, 3, 1, 2];
        let s = format_permutation(&perm);
        assert_eq!(s, "[5] > [1] > [4] > [2] > [3]");
        let (back, st) = parse_permutation(&s, 5);
        assert_eq!(back, perm);
        assert_eq!(st, RepairStats::default());
    }

    #[test]
    fn batch_matches_single() {
        let texts = ["[2] > [1]", "3 > 1", "junk", "<think>"];
        let ns = [2, 3, 4, 1];
        let mut out = vec![0i32; 4 * 4];
        let mut stats = vec![RepairStats::default(); 4];
        parse_permutations_padded(&texts, &ns, 4, &mut out, &mut stats);
        assert_eq!(
            out,
            vec![1, 0, -1, -1, 2, 0, 1, -1, 0, 1, 2, 3, 0, -1, -1, -1]
        );
        for (i, t) in texts.iter().enumerate() {
            assert_eq!(stats[i], parse_permutation(t, ns[i]).1);
        }
        assert_eq!(parse_permutations(&texts, &ns)[1].0, vec![2, 0, 1]);
    }

    #[test]
    fn windows() {
        assert_eq!(
            window_starts(100, 20, 10).unwrap(),
            vec![80, 70, 60, 50, 40, 30, 20, 10, 0]
        );
        assert_eq!(window_starts(25, 20, 10).unwrap(), vec![5, 0]);
        assert_eq!(window_starts(20, 20, 10).unwrap(), vec![0]);
        assert_eq!(window_starts(5, 20, 10).unwrap(), vec![0]);
        assert_eq!(window_starts(0, 20, 10).unwrap(), Vec::<usize>::new());
        assert!(window_starts(10, 5, 6).is_err());
        assert!(window_starts(10, 0, 1).is_err());
        let order = vec![10, 11, 12, 13, 14];
        assert_eq!(
            apply_window(&order, 2, &[2, 0, 1]).unwrap(),
            vec![10, 11, 14, 12, 13]
        );
        assert!(apply_window(&order, 3, &[2, 0, 1]).is_err());
        assert!(apply_window(&order, 0, &[0, 0]).is_err());
    }
}
