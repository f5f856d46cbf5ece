//! Email templates: subject, text and HTML per message kind and locale, embedded in the binary
//! and overridable from a directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use enroll_core::clock::Timestamp;
use enroll_core::email::EmailAddress;
use enroll_core::model::{ClaimedMessage, Locale, MailTemplate};
use enroll_core::service::SealedContent;
use minijinja::{AutoEscape, Environment, UndefinedBehavior, context};

/// The built-in templates, by name.
const EMBEDDED: &[(&str, &str)] = &[
    ("base.html.j2", include_str!("../templates/base.html.j2")),
    ("base.txt.j2", include_str!("../templates/base.txt.j2")),
    ("en/registration.subject.j2", include_str!("../templates/en/registration.subject.j2")),
    ("en/registration.txt.j2", include_str!("../templates/en/registration.txt.j2")),
    ("en/registration.html.j2", include_str!("../templates/en/registration.html.j2")),
    ("de/registration.subject.j2", include_str!("../templates/de/registration.subject.j2")),
    ("de/registration.txt.j2", include_str!("../templates/de/registration.txt.j2")),
    ("de/registration.html.j2", include_str!("../templates/de/registration.html.j2")),
    ("fr/registration.subject.j2", include_str!("../templates/fr/registration.subject.j2")),
    ("fr/registration.txt.j2", include_str!("../templates/fr/registration.txt.j2")),
    ("fr/registration.html.j2", include_str!("../templates/fr/registration.html.j2")),
];

/// Locales every message kind has built-in templates for.
pub const LOCALES: [&str; 3] = ["en", "de", "fr"];

