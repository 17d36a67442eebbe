//! Long texts that stay in the client's body (issue 17).
//!
//! A prompt of many megabytes would otherwise be held three times at once in the filter's
//! VM, which never gives memory back: unescaped into the value tree, copied into the IR, and
//! escaped again into the upstream body. Instead, the tree builder leaves a long text where it
//! is in the body and puts a short marker in the tree; the marker travels through decoding and
//! encoding like any text (also inside a longer text, as when a system prompt is folded into
//! a user turn), and [`write`] puts the text's JSON form from the body where the marker is
//! written. A text is only ever copied once, into the upstream body.
//!
//! The marker holds the request id, which the gateway makes and a client cannot know, and
//! control characters no real text has in that order; each text is put in at most once, so a
//! body cannot repeat one text to grow its upstream body.

use crate::error::GatewayError;
use serde_json::ser::{CharEscape, CompactFormatter, Formatter};
use std::io::{self, Write};

/// The long texts of one body: where each one's JSON text sits in the body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Splices {
    /// `ug` + the request id + `:`.
    prefix: String,
    /// Byte ranges of the texts (between their quotes) in the body.
    ranges: Vec<(usize, usize)>,
}

/// Starts a marker.
const OPEN: char = '\u{1}';
/// Ends a marker.
const CLOSE: char = '\u{2}';

impl Splices {
    /// No texts yet, for the request `id` (random, made by the gateway).
    pub fn new(id: &str) -> Splices {
        Splices {
            prefix: format!("ug{id}:"),
            ranges: Vec::new(),
        }
    }

    /// How many texts stay in the body.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Whether no text stays in the body.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The marker of text `i`.
    pub fn marker(&self, i: usize) -> String {
        format!("{OPEN}{}{i}{CLOSE}", self.prefix)
    }

    /// Records the text between `start` and `end` of the body.
    pub fn push(&mut self, start: usize, end: usize) {
        self.ranges.push((start, end));
    }

    /// Which text a marker's inside (between its control characters) names.
    fn index(&self, inside: &[u8]) -> Option<usize> {
        let digits = inside.strip_prefix(self.prefix.as_bytes())?;
        if digits.is_empty() || digits.len() > 6 || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    }
}

/// Where the client's body can be read from while the upstream body is written: the filter's
/// copy, or (in the filter) Envoy's buffer itself, so that the copy's memory can hold the
/// upstream body instead.
pub trait BodySource {
    /// Writes bytes `start..end` of the client's body to `out`.
    fn copy_range(&self, start: usize, end: usize, out: &mut dyn Write) -> io::Result<()>;
}

/// The client's body: bytes at hand, or a [`BodySource`].
#[derive(Clone, Copy)]
pub enum Source<'a> {
    /// The body's bytes.
    Bytes(&'a [u8]),
    /// Read through the host.
    Host(&'a dyn BodySource),
}

impl Source<'_> {
    fn copy_range(&self, start: usize, end: usize, out: &mut dyn Write) -> io::Result<()> {
        match self {
            Source::Bytes(b) => {
                let text = b
                    .get(start..end)
                    .ok_or_else(|| io::Error::other("a long text is outside the body"))?;
                out.write_all(text)
            }
            Source::Host(h) => h.copy_range(start, end, out),
        }
    }
}

/// A client body and the long texts that stay in it.
#[derive(Clone, Copy)]
pub struct Spliced<'a> {
    /// The client's body.
    pub source: Source<'a>,
    /// The client body's size (the upstream body's buffer is sized for it).
    pub size: usize,
    /// Its texts that stay in it (`None`: none, markers are written as they are).
    pub splices: Option<&'a Splices>,
    /// A buffer to write the upstream body into (the filter's emptied copy of the client's
    /// body), taken by the first body written.
    pub buffer: Option<&'a std::cell::Cell<Option<Vec<u8>>>>,
}

impl std::fmt::Debug for Spliced<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spliced")
            .field("size", &self.size)
            .field("splices", &self.splices)
            .finish_non_exhaustive()
    }
}

impl<'a> Spliced<'a> {
    /// A body without texts left in it: `body` only sizes the output.
    pub fn plain(body: &'a [u8]) -> Spliced<'a> {
        Spliced {
            source: Source::Bytes(body),
            size: body.len(),
            splices: None,
            buffer: None,
        }
    }

    /// `body`, with the texts `splices` records left in it.
    pub fn new(body: &'a [u8], splices: &'a Splices) -> Spliced<'a> {
        Spliced {
            splices: Some(splices),
            ..Spliced::plain(body)
        }
    }
}

