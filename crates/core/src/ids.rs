//! Identifiers in Dfns's shape: `<prefix>-<5>-<5>-<16>`, lowercase base36, from the OS CSPRNG.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::random;

const BASE36: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

fn generate(prefix: &str) -> String {
    // 26 base36 characters, about 134 bits.
    let chars = random::characters(BASE36, 26);
    format!(
        "{prefix}-{}-{}-{}",
        &chars[0..5],
        &chars[5..10],
        &chars[10..26]
    )
}

/// An identifier that begins with `at` in milliseconds (ten base36 characters, in order) and
/// ends with 16 random ones (about 82 bits): rows keyed by it are appended to their index
/// instead of landing on a random page of it, which is most of a write's cost in a B-tree
/// store. For records whose creation time is no secret (codes and messages carry it anyway).
fn generate_at(prefix: &str, at: Timestamp) -> String {
    let mut millis = u64::try_from(at.as_millis()).unwrap_or(0);
    let mut time = [b'0'; 10];
    for digit in time.iter_mut().rev() {
        *digit = BASE36[(millis % 36) as usize];
        millis /= 36;
    }
    let time = String::from_utf8_lossy(&time);
    let chars = random::characters(BASE36, 16);
    format!("{prefix}-{}-{}-{chars}", &time[0..5], &time[5..10])
}

fn is_well_formed(prefix: &str, value: &str) -> bool {
    let Some(rest) = value
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('-'))
    else {
        return false;
    };
    let groups: Vec<&str> = rest.split('-').collect();
    let lowercase_base36 = |group: &str| {
        group
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    };
    matches!(groups.as_slice(), [a, b, c]
        if a.len() == 5 && b.len() == 5 && (14..=17).contains(&c.len())
            && lowercase_base36(a) && lowercase_base36(b) && lowercase_base36(c))
}

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident, $prefix:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn generate() -> Self {
                Self(generate($prefix))
            }

            /// Ordered by `at`; see [`generate_at`].
            pub fn generate_at(at: Timestamp) -> Self {
                Self(generate_at($prefix, at))
            }

            /// Accepts only identifiers of this type's shape.
            pub fn parse(value: &str) -> Option<Self> {
                is_well_formed($prefix, value).then(|| Self(value.to_owned()))
            }

            /// For values read back from storage, which were well formed when written.
            pub fn from_trusted(value: String) -> Self {
                Self(value)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// An organisation.
    OrgId,
    "or"
);
id_type!(
    /// A user of an organisation.
    UserId,
    "us"
);
id_type!(
    /// One issued code.
    CodeId,
    "cd"
);
id_type!(
    /// One outbox message; also the left part of its `Message-ID`.
    MessageId,
    "ms"
);
id_type!(
    /// A registered application (Dfns `X-DFNS-APPID`).
    AppId,
    "ap"
);
id_type!(
    /// An access token (admin or personal).
    TokenId,
    "to"
);

id_type!(
    /// A registered Key credential (Dfns `credential.uuid`).
    CredentialId,
    "cr"
);
id_type!(
    /// A challenge handed out for registration, login or a user action.
    ChallengeId,
    "ch"
);
id_type!(
    /// A signed user action (Dfns `x-dfns-useraction`).
    UserActionId,
    "ua"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_have_the_dfns_shape() {
        for _ in 0..100 {
            let id = OrgId::generate();
            let text = id.as_str();
            assert_eq!(text.len(), 2 + 1 + 5 + 1 + 5 + 1 + 16, "{text}");
            assert!(OrgId::parse(text).is_some(), "{text}");
            assert!(UserId::parse(text).is_none(), "prefix is checked: {text}");
        }
    }

    #[test]
    fn ids_generated_at_a_time_sort_by_it_and_keep_the_shape() {
        let times = [
            0,
            1,
            35,
            36,
            1_795_000_000_000,
            1_795_000_000_001,
            3_000_000_000_000,
        ];
        let ids: Vec<CodeId> = times
            .iter()
            .map(|&millis| CodeId::generate_at(Timestamp::from_millis(millis)))
            .collect();
        for id in &ids {
            assert!(CodeId::parse(id.as_str()).is_some(), "{id}");
        }
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
        assert!(ids[0].as_str().starts_with("cd-00000-00000-"), "{}", ids[0]);
        let twins = [
            CodeId::generate_at(Timestamp::from_millis(7)),
            CodeId::generate_at(Timestamp::from_millis(7)),
        ];
        assert_ne!(
            twins[0], twins[1],
            "the random part tells apart ids of one millisecond"
        );
    }

    #[test]
    fn dfns_documentation_examples_parse() {
        assert!(UserId::parse("us-24vwa-92s33-8tvqi1dg0a95megt").is_some());
        assert!(OrgId::parse("or-34513-nip9c-8bppvgqgj28dbodrc").is_some());
    }

    #[test]
    fn malformed_ids_are_refused() {
        for bad in [
            "",
            "or-",
            "or-abc-defgh-0123456789abcdef",
            "or-ABCDE-fghij-0123456789abcdef",
            "or-abcde-fghij-0123456789abcdef-x",
            "us-abcde-fghij-0123456789abcdef",
        ] {
            assert!(OrgId::parse(bad).is_none(), "{bad}");
        }
    }
}
