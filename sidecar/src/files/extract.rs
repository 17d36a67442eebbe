//! Text extraction for chat context: the readable text of a stored file, by type.
//!
//! * text — UTF-8 (BOM dropped), UTF-16 with a BOM, anything else read as Latin-1 (never an
//!   error);
//! * CSV/TSV — a Markdown table (header, then one line per row);
//! * JSON — re-indented with two spaces (streaming, so a cut or huge file still works);
//! * HTML — the visible text: no script/style, tags dropped, block elements on their own
//!   lines, entities decoded;
//! * XML — re-indented;
//! * Markdown — as is;
//! * PDF — the text of its pages (feature `pdf`);
//! * anything else that looks binary is refused ([`Unsupported`]).
//!
//! The result is cut at `max` bytes on a UTF-8 boundary (`truncated`).

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

/// A file that cannot be used as context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    /// Why (for the client).
    pub message: String,
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

/// Extracts the text of `data` (the whole file, or its first bytes when `input_cut`).
pub fn extract(
    kind: Kind,
    filename: &str,
    data: &[u8],
    input_cut: bool,
    max: usize,
) -> Result<Extracted, Unsupported> {
    let text = match kind {
        Kind::Binary => {
            return Err(Unsupported {
                message: format!(
                    "The file `{filename}` is binary and cannot be used as chat context (supported: text, CSV, JSON, HTML, XML, Markdown{})."
                , if cfg!(feature = "pdf") { ", PDF" } else { "" }),
            })
        }
        Kind::Pdf => pdf_text(filename, data, input_cut)?,
        Kind::Text | Kind::Markdown => decode_text(data, input_cut),
        Kind::Csv(delim) => csv_table(&decode_text(data, input_cut), delim),
        Kind::Json => pretty_json(&decode_text(data, input_cut)),
        Kind::Html => html_text(&decode_text(data, input_cut)),
        Kind::Xml => {
            let raw = decode_text(data, input_cut);
            pretty_xml(&raw).unwrap_or(raw)
        }
    };
    let (text, cut) = cap(text, max);
    Ok(Extracted {
        text,
        truncated: cut || input_cut,
    })
}

/// Cuts `text` to at most `max` bytes on a character boundary.
pub fn cap(mut text: String, max: usize) -> (String, bool) {
    if text.len() <= max {
        return (text, false);
    }
    let mut end = max;
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    (text, true)
}

/// Decodes text: UTF-8 (BOM dropped), UTF-16 LE/BE with a BOM, else Latin-1. `cut`: the
/// data may end inside a character, which is then dropped.
pub fn decode_text(data: &[u8], cut: bool) -> String {
    if let Some(rest) = data.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        return utf8_lossy_tail(rest, cut);
    }
    if let Some(rest) = data.strip_prefix(&[0xFF, 0xFE]) {
        return utf16(rest, u16::from_le_bytes);
    }
    if let Some(rest) = data.strip_prefix(&[0xFE, 0xFF]) {
        return utf16(rest, u16::from_be_bytes);
    }
    match std::str::from_utf8(data) {
        Ok(s) => s.to_string(),
        // Only an incomplete last character of a cut read: still UTF-8.
        Err(e) if cut && e.error_len().is_none() && data.len() - e.valid_up_to() < 4 => data
            .get(..e.valid_up_to())
            .map(|d| String::from_utf8_lossy(d).into_owned())
            .unwrap_or_default(),
        Err(_) => data.iter().map(|&b| char::from(b)).collect(),
    }
}

/// UTF-8 after a BOM: invalid sequences replaced, an incomplete tail dropped when cut.
fn utf8_lossy_tail(data: &[u8], cut: bool) -> String {
    match std::str::from_utf8(data) {
        Ok(s) => s.to_string(),
        Err(e) if cut && e.error_len().is_none() => data
            .get(..e.valid_up_to())
            .map(|d| String::from_utf8_lossy(d).into_owned())
            .unwrap_or_default(),
        Err(_) => String::from_utf8_lossy(data).into_owned(),
    }
}

