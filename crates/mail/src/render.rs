//! Email templates: subject, text and HTML per message kind and locale, embedded in the binary
//! and overridable from a directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use enroll_core::clock::Timestamp;
use enroll_core::code::CodeSecret;
use enroll_core::email::EmailAddress;
use enroll_core::ids::UserId;
use enroll_core::model::{ClaimedMessage, Locale, MailTemplate};
use enroll_core::service::SealedContent;
use enroll_core::url_template::{LinkValues, UrlTemplate};
use minijinja::{AutoEscape, Environment, UndefinedBehavior, context};

/// `(name, source)` of each built-in template, from `templates/<name>`.
macro_rules! embed {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../templates/", $name)))),*]
    };
}

/// The built-in templates, by name.
const EMBEDDED: &[(&str, &str)] = embed![
    "base.html.j2",
    "base.txt.j2",
    "en/registration.subject.j2",
    "en/registration.txt.j2",
    "en/registration.html.j2",
    "en/email_verification.subject.j2",
    "en/email_verification.txt.j2",
    "en/email_verification.html.j2",
    "en/account_verification.subject.j2",
    "en/account_verification.txt.j2",
    "en/account_verification.html.j2",
    "en/password_reset.subject.j2",
    "en/password_reset.txt.j2",
    "en/password_reset.html.j2",
    "en/registration_attempt.subject.j2",
    "en/registration_attempt.txt.j2",
    "en/registration_attempt.html.j2",
    "en/no_account.subject.j2",
    "en/no_account.txt.j2",
    "en/no_account.html.j2",
    "de/registration.subject.j2",
    "de/registration.txt.j2",
    "de/registration.html.j2",
    "de/email_verification.subject.j2",
    "de/email_verification.txt.j2",
    "de/email_verification.html.j2",
    "de/account_verification.subject.j2",
    "de/account_verification.txt.j2",
    "de/account_verification.html.j2",
    "de/password_reset.subject.j2",
    "de/password_reset.txt.j2",
    "de/password_reset.html.j2",
    "de/registration_attempt.subject.j2",
    "de/registration_attempt.txt.j2",
    "de/registration_attempt.html.j2",
    "de/no_account.subject.j2",
    "de/no_account.txt.j2",
    "de/no_account.html.j2",
    "fr/registration.subject.j2",
    "fr/registration.txt.j2",
    "fr/registration.html.j2",
    "fr/email_verification.subject.j2",
    "fr/email_verification.txt.j2",
    "fr/email_verification.html.j2",
    "fr/account_verification.subject.j2",
    "fr/account_verification.txt.j2",
    "fr/account_verification.html.j2",
    "fr/password_reset.subject.j2",
    "fr/password_reset.txt.j2",
    "fr/password_reset.html.j2",
    "fr/registration_attempt.subject.j2",
    "fr/registration_attempt.txt.j2",
    "fr/registration_attempt.html.j2",
    "fr/no_account.subject.j2",
    "fr/no_account.txt.j2",
    "fr/no_account.html.j2",
];

/// Locales every message kind has built-in templates for.
pub const LOCALES: [&str; 3] = ["en", "de", "fr"];

/// The sender and the name the emails speak of.
#[derive(Debug, Clone)]
pub struct MailSettings {
    /// A mailbox: `enroll <no-reply@example.com>`.
    pub from: String,
    pub product_name: String,
    /// Where users reach this server (`https://id.example.com`): links to its hosted pages
    /// start with it.
    pub public_url: String,
}

