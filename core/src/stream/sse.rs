//! Server-sent events parsed as bytes, split anywhere (inside `data:`, inside JSON, inside a
//! multi-byte character, inside `\r\n\r\n`). Text is decoded only once an event is complete.

/// Largest single event accepted (one OpenAI chunk is a few KiB).
pub const MAX_EVENT: usize = 8 * 1024 * 1024;

/// One complete event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` lines joined by `\n`.
    pub data: String,
    /// The event exactly as received, including its terminating blank line.
    pub raw: Vec<u8>,
}

/// Incremental SSE parser.
#[derive(Debug, Default)]
pub struct SseDecoder {
    buf: Vec<u8>,
    /// Where the next unparsed line starts.
    line_start: usize,
    event: Option<String>,
    data: Vec<u8>,
    has_data: bool,
}

impl SseDecoder {
    /// A new parser.
    pub fn new() -> SseDecoder {
        SseDecoder::default()
    }

    /// Bytes held for an incomplete event.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Adds bytes; returns the events they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, String> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        self.scan(false, &mut out);
        if self.buf.len() > MAX_EVENT {
            return Err(format!("an SSE event exceeds {MAX_EVENT} bytes"));
        }
        Ok(out)
    }

    /// Ends the input: an event not followed by a blank line is still delivered.
    pub fn finish(&mut self) -> Vec<SseEvent> {
        let mut out = Vec::new();
        self.scan(true, &mut out);
        if self.line_start < self.buf.len() {
            let line = self.buf.get(self.line_start..).unwrap_or_default().to_vec();
            self.field(&line);
            self.line_start = self.buf.len();
        }
        if self.has_data || self.event.is_some() {
            let end = self.buf.len();
            self.emit(end, &mut out);
        }
        out
    }

    fn scan(&mut self, at_end: bool, out: &mut Vec<SseEvent>) {
        let mut i = self.line_start;
        while let Some(&b) = self.buf.get(i) {
            if b != b'\n' && b != b'\r' {
                i += 1;
                continue;
            }
            // A lone `\r` at the end may be the first half of `\r\n`: wait for more bytes.
            let next = self.buf.get(i + 1).copied();
            if b == b'\r' && next.is_none() && !at_end {
                break;
            }
            let term_len = if b == b'\r' && next == Some(b'\n') {
                2
            } else {
                1
            };
            let line = self
                .buf
                .get(self.line_start..i)
                .unwrap_or_default()
                .to_vec();
            i += term_len;
            self.line_start = i;
            if line.is_empty() {
                if self.has_data || self.event.is_some() {
                    self.emit(i, out);
                    i = 0;
                } else {
                    // Blank line with nothing pending (e.g. after a comment): drop it.
                    self.buf.drain(..i);
                    self.line_start = 0;
                    i = 0;
                }
            } else {
                self.field(&line);
            }
        }
    }

    fn field(&mut self, line: &[u8]) {
        if line.first() == Some(&b':') {
            return; // comment
        }
        let (name, value) = match line.iter().position(|&c| c == b':') {
            Some(p) => {
                let v = line.get(p + 1..).unwrap_or_default();
                (
                    line.get(..p).unwrap_or_default(),
                    v.strip_prefix(b" ").unwrap_or(v),
                )
            }
            None => (line, &b""[..]),
        };
        match name {
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            _ => {}
        }
    }

    fn emit(&mut self, end: usize, out: &mut Vec<SseEvent>) {
        let raw: Vec<u8> = self.buf.drain(..end).collect();
        self.line_start = 0;
        out.push(SseEvent {
            event: self.event.take(),
            data: String::from_utf8_lossy(&std::mem::take(&mut self.data)).into_owned(),
            raw,
        });
        self.has_data = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut d = SseDecoder::new();
        let mut out = Vec::new();
        for c in chunks {
            out.extend(d.push(c).unwrap());
        }
        out.extend(d.finish());
        out
    }

    #[test]
    fn every_split_point_with_mixed_line_ends() {
        let stream = "data: {\"a\":\"é😀\"}\n\n: comment\n\nevent: ping\r\ndata: 1\r\ndata: 2\r\n\r\ndata: [DONE]\n\n";
        let bytes = stream.as_bytes();
        let whole = collect(&[bytes]);
        assert_eq!(whole.len(), 3);
        assert_eq!(whole[0].data, "{\"a\":\"é😀\"}");
        assert_eq!(whole[1].event.as_deref(), Some("ping"));
        assert_eq!(whole[1].data, "1\n2");
        assert_eq!(whole[2].data, "[DONE]");
        for split in 0..=bytes.len() {
            let got = collect(&[&bytes[..split], &bytes[split..]]);
            assert_eq!(
                got.iter().map(|e| &e.data).collect::<Vec<_>>(),
                whole.iter().map(|e| &e.data).collect::<Vec<_>>(),
                "split {split}"
            );
        }
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(collect(&singles).len(), 3);
        // The raw bytes of all events put together reproduce everything but the comment.
        let raw: Vec<u8> = whole.iter().flat_map(|e| e.raw.clone()).collect();
        assert_eq!(
            String::from_utf8(raw).unwrap(),
            stream.replace(": comment\n\n", "")
        );
    }

    #[test]
    fn last_event_without_blank_line_and_cr_only() {
        let got = collect(&[b"data: a\r\rdata: b"]);
        assert_eq!(
            got.iter().map(|e| e.data.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
    }

    #[test]
    fn oversized_event_is_refused() {
        let mut d = SseDecoder::new();
        let big = vec![b'x'; MAX_EVENT + 1];
        assert!(d.push(&big).is_err());
    }
}
