//! Any bytes as an XML file: see check.rs.
#![no_main]

#[path = "check.rs"]
mod check;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| check::run(check::extract::Kind::Xml, data, false));
