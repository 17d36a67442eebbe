//! The value tree of a request body, built in one pass and sized to the body (issue 17).
//!
//! serde_json unescapes a string through a scratch buffer that doubles as it grows and then
//! copies it out: a large prompt with newlines in it briefly costs about 2.6× its bytes on top
//! of the body. Here each string is copied once, into a buffer no larger than its text in the
//! body. Only plain valid JSON is built; anything else, and anything this builder is unsure of
//! (a number serde_json would refuse, deep nesting), stops with [`Stop::Fallback`] and the
//! caller parses with serde_json, whose verdict and messages stand. A test and a fuzz target
//! check that whatever is built here equals serde_json's tree.
//!
//! Besides the number of values, the builder counts what the tree takes in memory (value slots,
//! string bytes, the B-tree nodes of objects: a node is allocated whole, so `{"k":1}` takes a
//! few hundred bytes) and stops at a byte budget.

use super::splice::Splices;
use serde_json::{Map, Number, Value};
use std::mem::size_of;

/// Why no tree was built.
#[derive(Debug, PartialEq, Eq)]
pub enum Stop {
    /// Not plain valid JSON (or not an object at the top): let serde_json decide.
    Fallback,
    /// More values than the budget allows.
    Budget,
    /// A top-level key seen twice.
    Duplicate(String),
}

/// serde_json's nesting limit: its 128th nested container is an error.
const MAX_DEPTH: u32 = 127;

/// Bytes of one B-tree node of an object (the standard library's node holds 11 entries).
const NODE_BYTES: usize = 11 * (size_of::<String>() + size_of::<Value>()) + 16;

/// Texts stay in the body when splicing (see [`Splices`]) only in bodies from this size on:
/// smaller bodies cost little memory, and their texts are not worth the host reads.
const SPLICE_FROM_BODY: usize = 1 << 20;

/// Texts from this size on stay in the body (a marker takes about 40 bytes).
const SPLICE_MIN: usize = 128;

/// Top-level members whose string value is a prompt text.
const TOP_TEXT_KEYS: &[&str] = &["system", "instructions", "input", "inputText", "prompt"];

/// Top-level members that hold the conversation (only texts in these are left in the body:
/// nothing else of a request, such as `metadata`, reaches the answer or a check as text).
const SECTIONS: &[&str] = &["messages", "input", "system"];

/// Members of the conversation whose string value is a message text or a tool's output.
const TEXT_KEYS: &[&str] = &["text", "content", "output"];

/// Bytes of one value slot (an array element, a member's value).
pub const VALUE_BYTES: usize = size_of::<Value>();

/// A built object, the value budget left, and the texts left in the body.
pub type Built = (Map<String, Value>, u64, Option<Splices>);

/// Builds the object `body` holds, counting each value (the root, every array element and
/// every member value) against `budget` and the tree's bytes against `bytes`. Returns the
/// object and the value budget left.
pub fn object(
    body: &[u8],
    budget: u64,
    bytes: usize,
    splices: Option<Splices>,
) -> Result<Built, Stop> {
    let mut b = Builder {
        b: body,
        i: 0,
        budget,
        bytes,
        splices: splices.filter(|_| body.len() >= SPLICE_FROM_BODY),
        section: false,
    };
    b.ws();
    if b.peek() != Some(b'{') {
        return Err(Stop::Fallback);
    }
    b.take()?;
    let map = b.object(1, true)?;
    b.ws();
    if b.i != body.len() {
        return Err(Stop::Fallback);
    }
    Ok((map, b.budget, b.splices))
}

struct Builder<'a> {
    b: &'a [u8],
    i: usize,
    budget: u64,
    bytes: usize,
    splices: Option<Splices>,
    /// Inside one of the [`SECTIONS`].
    section: bool,
}

