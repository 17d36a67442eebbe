//! Text extraction for chat context: the readable text of a stored file, by type.
//!
//! * text — UTF-8 (BOM dropped), UTF-16 with a BOM, anything else read as Latin-1 (never an
//!   error) ([`decode`]);
//! * CSV/TSV — a Markdown table (header, then one line per row) ([`csv`]);
//! * JSON — re-indented with two spaces, token by token, so a cut or invalid file still works
//!   ([`json`]);
//! * HTML — the visible text: no script/style, tags dropped, block elements on their own
//!   lines, entities decoded ([`html`]);
//! * XML — re-indented ([`xml`]);
//! * Markdown — as is;
//! * PDF — the text of its pages (feature `pdf`, [`pdf`]);
//! * anything else that looks binary is refused.
//!
//! Every extractor is one pass over its input and writes into a [`capped::Capped`] output that
//! ends the work once `max` bytes are written (`truncated`); JSON and XML nesting is limited,
//! and a [`budget::Budget`] stops the work at its deadline or when its caller gives up.
//!
//! This module depends on nothing else in the sidecar (the fuzz targets and the memory tests
//! compile it on its own).

/// How a file is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Plain text.
    Text,
    /// Delimited values with this delimiter.
    Csv(char),
    /// JSON.
    Json,
    /// HTML.
    Html,
    /// XML.
    Xml,
    /// Markdown.
    Markdown,
    /// PDF.
    Pdf,
    /// Not text.
    Binary,
}

pub mod budget;
pub mod capped;
pub mod csv;
pub mod decode;
pub mod entities;
pub mod html;
pub mod json;
#[cfg(feature = "pdf")]
pub mod pdf;
pub mod xml;

use budget::{Budget, Stop};
use capped::Capped;

/// Why a file's text was not extracted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Not text, or a PDF that cannot be read (for the client; HTTP 415).
    Unsupported(String),
    /// JSON, XML or PDF syntax nested deeper than the limit (for the client; HTTP 422).
    TooDeep(String),
    /// More work than one file may cause: forms drawing themselves or too many of them, more
    /// memory than allowed (for the client; HTTP 422).
    TooComplex(String),
    /// The deadline passed (HTTP 504).
    Timeout,
    /// The caller gave up.
    Cancelled,
}

impl Failure {
    /// The answer to nesting deeper than `limit` in `filename`.
    pub fn too_deep(filename: &str, limit: usize) -> Failure {
        Failure::TooDeep(format!(
            "The file `{filename}` nests deeper than {limit} levels, the limit for text extraction (FILE_CONTEXT_MAX_DEPTH), so it cannot be used as chat context."
        ))
    }

    /// The failure a stopped extraction ends with (`Full` is not one: it is only reached
    /// through [`Failure::stopped`] by mistake and then reads as a timeout).
    pub fn stopped(stop: Stop, filename: &str, limit: usize) -> Failure {
        match stop {
            Stop::TooDeep => Failure::too_deep(filename, limit),
            Stop::Cancelled => Failure::Cancelled,
            Stop::Timeout | Stop::Full => Failure::Timeout,
        }
    }
}

/// Extracted text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    /// The text.
    pub text: String,
    /// Whether it was cut (at the cap, or because only the start of the file was read).
    pub truncated: bool,
}

/// Decides how to read a file from its content type, its name and its first bytes.
pub fn kind(content_type: &str, filename: &str, head: &[u8]) -> Kind {
    let ct = content_type.to_ascii_lowercase();
    let ext = std::path::Path::new(filename)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    if head.starts_with(b"%PDF-") || ct == "application/pdf" {
        return Kind::Pdf;
    }
    let declared = if ct == "text/csv" || ext == "csv" {
        Some(Kind::Csv(','))
    } else if ct == "text/tab-separated-values" || ext == "tsv" {
        Some(Kind::Csv('\t'))
    } else if ct == "application/json" || ct.ends_with("+json") || ext == "json" {
        Some(Kind::Json)
    } else if ct == "text/html" || ct == "application/xhtml+xml" || ext == "html" || ext == "htm" {
        Some(Kind::Html)
    } else if ct == "application/xml" || ct == "text/xml" || ct.ends_with("+xml") || ext == "xml" {
        Some(Kind::Xml)
    } else if ct == "text/markdown" || ext == "md" || ext == "markdown" {
        Some(Kind::Markdown)
    } else {
        None
    };
    if looks_binary(head) {
        return Kind::Binary;
    }
    declared.unwrap_or(Kind::Text)
}

