//! Settings: defaults, then `enroll.toml`, then `ENROLL_*` variables, then command-line flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use enroll_core::delivery::RetryPolicy;
use enroll_core::policy::Policy;
use enroll_core::throttle::Limit;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address the HTTP server listens on.
    pub listen: SocketAddr,
    /// A PEM certificate chain and its private key: with both, the port speaks HTTPS (HTTP/2
    /// and HTTP/1.1 by ALPN) instead of plain HTTP and h2c.
    pub tls_certificate: Option<PathBuf>,
    pub tls_private_key: Option<PathBuf>,
    /// Where users reach the server, e.g. `https://id.example.com`; links in emails to its
    /// hosted pages start with it. Default: `http://` and the listening address.
    pub public_url: Option<String>,
    /// Where the SQLite database, the server secret and `bootstrap.json` live.
    pub data_dir: PathBuf,
    /// `sqlite://<path>` or `postgres://…`; default: `enroll.db` in the data directory.
    pub database_url: Option<String>,
    /// Connections per instance when the database is PostgreSQL.
    pub database_pool_size: u32,
    /// `smtp://host:port` or `smtps://host:port`; absent: mail is captured in the inbox.
    pub smtp_url: Option<String>,
    pub smtp_username: Option<String>,
    pub smtp_password: Option<String>,
    /// The `From` of every email.
    pub mail_from: String,
    /// The product name the emails speak of.
    pub product_name: String,
    /// A directory whose templates replace the built-in ones of the same name.
    pub templates_dir: Option<PathBuf>,
    /// 64 hex characters; default: generated into `<data_dir>/secret.key` on first start.
    /// Instances sharing a database must share it.
    pub secret: Option<String>,
    /// Lifetime of a registration code, at most 86400.
    pub registration_code_ttl_seconds: u64,
    /// Lifetime of an email verification code, at most 86400.
    pub email_code_ttl_seconds: u64,
    /// Least time between two codes for one user and purpose.
    pub cooldown_seconds: u64,
    /// Wrong attempts a code survives.
    pub max_failed_attempts: u32,
    /// How far a request nonce's date may be from the server's time.
    pub nonce_window_seconds: u64,
    /// How long a registration, login or user-action challenge may be answered.
    pub challenge_ttl_seconds: u64,
    /// How long a login token lives (for password logins: the refresh token).
    pub session_ttl_seconds: u64,
    /// How long a password login's access token lives.
    pub access_token_ttl_seconds: u64,
    /// Failed password logins per address within the window, before logins are refused.
    pub login_max_failures: u32,
    /// The same per client IP address (several people may share one).
    pub login_max_failures_per_client: u32,
    pub login_failure_window_seconds: u64,
    /// Emails of one kind to one address within the window below, after which it gets no more
    /// until the window ends (a code's cooldown still applies between two of them).
    pub max_emails_per_address: u32,
    pub email_window_seconds: u64,
    /// Emails one client IP address may cause per hour through the endpoints anyone may call
    /// (per instance; 0: no cap).
    pub max_emails_per_client_per_hour: u32,
    /// Emails per hour to the users of one organisation (per instance; 0: no cap).
    pub max_emails_per_org_per_hour: u32,
    /// Whether the Singularity face sends email (Singularity's `email.enable`); off, its sends
    /// answer `503 EMAIL_DISABLED` and sign-ups create accounts without a verification email.
    pub singularity_mail_enabled: bool,
    /// The organisation the Singularity face serves; default: the one made on first start.
    pub singularity_org_id: Option<String>,
    /// The frontend's pages the account emails link to (`?token=…` is appended to the first
    /// two); default: the server's hosted pages under `public_url`.
    pub singularity_verify_email_uri: Option<String>,
    pub singularity_reset_password_uri: Option<String>,
    pub singularity_forgot_password_uri: Option<String>,
    pub singularity_sign_up_uri: Option<String>,
    /// Whether session cookies are `Secure`; default: when `public_url` is `https://`.
    pub secure_cookies: Option<bool>,
    /// Delivery attempts per email before it is abandoned.
    pub mail_max_attempts: u32,
    /// First retry delay; it doubles on each attempt.
    pub mail_retry_base_ms: u64,
    pub mail_retry_max_ms: u64,
    /// Messages a worker sends at once.
    pub mail_concurrency: u32,
    /// `text` or `json`.
    pub log_format: String,
    /// The least time, in milliseconds, the endpoints anyone may call take to answer, so that
    /// their timing does not tell whether an address has an account; 0 turns it off.
    pub answer_floor_ms: u64,
}