/// The sender and the name the emails speak of.
#[derive(Debug, Clone)]
pub struct MailSettings {
    /// A mailbox: `enroll <no-reply@example.com>`.
    pub from: String,
    pub product_name: String,
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

#[derive(Debug, thiserror::Error)]
#[error("template {template} ({locale}): {source}")]
pub struct RenderError {
    template: String,
    locale: String,
    #[source]
    source: minijinja::Error,
}

/// What a message's templates can use.
#[derive(Debug, Clone)]
pub struct MailContext<'a> {
    pub org_name: &'a str,
    pub recipient: &'a EmailAddress,
    pub code: &'a str,
    pub expires_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

#[derive(Clone)]
pub struct Renderer {
    environment: Arc<Environment<'static>>,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Renderer")
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
    /// built-in ones; others may be added for more locales.
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
        environment.set_auto_escape_callback(|name| {
            if name.ends_with(".html.j2") {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        environment.set_loader(move |name| {
            if let Some(dir) = &override_dir {
                let path = dir.join(name);
                // Template names come from this module, never from requests; still, stay inside.
                if !name.contains("..") && path.is_file() {
                    return std::fs::read_to_string(&path).map(Some).map_err(|error| {
                        minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, format!("cannot read {}", path.display()))
                            .with_source(error)
                    });
                }
            }
            Ok(embedded(name).map(str::to_owned))
        });
        Ok(Self {
            environment: Arc::new(environment),
        })
    }

    /// `fr-CH` → `fr-CH` if it has templates, else `fr`, else `en`.
    fn locale_for(&self, template: MailTemplate, locale: &Locale) -> String {
        [locale.as_str(), locale.language()]
            .into_iter()
            .find(|candidate| self.environment.get_template(&format!("{candidate}/{}.subject.j2", template.as_str())).is_ok())
            .unwrap_or("en")
            .to_owned()
    }

    pub fn render(
        &self,
        template: MailTemplate,
        locale: &Locale,
        context: &MailContext<'_>,
        settings: &MailSettings,
        message_id_header: String,
    ) -> Result<RenderedMail, RenderError> {
        let locale = self.locale_for(template, locale);
        let valid_hours = context
            .expires_at
            .map_or(0, |expires| context.created_at.until(expires).as_secs().div_ceil(3600));
        let values = context! {
            locale => &locale,
            product_name => &settings.product_name,
            org_name => context.org_name,
            recipient => context.recipient.as_str(),
            code => context.code,
            expires_at => context.expires_at.map(human_time).unwrap_or_default(),
            valid_hours => valid_hours,
        };
        let part = |suffix: &str| {
            let name = format!("{locale}/{}.{suffix}.j2", template.as_str());
            self.environment
                .get_template(&name)
                .and_then(|found| found.render(&values))
                .map_err(|source| RenderError {
                    template: name,
                    locale: locale.clone(),
                    source,
                })
        };
        Ok(RenderedMail {
            message_id_header,
            from: settings.from.clone(),
            to: context.recipient.clone(),
            // A subject is one line, whatever the template's trailing newline.
            subject: part("subject")?.lines().map(str::trim).collect::<Vec<_>>().join(" ").trim().to_owned(),
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
        let context = MailContext {
            org_name: &message.org_name,
            recipient: &message.recipient,
            code: content.code.expose(),
            expires_at: message.code_expires_at,
            created_at: message.created_at,
        };
        self.render(message.template, &message.locale, &context, settings, message_id_header(message, settings))
    }

    /// Renders every template in every built-in locale with sample values, so a broken
    /// template stops the start instead of a delivery.
    pub fn check(&self) -> Result<(), RenderError> {
        let recipient = EmailAddress::from_trusted("jane@example.com".to_owned());
        let created_at = Timestamp::from_millis(1_800_000_000_000);
        let context = MailContext {
            org_name: "Example",
            recipient: &recipient,
            code: "7KQX-M2RD-9HTV-PW4C",
            expires_at: Some(created_at.plus(std::time::Duration::from_secs(86_400))),
            created_at,
        };
        let settings = MailSettings {
            from: "enroll <no-reply@example.com>".to_owned(),
            product_name: "enroll".to_owned(),
        };
        for template in MailTemplate::ALL {
            for locale in LOCALES {
                let locale = Locale::from_trusted(locale.to_owned());
                self.render(template, &locale, &context, &settings, "<check@example.com>".to_owned())?;
            }
        }
        Ok(())
    }
}

/// `<ms-…@domain of the sender>`.
pub fn message_id_header(message: &ClaimedMessage, settings: &MailSettings) -> String {
    let domain = settings
        .from
        .rsplit_once('@')
        .map(|(_, domain)| domain.trim_end_matches('>').trim())
        .filter(|domain| !domain.is_empty())
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

    fn sample(locale: &str) -> RenderedMail {
        let renderer = Renderer::new(None).unwrap();
        let recipient = EmailAddress::parse("jane@example.com").unwrap();
        let created_at = Timestamp::from_millis(1_800_000_000_000);
        let context = MailContext {
            org_name: "Acme <Labs>",
            recipient: &recipient,
            code: "7KQX-M2RD-9HTV-PW4C",
            expires_at: Some(created_at.plus(std::time::Duration::from_secs(86_400))),
            created_at,
        };
        let settings = MailSettings {
            from: "enroll <no-reply@example.com>".to_owned(),
            product_name: "enroll".to_owned(),
        };
        renderer
            .render(
                MailTemplate::Registration,
                &Locale::parse(locale).unwrap(),
                &context,
                &settings,
                "<ms-1@example.com>".to_owned(),
            )
            .unwrap()
    }

    fn snapshot(mail: &RenderedMail) -> String {
        format!("Subject: {}\n\n--- text ---\n{}\n--- html ---\n{}", mail.subject, mail.text, mail.html)
    }

    #[test]
    fn registration_email_en() {
        insta::assert_snapshot!(snapshot(&sample("en")));
    }

    #[test]
    fn registration_email_de() {
        insta::assert_snapshot!(snapshot(&sample("de")));
    }

    #[test]
    fn registration_email_fr() {
        insta::assert_snapshot!(snapshot(&sample("fr")));
    }

    #[test]
    fn regions_fall_back_to_their_language_and_unknown_languages_to_english() {
        assert_eq!(sample("de-CH").subject, sample("de").subject);
        assert_eq!(sample("ja").subject, sample("en").subject);
    }

    #[test]
    fn html_is_escaped_and_text_is_not() {
        let mail = sample("en");
        assert!(mail.html.contains("Acme &lt;Labs&gt;"));
        assert!(mail.text.contains("Acme <Labs>"));
    }

    #[test]
    fn the_built_in_templates_pass_the_check_and_a_broken_override_fails_it() {
        Renderer::new(None).unwrap().check().unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("de")).unwrap();
        std::fs::write(dir.path().join("de/registration.subject.j2"), "Code für {{ organisation }}").unwrap();
        let error = Renderer::new(Some(dir.path())).unwrap().check().unwrap_err().to_string();
        assert!(error.contains("de/registration.subject.j2"), "{error}");
    }

    #[test]
    fn an_override_replaces_the_built_in_template() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("en")).unwrap();
        std::fs::write(dir.path().join("en/registration.subject.j2"), "Welcome to {{ org_name }}").unwrap();
        let renderer = Renderer::new(Some(dir.path())).unwrap();
        renderer.check().unwrap();
        let recipient = EmailAddress::parse("jane@example.com").unwrap();
        let context = MailContext {
            org_name: "Acme",
            recipient: &recipient,
            code: "7KQX-M2RD-9HTV-PW4C",
            expires_at: None,
            created_at: Timestamp::from_millis(0),
        };
        let settings = MailSettings { from: "a@b.co".into(), product_name: "enroll".into() };
        let mail = renderer
            .render(MailTemplate::Registration, &Locale::english(), &context, &settings, "<x@b.co>".into())
            .unwrap();
        assert_eq!(mail.subject, "Welcome to Acme");
    }
}
