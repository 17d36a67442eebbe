//! Any model id through the path encoder and the signer: the encoded segment only contains
//! unreserved characters and `%XX`, and signing never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use unigate_core::sigv4::{encode_path_segment, sign_request, AwsCredentials, SignInput};

fuzz_target!(|data: &[u8]| {
    let Ok(id) = std::str::from_utf8(data) else { return };
    let seg = encode_path_segment(id);
    assert!(seg
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)));
    let path = format!("/model/{seg}/invoke");
    let creds = AwsCredentials {
        access_key_id: "AKID".into(),
        secret_access_key: "secret".into(),
        session_token: Some("token".into()),
        expires_at: None,
    };
    let r = sign_request(
        &SignInput {
            method: "POST",
            authority: "bedrock-runtime.us-east-1.amazonaws.com",
            path: &path,
            content_type: "application/json",
            body: data,
            region: "us-east-1",
            service: "bedrock",
        },
        &creds,
        1_700_000_000,
    );
    assert!(r.is_ok(), "{r:?}");
});
