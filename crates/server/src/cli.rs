//! The command line: `enroll serve`, and the administration subcommands that act on the same
//! database.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Overrides;

#[derive(Debug, Parser)]
#[command(
    name = "enroll",
    version,
    about = "Registration and email verification, speaking the Dfns, ZITADEL and Singularity APIs"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// A TOML file of settings (default: ./enroll.toml when it exists).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the SQLite database, the secret and bootstrap.json live [env: ENROLL_DATA_DIR] [default: ./data]
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// sqlite://<path> or postgres://… [env: ENROLL_DATABASE_URL] [default: <data-dir>/enroll.db]
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Print results as JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server and its outbox worker.
    Serve(ServeArgs),
    /// Bring the database schema up to date, then exit.
    Migrate,
    /// Organisations.
    #[command(subcommand)]
    Org(OrgCommand),
    /// Applications (Dfns X-DFNS-APPID).
    #[command(subcommand)]
    App(AppCommand),
    /// Users.
    #[command(subcommand)]
    User(UserCommand),
    /// Personal access tokens (ZITADEL's PATs).
    #[command(subcommand)]
    Token(TokenCommand),
    /// The delivery log of the outbox.
    #[command(subcommand)]
    Mail(MailCommand),
    /// Configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [env: ENROLL_LISTEN] [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// smtp://host:port or smtps://user:password@host:port; absent: mail is captured [env: ENROLL_SMTP_URL]
    #[arg(long, value_name = "URL")]
    pub smtp_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Create an organisation.
    Create {
        #[arg(long)]
        name: String,
        /// Default locale of its emails.
        #[arg(long, default_value = "en")]
        locale: String,
    },
    /// List organisations.
    List,
    /// Change how an organisation's emails behave.
    Configure {
        org: String,
        /// Whether a password reset asked for an address without an account sends that
        /// address a "no account" email (default for new organisations: true).
        #[arg(long)]
        unknown_address_mail: Option<bool>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Register an application with an organisation.
    Create {
        #[arg(long)]
        org: String,
        #[arg(long)]
        name: String,
        /// A permission the app holds (repeatable), e.g. Auth:Users:Create.
        #[arg(long = "permission", value_name = "NAME")]
        permissions: Vec<String>,
        /// Give it a secret that callers must send as X-DFNS-APPSECRET (printed once).
        #[arg(long)]
        with_secret: bool,
        /// A PEM file of the RSA or Ed25519 public key that signs its requests
        /// (X-DFNS-APISIGNATURE).
        #[arg(long, value_name = "FILE")]
        public_key: Option<std::path::PathBuf>,
    },
    /// Give an application a new secret (printed once); the previous one keeps working for
    /// the overlap, so the app's instances can change over.
    RotateSecret {
        /// The app id (ap-…).
        app: String,
        #[arg(long, default_value_t = 86_400)]
        overlap_seconds: u64,
    },
    /// List applications.
    List {
        #[arg(long)]
        org: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a pending user and queue the registration email.
    Create {
        #[arg(long)]
        org: String,
        #[arg(long)]
        email: String,
        /// CustomerEmployee or EndUser.
        #[arg(long, default_value = "CustomerEmployee")]
        kind: String,
        /// Locale of the user's emails (default: the organisation's).
        #[arg(long)]
        locale: Option<String>,
    },
    /// Show a user, its codes (never the codes themselves) and its history.
    Show {
        /// The user id (us-…), or an email address together with --org.
        user: String,
        #[arg(long)]
        org: Option<String>,
    },
    /// Grant permissions to a user, e.g. Auth:Users:Create and Auth:Types:Employee to let
    /// them create employees through the Dfns API.
    Grant {
        /// The user id (us-…), or an email address together with --org.
        user: String,
        #[arg(long)]
        org: Option<String>,
        /// A permission to grant (repeatable).
        #[arg(long = "permission", value_name = "NAME", required = true)]
        permissions: Vec<String>,
    },
    /// List users.
    List {
        #[arg(long)]
        org: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue a personal access token, shown once; only its digest is kept. Without --user it
    /// acts as a new machine user of the organisation.
    Create {
        #[arg(long)]
        org: String,
        /// A permission the token holds (repeatable), e.g. user.write.
        #[arg(long = "permission", value_name = "NAME")]
        permissions: Vec<String>,
        /// The user the token acts as: a user id (us-…) or an email address of the org.
        #[arg(long)]
        user: Option<String>,
        /// The machine user's name when no --user is given.
        #[arg(long, default_value = "token")]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum MailCommand {
    /// Outbox messages, newest first: recipient, state, attempts, last error.
    List {
        #[arg(long)]
        to: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Load and check the settings and templates, and print the result (secrets hidden).
    Check,
}

impl Cli {
    pub fn overrides(&self) -> Overrides {
        let (listen, smtp_url) = match &self.command {
            Command::Serve(serve) => (serve.listen, serve.smtp_url.clone()),
            _ => (None, None),
        };
        Overrides {
            listen,
            data_dir: self.global.data_dir.clone(),
            database_url: self.global.database_url.clone(),
            smtp_url,
        }
    }
}