impl Builder<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn take(&mut self) -> Result<(), Stop> {
        match self.budget {
            0 => Err(Stop::Budget),
            n => {
                self.budget = n - 1;
                self.spend(VALUE_BYTES)
            }
        }
    }

    fn spend(&mut self, n: usize) -> Result<(), Stop> {
        self.bytes = self.bytes.checked_sub(n).ok_or(Stop::Budget)?;
        Ok(())
    }

    /// One value (whitespace before it skipped), counted.
    fn value(&mut self, depth: u32) -> Result<Value, Stop> {
        self.take()?;
        self.ws();
        match self.peek() {
            Some(b'{') => Ok(Value::Object(self.object(depth + 1, false)?)),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => Ok(Value::String(self.string()?)),
            Some(b't') => self.literal(b"true", Value::Bool(true)),
            Some(b'f') => self.literal(b"false", Value::Bool(false)),
            Some(b'n') => self.literal(b"null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(Stop::Fallback),
        }
    }

    fn literal(&mut self, word: &[u8], v: Value) -> Result<Value, Stop> {
        if self.b.get(self.i..self.i + word.len()) != Some(word) {
            return Err(Stop::Fallback);
        }
        self.i += word.len();
        Ok(v)
    }

    /// At `{`.
    fn object(&mut self, depth: u32, top: bool) -> Result<Map<String, Value>, Stop> {
        if depth > MAX_DEPTH {
            return Err(Stop::Fallback);
        }
        self.i += 1;
        let mut map = Map::new();
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(map);
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(Stop::Fallback);
            }
            let key = self.string()?;
            // A node for the first member, and another as the tree grows (nodes are at
            // least half full).
            if map.len() % 6 == 0 {
                self.spend(NODE_BYTES)?;
            }
            self.ws();
            if self.peek() != Some(b':') {
                return Err(Stop::Fallback);
            }
            self.i += 1;
            if top && map.contains_key(&key) {
                return Err(Stop::Duplicate(key));
            }
            if top {
                self.section = SECTIONS.contains(&key.as_str());
            }
            let v = match self.spliced(&key, depth)? {
                Some(v) => v,
                None => self.value(depth)?,
            };
            map.insert(key, v);
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(map);
                }
                _ => return Err(Stop::Fallback),
            }
        }
    }

    /// At `[`.
    fn array(&mut self, depth: u32) -> Result<Value, Stop> {
        if depth > MAX_DEPTH {
            return Err(Stop::Fallback);
        }
        self.i += 1;
        let mut items = Vec::new();
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(Value::Array(items));
        }
        loop {
            if items.len() == items.capacity() {
                // Growth is paid for before it happens (a vector doubles: at worst twice
                // what it holds).
                let grow = items.capacity().max(4);
                self.spend(grow.saturating_mul(VALUE_BYTES))?;
                items.reserve_exact(grow);
            }
            items.push(self.value(depth)?);
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    // A grown vector keeps up to twice what it holds.
                    if items.capacity() > items.len() + items.len() / 8 + 4 {
                        items.shrink_to_fit();
                    }
                    return Ok(Value::Array(items));
                }
                _ => return Err(Stop::Fallback),
            }
        }
    }

    /// At `"`: where the string's text (between its quotes, escapes included) ends, and
    /// whether it has escapes.
    fn string_end(&self) -> Result<(usize, bool), Stop> {
        let mut end = self.i + 1;
        let mut escaped = false;
        loop {
            let rest = self.b.get(end..).ok_or(Stop::Fallback)?;
            let k = memchr::memchr2(b'"', b'\\', rest).ok_or(Stop::Fallback)?;
            end += k;
            if self.b.get(end) == Some(&b'"') {
                return Ok((end, escaped));
            }
            escaped = true;
            end += 2; // the backslash and the byte it escapes (checked when unescaping)
        }
    }

    /// At `"`: the string's text, in a buffer the size of its text in the body.
    fn string(&mut self) -> Result<String, Stop> {
        let start = self.i + 1;
        let (end, escaped) = self.string_end()?;
        self.string_between(start, end, escaped)
    }

    /// The string whose text is `start..end` of the body ([`Self::string_end`]); the builder
    /// moves past its closing quote.
    fn string_between(&mut self, start: usize, end: usize, escaped: bool) -> Result<String, Stop> {
        let raw = self.b.get(start..end).ok_or(Stop::Fallback)?;
        self.i = end + 1;
        self.spend(raw.len())?;
        if raw.iter().any(|&c| c < 0x20) {
            return Err(Stop::Fallback);
        }
        if !escaped {
            return std::str::from_utf8(raw)
                .map(str::to_owned)
                .map_err(|_| Stop::Fallback);
        }
        let out = unescape(raw)?;
        let mut s = String::from_utf8(out).map_err(|_| Stop::Fallback)?;
        if s.capacity() > s.len() + s.len() / 4 + 64 {
            s.shrink_to_fit();
        }
        Ok(s)
    }

    /// A member's value when it is a long text that can stay in the body: its marker.
    fn spliced(&mut self, key: &str, depth: u32) -> Result<Option<Value>, Stop> {
        let Some(count) = self.splices.as_ref().map(Splices::len) else {
            return Ok(None);
        };
        let text = if depth == 1 {
            TOP_TEXT_KEYS.contains(&key)
        } else {
            self.section && TEXT_KEYS.contains(&key)
        };
        if !text {
            return Ok(None);
        }
        let at = self.i;
        self.ws();
        if self.peek() != Some(b'"') {
            self.i = at;
            return Ok(None);
        }
        let start = self.i + 1;
        let (end, escaped) = self.string_end()?;
        let raw = self.b.get(start..end).ok_or(Stop::Fallback)?;
        self.take()?;
        if raw.len() < SPLICE_MIN || raw.starts_with(b"data:") {
            return self
                .string_between(start, end, escaped)
                .map(|s| Some(Value::String(s)));
        }
        // Checked as the tree builder checks every string, without building it.
        if raw.iter().any(|&c| c < 0x20) || std::str::from_utf8(raw).is_err() {
            return Err(Stop::Fallback);
        }
        escapes(raw, |_| {})?;
        let marker = self
            .splices
            .as_ref()
            .map(|s| s.marker(count))
            .unwrap_or_default();
        self.spend(marker.len())?;
        if let Some(s) = &mut self.splices {
            s.push(start, end);
        }
        self.i = end + 1;
        Ok(Some(Value::String(marker)))
    }

    /// At `-` or a digit. Small non-negative integers are read here; every other number is
    /// handed to serde_json, so that each number is exactly what serde_json makes of it.
    fn number(&mut self) -> Result<Value, Stop> {
        let start = self.i;
        while matches!(
            self.peek(),
            Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
        ) {
            self.i += 1;
        }
        let text = self.b.get(start..self.i).ok_or(Stop::Fallback)?;
        let plain = text.len() <= 18
            && text.iter().all(u8::is_ascii_digit)
            && (text.len() == 1 || text.first() != Some(&b'0'));
        if plain {
            let n = text.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            return Ok(Value::Number(n.into()));
        }
        serde_json::from_slice::<Number>(text)
            .map(Value::Number)
            .map_err(|_| Stop::Fallback)
    }
}