const HOUR: Duration = Duration::from_secs(60 * 60);

impl Default for Settings {
    fn default() -> Self {
        let policy = Policy::default();
        let retry = RetryPolicy::default();
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            tls_certificate: None,
            tls_private_key: None,
            data_dir: PathBuf::from("./data"),
            database_url: None,
            database_pool_size: 16,
            smtp_url: None,
            smtp_username: None,
            smtp_password: None,
            mail_from: "enroll <no-reply@localhost.localdomain>".to_owned(),
            product_name: "enroll".to_owned(),
            templates_dir: None,
            secret: None,
            registration_code_ttl_seconds: policy.registration_code_ttl.as_secs(),
            email_code_ttl_seconds: policy.email_code_ttl.as_secs(),
            cooldown_seconds: policy.cooldown.as_secs(),
            max_failed_attempts: policy.max_failed_attempts,
            nonce_window_seconds: policy.nonce_window.as_secs(),
            challenge_ttl_seconds: policy.challenge_ttl.as_secs(),
            session_ttl_seconds: policy.session_ttl.as_secs(),
            access_token_ttl_seconds: policy.access_token_ttl.as_secs(),
            login_max_failures: policy.login_max_failures,
            login_max_failures_per_client: policy.login_max_failures_per_client,
            login_failure_window_seconds: policy.login_failure_window.as_secs(),
            max_emails_per_address: policy.max_sends_per_window,
            email_window_seconds: policy.send_window.as_secs(),
            max_emails_per_client_per_hour: policy.client_send_limit.events,
            max_emails_per_org_per_hour: policy.org_send_limit.events,
            singularity_mail_enabled: true,
            singularity_org_id: None,
            singularity_verify_email_uri: None,
            singularity_reset_password_uri: None,
            singularity_forgot_password_uri: None,
            singularity_sign_up_uri: None,
            secure_cookies: None,
            mail_max_attempts: retry.max_attempts,
            mail_retry_base_ms: u64::try_from(retry.base_delay.as_millis()).unwrap_or(u64::MAX),
            mail_retry_max_ms: u64::try_from(retry.max_delay.as_millis()).unwrap_or(u64::MAX),
            mail_concurrency: 8,
            log_format: "text".to_owned(),
            answer_floor_ms: 2,
        }
    }
}

