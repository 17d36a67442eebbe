//! The visible text of an HTML document: no script/style, tags dropped, block elements on their
//! own lines, whitespace collapsed outside `<pre>`, entities decoded, the title first.
//!
//! One pass over the input: every search for a closing tag remembers how far it looked (a
//! document of many unclosed `<title>` tags is read once, not once per tag), and lines are
//! trimmed as they end, so the work stops as soon as the text fills its cap.

use super::budget::{Budget, Stop};
use super::capped::{cap, prefix, Capped};
use super::entities::{decode_entities, entity_at};

/// Elements whose content is never visible.
const HIDDEN: [&str; 7] = [
    "script", "style", "noscript", "template", "svg", "iframe", "object",
];
/// Where each element of [`HIDDEN`] ends.
const HIDDEN_CLOSE: [&[u8]; 7] = [
    b"</script",
    b"</style",
    b"</noscript",
    b"</template",
    b"</svg",
    b"</iframe",
    b"</object",
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
/// Longest tag name read (longer ones match no element above).
const MAX_NAME: usize = 32;

/// The visible text of `html`, at most `max` bytes, and whether it was cut.
pub fn html_text(html: &str, max: usize, budget: &mut Budget) -> Result<(String, bool), Stop> {
    let mut lines = Lines::new(max);
    let mut title = String::new();
    match walk(html, max, &mut lines, &mut title, budget).and_then(|()| lines.finish()) {
        Ok(()) | Err(Stop::Full) => {}
        Err(e) => return Err(e),
    }
    let (body, full) = lines.out.finish();
    let mut text = String::with_capacity(title.len() + 2 + body.len());
    if !title.is_empty() {
        text.push_str(&title);
        text.push_str("\n\n");
    }
    text.push_str(&body);
    text.truncate(text.trim_end().len());
    let (text, cut) = cap(text, max);
    Ok((text, cut || full))
}

/// Reads the document, writing its text to `lines` and its title to `title`.
fn walk(
    html: &str,
    max: usize,
    lines: &mut Lines,
    title: &mut String,
    budget: &mut Budget,
) -> Result<(), Stop> {
    let bytes = html.as_bytes();
    let end = html.len();
    let mut title_close = Finder::new(b"</title");
    let mut hidden_close = HIDDEN_CLOSE.map(Finder::new);
    let mut pos = 0usize;
    let mut pre = 0usize;
    while pos < end {
        let Some(lt) = find(bytes, pos, b"<", budget)? else {
            push_text(lines, html.get(pos..).unwrap_or(""), pre > 0, budget)?;
            break;
        };
        push_text(lines, html.get(pos..lt).unwrap_or(""), pre > 0, budget)?;
        pos = lt;
        let rest = html.get(pos..).unwrap_or("");
        if rest.starts_with("<!--") {
            pos = find(bytes, pos + 4, b"-->", budget)?.map_or(end, |i| i + 3);
            continue;
        }
        if rest.starts_with("<!") || rest.starts_with("<?") {
            pos = find(bytes, pos, b">", budget)?.map_or(end, |i| i + 1);
            continue;
        }
        let Some((name, closing, len)) = parse_tag(rest) else {
            // A lone `<`: text.
            push_text(lines, "<", pre > 0, budget)?;
            pos += 1;
            continue;
        };
        budget.spend(len)?;
        pos += len;
        if !closing && name == "title" {
            // The title lives in <head>; it becomes the first line.
            if let Some(close) = title_close.find(bytes, pos, budget)? {
                let raw = prefix(html.get(pos..close).unwrap_or(""), max);
                budget.spend(raw.len())?;
                *title = decode_entities(raw).trim().to_string();
                pos = close;
            }
            continue;
        }
        if !closing {
            if let Some(i) = HIDDEN.iter().position(|h| *h == name) {
                pos = match hidden_close.get_mut(i) {
                    Some(f) => match f.find(bytes, pos, budget)? {
                        Some(close) => find(bytes, close, b">", budget)?.map_or(end, |j| j + 1),
                        None => end,
                    },
                    None => end,
                };
                continue;
            }
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
            lines.push('\n', true)?;
            if name == "li" && !closing {
                lines.push('-', true)?;
                lines.push(' ', true)?;
            }
        } else if (name == "td" || name == "th") && !closing {
            for c in [' ', '|', ' '] {
                lines.push(c, true)?;
            }
        }
    }
    Ok(())
}

/// Adds text: entities decoded, whitespace collapsed unless inside `<pre>`.
fn push_text(lines: &mut Lines, text: &str, pre: bool, budget: &mut Budget) -> Result<(), Stop> {
    if text.is_empty() {
        return Ok(());
    }
    let mut skip_to = 0usize;
    let mut words = 0usize;
    let mut in_word = false;
    let mut leading_space = false;
    for (i, c) in text.char_indices() {
        budget.spend(1)?;
        if i < skip_to {
            continue;
        }
        if !pre {
            if c.is_whitespace() {
                in_word = false;
                leading_space |= words == 0;
                continue;
            }
            if !in_word {
                if words > 0 || (leading_space && !lines.ends_with_space) {
                    lines.push(' ', true)?;
                }
                words += 1;
                in_word = true;
            }
        }
        if c == '&' {
            if let Some((decoded, len)) = entity_at(text.get(i..).unwrap_or("")) {
                lines.push(decoded, false)?;
                skip_to = i + len;
                continue;
            }
        }
        lines.push(c, true)?;
    }
    if !pre && words > 0 && !in_word {
        lines.push(' ', true)?;
    }
    Ok(())
}

/// `(name, closing, length)` of the tag at the start of `s`, quotes in attributes respected;
/// `None` when `<` does not start a tag.
fn parse_tag(s: &str) -> Option<(String, bool, usize)> {
    let body = s.strip_prefix('<')?;
    let (closing, body) = match body.strip_prefix('/') {
        Some(b) => (true, b),
        None => (false, body),
    };
    if !body.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let name: String = body
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == ':')
        .take(MAX_NAME)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let mut quote = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '>') => return Some((name, closing, i + 1)),
            _ => {}
        }
    }
    Some((name, closing, s.len()))
}

