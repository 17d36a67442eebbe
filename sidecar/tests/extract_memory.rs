//! Memory and work of text extraction on the abusive inputs of issue 17, measured with a
//! counting allocator: the peak of bytes allocated during one extraction (the input itself is
//! allocated before) must stay within a small multiple of the input plus the output cap. The
//! quadratic extractors this replaced peaked at 400–500 MB for 20 KB of `[`.
//!
//! The extraction module is compiled into this test on its own (it depends on nothing else in
//! the sidecar); the allocator counts per thread, so it sees only the extraction measured.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../src/files/extract/mod.rs"]
#[allow(dead_code)]
mod extract;

use extract::budget::Budget;
use extract::{Failure, Kind};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Instant;

/// Counts the bytes allocated now and their peak, per thread: the extraction module's own
/// unit tests are compiled into this binary too and run on other threads.
struct Counting;

thread_local! {
    static NOW: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn grew(n: usize) {
    let now = NOW.with(|c| {
        let v = c.get().saturating_add(n);
        c.set(v);
        v
    });
    PEAK.with(|p| p.set(p.get().max(now)));
}

fn shrank(n: usize) {
    NOW.with(|c| c.set(c.get().saturating_sub(n)));
}

// SAFETY: every call is passed on to the system allocator unchanged; only counters change.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            // A move may briefly hold both blocks: count the new one before the old is freed.
            grew(new_size);
            shrank(layout.size());
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The sidecar's default cap of one file's text.
const CAP: usize = 200_000;

/// Peak bytes allocated by one extraction above what was allocated before it, its wall time,
/// and what it answered.
fn measure(kind: Kind, data: &[u8]) -> (usize, std::time::Duration, String) {
    let before = NOW.with(Cell::get);
    PEAK.with(|p| p.set(before));
    let started = Instant::now();
    let r = extract::extract(kind, "f", data, false, CAP, &mut Budget::unlimited());
    let took = started.elapsed();
    let answer = match &r {
        Ok(e) => format!("{} bytes of text, truncated: {}", e.text.len(), e.truncated),
        Err(Failure::TooDeep(_)) => "refused: too deep".into(),
        Err(Failure::TooComplex(_)) => "refused: too complex".into(),
        Err(e) => format!("{e:?}"),
    };
    drop(r);
    (PEAK.with(Cell::get) - before, took, answer)
}

#[cfg(feature = "pdf")]
fn pdfs() -> Vec<(&'static str, Vec<u8>)> {
    /// A one-page PDF drawing `content` with the forms `extra` (objects 6…) as /X….
    fn pdf(content: &str, xobjects: &str, extra: &[String]) -> Vec<u8> {
        let mut objects = vec![
            "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
            "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
            format!("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> /XObject << {xobjects} >> >> >>"),
            format!("<< /Length {} >>\nstream\n{content}\nendstream", content.len()),
            "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_string(),
        ];
        objects.extend(extra.iter().cloned());
        let mut out = b"%PDF-1.4\n".to_vec();
        let mut offsets = Vec::new();
        for (i, o) in objects.iter().enumerate() {
            offsets.push(out.len());
            out.extend_from_slice(format!("{} 0 obj\n{o}\nendobj\n", i + 1).as_bytes());
        }
        let xref = out.len();
        out.extend_from_slice(
            format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
        );
        for off in offsets {
            out.extend_from_slice(format!("{off:010} 00000 n \n").as_bytes());
        }
        out.extend_from_slice(
            format!(
                "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
                objects.len() + 1
            )
            .as_bytes(),
        );
        out
    }
    let form = |content: &str, resources: &str| {
        format!("<< /Type /XObject /Subtype /Form /BBox [0 0 1 1] /Resources << {resources} >> /Length {} >>\nstream\n{content}\nendstream", content.len())
    };
    let text: String = (0..2000)
        .map(|i| {
            format!(
                "BT /F1 10 Tf 10 {} Td (line {i} of a long page of text) Tj ET\n",
                10 + i % 70 * 10
            )
        })
        .collect();
    let laughs: Vec<String> = (0..30)
        .map(|i| {
            if i == 29 {
                form("", "")
            } else {
                form("/X Do /X Do", &format!("/XObject << /X {} 0 R >>", 7 + i))
            }
        })
        .collect();
    let mut deep = b"%PDF-1.4\n1 0 obj\n".to_vec();
    deep.extend(std::iter::repeat_n(b'[', 100_000));
    vec![
        ("PDF, 2000 lines of text", pdf(&text, "", &[])),
        (
            "PDF, 2^30 forms (each draws the next twice)",
            pdf("/X Do", "/X 6 0 R", &laughs),
        ),
        (
            "PDF, a form that draws itself",
            pdf(
                "/X Do",
                "/X 6 0 R",
                &[form("/X Do", "/XObject << /X 6 0 R >>")],
            ),
        ),
        ("PDF, 100 000 nested arrays", deep),
    ]
}

#[test]
fn extraction_memory_is_linear_in_the_input_and_the_cap() {
    let mut cases: Vec<(&str, Kind, Vec<u8>)> = vec![
        ("20 KB of [", Kind::Json, vec![b'['; 20_000]),
        ("40 KB of [", Kind::Json, vec![b'['; 40_000]),
        (
            "deep {\"a\": (100 KB)",
            Kind::Json,
            "{\"a\":".repeat(20_000).into_bytes(),
        ),
        ("4 MB CSV of commas", Kind::Csv(','), vec![b','; 4_000_000]),
        (
            "4 MB CSV of quotes and commas",
            Kind::Csv(','),
            "\"\",".repeat(1_333_333).into_bytes(),
        ),
        (
            "280 KB of <title>",
            Kind::Html,
            "<title>".repeat(40_000).into_bytes(),
        ),
        (
            "4 MB HTML of <p></p>",
            Kind::Html,
            "<p></p>".repeat(600_000).into_bytes(),
        ),
        (
            "deep XML (300 KB of <a>)",
            Kind::Xml,
            "<a>".repeat(100_000).into_bytes(),
        ),
        (
            "4 MB XML of <a/>",
            Kind::Xml,
            "<a/>".repeat(1_000_000).into_bytes(),
        ),
        ("16 MB Latin-1 text", Kind::Text, vec![0xE9; 16 << 20]),
    ];
    #[cfg(feature = "pdf")]
    cases.extend(pdfs().into_iter().map(|(n, d)| (n, Kind::Pdf, d)));
    let mut failures = Vec::new();
    for (name, kind, data) in &cases {
        let (peak, took, answer) = measure(*kind, data);
        // The text (≤ cap, strings grow by doubling), the decoded copy of non-UTF-8 input
        // (≤ 2 × input), and a constant. A PDF is parsed into a document first (`lopdf`
        // objects and content operators, about 45 × the file here): its bound is looser, and
        // in the sidecar the PDF process's address-space limit holds it.
        let per_byte = if *kind == Kind::Pdf { 64 } else { 2 };
        let bound = per_byte * data.len() + 4 * CAP + (1 << 20);
        eprintln!(
            "{name}: {} bytes in, peak {:.1} MiB allocated (bound {:.1} MiB), {:.1} ms: {answer}",
            data.len(),
            peak as f64 / 1048576.0,
            bound as f64 / 1048576.0,
            took.as_secs_f64() * 1000.0
        );
        if peak > bound {
            failures.push(format!("{name}: peak {peak} > {bound}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