/// UTF-16 code units (an odd last byte is dropped), invalid surrogates replaced.
fn utf16(data: &[u8], unit: fn([u8; 2]) -> u16) -> String {
    let units = data.chunks_exact(2).map(|c| match c {
        [a, b] => unit([*a, *b]),
        _ => 0xFFFD,
    });
    char::decode_utf16(units)
        .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

/// Parses delimited values (RFC 4180 quoting) into rows of cells.
pub fn parse_csv(text: &str, delim: char) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        any = true;
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    cell.push('"');
                    chars.next();
                } else {
                    quoted = false;
                }
            } else {
                cell.push(c);
            }
        } else if c == '"' && cell.is_empty() {
            quoted = true;
        } else if c == delim {
            row.push(std::mem::take(&mut cell));
        } else if c == '\n' || c == '\r' {
            if c == '\r' && chars.peek() == Some(&'\n') {
                chars.next();
            }
            row.push(std::mem::take(&mut cell));
            if !(row.len() == 1 && row.first().is_some_and(String::is_empty)) {
                rows.push(std::mem::take(&mut row));
            } else {
                row.clear();
            }
            any = false;
        } else {
            cell.push(c);
        }
    }
    if any {
        row.push(cell);
        rows.push(row);
    }
    rows
}

/// CSV as a Markdown table: the header row, a separator, then the rows.
pub fn csv_table(text: &str, delim: char) -> String {
    let rows = parse_csv(text, delim);
    let Some((header, body)) = rows.split_first() else {
        return String::new();
    };
    let cell = |s: &str| {
        s.replace('\\', "\\\\")
            .replace('|', "\\|")
            .replace(['\r', '\n'], " ")
            .trim()
            .to_string()
    };
    let line = |cells: &[String]| {
        let inner: Vec<String> = cells.iter().map(|c| cell(c)).collect();
        format!("| {} |\n", inner.join(" | "))
    };
    let mut out = line(header);
    out.push_str(&format!("|{}\n", " --- |".repeat(header.len().max(1))));
    for r in body {
        out.push_str(&line(r));
    }
    out
}

/// JSON re-indented with two spaces per level (`serde_json`'s pretty layout). Works token by
/// token, so invalid or cut JSON still comes out readable.
pub fn pretty_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = text.chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        for _ in 0..depth {
            out.push_str("  ");
        }
    };
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                // Empty containers stay on one line.
                while chars.peek().is_some_and(|n| n.is_whitespace()) {
                    chars.next();
                }
                let close = if c == '{' { '}' } else { ']' };
                if chars.peek() == Some(&close) {
                    chars.next();
                    out.push(close);
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(',');
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// XML re-indented by two spaces per level; `None` when it does not parse.
pub fn pretty_xml(text: &str) -> Option<String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(text);
    reader.config_mut().trim_text(true);
    let mut writer = quick_xml::Writer::new_with_indent(Vec::new(), b' ', 2);
    loop {
        match reader.read_event() {
            Ok(Event::Eof) => break,
            Ok(e) => writer.write_event(e).ok()?,
            Err(_) => return None,
        }
    }
    String::from_utf8(writer.into_inner()).ok()
}

/// Elements whose content is never visible.
const HIDDEN: &[&str] = &[
    "script", "style", "noscript", "template", "svg", "iframe", "object",
];
/// Elements that start a new line.
const BLOCKS: &[&str] = &[
    "p",
    "div",
    "br",
    "li",
    "tr",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "table",
    "ul",
    "ol",
    "section",
    "article",
    "header",
    "footer",
    "nav",
    "aside",
    "main",
    "blockquote",
    "pre",
    "hr",
    "title",
    "dt",
    "dd",
    "dl",
    "form",
    "figure",
    "figcaption",
    "address",
    "details",
    "summary",
    "caption",
    "thead",
    "tbody",
    "tfoot",
    "body",
    "html",
];

