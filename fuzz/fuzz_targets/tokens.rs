//! Bearer tokens, refresh tokens, challenges and user actions: whatever is presented, opening
//! it never panics, and nothing but a token signed under the key opens.
#![no_main]

use enroll_core::clock::Timestamp;
use enroll_core::token::{
    AccessClaims, ActionChallengeClaims, LoginClaims, RefreshClaims, RegistrationClaims,
    SessionClaims, TokenSigner, UserActionClaims,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    let signer = TokenSigner::new(&[7; 32]);
    let now = Timestamp::from_millis(1_800_000_000_000);
    // No input can carry a valid HS256 signature under a key it does not know.
    assert!(signer.open_checked::<AccessClaims>(input, now).is_err());
    assert!(signer.open_checked::<SessionClaims>(input, now).is_err());
    assert!(signer.open_checked::<RefreshClaims>(input, now).is_err());
    assert!(
        signer
            .open_checked::<RegistrationClaims>(input, now)
            .is_err()
    );
    assert!(signer.open_checked::<LoginClaims>(input, now).is_err());
    assert!(
        signer
            .open_checked::<ActionChallengeClaims>(input, now)
            .is_err()
    );
    assert!(signer.open_checked::<UserActionClaims>(input, now).is_err());
});