/// The first case-insensitive occurrence of an ASCII `needle` at or after `from`.
fn find(
    hay: &[u8],
    from: usize,
    needle: &[u8],
    budget: &mut Budget,
) -> Result<Option<usize>, Stop> {
    let Some(&first) = needle.first() else {
        return Ok(None);
    };
    let mut at = from;
    loop {
        let Some(rest) = hay.get(at..) else {
            return Ok(None);
        };
        let Some(skip) = rest.iter().position(|b| b.eq_ignore_ascii_case(&first)) else {
            budget.spend(rest.len())?;
            return Ok(None);
        };
        budget.spend(skip + needle.len())?;
        at += skip;
        if hay
            .get(at..at + needle.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(needle))
        {
            return Ok(Some(at));
        }
        at += 1;
    }
}

/// [`find`] for one needle searched again and again from later positions: what it found, or
/// where it found nothing, is remembered, so no byte is looked at twice.
struct Finder {
    needle: &'static [u8],
    /// The last match.
    found: Option<usize>,
    /// No match at or after this position.
    none_from: Option<usize>,
}

impl Finder {
    fn new(needle: &'static [u8]) -> Finder {
        Finder {
            needle,
            found: None,
            none_from: None,
        }
    }

    fn find(
        &mut self,
        hay: &[u8],
        from: usize,
        budget: &mut Budget,
    ) -> Result<Option<usize>, Stop> {
        if self.none_from.is_some_and(|n| from >= n) {
            return Ok(None);
        }
        if let Some(f) = self.found.filter(|&f| f >= from) {
            return Ok(Some(f));
        }
        let found = find(hay, from, self.needle, budget)?;
        match found {
            Some(f) => self.found = Some(f),
            None => self.none_from = Some(from),
        }
        Ok(found)
    }
}

/// The text being written, one line at a time: each line is trimmed (whitespace and table
/// bars) when it ends, runs of empty lines become one, and nothing trails the last line.
struct Lines {
    out: Capped,
    /// The current line from its first kept character.
    line: String,
    /// `line[..keep]` is the line without what trimming drops at its end.
    keep: usize,
    /// Empty lines since the last line written.
    blank: bool,
    /// The last character added was a space or a line break (of the markup, not a reference).
    ends_with_space: bool,
}

/// Characters trimmed from both ends of a line.
fn trimmed(c: char) -> bool {
    c.is_whitespace() || c == '|'
}

impl Lines {
    fn new(max: usize) -> Lines {
        Lines {
            out: Capped::new(max),
            line: String::new(),
            keep: 0,
            blank: false,
            ends_with_space: false,
        }
    }

