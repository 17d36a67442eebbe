//! The text of a PDF's pages (`pdf-extract` on `lopdf`), bounded before and while it runs:
//!
//! * the file's syntax may nest arrays and dictionaries at most as deep as the nesting limit
//!   (`lopdf` parses them recursively: deeper ones would overflow the stack);
//! * before each page is drawn, its content and every form it draws (`Do`) are checked: no
//!   form may draw itself, forms nest at most as deep as the nesting limit, a document draws
//!   at most [`MAX_FORM_CALLS`] forms and [`MAX_CONTENT_BYTES`] of content (a form drawn twice
//!   counts twice: a small file of forms that each draw the next one twice is refused instead
//!   of drawing 2^30 forms);
//! * the text goes through a sink that stops at the output cap, and the clock and the
//!   caller's flag are checked on every page, glyph and painted path.
//!
//! What `pdf-extract` does between those points (parsing, decompressing, fonts) cannot be
//! interrupted, and it panics on some malformed files: the sidecar therefore runs this in a
//! child process it can kill and whose memory is limited (`files::pdf_worker`).

use super::budget::{Budget, Stop};
use super::capped::Capped;
use super::Failure;
use pdf_extract::{
    ColorSpace, Dictionary, Document, MediaBox, Object, ObjectId, OutputDev, OutputError, Path,
    PlainTextOutput, Transform,
};
use std::collections::BTreeMap;

/// Most forms (`Do`) one document may draw, repeats included.
pub const MAX_FORM_CALLS: usize = 10_000;
/// Most content-stream bytes one document may draw, repeats included.
pub const MAX_CONTENT_BYTES: usize = 64 * 1024 * 1024;
/// Longest `Parent` chain followed to find a page's inherited `MediaBox` or `Resources`.
const MAX_PARENTS: usize = 64;

/// The text of the PDF `data`, at most `max` bytes, and whether it was cut.
pub fn pdf_text(
    filename: &str,
    data: &[u8],
    max: usize,
    budget: &mut Budget,
) -> Result<(String, bool), Failure> {
    let depth = budget.max_depth();
    match nests_deeper(data, depth, true, budget) {
        Ok(false) => {}
        Ok(true) => return Err(Failure::too_deep(filename, depth)),
        Err(stop) => return Err(Failure::stopped(stop, filename, depth)),
    }
    // The parser is not ours: a panic in it must not end the process.
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        extract_pages(filename, data, max, budget)
    }));
    let (text, cut) = match run {
        Ok(r) => r?,
        Err(_) => return Err(unreadable(filename, None)),
    };
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let trimmed = out.trim();
    Ok((trimmed.to_string(), cut))
}

/// Loads the document and draws its pages into a capped sink.
fn extract_pages(
    filename: &str,
    data: &[u8],
    max: usize,
    budget: &mut Budget,
) -> Result<(String, bool), Failure> {
    let mut doc = Document::load_mem(data).map_err(|e| unreadable(filename, Some(&e)))?;
    if doc.is_encrypted() {
        doc.decrypt("")
            .map_err(|e| unreadable(filename, Some(&e)))?;
    }
    let mut sink = Sink {
        out: Capped::new(max),
        budget: budget.share(),
        stop: None,
    };
    // pdf-extract looks up a page's inherited keys along its `Parent` chain without a bound:
    // a page that is its own parent would keep it looping (found by the fuzzer).
    if !parent_chains_end(&doc) {
        return Err(Failure::TooComplex(format!(
            "The PDF `{filename}` has a page whose chain of parents does not end, so its text is not extracted."
        )));
    }
    let (result, refused) = {
        let writer: &mut dyn std::io::Write = &mut sink;
        let mut pages = Pages {
            text: PlainTextOutput::new(writer),
            check: Preflight {
                doc: &doc,
                pages: doc.get_pages(),
                forms: 0,
                content_bytes: 0,
                budget: budget.share(),
            },
            refused: None,
        };
        let result = pdf_extract::output_doc(&doc, &mut pages);
        (result, pages.refused)
    };
    let depth = budget.max_depth();
    match (result, refused, sink.stop) {
        (_, Some(refusal), _) => Err(refusal.failure(filename, depth)),
        (_, None, Some(Stop::Full)) | (Ok(()), None, None) => Ok(sink.out.finish()),
        (_, None, Some(stop)) => Err(Failure::stopped(stop, filename, depth)),
        (Err(e), None, None) => Err(unreadable(filename, Some(&e))),
    }
}