/// The visible text of an HTML document.
pub fn html_text(html: &str) -> String {
    let mut out = String::new();
    let mut rest = html;
    let mut pre = 0usize;
    let mut title = String::new();
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            push_text(&mut out, rest, pre > 0);
            break;
        };
        let (text, tail) = rest.split_at(lt);
        push_text(&mut out, text, pre > 0);
        rest = tail;
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = after
                .find("-->")
                .map_or("", |i| after.get(i + 3..).unwrap_or(""));
            continue;
        }
        if rest.starts_with("<!") || rest.starts_with("<?") {
            rest = rest
                .find('>')
                .map_or("", |i| rest.get(i + 1..).unwrap_or(""));
            continue;
        }
        let Some((name, closing, end)) = parse_tag(rest) else {
            // A lone `<`: text.
            push_text(&mut out, "<", pre > 0);
            rest = rest.get(1..).unwrap_or("");
            continue;
        };
        rest = rest.get(end..).unwrap_or("");
        if !closing && name == "title" {
            // The title lives in <head>; keep it as the first line.
            if let Some(close) = find_ci(rest, "</title") {
                title = decode_entities(rest.get(..close).unwrap_or(""))
                    .trim()
                    .to_string();
                rest = rest.get(close..).unwrap_or("");
            }
            continue;
        }
        if !closing && HIDDEN.contains(&name.as_str()) {
            let close = format!("</{name}");
            rest = match find_ci(rest, &close) {
                Some(i) => {
                    let after = rest.get(i..).unwrap_or("");
                    after
                        .find('>')
                        .map_or("", |j| after.get(j + 1..).unwrap_or(""))
                }
                None => "",
            };
            continue;
        }
        if name == "pre" {
            pre = if closing {
                pre.saturating_sub(1)
            } else {
                pre + 1
            };
        }
        if closing && matches!(name.as_str(), "li" | "tr" | "dt" | "dd" | "br") {
            // The next item starts its own line.
        } else if BLOCKS.contains(&name.as_str()) {
            out.push('\n');
            if name == "li" && !closing {
                out.push_str("- ");
            }
        } else if (name == "td" || name == "th") && !closing {
            out.push_str(" | ");
        }
    }
    let mut text = String::new();
    if !title.is_empty() {
        text.push_str(&title);
        text.push_str("\n\n");
    }
    // Trim lines, keep at most one empty line in a row.
    let mut blank = true;
    for line in decode_entities(&out).lines() {
        let line = line.trim_matches(|c: char| c == ' ' || c == '\t' || c == '|');
        let line = line.trim();
        if line.is_empty() {
            if !blank {
                text.push('\n');
            }
            blank = true;
        } else {
            text.push_str(line);
            text.push('\n');
            blank = false;
        }
    }
    text.trim_end().to_string()
}

/// Adds text, whitespace collapsed unless inside `<pre>`.
fn push_text(out: &mut String, text: &str, pre: bool) {
    if pre {
        out.push_str(text);
        return;
    }
    for (i, word) in text.split_whitespace().enumerate() {
        if i > 0 || (text.starts_with(char::is_whitespace) && !out.ends_with([' ', '\n'])) {
            out.push(' ');
        }
        out.push_str(word);
    }
    if text.ends_with(char::is_whitespace) && !text.trim().is_empty() {
        out.push(' ');
    }
}

/// `(name, closing, length)` of the tag at the start of `s`, quotes in attributes respected.
fn parse_tag(s: &str) -> Option<(String, bool, usize)> {
    let body = s.strip_prefix('<')?;
    let (closing, body) = match body.strip_prefix('/') {
        Some(b) => (true, b),
        None => (false, body),
    };
    let name: String = body
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == ':')
        .collect();
    if name.is_empty() || !body.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let mut quote = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '>') => return Some((name.to_ascii_lowercase(), closing, i + 1)),
            _ => {}
        }
    }
    Some((name.to_ascii_lowercase(), closing, s.len()))
}

/// Case-insensitive find of an ASCII needle.
fn find_ci(hay: &str, needle: &str) -> Option<usize> {
    let h = hay.as_bytes();
    let n = needle.as_bytes();
    if n.is_empty() || h.len() < n.len() {
        return None;
    }
    (0..=h.len() - n.len()).find(|&i| {
        h.get(i..i + n.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(n))
    })
}

/// Named entities decoded (the common ones; numeric ones all).
const ENTITIES: &[(&str, char)] = &[
    ("amp", '&'),
    ("lt", '<'),
    ("gt", '>'),
    ("quot", '"'),
    ("apos", '\''),
    ("nbsp", ' '),
    ("copy", '©'),
    ("reg", '®'),
    ("trade", '™'),
    ("hellip", '…'),
    ("mdash", '—'),
    ("ndash", '–'),
    ("lsquo", '‘'),
    ("rsquo", '’'),
    ("ldquo", '“'),
    ("rdquo", '”'),
    ("laquo", '«'),
    ("raquo", '»'),
    ("bull", '•'),
    ("middot", '·'),
    ("euro", '€'),
    ("pound", '£'),
    ("yen", '¥'),
    ("cent", '¢'),
    ("sect", '§'),
    ("para", '¶'),
    ("deg", '°'),
    ("plusmn", '±'),
    ("times", '×'),
    ("divide", '÷'),
    ("frac12", '½'),
    ("frac14", '¼'),
    ("frac34", '¾'),
    ("micro", 'µ'),
    ("shy", '\u{AD}'),
    ("larr", '←'),
    ("rarr", '→'),
    ("uarr", '↑'),
    ("darr", '↓'),
    ("le", '≤'),
    ("ge", '≥'),
    ("ne", '≠'),
    ("iexcl", '¡'),
    ("iquest", '¿'),
    ("szlig", 'ß'),
    ("auml", 'ä'),
    ("ouml", 'ö'),
    ("uuml", 'ü'),
    ("Auml", 'Ä'),
    ("Ouml", 'Ö'),
    ("Uuml", 'Ü'),
    ("eacute", 'é'),
    ("egrave", 'è'),
    ("ecirc", 'ê'),
    ("aacute", 'á'),
    ("agrave", 'à'),
    ("acirc", 'â'),
    ("iacute", 'í'),
    ("oacute", 'ó'),
    ("uacute", 'ú'),
    ("ntilde", 'ñ'),
    ("ccedil", 'ç'),
    ("Eacute", 'É'),
    ("Ntilde", 'Ñ'),
    ("Ccedil", 'Ç'),
];