/// Walks `raw` (a string's text between its quotes, with escapes), handing `out` the bytes
/// it stands for, run by run; fails on an escape JSON does not allow.
fn escapes(raw: &[u8], mut out: impl FnMut(&[u8])) -> Result<(), Stop> {
    let mut rest = raw;
    while let Some(k) = memchr::memchr(b'\\', rest) {
        let (plain, esc) = rest.split_at(k);
        out(plain);
        let byte = match esc.get(1) {
            Some(b'"') => b'"',
            Some(b'\\') => b'\\',
            Some(b'/') => b'/',
            Some(b'b') => 0x08,
            Some(b'f') => 0x0c,
            Some(b'n') => b'\n',
            Some(b'r') => b'\r',
            Some(b't') => b'\t',
            Some(b'u') => {
                let (used, c) = code_point(esc)?;
                out(c.encode_utf8(&mut [0u8; 4]).as_bytes());
                rest = esc.get(used..).ok_or(Stop::Fallback)?;
                continue;
            }
            _ => return Err(Stop::Fallback),
        };
        out(&[byte]);
        rest = esc.get(2..).ok_or(Stop::Fallback)?;
    }
    out(rest);
    Ok(())
}

/// The bytes `raw` (a string's text between its quotes, with escapes) stands for.
fn unescape(raw: &[u8]) -> Result<Vec<u8>, Stop> {
    let mut out = Vec::with_capacity(raw.len());
    escapes(raw, |piece| out.extend_from_slice(piece))?;
    Ok(out)
}

