//! AWS event-stream (`application/vnd.amazon.eventstream`) frames, decoded incrementally
//! from bytes split anywhere.
//!
//! Parsing and both CRC checks of a complete frame are done by the official
//! `aws-smithy-eventstream` crate; this module adds the buffering across body callbacks and
//! the bounds (the prelude CRC is checked before a declared length is trusted, and a frame may
//! not exceed [`MAX_FRAME`]), so memory per stream stays at one frame.

use aws_smithy_eventstream::frame::read_message_from;
use aws_smithy_types::event_stream::{HeaderValue, Message};

/// Prelude: total length, headers length, prelude CRC.
const PRELUDE: usize = 12;

/// Largest frame accepted: botocore's limits (24 MiB payload, 128 KiB headers) plus overhead.
pub const MAX_FRAME: usize = 24 * 1024 * 1024 + 128 * 1024 + 16;

/// One decoded frame with the headers the gateway cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// `:message-type` (`event`, `exception` or `error`).
    pub message_type: String,
    /// `:event-type` for events, `:exception-type` for exceptions, `:error-code` for errors.
    pub kind: String,
    /// `:error-message` of an `error` frame.
    pub error_message: Option<String>,
    /// The payload bytes.
    pub payload: Vec<u8>,
}

/// A framing failure: the stream cannot be trusted past this point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError(pub String);

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid event-stream frame: {}", self.0)
    }
}

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

fn header_string(msg: &Message, name: &str) -> Option<String> {
    msg.headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| match h.value() {
            HeaderValue::String(s) => Some(s.as_str().to_string()),
            _ => None,
        })
}

/// Incremental frame decoder with a buffer bounded by one frame.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    failed: bool,
}

impl FrameDecoder {
    /// A new decoder.
    pub fn new() -> FrameDecoder {
        FrameDecoder::default()
    }

    /// Bytes held while waiting for the rest of a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Adds bytes and returns every frame they complete, in order. Fails on the first bad
    /// frame; the good frames before it are still available from [`FrameDecoder::push_all`].
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Frame>, FrameError> {
        match self.push_all(bytes) {
            (frames, None) => Ok(frames),
            (_, Some(e)) => Err(e),
        }
    }

    /// Adds bytes; returns the complete frames before any bad one, and the error if there was
    /// one. After an error the decoder refuses further input.
    pub fn push_all(&mut self, bytes: &[u8]) -> (Vec<Frame>, Option<FrameError>) {
        if self.failed {
            return (Vec::new(), Some(FrameError("stream already failed".into())));
        }
        let mut frames = Vec::new();
        let err = self.decode_into(bytes, &mut frames).err();
        (frames, err)
    }

    fn decode_into(&mut self, bytes: &[u8], frames: &mut Vec<Frame>) -> Result<(), FrameError> {
        self.buf.extend_from_slice(bytes);
        let mut start = 0;
        loop {
            let rest = self.buf.get(start..).unwrap_or_default();
            if rest.len() < PRELUDE {
                break;
            }
            let total = be_u32(rest, 0).unwrap_or(0) as usize;
            let prelude_crc = be_u32(rest, 8).unwrap_or(0);
            if crc32fast::hash(rest.get(..8).unwrap_or_default()) != prelude_crc {
                return Err(self.fail("prelude checksum mismatch"));
            }
            if !(PRELUDE + 4..=MAX_FRAME).contains(&total) {
                return Err(self.fail(&format!("frame length {total} out of bounds")));
            }
            let Some(frame_bytes) = rest.get(..total) else {
                break;
            };
            let msg = match read_message_from(frame_bytes) {
                Ok(m) => m,
                Err(e) => return Err(self.fail(&e.to_string())),
            };
            let message_type =
                header_string(&msg, ":message-type").unwrap_or_else(|| "event".into());
            let (kind, error_message) = match message_type.as_str() {
                "exception" => (
                    header_string(&msg, ":exception-type").unwrap_or_default(),
                    None,
                ),
                "error" => (
                    header_string(&msg, ":error-code").unwrap_or_default(),
                    header_string(&msg, ":error-message"),
                ),
                _ => (header_string(&msg, ":event-type").unwrap_or_default(), None),
            };
            frames.push(Frame {
                message_type,
                kind,
                error_message,
                payload: msg.payload().to_vec(),
            });
            start += total;
        }
        self.buf.drain(..start);
        Ok(())
    }