/// A message ready for a transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedMail {
    /// `<ms-…@domain>`: stable per outbox message, so a duplicate delivery can be recognised.
    pub message_id_header: String,
    pub from: String,
    pub to: EmailAddress,
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl MailSettings {
    /// Whether `from` is a mailbox the SMTP transport can send from; for the start, so that a
    /// typo fails it instead of every delivery.
    pub fn validate(&self) -> Result<(), InvalidSender> {
        self.from
            .parse::<lettre::message::Mailbox>()
            .map(drop)
            .map_err(|error| {
                InvalidSender(format!(
                    "{:?} is not a mailbox such as \"enroll <no-reply@example.com>\": {error}",
                    self.from
                ))
            })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the sender address {0}")]
pub struct InvalidSender(String);

/// A template that could not be rendered: its file, its locale and what went wrong.
#[derive(Debug, thiserror::Error)]
#[error("email template {template} (locale {locale}): {source}")]
pub struct RenderError {
    template: String,
    locale: String,
    #[source]
    source: minijinja::Error,
}

impl RenderError {
    /// The template file, e.g. `de/registration.subject.j2`.
    pub fn template(&self) -> &str {
        &self.template
    }

    pub fn locale(&self) -> &str {
        &self.locale
    }
}

/// What a message's templates are rendered with. In the templates (all strings unless said):
///
/// | variable | value |
/// |---|---|
/// | `locale` | the locale whose templates are used (`en`, `de`, `fr`, or an override's) |
/// | `product_name` | [`MailSettings::product_name`] |
/// | `org_name` | the organisation's name |
/// | `recipient` | the recipient's address |
/// | `code` | the code, `XXXX-XXXX-XXXX-XXXX` |
/// | `expires_at` | when the code expires, `2027-01-15 08:00 UTC` (empty without a code) |
/// | `expires_at_rfc3339` | the same, `2027-01-15T08:00:00.000Z` (empty without a code) |
/// | `valid_minutes` | the code's lifetime in minutes, rounded up (integer; 0 without a code) |
/// | `link` | the link that verifies with the code (empty for emails without one); in HTML, write `{{ link\|href }}` |
#[derive(Debug, Clone)]
pub struct MailContext<'a> {
    pub org_name: &'a str,
    pub recipient: &'a EmailAddress,
    pub code: &'a str,
    pub expires_at: Option<Timestamp>,
    /// When the code was issued: its lifetime runs from here to `expires_at`.
    pub created_at: Timestamp,
    pub link: Option<&'a str>,
}

/// Renders subject, text and HTML of each email; cheap to clone.
#[derive(Clone)]
pub struct Renderer {
    environment: Arc<Environment<'static>>,
    override_dir: Option<PathBuf>,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("override_dir", &self.override_dir)
            .finish_non_exhaustive()
    }
}

fn embedded(name: &str) -> Option<&'static str> {
    EMBEDDED
        .iter()
        .find(|(embedded_name, _)| *embedded_name == name)
        .map(|(_, source)| *source)
}

