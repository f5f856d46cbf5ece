//! Email addresses, parsed once at the edge and normalised for uniqueness.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A syntactically valid address. The domain is lowercased; the local part is kept as typed,
/// since only the receiving domain may decide that case does not matter there.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EmailAddress(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("the email address is empty")]
    Empty,
    #[error("the email address is longer than 254 characters")]
    TooLong,
    #[error("the email address needs exactly one @ between a local part and a domain")]
    Shape,
    #[error("the part before @ is longer than 64 characters")]
    LocalPartTooLong,
    #[error("the email address contains a character that is not allowed")]
    ForbiddenCharacter,
    #[error("the domain of the email address is not valid")]
    Domain,
}

impl EmailAddress {
    pub fn parse(input: &str) -> Result<Self, EmailError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(EmailError::Empty);
        }
        if input.len() > 254 {
            return Err(EmailError::TooLong);
        }
        // Control characters and spaces would let a value break out of a mail header.
        if input.chars().any(|c| {
            c.is_control()
                || c.is_whitespace()
                || matches!(
                    c,
                    '<' | '>' | ',' | ';' | '"' | '\\' | '(' | ')' | '[' | ']'
                )
        }) {
            return Err(EmailError::ForbiddenCharacter);
        }
        let (local, domain) = input.rsplit_once('@').ok_or(EmailError::Shape)?;
        if local.is_empty() || domain.is_empty() || local.contains('@') {
            return Err(EmailError::Shape);
        }
        if local.len() > 64 {
            return Err(EmailError::LocalPartTooLong);
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err(EmailError::Shape);
        }
        let domain = domain.to_lowercase();
        let labels_ok = domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
        if !labels_ok || !domain.contains('.') {
            return Err(EmailError::Domain);
        }
        // Lowercasing can lengthen a domain (`Ⱥ` is two bytes, `ⱥ` three): the limit holds for
        // the address as stored and sent, not only as typed.
        let address = format!("{local}@{domain}");
        if address.len() > 254 {
            return Err(EmailError::TooLong);
        }
        Ok(Self(address))
    }

    /// For values read back from storage, which were parsed when written.
    pub fn from_trusted(value: String) -> Self {
        Self(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// For logs: enough to tell addresses apart by eye, not enough to read them.
    pub fn masked(&self) -> String {
        let (local, domain) = self.0.rsplit_once('@').unwrap_or((&self.0, ""));
        let first: String = local.chars().take(1).collect();
        format!("{first}***@{domain}")
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_is_lowercased_and_local_part_kept() {
        let email = EmailAddress::parse("  Jane.Doe@Example.COM ").unwrap();
        assert_eq!(email.as_str(), "Jane.Doe@example.com");
    }

    #[test]
    fn header_injection_is_refused() {
        assert_eq!(
            EmailAddress::parse("a@b.c\r\nBcc: x@evil.com"),
            Err(EmailError::ForbiddenCharacter)
        );
        assert_eq!(
            EmailAddress::parse("a\0@b.c"),
            Err(EmailError::ForbiddenCharacter)
        );
    }

    #[test]
    fn lengths_are_bounded() {
        let local = "a".repeat(65);
        assert_eq!(
            EmailAddress::parse(&format!("{local}@example.com")),
            Err(EmailError::LocalPartTooLong)
        );
        let domain = format!("{}.com", "a".repeat(250));
        assert_eq!(
            EmailAddress::parse(&format!("a@{domain}")),
            Err(EmailError::TooLong)
        );
    }

    #[test]
    fn the_length_limit_holds_after_the_domain_is_lowercased() {
        // Each `Ⱥ` (two bytes) lowercases to `ⱥ` (three): five labels of 21 are 220 bytes as
        // typed and 325 once lowercased.
        let label = "Ⱥ".repeat(21);
        let typed = format!("a@{}.com", [label.as_str(); 5].join("."));
        assert_eq!(typed.len(), 220);
        assert_eq!(EmailAddress::parse(&typed), Err(EmailError::TooLong));
        let shorter = format!("a@{}.com", [label.as_str(); 3].join("."));
        let address = EmailAddress::parse(&shorter).expect("within the limit once lowercased");
        assert_eq!(
            address.as_str(),
            format!("a@{}.com", vec!["ⱥ".repeat(21); 3].join("."))
        );
        assert_eq!(EmailAddress::parse(address.as_str()), Ok(address));
    }

    #[test]
    fn shapes_that_are_not_addresses_are_refused() {
        for bad in [
            "",
            "jane",
            "@example.com",
            "jane@",
            "jane@localhost",
            "ja..ne@example.com",
            "jane@-x.com",
            "a@b@c.com",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn masked_hides_the_local_part() {
        let email = EmailAddress::parse("jane@example.com").unwrap();
        assert_eq!(email.masked(), "j***@example.com");
    }
}