/// Whether every page's `Parent` chain ends within [`MAX_PARENTS`] links.
fn parent_chains_end(doc: &Document) -> bool {
    doc.get_pages().into_values().all(|page| {
        let mut id = page;
        for _ in 0..=MAX_PARENTS {
            let parent = doc
                .get_dictionary(id)
                .ok()
                .and_then(|d| d.get(b"Parent").ok())
                .and_then(|p| p.as_reference().ok());
            match parent {
                Some(p) => id = p,
                None => return true,
            }
        }
        false
    })
}

/// 415 for a PDF the parser cannot read.
fn unreadable(filename: &str, why: Option<&dyn std::fmt::Display>) -> Failure {
    Failure::Unsupported(match why {
        Some(e) => {
            let mut e = e.to_string();
            if e.len() > 200 {
                e = super::capped::prefix(&e, 200).to_string();
            }
            format!("The PDF `{filename}` could not be read: {e}")
        }
        None => format!("The PDF `{filename}` could not be read."),
    })
}

/// Why drawing stopped before the text was complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Stop(Stop),
    /// A form draws itself.
    Cycle,
    /// More forms or content than a document may draw, or an endless `Parent` chain.
    TooComplex,
}

impl Refusal {
    fn failure(self, filename: &str, depth: usize) -> Failure {
        match self {
            Refusal::Stop(s) => Failure::stopped(s, filename, depth),
            Refusal::Cycle => Failure::TooComplex(format!(
                "The PDF `{filename}` has a form that draws itself, so its text is not extracted."
            )),
            Refusal::TooComplex => Failure::TooComplex(format!(
                "The PDF `{filename}` draws more than {MAX_FORM_CALLS} forms or {} MiB of page content, so its text is not extracted.",
                MAX_CONTENT_BYTES >> 20
            )),
        }
    }
}

impl From<Stop> for Refusal {
    fn from(s: Stop) -> Refusal {
        Refusal::Stop(s)
    }
}

/// Where `pdf-extract` writes the text: capped, and the budget is spent per byte.
struct Sink {
    out: Capped,
    budget: Budget,
    stop: Option<Stop>,
}

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        // The text is trimmed in the end: leading space takes no room under the cap.
        let text = if self.out.as_str().is_empty() {
            text.trim_start()
        } else {
            &text
        };
        match self
            .budget
            .spend(buf.len())
            .and_then(|()| self.out.push_str(text))
        {
            Ok(()) => Ok(buf.len()),
            Err(stop) => {
                self.stop = Some(stop);
                Err(std::io::Error::other("extraction stopped"))
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `pdf-extract`'s plain-text output, with a check before every page and painted path.
struct Pages<'a> {
    text: PlainTextOutput<&'a mut dyn std::io::Write>,
    check: Preflight<'a>,
    refused: Option<Refusal>,
}

impl Pages<'_> {
    /// Stops drawing for `why`.
    fn refuse(&mut self, why: Refusal) -> OutputError {
        self.refused = Some(why);
        OutputError::FormatError(std::fmt::Error)
    }
}

