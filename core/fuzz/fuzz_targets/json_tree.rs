//! The request-body parser against serde_json: whatever it accepts, serde_json accepts too and
//! reads as the same object (it refuses duplicate top-level keys and bodies past its value and
//! memory limits, which serde_json would read). Never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use unigate_core::json::parse_object;

fuzz_target!(|data: &[u8]| {
    if let Ok(obj) = parse_object(data) {
        match serde_json::from_slice::<Value>(data) {
            Ok(Value::Object(reference)) => assert_eq!(obj, reference),
            other => panic!("accepted what serde_json reads as {other:?}"),
        }
    }
});
