//! Any bytes as a CSV file (the second byte picks the delimiter): see check.rs.
#![no_main]

#[path = "check.rs"]
mod check;

use check::extract::Kind;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&d, rest)) = data.split_first() else {
        return;
    };
    let delim = [',', '\t', ';', '|'][usize::from(d % 4)];
    check::run(Kind::Csv(delim), rest, true);
});
