//! Email addresses: never a panic; what parses has no byte that could break a mail header, is
//! within the lengths SMTP allows, and parses again to itself.
#![no_main]

use enroll_core::email::EmailAddress;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    if let Ok(address) = EmailAddress::parse(input) {
        let text = address.as_str();
        assert!(text.len() <= 254);
        assert!(
            !text
                .chars()
                .any(|c| c.is_control() || c == '\r' || c == '\n')
        );
        assert_eq!(EmailAddress::parse(text).as_ref(), Ok(&address));
    }
});