impl Renderer {
    /// Templates in `override_dir` (same names, e.g. `de/registration.subject.j2`) replace the
    /// built-in ones; a new directory there (`it/…`) adds a locale.
    pub fn new(override_dir: Option<&Path>) -> Result<Self, std::io::Error> {
        if let Some(dir) = override_dir
            && !dir.is_dir()
        {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("the templates directory {} does not exist", dir.display()),
            ));
        }
        let override_dir: Option<PathBuf> = override_dir.map(Path::to_owned);
        let mut environment = Environment::new();
        environment.set_undefined_behavior(UndefinedBehavior::Strict);
        environment.set_keep_trailing_newline(true);
        environment.set_auto_escape_callback(|name| {
            if name.ends_with(".html.j2") {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        environment.add_filter("href", href);
        let dir = override_dir.clone();
        environment.set_loader(move |name| {
            if let Some(dir) = &dir {
                let path = dir.join(name);
                // Names come from this module and from stored locales; still, stay inside.
                if !name.contains("..") && path.is_file() {
                    return std::fs::read_to_string(&path).map(Some).map_err(|error| {
                        minijinja::Error::new(
                            minijinja::ErrorKind::InvalidOperation,
                            format!("cannot read {}", path.display()),
                        )
                        .with_source(error)
                    });
                }
            }
            Ok(embedded(name).map(str::to_owned))
        });
        Ok(Self {
            environment: Arc::new(environment),
            override_dir,
        })
    }

    /// `fr-CH` → `fr-CH` if it has templates, else `fr`, else `en`.
    fn locale_for(&self, template: MailTemplate, locale: &Locale) -> String {
        [locale.as_str(), locale.language()]
            .into_iter()
            .find(|candidate| {
                self.environment
                    .get_template(&format!("{candidate}/{}.subject.j2", template.as_str()))
                    .is_ok()
            })
            .unwrap_or("en")
            .to_owned()
    }

    /// Renders `template` in the best locale for `locale`.
    pub fn render(
        &self,
        template: MailTemplate,
        locale: &Locale,
        context: &MailContext<'_>,
        settings: &MailSettings,
        message_id_header: String,
    ) -> Result<RenderedMail, RenderError> {
        let locale = self.locale_for(template, locale);
        self.render_in(template, &locale, context, settings, message_id_header)
    }

    /// Renders `template` with the templates of exactly `locale`.
    fn render_in(
        &self,
        template: MailTemplate,
        locale: &str,
        context: &MailContext<'_>,
        settings: &MailSettings,
        message_id_header: String,
    ) -> Result<RenderedMail, RenderError> {
        let valid_minutes = context.expires_at.map_or(0, |expires| {
            context.created_at.until(expires).as_secs().div_ceil(60)
        });
        let values = context! {
            locale => locale,
            product_name => &settings.product_name,
            org_name => context.org_name,
            recipient => context.recipient.as_str(),
            code => context.code,
            expires_at => context.expires_at.map(human_time).unwrap_or_default(),
            expires_at_rfc3339 => context.expires_at.map(Timestamp::to_rfc3339).unwrap_or_default(),
            valid_minutes => valid_minutes,
            link => context.link.unwrap_or_default(),
        };
        let part = |part: &str| {
            let name = format!("{locale}/{}.{part}.j2", template.as_str());
            self.environment
                .get_template(&name)
                .and_then(|found| found.render(&values))
                .map_err(|source| RenderError {
                    template: name,
                    locale: locale.to_owned(),
                    source,
                })
        };
        // A subject is one line, whatever the template's line breaks.
        let subject = part("subject")?
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        Ok(RenderedMail {
            message_id_header,
            from: settings.from.clone(),
            to: context.recipient.clone(),
            subject,
            text: part("txt")?,
            html: part("html")?,
        })
    }

    /// Renders a claimed outbox message with its unsealed content.
    pub fn render_message(
        &self,
        message: &ClaimedMessage,
        content: &SealedContent,
        settings: &MailSettings,
    ) -> Result<RenderedMail, RenderError> {
        let link = match (message.template, &content.link) {
            (_, Some(link)) => Some(link.clone()),
            (MailTemplate::EmailVerification, None) => {
                Some(verification_link(message, content, settings))
            }
            _ => None,
        };
        let context = MailContext {
            org_name: &message.org_name,
            recipient: &message.recipient,
            code: content.code.as_ref().map_or("", CodeSecret::expose),
            expires_at: message.code_expires_at,
            created_at: message.created_at,
            link: link.as_deref(),
        };
        self.render(
            message.template,
            &message.locale,
            &context,
            settings,
            message_id_header(message, settings),
        )
    }

    /// The built-in locales and those the override directory adds.
    pub fn locales(&self) -> Vec<String> {
        let mut locales: Vec<String> = LOCALES.iter().map(|locale| (*locale).to_owned()).collect();
        let entries = self
            .override_dir
            .as_deref()
            .and_then(|dir| std::fs::read_dir(dir).ok());
        for entry in entries.into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_dir()
                && Locale::parse(&name).is_some_and(|locale| locale.as_str() == name)
            {
                locales.push(name);
            }
        }
        locales.sort();
        locales.dedup();
        locales
    }

    /// Renders every template in every locale with sample values, so that a broken template
    /// (a syntax error, an unknown variable, a missing part) stops the start instead of a
    /// delivery. The error names the template file, the locale and the problem.
    pub fn check(&self) -> Result<(), RenderError> {
        let recipient = EmailAddress::from_trusted("jane@example.com".to_owned());
        let created_at = Timestamp::from_millis(1_800_000_000_000);
        let context = MailContext {
            org_name: "Example",
            recipient: &recipient,
            code: "7KQX-M2RD-9HTV-PW4C",
            expires_at: Some(created_at.plus(std::time::Duration::from_secs(86_400))),
            created_at,
            link: Some("https://id.example.com/ui/login/mail/verification?userID=us-1&code=7KQX"),
        };
        let settings = MailSettings {
            from: "enroll <no-reply@example.com>".to_owned(),
            product_name: "enroll".to_owned(),
            public_url: "https://id.example.com".to_owned(),
        };
        for template in MailTemplate::ALL {
            for locale in self.locales() {
                // Every part of every locale must render: a locale directory missing a part
                // is an error here, not a silent fallback to English later.
                self.render_in(
                    template,
                    &locale,
                    &context,
                    &settings,
                    "<check@example.com>".to_owned(),
                )?;
            }
        }
        Ok(())
    }
}

