//! `X-DFNS-NONCE`: any header value reads as a nonce or as `NonceInvalid`, never a panic, and
//! a nonce read is then checked against the window without panicking either.
#![no_main]

use enroll_core::Error;
use enroll_core::clock::Timestamp;
use enroll_core::nonce::Nonce;
use enroll_core::policy::Policy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    match Nonce::from_header(input) {
        Ok(nonce) => {
            let _ = nonce.check(
                Timestamp::from_millis(1_800_000_000_000),
                &Policy::default(),
            );
        }
        Err(error) => assert!(matches!(error, Error::NonceInvalid)),
    }
});
