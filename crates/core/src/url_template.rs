//! Link templates for verification emails, as ZITADEL accepts them: Go `text/template` syntax
//! with only `{{.UserID}}`, `{{.Code}}` and `{{.OrgID}}`. Checked when a request names one, so
//! that a bad template fails the request and not the delivery.

use std::fmt;

/// The longest template a request may carry (ZITADEL's rule).
pub const MAX_LENGTH: usize = 200;

/// A template that parsed and renders: text and the three fields, nothing else.
#[derive(Clone, PartialEq, Eq)]
pub struct UrlTemplate {
    source: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(Field),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    UserId,
    Code,
    OrgId,
}

/// What a template is rendered with.
#[derive(Debug, Clone, Copy)]
pub struct LinkValues<'a> {
    pub user_id: &'a str,
    pub code: &'a str,
    pub org_id: &'a str,
}

/// Why a template was refused. Go tells the two apart: a template that does not parse, and one
/// that parses but names something the values do not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlTemplateError {
    #[error("the URL template does not parse: {0}")]
    Syntax(String),
    #[error(
        "the URL template uses {0}; only {{{{.UserID}}}}, {{{{.Code}}}} and {{{{.OrgID}}}} exist"
    )]
    UnknownField(String),
    #[error("the URL template must be 1 to {MAX_LENGTH} characters long")]
    Length,
}

impl UrlTemplate {
    pub fn parse(source: &str) -> Result<Self, UrlTemplateError> {
        let length = source.chars().count();
        if length == 0 || length > MAX_LENGTH {
            return Err(UrlTemplateError::Length);
        }
        let mut parts = Vec::new();
        let mut rest = source;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| UrlTemplateError::Syntax("unclosed action".to_owned()))?;
            parts.push(Part::Field(action(&after[..end])?));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Self {
            source: source.to_owned(),
            parts,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The link: the values are inserted as they are, as Go's `text/template` does.
    pub fn render(&self, values: LinkValues<'_>) -> String {
        let mut link = String::with_capacity(self.source.len() + 48);
        for part in &self.parts {
            match part {
                Part::Text(text) => link.push_str(text),
                Part::Field(Field::UserId) => link.push_str(values.user_id),
                Part::Field(Field::Code) => link.push_str(values.code),
                Part::Field(Field::OrgId) => link.push_str(values.org_id),
            }
        }
        link
    }
}

/// The inside of `{{ … }}`: optional trim markers and spaces around one `.Field`.
fn action(inside: &str) -> Result<Field, UrlTemplateError> {
    let inside = inside.strip_prefix("- ").unwrap_or(inside);
    let inside = inside.strip_suffix(" -").unwrap_or(inside);
    let name = inside.trim();
    let Some(field) = name.strip_prefix('.') else {
        return Err(UrlTemplateError::Syntax(format!(
            "{{{{{name}}}}} is not a field reference"
        )));
    };
    if field.is_empty() || !field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(UrlTemplateError::Syntax(format!(
            "{{{{{name}}}}} is not a field reference"
        )));
    }
    match field {
        "UserID" => Ok(Field::UserId),
        "Code" => Ok(Field::Code),
        "OrgID" => Ok(Field::OrgId),
        other => Err(UrlTemplateError::UnknownField(format!("{{{{.{other}}}}}"))),
    }
}

impl fmt::Debug for UrlTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("UrlTemplate").field(&self.source).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALUES: LinkValues<'static> = LinkValues {
        user_id: "us-1",
        code: "XK4T9P",
        org_id: "or-2",
    };

    #[test]
    fn the_three_fields_render_with_or_without_spaces_and_trim_markers() {
        let template =
            UrlTemplate::parse("https://a.example/v?u={{.UserID}}&c={{ .Code }}&o={{- .OrgID -}}")
                .unwrap();
        assert_eq!(
            template.render(VALUES),
            "https://a.example/v?u=us-1&c=XK4T9P&o=or-2"
        );
        assert_eq!(
            UrlTemplate::parse("no fields").unwrap().render(VALUES),
            "no fields"
        );
    }

    #[test]
    fn other_fields_are_unknown_and_other_actions_do_not_parse() {
        assert_eq!(
            UrlTemplate::parse("https://x/{{.PreferredLoginName}}"),
            Err(UrlTemplateError::UnknownField(
                "{{.PreferredLoginName}}".into()
            ))
        );
        for bad in [
            "https://x/{{.Code",
            "{{if .Code}}x{{end}}",
            "{{}}",
            "{{.}}",
            "{{ printf \"%s\" .Code }}",
        ] {
            assert!(
                matches!(UrlTemplate::parse(bad), Err(UrlTemplateError::Syntax(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn length_is_one_to_two_hundred_characters() {
        assert_eq!(UrlTemplate::parse(""), Err(UrlTemplateError::Length));
        assert!(UrlTemplate::parse(&"é".repeat(200)).is_ok());
        assert_eq!(
            UrlTemplate::parse(&"a".repeat(201)),
            Err(UrlTemplateError::Length)
        );
    }
}