/// Whether bytes look like a binary format rather than text in some encoding.
pub fn looks_binary(head: &[u8]) -> bool {
    if head.starts_with(&[0xFF, 0xFE]) || head.starts_with(&[0xFE, 0xFF]) {
        return false;
    }
    const MAGIC: &[&[u8]] = &[
        b"\x89PNG",
        b"\xFF\xD8\xFF",
        b"GIF8",
        b"PK\x03\x04",
        b"\x1F\x8B",
        b"\x7FELF",
        b"BZh",
        b"7z\xBC\xAF",
        b"RIFF",
        b"\x00\x00\x01\x00",
        b"OggS",
        b"fLaC",
        b"ID3",
        b"\xD0\xCF\x11\xE0",
    ];
    if MAGIC.iter().any(|m| head.starts_with(m)) {
        return true;
    }
    let sample = head.get(..head.len().min(8192)).unwrap_or(head);
    if sample.contains(&0) {
        return true;
    }
    let control = sample
        .iter()
        .filter(|&&b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0C | 0x1B))
        .count();
    control * 10 > sample.len()
}

/// Extracts the text of `data` (the whole file, or its first bytes when `input_cut`), at most
/// `max` bytes of it, within `budget`.
pub fn extract(
    kind: Kind,
    filename: &str,
    data: &[u8],
    input_cut: bool,
    max: usize,
    budget: &mut Budget,
) -> Result<Extracted, Failure> {
    let depth = budget.max_depth();
    let stopped = |s: Stop| Failure::stopped(s, filename, depth);
    budget.check().map_err(stopped)?;
    let (text, cut) = match kind {
        Kind::Binary => {
            return Err(Failure::Unsupported(format!(
                "The file `{filename}` is binary and cannot be used as chat context (supported: text, CSV, JSON, HTML, XML, Markdown{}).",
                if cfg!(feature = "pdf") { ", PDF" } else { "" }
            )))
        }
        Kind::Pdf => pdf_text(filename, data, input_cut, max, budget)?,
        Kind::Text | Kind::Markdown => {
            let text = decode::decode_prefix(data, input_cut, max);
            budget.spend(data.len()).map_err(stopped)?;
            write(max, |out| out.push_str(&text)).map_err(stopped)?
        }
        Kind::Csv(delim) => {
            let text = decode::decode_text(data, input_cut);
            write(max, |out| csv::csv_table(&text, delim, out, budget)).map_err(stopped)?
        }
        Kind::Json => {
            let text = decode::decode_text(data, input_cut);
            write(max, |out| json::pretty_json(&text, out, budget)).map_err(stopped)?
        }
        Kind::Html => {
            let text = decode::decode_text(data, input_cut);
            html::html_text(&text, max, budget).map_err(stopped)?
        }
        Kind::Xml => {
            let text = decode::decode_text(data, input_cut);
            let mut out = Capped::new(max);
            match xml::pretty_xml(&text, &mut out, budget) {
                Ok(true) | Err(Stop::Full) => out.finish(),
                // Not well-formed: as it is.
                Ok(false) => write(max, |out| out.push_str(&text)).map_err(stopped)?,
                Err(s) => return Err(stopped(s)),
            }
        }
    };
    Ok(Extracted {
        text,
        truncated: cut || input_cut,
    })
}

/// Runs `f` on a fresh output of `max` bytes; a full output is a result, not an error.
fn write(
    max: usize,
    f: impl FnOnce(&mut Capped) -> Result<(), Stop>,
) -> Result<(String, bool), Stop> {
    let mut out = Capped::new(max);
    match f(&mut out) {
        Ok(()) | Err(Stop::Full) => Ok(out.finish()),
        Err(s) => Err(s),
    }
}

