//! Any bytes as a PDF: never a panic of ours, never more text than the cap, every refusal
//! names the file. The work is not held to a per-byte bound (content decompresses); the
//! document limits and, in the sidecar, the killed child process bound it.
#![no_main]

#[path = "check.rs"]
#[allow(dead_code)] // `run` is for the text formats.
mod check;

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: {
        // pdf-extract panics on malformed files; the sidecar catches those (catch_unwind in
        // extract/pdf.rs) and so does this target. A panic of ours still aborts: libfuzzer-sys
        // turns a panic that reaches it into a crash.
        std::panic::set_hook(Box::new(|_| {}));
    },
    |data: &[u8]| {
        let (max, data) = check::split(data);
        let _ = check::extract_once(check::extract::Kind::Pdf, data, max, false);
    }
);
