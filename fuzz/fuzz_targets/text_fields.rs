//! Short fields from requests: identifiers, locales, permissions, times, codes and new
//! passwords. Each parses or is refused, never panics, and what parses keeps its shape.
#![no_main]

use enroll_core::clock::Timestamp;
use enroll_core::code::CodeSecret;
use enroll_core::email::EmailAddress;
use enroll_core::ids::{AppId, CodeId, OrgId, TokenId, UserId};
use enroll_core::model::{Locale, Permission};
use enroll_core::password::Password;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    for parsed in [
        UserId::parse(input).map(|id| id.to_string()),
        OrgId::parse(input).map(|id| id.to_string()),
        AppId::parse(input).map(|id| id.to_string()),
        CodeId::parse(input).map(|id| id.to_string()),
        TokenId::parse(input).map(|id| id.to_string()),
    ]
    .into_iter()
    .flatten()
    {
        assert_eq!(parsed, input);
    }
    if let Some(locale) = Locale::parse(input) {
        assert_eq!(Locale::parse(locale.as_str()), Some(locale.clone()));
    }
    if let Some(permission) = Permission::parse(input) {
        assert_eq!(permission.as_str(), input);
    }
    let _ = Timestamp::parse_rfc3339(input);
    let _ = CodeSecret::from_user_input(input);
    let email = EmailAddress::from_trusted("jane.doe@example.com".to_owned());
    if let Ok(password) = Password::new_for(input, &email) {
        assert!(password.expose().chars().count() >= 8);
    }
});
