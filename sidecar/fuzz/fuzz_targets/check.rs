//! What every extraction target checks, on the sidecar's own extraction code (compiled here on
//! its own): no panic, never more text than the cap, bounded work, and the same answer for the
//! same input whatever the cap.

#[path = "../../src/files/extract/mod.rs"]
#[allow(dead_code)]
pub mod extract;

use extract::budget::{Budget, CHECK_EVERY};
use extract::{Extracted, Failure, Kind};

/// Units of work allowed per input byte: each extractor looks at a byte a few times (the HTML
/// one once more per kind of closing tag it searches).
pub const STEPS_PER_BYTE: u64 = 16;
/// The cap when the first byte does not choose a small one.
const CONTEXT_MAX: usize = 200_000;

/// The cap chosen by the first byte (small ones exercise the cut), and the file's bytes.
pub fn split(data: &[u8]) -> (usize, &[u8]) {
    match data.split_first() {
        Some((&b, rest)) if b < 128 => (1 + usize::from(b) * 7, rest),
        Some((_, rest)) => (CONTEXT_MAX, rest),
        None => (CONTEXT_MAX, data),
    }
}

/// One extraction; `linear`: it must finish within [`STEPS_PER_BYTE`] units per byte.
pub fn extract_once(
    kind: Kind,
    data: &[u8],
    max: usize,
    linear: bool,
) -> Result<Extracted, Failure> {
    let mut budget = Budget::unlimited();
    if linear {
        budget = budget.with_step_limit(STEPS_PER_BYTE * data.len() as u64 + 2 * CHECK_EVERY);
    }
    let r = extract::extract(kind, "fuzz.bin", data, false, max, &mut budget);
    match &r {
        Ok(e) => assert!(
            e.text.len() <= max,
            "{} bytes of text, cap {max}",
            e.text.len()
        ),
        Err(Failure::Timeout) => panic!(
            "more than {STEPS_PER_BYTE} units of work per byte: {} for {} bytes",
            budget.steps(),
            data.len()
        ),
        Err(Failure::Cancelled) => panic!("cancelled, but nobody cancels"),
        Err(Failure::Unsupported(m) | Failure::TooDeep(m) | Failure::TooComplex(m)) => {
            assert!(m.contains("fuzz.bin"), "{m}")
        }
    }
    r
}

/// Checks `data` as `kind`; `streamed`: the text under a cap is exactly the start of the
/// whole text (CSV, JSON), marked truncated exactly when something was left out.
pub fn run(kind: Kind, data: &[u8], streamed: bool) {
    let (max, data) = split(data);
    let cut = extract_once(kind, data, max, true);
    if !streamed {
        return;
    }
    let whole = extract_once(kind, data, 1 << 26, true);
    match (&cut, &whole) {
        (Ok(c), Ok(w)) => {
            assert!(
                w.text.starts_with(&c.text),
                "the cut text is not the start of the whole"
            );
            assert_eq!(c.truncated, w.text.len() > max, "truncated flag");
            if !c.truncated {
                assert_eq!(c.text, w.text);
            }
        }
        // The cap can be reached before the nesting that is refused.
        (Ok(c), Err(Failure::TooDeep(_))) => assert!(c.truncated),
        (Err(a), Err(b)) => assert_eq!(a, b),
        (c, w) => panic!("under the cap {c:?}, whole {w:?}"),
    }
}