impl OutputDev for Pages<'_> {
    fn begin_page(
        &mut self,
        page_num: u32,
        media_box: &MediaBox,
        art_box: Option<(f64, f64, f64, f64)>,
    ) -> Result<(), OutputError> {
        if let Err(why) = self.check.page(page_num) {
            return Err(self.refuse(why));
        }
        self.text.begin_page(page_num, media_box, art_box)
    }

    fn end_page(&mut self) -> Result<(), OutputError> {
        self.text.end_page()
    }

    fn output_character(
        &mut self,
        trm: &Transform,
        width: f64,
        spacing: f64,
        font_size: f64,
        char: &str,
    ) -> Result<(), OutputError> {
        self.text
            .output_character(trm, width, spacing, font_size, char)
    }

    fn begin_word(&mut self) -> Result<(), OutputError> {
        self.text.begin_word()
    }

    fn end_word(&mut self) -> Result<(), OutputError> {
        self.text.end_word()
    }

    fn end_line(&mut self) -> Result<(), OutputError> {
        self.text.end_line()
    }

    fn stroke(
        &mut self,
        _ctm: &Transform,
        _colorspace: &ColorSpace,
        _color: &[f64],
        _path: &Path,
    ) -> Result<(), OutputError> {
        match self.check.budget.spend(1) {
            Ok(()) => Ok(()),
            Err(s) => Err(self.refuse(Refusal::Stop(s))),
        }
    }

    fn fill(
        &mut self,
        _ctm: &Transform,
        _colorspace: &ColorSpace,
        _color: &[f64],
        _path: &Path,
    ) -> Result<(), OutputError> {
        match self.check.budget.spend(1) {
            Ok(()) => Ok(()),
            Err(s) => Err(self.refuse(Refusal::Stop(s))),
        }
    }
}

/// Checks each page before `pdf-extract` draws it, following its forms the way it will.
struct Preflight<'d> {
    doc: &'d Document,
    pages: BTreeMap<u32, ObjectId>,
    forms: usize,
    content_bytes: usize,
    budget: Budget,
}

impl<'d> Preflight<'d> {
    /// Page `page_num`: its inherited entries are reachable and its content is drawable.
    fn page(&mut self, page_num: u32) -> Result<(), Refusal> {
        self.budget.check()?;
        let Some(&id) = self.pages.get(&page_num) else {
            return Ok(());
        };
        let Ok(page) = self.doc.get_dictionary(id) else {
            return Ok(());
        };
        self.inherited(page, b"MediaBox")?;
        let resources = self
            .inherited(page, b"Resources")?
            .and_then(|o| self.deref(o).as_dict().ok());
        let Ok(content) = self.doc.get_page_content(id) else {
            return Ok(());
        };
        let mut path = Vec::new();
        self.content(&content, resources, &mut path)
    }