    fn fail(&mut self, why: &str) -> FrameError {
        self.failed = true;
        self.buf = Vec::new();
        FrameError(why.to_string())
    }
}

/// Encodes one frame with string headers (for tests, benchmarks and fakes inside Rust).
pub fn encode_frame(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    for (name, value) in headers {
        h.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
        h.extend_from_slice(name.as_bytes());
        h.push(7);
        h.extend_from_slice(&u16::try_from(value.len()).unwrap_or(u16::MAX).to_be_bytes());
        h.extend_from_slice(value.as_bytes());
    }
    let total = PRELUDE + h.len() + payload.len() + 4;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&u32::try_from(total).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&u32::try_from(h.len()).unwrap_or(u32::MAX).to_be_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// An `event` frame as Bedrock sends it.
pub fn event_frame(event_type: &str, payload: &[u8]) -> Vec<u8> {
    encode_frame(
        &[
            (":event-type", event_type),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload,
    )
}

/// An `exception` frame as Bedrock sends it.
pub fn exception_frame(exception_type: &str, payload: &[u8]) -> Vec<u8> {
    encode_frame(
        &[
            (":exception-type", exception_type),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        payload,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ConverseStream frame from the protocol notes (decoded there by botocore).
    const CONVERSE_FRAME_HEX: &str = "0000009f00000057c37babff0b3a6576656e742d74797065070011636f6e74656e74426c6f636b44656c74610d3a636f6e74656e742d747970650700106170706c69636174696f6e2f6a736f6e0d3a6d6573736167652d747970650700056576656e747b22636f6e74656e74426c6f636b496e646578223a302c2264656c7461223a7b2274657874223a224869227d2c2270223a2261626364227df2ace5ff";

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn decodes_reference_frame_and_matches_our_encoder() {
        let bytes = hex(CONVERSE_FRAME_HEX);
        let mut d = FrameDecoder::new();
        let frames = d.push(&bytes).unwrap();
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].kind, "contentBlockDelta");
        assert_eq!(
            frames[0].payload,
            br#"{"contentBlockIndex":0,"delta":{"text":"Hi"},"p":"abcd"}"#
        );
        // Same headers in the same order reproduce the reference bytes exactly.
        assert_eq!(event_frame("contentBlockDelta", &frames[0].payload), bytes);
    }

    #[test]
    fn every_split_point() {
        let mut stream = Vec::new();
        for i in 0..5 {
            stream.extend(event_frame(
                "chunk",
                format!("{{\"n\":{i},\"t\":\"é€😀\"}}").as_bytes(),
            ));
        }
        stream.extend(exception_frame(
            "throttlingException",
            br#"{"message":"slow"}"#,
        ));
        for split in 0..=stream.len() {
            let mut d = FrameDecoder::new();
            let mut frames = d.push(&stream[..split]).unwrap();
            frames.extend(d.push(&stream[split..]).unwrap());
            assert_eq!(frames.len(), 6, "split {split}");
            assert_eq!(frames[5].message_type, "exception");
            assert_eq!(d.buffered(), 0);
        }
        let mut d = FrameDecoder::new();
        let mut n = 0;
        for b in &stream {
            n += d.push(std::slice::from_ref(b)).unwrap().len();
        }
        assert_eq!(n, 6);
    }

    #[test]
    fn rejects_corruption() {
        let mut f = event_frame("chunk", b"{}");
        f[3] ^= 0x40; // corrupt the declared length: prelude CRC no longer matches
        assert!(FrameDecoder::new().push(&f).is_err());
        let mut f = event_frame("chunk", b"{}");
        let n = f.len();
        f[n - 6] ^= 1; // corrupt the payload: message CRC fails
        assert!(FrameDecoder::new().push(&f).is_err());
        // A huge declared length with a valid prelude CRC is refused before buffering it.
        let mut p = Vec::new();
        p.extend_from_slice(&(u32::MAX).to_be_bytes());
        p.extend_from_slice(&0u32.to_be_bytes());
        let crc = crc32fast::hash(&p);
        p.extend_from_slice(&crc.to_be_bytes());
        let e = FrameDecoder::new().push(&p).unwrap_err();
        assert!(e.0.contains("out of bounds"));
    }
}