/// Decodes `&name;`, `&#123;` and `&#x1F600;` (unknown ones are kept as written).
pub fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(rest.get(..amp).unwrap_or(""));
        rest = rest.get(amp..).unwrap_or("");
        let semi = rest
            .get(1..rest.len().min(34))
            .and_then(|w| w.find(';'))
            .map(|i| i + 1);
        let decoded = semi.and_then(|semi| {
            let name = rest.get(1..semi)?;
            let c = if let Some(num) = name.strip_prefix('#') {
                let n = match num.strip_prefix(['x', 'X']) {
                    Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                    None => num.parse::<u32>().ok()?,
                };
                char::from_u32(n).unwrap_or(char::REPLACEMENT_CHARACTER)
            } else {
                ENTITIES.iter().find(|(n, _)| *n == name)?.1
            };
            Some((c, semi + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = rest.get(len..).unwrap_or("");
            }
            None => {
                out.push('&');
                rest = rest.get(1..).unwrap_or("");
            }
        }
    }
    out.push_str(rest);
    out
}

/// The text of a PDF's pages.
#[cfg(feature = "pdf")]
fn pdf_text(filename: &str, data: &[u8], input_cut: bool) -> Result<String, Unsupported> {
    if input_cut {
        return Err(Unsupported {
            message: format!(
                "The PDF `{filename}` is too large to extract text from (its whole file must be read)."
            ),
        });
    }
    use std::fmt::Write as _;
    // The PDF parser is not ours: a panic in it must not take the sidecar down.
    let data = data.to_vec();
    let result = std::panic::catch_unwind(move || pdf_extract::extract_text_from_mem(&data));
    match result {
        Ok(Ok(text)) => {
            let mut out = String::new();
            for line in text.lines() {
                let _ = writeln!(out, "{}", line.trim_end());
            }
            Ok(out.trim().to_string())
        }
        Ok(Err(e)) => Err(Unsupported {
            message: format!("The PDF `{filename}` could not be read: {e}"),
        }),
        Err(_) => Err(Unsupported {
            message: format!("The PDF `{filename}` could not be read."),
        }),
    }
}