    /// `key` of `node` or of its nearest `Parent` that has it; the chain must end.
    fn inherited(&self, node: &'d Dictionary, key: &[u8]) -> Result<Option<&'d Object>, Refusal> {
        let mut node = node;
        for _ in 0..MAX_PARENTS {
            if let Ok(v) = node.get(key) {
                return Ok(Some(v));
            }
            let parent = node
                .get(b"Parent")
                .ok()
                .and_then(|p| p.as_reference().ok())
                .and_then(|id| self.doc.get_dictionary(id).ok());
            match parent {
                Some(p) => node = p,
                None => return Ok(None),
            }
        }
        Err(Refusal::TooComplex)
    }

    /// `o`, or the object it refers to.
    fn deref(&self, o: &'d Object) -> &'d Object {
        match o {
            Object::Reference(id) => self.doc.get_object(*id).unwrap_or(o),
            _ => o,
        }
    }

    /// A content stream drawn with `resources`; `path`: the forms being drawn around it.
    fn content(
        &mut self,
        content: &[u8],
        resources: Option<&'d Dictionary>,
        path: &mut Vec<ObjectId>,
    ) -> Result<(), Refusal> {
        self.content_bytes = self.content_bytes.saturating_add(content.len());
        if self.content_bytes > MAX_CONTENT_BYTES {
            return Err(Refusal::TooComplex);
        }
        let max_depth = self.budget.max_depth();
        if nests_deeper(content, max_depth, false, &mut self.budget)? {
            return Err(Refusal::Stop(Stop::TooDeep));
        }
        for name in drawn_forms(content, &mut self.budget)? {
            self.forms += 1;
            if self.forms > MAX_FORM_CALLS {
                return Err(Refusal::TooComplex);
            }
            let form = resources
                .and_then(|r| r.get(b"XObject").ok())
                .and_then(|x| self.deref(x).as_dict().ok())
                .and_then(|x| x.get(&name).ok());
            let Some(form) = form else { continue };
            let id = form.as_reference().ok();
            let Ok(stream) = self.deref(form).as_stream() else {
                continue;
            };
            if let Some(id) = id {
                if path.contains(&id) {
                    return Err(Refusal::Cycle);
                }
                if path.len() >= max_depth {
                    return Err(Refusal::Stop(Stop::TooDeep));
                }
                path.push(id);
            }
            let own = stream
                .dict
                .get(b"Resources")
                .ok()
                .and_then(|r| self.deref(r).as_dict().ok());
            let data = if stream.filters().is_ok() {
                stream
                    .decompressed_content()
                    .unwrap_or_else(|_| stream.content.clone())
            } else {
                stream.content.clone()
            };
            self.content(&data, own.or(resources), path)?;
            if id.is_some() {
                path.pop();
            }
        }
        Ok(())
    }
}

/// The names of the forms a content stream draws (`/Name Do`), read token by token without
/// building the operators (`pdf-extract` decodes the stream into objects of many times its
/// size; checking must not cost as much again). Inline image data (`ID` … `EI`) is skipped.
pub fn drawn_forms(content: &[u8], budget: &mut Budget) -> Result<Vec<Vec<u8>>, Stop> {
    let mut names = Vec::new();
    let mut last_name: Option<&[u8]> = None;
    let mut i = 0usize;
    while let Some(&b) = content.get(i) {
        let from = i;
        match b {
            b'%' => i = skip_to(content, i, |b| b == b'\n' || b == b'\r') + 1,
            b'(' => i = skip_string(content, i) + 1,
            b'<' if content.get(i + 1) != Some(&b'<') => i = skip_to(content, i, |b| b == b'>') + 1,
            b'/' => {
                let end = token_end(content, i + 1);
                last_name = content.get(i + 1..end);
                i = end;
                budget.spend(i - from)?;
                continue;
            }
            b if is_delimiter(b) || is_space(b) => i += 1,
            _ => {
                let end = token_end(content, i);
                match content.get(i..end) {
                    Some(b"Do") => {
                        if let Some(name) = last_name {
                            names.push(decode_name(name));
                        }
                    }
                    // Binary data up to the end of the inline image.
                    Some(b"ID") => {
                        i = find_inline_image_end(content, end);
                        budget.spend(i - from)?;
                        last_name = None;
                        continue;
                    }
                    _ => {}
                }
                i = end;
            }
        }
        // Comments are white space to the content parser too.
        if !is_space(b) && b != b'%' {
            last_name = None;
        }
        budget.spend(i.saturating_sub(from).max(1))?;
    }
    Ok(names)
}

/// PDF white-space characters.
fn is_space(b: u8) -> bool {
    matches!(b, 0 | b'\t' | b'\n' | 0x0C | b'\r' | b' ')
}

/// PDF delimiter characters.
fn is_delimiter(b: u8) -> bool {
    matches!(
        b,
        b'(' | b')' | b'<' | b'>' | b'[' | b']' | b'{' | b'}' | b'/' | b'%'
    )
}

/// Where the regular token starting at `from` ends.
fn token_end(data: &[u8], from: usize) -> usize {
    data.get(from..)
        .and_then(|rest| rest.iter().position(|&b| is_space(b) || is_delimiter(b)))
        .map_or(data.len(), |p| from + p)
}

/// After `ID`: the index just past the `EI` that ends the inline image (white space on
/// both sides), or the end.
fn find_inline_image_end(data: &[u8], from: usize) -> usize {
    let mut at = from;
    while let Some(p) = find(data, at, b"EI") {
        let before = p
            .checked_sub(1)
            .and_then(|q| data.get(q))
            .is_some_and(|&b| is_space(b));
        let after = data
            .get(p + 2)
            .is_none_or(|&b| is_space(b) || is_delimiter(b));
        if before && after {
            return p + 2;
        }
        at = p + 1;
    }
    data.len()
}

/// A name token with its `#xx` escapes decoded (as `lopdf` decodes dictionary keys).
fn decode_name(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        let hex = raw
            .get(i + 1..i + 3)
            .filter(|_| b == b'#')
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(v) => {
                out.push(v);
                i += 3;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// Whether PDF syntax in `data` nests arrays and dictionaries deeper than `max` (strings,
/// comments and, with `streams`, stream data skipped).
pub fn nests_deeper(
    data: &[u8],
    max: usize,
    streams: bool,
    budget: &mut Budget,
) -> Result<bool, Stop> {
    let mut depth = 0usize;
    let mut i = 0usize;
    let at = |i: usize| data.get(i).copied();
    while let Some(b) = at(i) {
        let from = i;
        match b {
            b'[' => depth += 1,
            b'<' if at(i + 1) == Some(b'<') => {
                depth += 1;
                i += 1;
            }
            b']' => depth = depth.saturating_sub(1),
            b'>' if at(i + 1) == Some(b'>') => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'<' => i = skip_to(data, i, |b| b == b'>'),
            b'%' => i = skip_to(data, i, |b| b == b'\n' || b == b'\r'),
            b'(' => i = skip_string(data, i),
            b's' if streams
                && data.get(i..i + 6) == Some(b"stream")
                && (i == 0 || at(i - 1).is_some_and(|p| !p.is_ascii_alphanumeric())) =>
            {
                i = find(data, i + 6, b"endstream").map_or(data.len(), |e| e + 8);
            }
            _ => {}
        }
        if depth > max {
            return Ok(true);
        }
        i += 1;
        budget.spend(i.saturating_sub(from))?;
    }
    Ok(false)
}

/// The index of the first byte after `from` that `end` accepts (or the end of `data`).
fn skip_to(data: &[u8], from: usize, end: impl Fn(u8) -> bool) -> usize {
    data.get(from + 1..)
        .and_then(|rest| rest.iter().position(|&b| end(b)))
        .map_or(data.len(), |p| from + 1 + p)
}

/// The index of the `)` that ends the literal string opening at `from` (nested parentheses
/// and backslash escapes respected), or the end of `data`.
fn skip_string(data: &[u8], from: usize) -> usize {
    let mut open = 0usize;
    let mut i = from;
    while let Some(&b) = data.get(i) {
        match b {
            b'\\' => i += 1,
            b'(' => open += 1,
            b')' => {
                open = open.saturating_sub(1);
                if open == 0 {
                    return i;
                }
            }
            _ => {}
        }
        i += 1;
    }
    data.len()
}

/// The first occurrence of `needle` at or after `from`.
fn find(data: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    data.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_drawn() {
        let names = |c: &[u8]| {
            drawn_forms(c, &mut Budget::unlimited())
                .unwrap()
                .into_iter()
                .map(|n| String::from_utf8(n).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(b"q /X Do Q /Im#201 Do"), ["X", "Im 1"]);
        assert_eq!(names(b"/X/Y Do (/Z Do) % /W Do\n<2F5A> Do"), ["Y"]);
        assert_eq!(names(b"/X % a comment\nDo"), ["X"]);
        assert_eq!(names(b"/F1 12 Tf /X 1 Do [/Y] Do"), Vec::<String>::new());
        // Inline image data is not read as operators.
        assert_eq!(names(b"BI /W 1 ID \x00/A Do EI /B Do"), ["B"]);
        assert_eq!(names(b"/A Do /B Do\n/A Do"), ["A", "B", "A"]);
    }
}