/// Serializes `value` as an upstream body, each marker replaced by its text from the body. The
/// buffer is sized for about the client's body.
pub fn write<T: serde::Serialize + ?Sized>(
    value: &T,
    raw: Spliced<'_>,
) -> Result<Vec<u8>, GatewayError> {
    let mut out = raw
        .buffer
        .and_then(std::cell::Cell::take)
        .map(|mut b| {
            b.clear();
            b
        })
        .unwrap_or_default();
    out.reserve(super::output_capacity(raw.size));
    let result = match raw.splices.filter(|s| !s.is_empty()) {
        None => serde_json::to_writer(&mut out, value),
        Some(splices) => {
            let fmt = SpliceFormatter {
                body: raw.source,
                splices,
                used: vec![false; splices.len()],
                inside: None,
            };
            let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
            value.serialize(&mut ser)
        }
    };
    result.map_err(|e| {
        GatewayError::internal(format!("Could not serialize the upstream body: {e}"))
    })?;
    Ok(out)
}

/// serde_json's compact output, with markers replaced as they are written. serde_json writes
/// a string as runs of plain text and escapes: a marker arrives as the escape of [`OPEN`], one
/// run (the prefix and the number), and the escape of [`CLOSE`].
struct SpliceFormatter<'a> {
    body: Source<'a>,
    splices: &'a Splices,
    used: Vec<bool>,
    /// After an [`OPEN`] escape: the run seen since (a marker's inside, or not a marker).
    inside: Option<Vec<u8>>,
}

/// Longest marker inside: `ug` + a request id + `:` + a number.
const MAX_INSIDE: usize = 96;

impl SpliceFormatter<'_> {
    /// Writes what was held back as it came: the open escape and the run after it.
    fn flush<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        if let Some(held) = self.inside.take() {
            CompactFormatter.write_char_escape(w, CharEscape::AsciiControl(1))?;
            w.write_all(&held)?;
        }
        Ok(())
    }
}

/// A `dyn Write` view of a writer the formatter is handed.
struct WriteRef<'w, W: ?Sized>(&'w mut W);

impl<W: ?Sized + Write> Write for WriteRef<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl Formatter for SpliceFormatter<'_> {
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        match &mut self.inside {
            Some(held) if held.is_empty() && fragment.len() <= MAX_INSIDE => {
                held.extend_from_slice(fragment.as_bytes());
                Ok(())
            }
            Some(_) => {
                self.flush(w)?;
                w.write_all(fragment.as_bytes())
            }
            None => w.write_all(fragment.as_bytes()),
        }
    }

    fn write_char_escape<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        escape: CharEscape,
    ) -> io::Result<()> {
        let close = matches!(escape, CharEscape::AsciiControl(2));
        if close {
            if let Some(held) = &self.inside {
                if let Some(i) = self.splices.index(held) {
                    let range = self.splices.ranges.get(i).copied();
                    match (range, self.used.get_mut(i)) {
                        (Some((start, end)), Some(used)) if !*used => {
                            *used = true;
                            self.inside = None;
                            let mut w = WriteRef(w);
                            return self.body.copy_range(start, end, &mut w);
                        }
                        (Some(_), Some(_)) => {
                            return Err(io::Error::other("a long text would be sent twice"));
                        }
                        _ => {}
                    }
                }
            }
        }
        self.flush(w)?;
        if matches!(escape, CharEscape::AsciiControl(1)) {
            self.inside = Some(Vec::new());
            return Ok(());
        }
        CompactFormatter.write_char_escape(w, escape)
    }

    fn end_string<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.flush(w)?;
        w.write_all(b"\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn splices_of(body: &[u8], texts: &[&str]) -> Splices {
        let mut s = Splices::new("0123456789abcdef0123456789abcdef");
        for t in texts {
            let at = memchr::memmem::find(body, t.as_bytes()).unwrap();
            s.push(at, at + t.len());
        }
        s
    }

    #[test]
    fn markers_become_the_texts_json_form_wherever_they_are() {
        let body = br#"{"a":"line \"one\"\n\u00e9","b":"two"}"#;
        let s = splices_of(body, &[r#"line \"one\"\n\u00e9"#, "two"]);
        let v = json!({
            "x": s.marker(0),
            "y": format!("User: {}\n\nok \u{1}not a marker\u{2} \u{1}", s.marker(1)),
            "z": ["\u{1}", "\u{1}ug0123:0\u{2}"],
        });
        let out = write(&v, Spliced::new(body, &s)).unwrap();
        let back: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(back["x"], "line \"one\"\né");
        assert_eq!(back["y"], "User: two\n\nok \u{1}not a marker\u{2} \u{1}");
        assert_eq!(back["z"], json!(["\u{1}", "\u{1}ug0123:0\u{2}"]));
    }

    #[test]
    fn a_text_is_put_in_once() {
        let body = br#"{"a":"long"}"#;
        let s = splices_of(body, &["long"]);
        let twice = json!([s.marker(0), s.marker(0)]);
        assert!(write(&twice, Spliced::new(body, &s)).is_err());
    }

    #[test]
    fn without_splices_markers_are_plain_text() {
        let s = Splices::new("id");
        let v = json!({"x": s.marker(0)});
        let out = write(&v, Spliced::plain(b"{}")).unwrap();
        assert_eq!(out, serde_json::to_vec(&v).unwrap());
    }
}