/// Without the `pdf` feature, PDFs are refused.
#[cfg(not(feature = "pdf"))]
fn pdf_text(filename: &str, _data: &[u8], _input_cut: bool) -> Result<String, Unsupported> {
    Err(Unsupported {
        message: format!(
            "The file `{filename}` is a PDF; this unigate build does not extract PDF text (supported: text, CSV, JSON, HTML, XML, Markdown)."
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charsets() {
        assert_eq!(decode_text("héllo".as_bytes(), false), "héllo");
        assert_eq!(decode_text(b"\xEF\xBB\xBFabc", false), "abc");
        let utf16le: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain("hé€".encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        assert_eq!(decode_text(&utf16le, false), "hé€");
        let utf16be: Vec<u8> = [0xFE, 0xFF]
            .into_iter()
            .chain("hé".encode_utf16().flat_map(u16::to_be_bytes))
            .collect();
        assert_eq!(decode_text(&utf16be, false), "hé");
        // Latin-1: not UTF-8, read byte by byte.
        assert_eq!(decode_text(b"caf\xE9 cr\xE8me", false), "café crème");
        // A cut read ending inside a character.
        let s = "aé".as_bytes();
        assert_eq!(decode_text(&s[..2], true), "a");
        assert!(!looks_binary(&utf16le));
        assert!(looks_binary(b"\x89PNG\r\n"));
        assert!(looks_binary(b"ab\0cd"));
        assert!(!looks_binary(b"caf\xE9"));
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
    }

    #[test]
    fn csv() {
        let t = csv_table(
            "name,note\r\nAnn,\"hi, \"\"you\"\"\"\nBo,\"two\nlines\"\n\n",
            ',',
        );
        assert_eq!(
            t,
            "| name | note |\n| --- | --- |\n| Ann | hi, \"you\" |\n| Bo | two lines |\n"
        );
        assert_eq!(csv_table("a|b", ','), "| a\\|b |\n| --- |\n");
        assert_eq!(
            parse_csv("a\tb\n1\t2", '\t'),
            vec![vec!["a", "b"], vec!["1", "2"]]
        );
        assert_eq!(csv_table("", ','), "");
    }

    #[test]
    fn json_matches_serde_pretty() {
        let src = r#"{"a":[1,2,{"b":"x,y:{}"}],"e":{},"f":[ ],"g":"q\"}"}"#;
        let v: serde_json::Value = serde_json::from_str(src).unwrap();
        assert_eq!(pretty_json(src), serde_json::to_string_pretty(&v).unwrap());
        // Cut JSON still comes out.
        assert_eq!(pretty_json("{\"a\":[1,"), "{\n  \"a\": [\n    1,\n    ");
    }

    #[test]
    fn html() {
        let h = "<!DOCTYPE html><html><head><title>T &amp; C</title><style>p{color:red}</style>\
                 <script>var x = '<p>no</p>';</script></head><body><h1>Hello&nbsp;world</h1>\
                 <!-- hidden --><p>A &lt;b&gt; &#233;&#x20AC; <b>bold</b> text.</p>\
                 <ul><li>one</li><li>two</li></ul><table><tr><td>c1</td><td>c2</td></tr></table>\
                 <pre>  keep\n  spaces</pre><SCRIPT>bad()</SCRIPT>&unknown; tail</body></html>";
        let t = html_text(h);
        assert_eq!(
            t,
            "T & C\n\nHello world\n\nA <b> é€ bold text.\n\n- one\n- two\n\nc1 | c2\n\nkeep\nspaces\n&unknown; tail"
        );
        assert!(!t.contains("color") && !t.contains("var x") && !t.contains("bad()"));
    }

    #[test]
    fn xml() {
        let x = pretty_xml("<?xml version=\"1.0\"?><a><b x=\"1\">t</b><c/></a>").unwrap();
        assert_eq!(
            x,
            "<?xml version=\"1.0\"?>\n<a>\n  <b x=\"1\">t</b>\n  <c/>\n</a>"
        );
        assert!(pretty_xml("<a><b></a>").is_none());
    }

    #[test]
    fn caps_and_binary() {
        let e = extract(Kind::Text, "a", "ééé".as_bytes(), false, 3).unwrap();
        assert_eq!(
            e,
            Extracted {
                text: "é".into(),
                truncated: true
            }
        );
        let e = extract(Kind::Markdown, "a.md", b"# T\n", false, 100).unwrap();
        assert_eq!(
            e,
            Extracted {
                text: "# T\n".into(),
                truncated: false
            }
        );
        let e = extract(Kind::Binary, "a.png", b"\x89PNG", false, 100).unwrap_err();
        assert!(e.message.contains("binary"), "{}", e.message);
        assert!(
            extract(Kind::Text, "a", b"abc", true, 100)
                .unwrap()
                .truncated
        );
    }

    /// A one-page PDF showing `text` in Helvetica, with a correct cross-reference table.
    #[cfg(feature = "pdf")]
    fn tiny_pdf(text: &str) -> Vec<u8> {
        let content = format!("BT /F1 24 Tf 72 700 Td ({text}) Tj ET");
        let objects = [
            "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
            "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>".to_string(),
            format!("<< /Length {} >>\nstream\n{content}\nendstream", content.len()),
            "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".to_string(),
        ];
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

    #[cfg(feature = "pdf")]
    #[test]
    fn pdf() {
        let data = tiny_pdf("Hello PDF world");
        assert_eq!(kind("application/octet-stream", "x.pdf", &data), Kind::Pdf);
        let e = extract(Kind::Pdf, "x.pdf", &data, false, 1000).unwrap();
        assert!(e.text.contains("Hello PDF world"), "{:?}", e.text);
        let bad = extract(Kind::Pdf, "bad.pdf", b"%PDF-1.4 garbage", false, 1000).unwrap_err();
        assert!(bad.message.contains("bad.pdf"), "{}", bad.message);
    }
}