/// At `\u`: the character and how many bytes its escape takes (a surrogate pair takes 12).
fn code_point(esc: &[u8]) -> Result<(usize, char), Stop> {
    let hi = hex4(esc.get(2..6))?;
    if (0xDC00..0xE000).contains(&hi) {
        return Err(Stop::Fallback);
    }
    if !(0xD800..0xDC00).contains(&hi) {
        return char::from_u32(hi).map(|c| (6, c)).ok_or(Stop::Fallback);
    }
    if esc.get(6..8) != Some(b"\\u") {
        return Err(Stop::Fallback);
    }
    let lo = hex4(esc.get(8..12))?;
    if !(0xDC00..0xE000).contains(&lo) {
        return Err(Stop::Fallback);
    }
    char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
        .map(|c| (12, c))
        .ok_or(Stop::Fallback)
}

fn hex4(digits: Option<&[u8]>) -> Result<u32, Stop> {
    let digits = digits.ok_or(Stop::Fallback)?;
    digits.iter().try_fold(0u32, |n, &d| {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => return Err(Stop::Fallback),
        };
        Ok(n * 16 + u32::from(v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What serde_json makes of `body` when it is an object, else None.
    fn reference(body: &[u8]) -> Option<Map<String, Value>> {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => Some(m),
            _ => None,
        }
    }

    /// Whatever is built equals serde_json's tree; whatever serde_json refuses is not built.
    fn agrees(body: &[u8]) {
        match object(body, u64::MAX, usize::MAX, None) {
            Ok((m, _, _)) => assert_eq!(
                Some(m),
                reference(body),
                "{}",
                String::from_utf8_lossy(body)
            ),
            Err(Stop::Fallback) => {}
            Err(e) => panic!("{e:?} for {}", String::from_utf8_lossy(body)),
        }
    }

    #[test]
    fn builds_what_serde_json_builds() {
        let cases: &[&[u8]] = &[
            br#"{}"#,
            br#" { "a" : [ 1 , -2 , 3.5e2 , 0 , 18446744073709551615 , 18446744073709551616 , -0 , 1E-3 ] } "#,
            br#"{"s":"plain","e":"a\"b\\c\/d\be\ff\ng\rh\ti","u":"\u00e9\u4e2d\ud83d\ude00","t":true,"f":false,"n":null}"#,
            br#"{"nested":{"a":[{"b":[[],{}]}],"k":{"k":1}},"k2":{"x":1,"x":2}}"#,
            "{\"utf8\":\"é中😀\"}".as_bytes(),
            br#"{"big":123456789012345678,"bigger":1234567890123456789,"neg":-9223372036854775808}"#,
        ];
        for c in cases {
            assert!(
                object(c, u64::MAX, usize::MAX, None).is_ok(),
                "{}",
                String::from_utf8_lossy(c)
            );
            agrees(c);
        }
    }

    #[test]
    fn never_builds_what_serde_json_refuses() {
        let cases: &[&[u8]] = &[
            b"",
            b"{",
            b"{\"a\"}",
            b"{\"a\":}",
            b"{\"a\":1,}",
            b"{\"a\":[1,]}",
            b"{\"a\":01}",
            b"{\"a\":1.}",
            b"{\"a\":-}",
            b"{\"a\":1e}",
            b"{\"a\":+1}",
            b"{\"a\":tru}",
            b"{\"a\":\"\x01\"}",
            b"{\"a\":\"\\x\"}",
            b"{\"a\":\"\\u12\"}",
            b"{\"a\":\"\\ud800\"}",
            b"{\"a\":\"\\udc00\"}",
            b"{\"a\":\"\\ud800\\u0041\"}",
            b"{\"a\":\"\xff\"}",
            b"{\"a\":\"\\\xc3\xa9\"}",
            b"{} x",
            b"{}{}",
            b"[1]",
            b"\"s\"",
            b"{\"a\":1e999}",
            b"{'a':1}",
            b"{\"a\":NaN}",
            b"{\"a\" 1}",
            b"{\"a\":\"unterminated}",
        ];
        for c in cases {
            agrees(c);
            assert!(
                reference(c).is_some() || object(c, u64::MAX, usize::MAX, None).is_err(),
                "{}",
                String::from_utf8_lossy(c)
            );
        }
    }

    #[test]
    fn every_prefix_and_byte_flip_agrees() {
        let body = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"h\u00e9llo \"q\"\n","n":[1,2.5,-3e1]}],"x":{"y":[true,false,null]}}"#;
        for end in 0..=body.len() {
            agrees(&body[..end]);
        }
        for i in 0..body.len() {
            for b in [
                b'"', b'\\', b',', b'}', b']', b'0', b'-', b'e', 0x01, 0xc3, b'u',
            ] {
                let mut m = body.to_vec();
                m[i] = b;
                agrees(&m);
            }
        }
    }

    #[test]
    fn duplicate_top_level_keys_stop_nested_ones_do_not() {
        assert_eq!(
            object(br#"{"a":1,"a":2}"#, u64::MAX, usize::MAX, None).unwrap_err(),
            Stop::Duplicate("a".into())
        );
        assert!(object(br#"{"a":{"b":1,"b":2}}"#, u64::MAX, usize::MAX, None).is_ok());
    }

    #[test]
    fn counts_values_as_the_budget_says() {
        // root + a + 3 elements
        let (_, left, _) = object(br#"{"a":[1,2,3]}"#, 10, usize::MAX, None).unwrap();
        assert_eq!(left, 5);
        assert_eq!(
            object(br#"{"a":[1,2,3]}"#, 4, usize::MAX, None).unwrap_err(),
            Stop::Budget
        );
    }

    #[test]
    fn objects_are_counted_by_their_nodes() {
        let body = br#"{"a":[{"k":1},{"k":2},{"k":3}]}"#;
        assert!(object(body, u64::MAX, 4 * NODE_BYTES + 16 * VALUE_BYTES, None).is_ok());
        assert_eq!(
            object(body, u64::MAX, 3 * NODE_BYTES, None).unwrap_err(),
            Stop::Budget
        );
    }

    #[test]
    fn nesting_stops_where_serde_json_stops() {
        let deep = |n: usize| format!("{{\"a\":{}1{}}}", "[".repeat(n - 1), "]".repeat(n - 1));
        assert!(object(deep(127).as_bytes(), u64::MAX, usize::MAX, None).is_ok());
        agrees(deep(127).as_bytes());
        assert_eq!(
            object(deep(128).as_bytes(), u64::MAX, usize::MAX, None).unwrap_err(),
            Stop::Fallback
        );
        assert!(reference(deep(128).as_bytes()).is_none());
    }

    #[test]
    fn strings_take_no_more_than_their_text() {
        let text = "line \"one\"\n".repeat(10_000);
        let body = serde_json::to_vec(&serde_json::json!({ "t": text })).unwrap();
        let (m, _, _) = object(&body, u64::MAX, usize::MAX, None).unwrap();
        let Some(Value::String(s)) = m.get("t") else {
            panic!()
        };
        assert_eq!(s, &text);
        assert!(
            s.capacity() <= body.len(),
            "{} > {}",
            s.capacity(),
            body.len()
        );
    }
}