/// Values given on the command line; only those present override the other layers.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smtp_url: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Settings {
    /// Layers the sources in order; a missing `enroll.toml` is fine, a named one must exist.
    pub fn load(config_file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        match config_file {
            Some(path) if !path.exists() => {
                return Err(ConfigError::Invalid(format!(
                    "the configuration file {} does not exist",
                    path.display()
                )));
            }
            Some(path) => figment = figment.merge(Toml::file(path)),
            None => figment = figment.merge(Toml::file("enroll.toml")),
        }
        let settings: Settings = figment
            .merge(Env::prefixed("ENROLL_").ignore(&["test_postgres_url", "log"]))
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(Box::new)?;
        settings.validate()?;
        Ok(settings)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.policy()
            .validate()
            .map_err(|error| ConfigError::Invalid(error.to_string()))?;
        if let Some(url) = &self.database_url
            && !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
        {
            return Err(ConfigError::Invalid(format!(
                "database_url must start with sqlite: or postgres://, got {url:?}"
            )));
        }
        if self.tls_certificate.is_some() != self.tls_private_key.is_some() {
            return Err(ConfigError::Invalid(
                "tls_certificate and tls_private_key go together: set both or neither".to_owned(),
            ));
        }
        if let Some(url) = &self.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError::Invalid(format!(
                "public_url must start with http:// or https://, got {url:?}"
            )));
        }
        if let Some(url) = &self.smtp_url
            && !(url.starts_with("smtp://") || url.starts_with("smtps://"))
        {
            return Err(ConfigError::Invalid(format!(
                "smtp_url must start with smtp:// or smtps://, got {url:?}"
            )));
        }
        for (name, uri) in [
            (
                "singularity_verify_email_uri",
                &self.singularity_verify_email_uri,
            ),
            (
                "singularity_reset_password_uri",
                &self.singularity_reset_password_uri,
            ),
            (
                "singularity_forgot_password_uri",
                &self.singularity_forgot_password_uri,
            ),
            ("singularity_sign_up_uri", &self.singularity_sign_up_uri),
        ] {
            if let Some(uri) = uri
                && !(uri.starts_with("http://") || uri.starts_with("https://"))
            {
                return Err(ConfigError::Invalid(format!(
                    "{name} must start with http:// or https://, got {uri:?}"
                )));
            }
        }
        if self.max_emails_per_address == 0 || self.email_window_seconds == 0 {
            return Err(ConfigError::Invalid(
                "max_emails_per_address and email_window_seconds must be at least 1".to_owned(),
            ));
        }
        if self.mail_max_attempts == 0 || self.mail_concurrency == 0 {
            return Err(ConfigError::Invalid(
                "mail_max_attempts and mail_concurrency must be at least 1".to_owned(),
            ));
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(ConfigError::Invalid(format!(
                "log_format must be text or json, got {:?}",
                self.log_format
            )));
        }
        Ok(())
    }

    pub fn policy(&self) -> Policy {
        Policy {
            registration_code_ttl: Duration::from_secs(self.registration_code_ttl_seconds),
            email_code_ttl: Duration::from_secs(self.email_code_ttl_seconds),
            cooldown: Duration::from_secs(self.cooldown_seconds),
            max_failed_attempts: self.max_failed_attempts,
            nonce_window: Duration::from_secs(self.nonce_window_seconds),
            challenge_ttl: Duration::from_secs(self.challenge_ttl_seconds),
            session_ttl: Duration::from_secs(self.session_ttl_seconds),
            access_token_ttl: Duration::from_secs(self.access_token_ttl_seconds),
            login_max_failures: self.login_max_failures,
            login_failure_window: Duration::from_secs(self.login_failure_window_seconds),
            login_max_failures_per_client: self.login_max_failures_per_client,
            max_sends_per_window: self.max_emails_per_address,
            send_window: Duration::from_secs(self.email_window_seconds),
            client_send_limit: Limit {
                events: self.max_emails_per_client_per_hour,
                window: HOUR,
            },
            org_send_limit: Limit {
                events: self.max_emails_per_org_per_hour,
                window: HOUR,
            },
        }
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.mail_max_attempts,
            base_delay: Duration::from_millis(self.mail_retry_base_ms),
            max_delay: Duration::from_millis(self.mail_retry_max_ms.max(self.mail_retry_base_ms)),
            ..RetryPolicy::default()
        }
    }

    /// The database to use: the configured URL, or the SQLite file in the data directory.
    pub fn database(&self) -> Database {
        match self.database_url.as_deref() {
            Some(url) if url.starts_with("postgres") => Database::Postgres(url.to_owned()),
            Some(url) => Database::Sqlite(PathBuf::from(
                url.trim_start_matches("sqlite://")
                    .trim_start_matches("sqlite:"),
            )),
            None => Database::Sqlite(self.data_dir.join("enroll.db")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    Sqlite(PathBuf),
    Postgres(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_defaults_and_an_unknown_file_is_an_error() {
        let overrides = Overrides {
            listen: Some(SocketAddr::from(([0, 0, 0, 0], 9000))),
            ..Overrides::default()
        };
        let settings = Settings::load(None, &overrides).unwrap();
        assert_eq!(settings.listen.port(), 9000);
        assert_eq!(
            settings.database(),
            Database::Sqlite(PathBuf::from("./data/enroll.db"))
        );
        assert!(Settings::load(Some(Path::new("/nonexistent/enroll.toml")), &overrides).is_err());
    }

    #[test]
    fn the_example_file_documents_exactly_the_defaults() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../enroll.example.toml");
        let settings = Settings::load(Some(&example), &Overrides::default()).unwrap();
        assert_eq!(settings, Settings::default());
    }

    #[test]
    fn a_code_lifetime_above_a_day_is_refused() {
        let settings = Settings {
            registration_code_ttl_seconds: 86_401,
            ..Settings::default()
        };
        assert!(settings.validate().is_err());
    }
}
