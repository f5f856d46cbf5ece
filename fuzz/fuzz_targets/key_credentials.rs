//! Dfns Key credentials: public keys (PEM), attestations, assertions, credential ids and API
//! signatures from any bytes are refused with an error, never a panic, and never accepted.
#![no_main]

use enroll_core::credential::{
    ApiRequest, KeyAlgorithm, PublicKey, parse_cred_id, verify_api_signature, verify_assertion,
    verify_attestation,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    // The input splits into the fields a client sends, separated by NUL.
    let mut fields = input.splitn(3, '\0');
    let (first, second, third) = (
        fields.next().unwrap_or_default(),
        fields.next().unwrap_or_default(),
        fields.next().unwrap_or_default(),
    );
    let _ = PublicKey::from_pem(input);
    let _ = parse_cred_id(first);
    let _ = verify_attestation(first, second, third);
    let key = PublicKey::from_raw(KeyAlgorithm::Ed25519, &[9; 32]).expect("a 32-byte Ed25519 key");
    assert!(verify_assertion(&key, first, second, third).is_err());
    let request = ApiRequest {
        method: "POST",
        path: "/auth/users",
        path_and_query: "/auth/users",
        body: second.as_bytes(),
        headers: &[("x-dfns-appid", "ap-1")],
    };
    assert!(verify_api_signature(&key, first, &request).is_err());
});