/// The text of a PDF (it must be whole).
#[cfg(feature = "pdf")]
fn pdf_text(
    filename: &str,
    data: &[u8],
    input_cut: bool,
    max: usize,
    budget: &mut Budget,
) -> Result<(String, bool), Failure> {
    if input_cut {
        return Err(Failure::Unsupported(format!(
            "The PDF `{filename}` is too large to extract text from (its whole file must be read)."
        )));
    }
    pdf::pdf_text(filename, data, max, budget)
}

/// Without the `pdf` feature, PDFs are refused.
#[cfg(not(feature = "pdf"))]
fn pdf_text(
    filename: &str,
    _data: &[u8],
    _input_cut: bool,
    _max: usize,
    _budget: &mut Budget,
) -> Result<(String, bool), Failure> {
    Err(Failure::Unsupported(format!(
        "The file `{filename}` is a PDF; this unigate build does not extract PDF text (supported: text, CSV, JSON, HTML, XML, Markdown)."
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(kind: Kind, data: &[u8], max: usize) -> (Result<Extracted, Failure>, u64) {
        let mut budget = Budget::unlimited();
        let r = extract(kind, "f", data, false, max, &mut budget);
        (r, budget.steps())
    }

    #[test]
    fn kinds() {
        assert_eq!(kind("text/csv", "a", b"a,b"), Kind::Csv(','));
        assert_eq!(
            kind("application/octet-stream", "a.json", b"{}"),
            Kind::Json
        );
        assert_eq!(kind("text/plain", "a.txt", b"\x89PNG"), Kind::Binary);
        assert_eq!(kind("application/octet-stream", "x", b"hello"), Kind::Text);
        assert_eq!(
            kind("application/octet-stream", "x", b"%PDF-1.4"),
            Kind::Pdf
        );
        assert_eq!(kind("text/markdown", "x.md", b"# T"), Kind::Markdown);
        assert!(!looks_binary(b"caf\xE9"));
        assert!(looks_binary(b"ab\0cd"));
    }

    #[test]
    fn caps_and_binary() {
        let e = run(Kind::Text, "ééé".as_bytes(), 3).0.unwrap();
        assert_eq!(
            e,
            Extracted {
                text: "é".into(),
                truncated: true
            }
        );
        let e = run(Kind::Markdown, b"# T\n", 100).0.unwrap();
        assert_eq!(
            e,
            Extracted {
                text: "# T\n".into(),
                truncated: false
            }
        );
        let e = extract(
            Kind::Binary,
            "a.png",
            b"\x89PNG",
            false,
            100,
            &mut Budget::unlimited(),
        );
        assert!(matches!(e, Err(Failure::Unsupported(m)) if m.contains("a.png")));
        let e = extract(Kind::Text, "a", b"abc", true, 100, &mut Budget::unlimited());
        assert!(e.unwrap().truncated);
        // XML that does not parse comes back as it is.
        let e = run(Kind::Xml, b"<a><b></a>", 100).0.unwrap();
        assert_eq!(e.text, "<a><b></a>");
    }

    /// The inputs of issue 17, and their kind.
    fn abusive() -> Vec<(&'static str, Kind, Vec<u8>)> {
        vec![
            ("20 KB of [", Kind::Json, vec![b'['; 20_000]),
            ("40 KB of [", Kind::Json, vec![b'['; 40_000]),
            (
                "deep {\"a\":",
                Kind::Json,
                "{\"a\":".repeat(20_000).into_bytes(),
            ),
            ("4 MB of commas", Kind::Csv(','), vec![b','; 4_000_000]),
            ("4 MB of newlines", Kind::Csv(','), vec![b'\n'; 4_000_000]),
            (
                "280 KB of <title>",
                Kind::Html,
                "<title>".repeat(40_000).into_bytes(),
            ),
            (
                "HTML of unclosed scripts",
                Kind::Html,
                "<script><p>".repeat(40_000).into_bytes(),
            ),
            (
                "HTML of empty paragraphs",
                Kind::Html,
                "<p></p>".repeat(500_000).into_bytes(),
            ),
            ("deep XML", Kind::Xml, "<a>".repeat(100_000).into_bytes()),
            (
                "XML of empty elements",
                Kind::Xml,
                "<a/>".repeat(500_000).into_bytes(),
            ),
        ]
    }

    #[test]
    fn abusive_inputs_are_refused_or_cut_after_linear_work() {
        for (name, kind, data) in abusive() {
            let (r, steps) = run(kind, &data, 200_000);
            match &r {
                Ok(e) => assert!(e.text.len() <= 200_000, "{name}"),
                Err(Failure::TooDeep(m)) => assert!(m.contains("128 levels"), "{name}: {m}"),
                Err(e) => panic!("{name}: {e:?}"),
            }
            // Each byte is looked at a few times at most (the quadratic versions looked at
            // hundreds of millions of bytes for these).
            assert!(
                steps <= 4 * data.len() as u64 + 1000,
                "{name}: {steps} steps for {} bytes",
                data.len()
            );
        }
        assert!(matches!(
            run(Kind::Json, &[b'['; 20_000], 200_000).0,
            Err(Failure::TooDeep(_))
        ));
        assert!(matches!(
            run(Kind::Xml, &"<a>".repeat(200).into_bytes(), 200_000).0,
            Err(Failure::TooDeep(_))
        ));
        let (r, _) = run(Kind::Csv(','), &[b','; 4_000_000], 200_000);
        assert!(r.unwrap().truncated);
    }

    #[test]
    fn text_reads_only_what_fits() {
        let latin1 = vec![0xE9; 4_000_000];
        let (r, _) = run(Kind::Text, &latin1, 1000);
        let e = r.unwrap();
        assert_eq!((e.text, e.truncated), ("\u{e9}".repeat(500), true));
    }

    #[test]
    fn every_extractor_checks_its_budget_as_it_goes() {
        // (Text is one copy of at most the cap: see `text_reads_only_what_fits`.)
        let inputs: Vec<(Kind, Vec<u8>)> = vec![
            (Kind::Csv(','), "a,b\n".repeat(250_000).into_bytes()),
            (Kind::Json, "[1,{\"a\":2}],".repeat(100_000).into_bytes()),
            (Kind::Html, "<p>a</p> ".repeat(100_000).into_bytes()),
            (
                Kind::Xml,
                format!("<r>{}</r>", "<a>x</a>".repeat(100_000)).into_bytes(),
            ),
        ];
        for (kind, data) in inputs {
            let max = 100 * data.len();
            let (r, total) = run(kind, &data, max);
            assert!(!r.unwrap().truncated, "{kind:?}");
            assert!(total > 4 * budget::CHECK_EVERY, "{kind:?}: {total}");
            // A budget that ends half way stops the work there.
            let mut half = Budget::unlimited().with_step_limit(total / 2);
            let r = extract(kind, "f", &data, false, max, &mut half);
            assert_eq!(r, Err(Failure::Timeout), "{kind:?}");
            assert!(
                half.steps() <= total / 2 + 2 * budget::CHECK_EVERY,
                "{kind:?}: {}",
                half.steps()
            );
            // So does a caller that gave up.
            let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
            let mut gone = Budget::new(None, Some(flag), budget::DEFAULT_MAX_DEPTH);
            let r = extract(kind, "f", &data, false, max, &mut gone);
            assert_eq!(r, Err(Failure::Cancelled), "{kind:?}");
        }
    }

    /// A one-page PDF showing `text` in Helvetica, with a correct cross-reference table;
    /// `extra` objects (numbered from 6) are added, and `content` replaces the page's.
    #[cfg(feature = "pdf")]
    pub(crate) fn tiny_pdf(text: &str) -> Vec<u8> {
        pdf_with(&format!("BT /F1 24 Tf 72 700 Td ({text}) Tj ET"), "", &[])
    }

    /// A PDF whose page draws `content` with `/XObject << xobjects >>` and the objects `extra`
    /// (numbered from 6).
    #[cfg(feature = "pdf")]
    pub(crate) fn pdf_with(content: &str, xobjects: &str, extra: &[String]) -> Vec<u8> {
        let mut objects = vec![
            "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
            "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
            format!("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> /XObject << {xobjects} >> >> >>"),
            format!("<< /Length {} >>\nstream\n{content}\nendstream", content.len()),
            "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".to_string(),
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

    /// A form XObject drawing `content`.
    #[cfg(feature = "pdf")]
    pub(crate) fn form(content: &str, resources: &str) -> String {
        format!(
            "<< /Type /XObject /Subtype /Form /BBox [0 0 10 10] /Resources << {resources} >> /Length {} >>\nstream\n{content}\nendstream",
            content.len()
        )
    }

    #[cfg(feature = "pdf")]
    #[test]
    fn pdf() {
        let data = tiny_pdf("Hello PDF world");
        assert_eq!(kind("application/octet-stream", "x.pdf", &data), Kind::Pdf);
        let e = extract(
            Kind::Pdf,
            "x.pdf",
            &data,
            false,
            1000,
            &mut Budget::unlimited(),
        )
        .unwrap();
        assert_eq!(e.text, "Hello PDF world");
        let cut = extract(
            Kind::Pdf,
            "x.pdf",
            &data,
            false,
            5,
            &mut Budget::unlimited(),
        )
        .unwrap();
        assert_eq!((cut.text.as_str(), cut.truncated), ("Hello", true));
        let bad = extract(
            Kind::Pdf,
            "bad.pdf",
            b"%PDF-1.4 garbage",
            false,
            1000,
            &mut Budget::unlimited(),
        );
        assert!(matches!(bad, Err(Failure::Unsupported(m)) if m.contains("bad.pdf")));
    }

    #[cfg(feature = "pdf")]
    #[test]
    fn pdf_bombs_are_refused() {
        let pdf = |data: &[u8]| {
            extract(
                Kind::Pdf,
                "bomb.pdf",
                data,
                false,
                1000,
                &mut Budget::unlimited(),
            )
        };
        // Arrays nested deeper than the parser's stack: refused before parsing.
        let mut deep = b"%PDF-1.4\n1 0 obj\n".to_vec();
        deep.extend(std::iter::repeat_n(b'[', 100_000));
        assert!(matches!(pdf(&deep), Err(Failure::TooDeep(m)) if m.contains("bomb.pdf")));
        // A form that draws itself.
        let own = pdf_with(
            "/X Do",
            "/X 6 0 R",
            &[form("/X Do", "/XObject << /X 6 0 R >>")],
        );
        assert!(matches!(pdf(&own), Err(Failure::TooComplex(m)) if m.contains("draws itself")));
        // 30 forms, each drawing the next one twice: 2^30 forms from a 5 KB file.
        let mut forms = Vec::new();
        for i in 0..30 {
            let next = if i == 29 { "" } else { "/X Do /X Do" };
            let res = if i == 29 {
                String::new()
            } else {
                format!("/XObject << /X {} 0 R >>", 7 + i)
            };
            forms.push(form(next, &res));
        }
        let laughs = pdf_with("/X Do", "/X 6 0 R", &forms);
        assert!(laughs.len() < 10_000);
        let mut budget = Budget::unlimited();
        let r = extract(Kind::Pdf, "laughs.pdf", &laughs, false, 1000, &mut budget);
        assert!(
            matches!(&r, Err(Failure::TooComplex(m)) if m.contains("forms")),
            "{r:?}"
        );
        // Forms drawn a bounded number of times are fine.
        let ok = pdf_with(
            "/X Do /X Do",
            "/X 6 0 R",
            &[form(
                "BT /F1 12 Tf 0 0 Td (inside) Tj ET",
                "/Font << /F1 5 0 R >>",
            )],
        );
        let e = pdf(&ok).unwrap();
        assert!(e.text.contains("inside"), "{e:?}");
    }
}