/// A link for an HTML attribute: escapes what HTML needs, and leaves `/` readable (the default
/// escaping writes `&#x2f;`, which mail clients show when a link is copied as text).
fn href(link: String) -> minijinja::Value {
    let mut escaped = String::with_capacity(link.len());
    for c in link.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    minijinja::Value::from_safe_string(escaped)
}

/// The request's link template filled in, or the hosted verification page without one (a
/// template was checked when the request named it, so it parses).
fn verification_link(
    message: &ClaimedMessage,
    content: &SealedContent,
    settings: &MailSettings,
) -> String {
    let values = LinkValues {
        user_id: message.user_id.as_ref().map_or("", UserId::as_str),
        code: content.code.as_ref().map_or("", CodeSecret::expose),
        org_id: message.org_id.as_str(),
    };
    match content
        .url_template
        .as_deref()
        .and_then(|source| UrlTemplate::parse(source).ok())
    {
        Some(template) => template.render(values),
        None => hosted_verification_link(&settings.public_url, values),
    }
}

/// The hosted verification page, with ZITADEL's query parameters.
pub fn hosted_verification_link(public_url: &str, values: LinkValues<'_>) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("userID", values.user_id)
        .append_pair("code", values.code)
        .append_pair("orgID", values.org_id)
        .finish();
    format!(
        "{}/ui/login/mail/verification?{query}",
        public_url.trim_end_matches('/')
    )
}

/// `<ms-…@domain of the sender>`: the outbox message's id, so a duplicate delivery carries the
/// same Message-ID.
pub fn message_id_header(message: &ClaimedMessage, settings: &MailSettings) -> String {
    let domain = settings
        .from
        .rsplit_once('@')
        .map(|(_, domain)| domain.trim_end_matches('>').trim())
        .filter(|domain| !domain.is_empty() && !domain.contains(['<', '>', ' ', '@']))
        .unwrap_or("enroll.invalid");
    format!("<{}@{domain}>", message.id)
}

