//! ZITADEL's `urlTemplate`: parsing never panics, and a template that parses renders with any
//! values.
#![no_main]

use enroll_core::url_template::{LinkValues, UrlTemplate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    if let Ok(template) = UrlTemplate::parse(input) {
        let rendered = template.render(LinkValues {
            user_id: "us-1",
            code: "XK4T9P",
            org_id: "or-2",
        });
        assert!(!template.as_str().is_empty());
        let _ = rendered;
    }
});