    /// Adds a character; `markup`: it comes from the document as written, not from a
    /// reference.
    fn push(&mut self, c: char, markup: bool) -> Result<(), Stop> {
        self.ends_with_space = markup && (c == ' ' || c == '\n');
        if c == '\n' {
            return self.end_line();
        }
        if self.line.is_empty() && trimmed(c) {
            return Ok(());
        }
        self.line.push(c);
        if !trimmed(c) {
            self.keep = self.line.len();
            if self.separator().len() + self.keep > self.out.room() {
                // This line alone fills the output.
                return self.write_line();
            }
        }
        Ok(())
    }

    /// Ends the current line.
    fn end_line(&mut self) -> Result<(), Stop> {
        if self.keep == 0 {
            self.blank = true;
            self.line.clear();
            return Ok(());
        }
        self.write_line()
    }

    /// What goes before the next line written.
    fn separator(&self) -> &'static str {
        match (self.out.as_str().is_empty(), self.blank) {
            (true, _) => "",
            (false, false) => "\n",
            (false, true) => "\n\n",
        }
    }

    /// Writes the current (non-empty) line.
    fn write_line(&mut self) -> Result<(), Stop> {
        self.out.push_str(self.separator())?;
        self.out
            .push_str(self.line.get(..self.keep).unwrap_or(""))?;
        self.line.clear();
        self.keep = 0;
        self.blank = false;
        Ok(())
    }

    /// Writes the last line.
    fn finish(&mut self) -> Result<(), Stop> {
        if self.keep > 0 {
            self.write_line()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(html: &str) -> String {
        html_text(html, 1 << 20, &mut Budget::unlimited())
            .unwrap()
            .0
    }

    #[test]
    fn visible_text() {
        let h = "<!DOCTYPE html><html><head><title>T &amp; C</title><style>p{color:red}</style>\
                 <script>var x = '<p>no</p>';</script></head><body><h1>Hello&nbsp;world</h1>\
                 <!-- hidden --><p>A &lt;b&gt; &#233;&#x20AC; <b>bold</b> text.</p>\
                 <ul><li>one</li><li>two</li></ul><table><tr><td>c1</td><td>c2</td></tr></table>\
                 <pre>  keep\n  spaces</pre><SCRIPT>bad()</SCRIPT>&unknown; tail</body></html>";
        let t = text(h);
        assert_eq!(
            t,
            "T & C\n\nHello world\n\nA <b> é€ bold text.\n\n- one\n- two\n\nc1 | c2\n\nkeep\nspaces\n&unknown; tail"
        );
        assert!(!t.contains("color") && !t.contains("var x") && !t.contains("bad()"));
        assert_eq!(text("a <b>b</b> c<i> d </i>e"), "a b c d e");
        assert_eq!(
            text("<p>x</p>\n\n\n<p>y</p>   <title>Late</title>"),
            "Late\n\nx\n\ny"
        );
        assert_eq!(text("1 < 2 <3"), "1 < 2 <3");
        assert_eq!(text("<title>only</title>"), "only");
        assert_eq!(text("<script>never closed <p>x</p>"), "");
        assert_eq!(text("<a href='x>y'>link</a>"), "link");
    }

    #[test]
    fn stops_at_the_cap() {
        let (t, cut) = html_text(&"<p>abc</p>".repeat(1000), 10, &mut Budget::unlimited()).unwrap();
        assert_eq!((t.as_str(), cut), ("abc\n\nabc", true));
        let (t, cut) = html_text("<p>abc</p><p>de</p>", 8, &mut Budget::unlimited()).unwrap();
        assert_eq!((t.as_str(), cut), ("abc\n\nde", false));
        let long = "x".repeat(10_000);
        let mut b = Budget::unlimited();
        let (t, cut) = html_text(&long, 100, &mut b).unwrap();
        assert!(cut && t.len() == 100);
        // One scan for `<`, then only the characters that fit.
        assert!(b.steps() <= 10_200, "{}", b.steps());
    }

    #[test]
    fn unclosed_titles_are_read_once() {
        let html = "<title>".repeat(40_000);
        let mut b = Budget::unlimited();
        assert_eq!(html_text(&html, 1000, &mut b).unwrap().0, "");
        // Each byte is looked at a bounded number of times (the old search from every tag
        // looked at 40 000 × 280 000 / 2 bytes).
        assert!(b.steps() < 4 * html.len() as u64, "{} steps", b.steps());
    }
}