fn human_time(at: Timestamp) -> String {
    let at = at.to_offset_date_time();
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> MailSettings {
        MailSettings {
            from: "enroll <no-reply@example.com>".to_owned(),
            product_name: "enroll".to_owned(),
            public_url: "https://id.example.com".to_owned(),
        }
    }

    fn render_with(
        renderer: &Renderer,
        locale: &str,
        lifetime: std::time::Duration,
    ) -> RenderedMail {
        render_template(renderer, MailTemplate::Registration, locale, lifetime)
    }

    fn render_template(
        renderer: &Renderer,
        template: MailTemplate,
        locale: &str,
        lifetime: std::time::Duration,
    ) -> RenderedMail {
        let recipient = EmailAddress::parse("jane.doe@example.com").unwrap();
        let created_at = Timestamp::from_millis(1_800_000_000_000);
        let context = MailContext {
            org_name: "Acme <Labs> & \"Sons\"",
            recipient: &recipient,
            code: match template {
                MailTemplate::Registration => "7KQX-M2RD-9HTV-PW4C",
                MailTemplate::EmailVerification => "XK4T9P",
                _ => "",
            },
            expires_at: Some(created_at.plus(lifetime)),
            created_at,
            link: Some("https://app.example/verify?u=us-1&c=XK4T9P&o=or-2"),
        };
        renderer
            .render(
                template,
                &Locale::parse(locale).unwrap(),
                &context,
                &settings(),
                "<ms-1@example.com>".to_owned(),
            )
            .unwrap()
    }

    fn sample(locale: &str) -> RenderedMail {
        render_with(
            &Renderer::new(None).unwrap(),
            locale,
            std::time::Duration::from_secs(86_400),
        )
    }

    fn snapshot(mail: &RenderedMail) -> String {
        format!(
            "Subject: {}\n\n--- text ---\n{}\n--- html ---\n{}",
            mail.subject, mail.text, mail.html
        )
    }

    #[test]
    fn registration_en() {
        insta::assert_snapshot!(snapshot(&sample("en")));
    }

    #[test]
    fn registration_de() {
        insta::assert_snapshot!(snapshot(&sample("de")));
    }

    #[test]
    fn registration_fr() {
        insta::assert_snapshot!(snapshot(&sample("fr")));
    }

    fn verification_sample(locale: &str) -> String {
        snapshot(&render_email_verification(locale))
    }

    fn render_email_verification(locale: &str) -> RenderedMail {
        render_template(
            &Renderer::new(None).unwrap(),
            MailTemplate::EmailVerification,
            locale,
            std::time::Duration::from_secs(3_600),
        )
    }

    /// The account emails (Singularity's): each kind in each built-in language.
    #[test]
    fn account_emails() {
        let renderer = Renderer::new(None).unwrap();
        let recipient = EmailAddress::parse("jane.doe@example.com").unwrap();
        let created_at = Timestamp::from_millis(1_800_000_000_000);
        for (template, link, lifetime) in [
            (
                MailTemplate::AccountVerification,
                "https://app.example/auth/verify-email?token=cd-1.K4T9P",
                Some(3_600),
            ),
            (
                MailTemplate::PasswordReset,
                "https://app.example/auth/reset-password?token=cd-2.X7Q2M",
                Some(3_600),
            ),
            (
                MailTemplate::RegistrationAttempt,
                "https://app.example/auth/forgot-password",
                None,
            ),
            (
                MailTemplate::NoAccount,
                "https://app.example/auth/register",
                None,
            ),
        ] {
            for locale in LOCALES {
                let context = MailContext {
                    org_name: "Acme <Labs> & \"Sons\"",
                    recipient: &recipient,
                    code: "",
                    expires_at: lifetime
                        .map(|seconds| created_at.plus(std::time::Duration::from_secs(seconds))),
                    created_at,
                    link: Some(link),
                };
                let mail = renderer
                    .render(
                        template,
                        &Locale::parse(locale).unwrap(),
                        &context,
                        &settings(),
                        "<ms-1@example.com>".to_owned(),
                    )
                    .unwrap();
                assert!(mail.text.contains(link), "{template:?} {locale}");
                insta::assert_snapshot!(format!("{}_{locale}", template.as_str()), snapshot(&mail));
            }
        }
    }

    #[test]
    fn email_verification_en() {
        insta::assert_snapshot!(verification_sample("en"));
    }

    #[test]
    fn email_verification_de() {
        insta::assert_snapshot!(verification_sample("de"));
    }

    #[test]
    fn email_verification_fr() {
        insta::assert_snapshot!(verification_sample("fr"));
    }

    #[test]
    fn the_hosted_link_carries_zitadels_parameters_encoded() {
        let link = hosted_verification_link(
            "https://id.example.com/",
            LinkValues {
                user_id: "us-1",
                code: "XK4T9P",
                org_id: "or 2&x",
            },
        );
        assert_eq!(
            link,
            "https://id.example.com/ui/login/mail/verification?userID=us-1&code=XK4T9P&orgID=or+2%26x"
        );
    }

    #[test]
    fn regions_fall_back_to_their_language_and_unknown_languages_to_english() {
        assert_eq!(sample("de-CH"), sample("de"));
        assert_eq!(
            sample("fr-CH").subject,
            "Votre code d’inscription pour Acme <Labs> & \"Sons\""
        );
        assert_eq!(sample("ja"), sample("en"));
    }

    #[test]
    fn html_is_escaped_and_text_and_subject_are_not() {
        let mail = sample("en");
        assert!(
            mail.html
                .contains("Acme &lt;Labs&gt; &amp; &quot;Sons&quot;"),
            "{}",
            mail.html
        );
        assert!(!mail.html.contains("<Labs>"));
        assert!(mail.text.contains("Acme <Labs> & \"Sons\""));
        assert_eq!(
            mail.subject,
            "Your registration code for Acme <Labs> & \"Sons\""
        );
    }

    #[test]
    fn the_lifetime_is_said_in_hours_or_minutes() {
        let renderer = Renderer::new(None).unwrap();
        let minutes = |seconds| std::time::Duration::from_secs(seconds);
        assert!(
            render_with(&renderer, "en", minutes(3600))
                .text
                .contains("valid for one hour,")
        );
        assert!(
            render_with(&renderer, "en", minutes(900))
                .text
                .contains("valid for 15 minutes,")
        );
        assert!(
            render_with(&renderer, "de", minutes(60))
                .text
                .contains("Er ist 1 Minute gültig")
        );
        assert!(
            render_with(&renderer, "fr", minutes(7200))
                .text
                .contains("valable\n2 heures,")
        );
    }

    #[test]
    fn the_built_in_templates_pass_the_check() {
        let renderer = Renderer::new(None).unwrap();
        assert_eq!(renderer.locales(), ["de", "en", "fr"]);
        renderer.check().unwrap();
    }

    #[test]
    fn an_unknown_variable_fails_the_check_naming_template_and_locale() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("de")).unwrap();
        std::fs::write(
            dir.path().join("de/registration.subject.j2"),
            "Code für {{ organisation }}",
        )
        .unwrap();
        let error = Renderer::new(Some(dir.path()))
            .unwrap()
            .check()
            .unwrap_err();
        assert_eq!(
            (error.template(), error.locale()),
            ("de/registration.subject.j2", "de")
        );
        assert!(error.to_string().contains("undefined"), "{error}");
    }

    #[test]
    fn a_syntax_error_fails_the_check() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("en")).unwrap();
        std::fs::write(
            dir.path().join("en/registration.html.j2"),
            "{% if code %}unclosed",
        )
        .unwrap();
        let error = Renderer::new(Some(dir.path()))
            .unwrap()
            .check()
            .unwrap_err();
        assert_eq!(error.template(), "en/registration.html.j2", "{error}");
    }

    #[test]
    fn an_override_replaces_a_built_in_template_and_may_add_a_locale() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("en")).unwrap();
        std::fs::write(
            dir.path().join("en/registration.subject.j2"),
            "Welcome to {{ org_name }}\n",
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("it")).unwrap();
        for (part, source) in [
            ("subject", "Il tuo codice per {{ org_name }}"),
            (
                "txt",
                "{% extends \"base.txt.j2\" %}{% block content %}Codice: {{ code }}{% endblock %}",
            ),
            ("html", "<p>Codice: {{ code }}</p>"),
        ] {
            // A locale needs every kind of email, or the check fails the start.
            for kind in MailTemplate::ALL {
                std::fs::write(
                    dir.path().join(format!("it/{}.{part}.j2", kind.as_str())),
                    source,
                )
                .unwrap();
            }
        }
        let renderer = Renderer::new(Some(dir.path())).unwrap();
        renderer.check().unwrap();
        assert_eq!(renderer.locales(), ["de", "en", "fr", "it"]);
        let day = std::time::Duration::from_secs(86_400);
        assert_eq!(
            render_with(&renderer, "en-GB", day).subject,
            "Welcome to Acme <Labs> & \"Sons\""
        );
        assert_eq!(render_with(&renderer, "de", day), sample("de"));
        let italian = render_with(&renderer, "it-CH", day);
        assert_eq!(italian.text, "Codice: 7KQX-M2RD-9HTV-PW4C\n-- \nenroll\n");
    }

    #[test]
    fn an_incomplete_locale_fails_the_check() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("it")).unwrap();
        std::fs::write(dir.path().join("it/registration.subject.j2"), "Codice").unwrap();
        let error = Renderer::new(Some(dir.path()))
            .unwrap()
            .check()
            .unwrap_err();
        assert_eq!(error.template(), "it/registration.txt.j2", "{error}");
        assert!(Renderer::new(Some(&dir.path().join("missing"))).is_err());
    }

    #[test]
    fn the_message_id_takes_the_sender_domain() {
        let message = crate::worker::tests::claimed("ms-1", Some(Timestamp::from_millis(0)));
        let header = |from: &str| {
            message_id_header(
                &message,
                &MailSettings {
                    from: from.to_owned(),
                    ..settings()
                },
            )
        };
        assert_eq!(
            header("enroll <no-reply@localhost>"),
            format!("<{}@localhost>", message.id)
        );
        assert_eq!(
            header("no-reply@mail.example.com"),
            format!("<{}@mail.example.com>", message.id)
        );
        assert_eq!(header("nobody"), format!("<{}@enroll.invalid>", message.id));
    }

    #[test]
    fn senders_are_validated() {
        assert!(settings().validate().is_ok());
        let bad = MailSettings {
            from: "enroll no-reply".to_owned(),
            ..settings()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("enroll no-reply")
        );
    }
}
