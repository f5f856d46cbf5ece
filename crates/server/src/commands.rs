//! The subcommands of the `enroll` binary.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use enroll_core::clock::{Clock, SystemClock};
use enroll_core::credential::PublicKey;
use enroll_core::email::EmailAddress;
use enroll_core::ids::{AppId, OrgId, UserId};
use enroll_core::model::{Locale, Permission, TokenKind, User, UserKind};
use enroll_core::ports::{MessageFilter, NoSignal, Store};
use enroll_core::service::{Enroll, NewUser};
use serde::Serialize;
use serde_json::json;

use crate::bootstrap;
use crate::cli::{
    AppCommand, Cli, Command, ConfigCommand, MailCommand, OrgCommand, TokenCommand, UserCommand,
};
use crate::config::Settings;
use crate::startup::{self, Application};

pub async fn run(cli: Cli, settings: Settings) -> anyhow::Result<()> {
    let json = cli.global.json;
    match cli.command {
        Command::Serve(_) => serve(settings).await,
        Command::Migrate => {
            startup::open_store(&settings).await?;
            println!("The database schema is up to date.");
            Ok(())
        }
        Command::Config(ConfigCommand::Check) => config_check(&settings),
        Command::Org(command) => org(&core(&settings).await?, command, json).await,
        Command::App(command) => app(&core(&settings).await?, command, json).await,
        Command::User(command) => user(&core(&settings).await?, command, json).await,
        Command::Token(command) => token(&core(&settings).await?, command, json).await,
        Command::Mail(command) => mail(&core(&settings).await?, command, json).await,
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let application = Application::build(&settings, Arc::new(SystemClock)).await?;
    if let Some((bootstrap, path)) = application.bootstrap() {
        println!("Created the default organisation {}.", bootstrap.org_id);
        println!("Its admin token was written to {}.", path.display());
    }
    let mail = match &settings.smtp_url {
        Some(_) => "sent over SMTP".to_owned(),
        None => format!("captured: http://{}/dev/mail/ui", application.address()),
    };
    tracing::info!(address = %application.address(), database = ?settings.database(), "enroll is listening");
    println!(
        "enroll is listening on http://{} (mail {mail}).",
        application.address()
    );
    application.run_until_stopped(shutdown_signal()).await
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}

fn config_check(settings: &Settings) -> anyhow::Result<()> {
    startup::renderer(settings)?;
    let mut shown = settings.clone();
    for secret in [&mut shown.secret, &mut shown.smtp_password] {
        if secret.is_some() {
            *secret = Some("<hidden>".to_owned());
        }
    }
    println!("{}", serde_json::to_string_pretty(&shown)?);
    println!("The configuration and the email templates are valid.");
    Ok(())
}

/// The core on the configured database, for commands that act on it without serving.
async fn core(settings: &Settings) -> anyhow::Result<Enroll> {
    let store: Arc<dyn Store> = startup::open_store(settings).await?;
    let secret = bootstrap::server_secret(settings)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    Ok(Enroll::new(
        store,
        clock,
        &secret,
        settings.policy(),
        Arc::new(NoSignal),
    ))
}

fn print<T: Serialize>(
    json: bool,
    value: &T,
    human: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        println!("{}", human());
    }
    Ok(())
}

/// A list: JSON, or one line per item.
fn print_list<T: Serialize>(
    json: bool,
    items: &[T],
    line: impl Fn(&T) -> String,
) -> anyhow::Result<()> {
    print(json, &items, || {
        items.iter().map(line).collect::<Vec<_>>().join("\n")
    })
}

fn org_id(text: &str) -> anyhow::Result<OrgId> {
    OrgId::parse(text.trim()).with_context(|| {
        format!("{text:?} is not an organisation id (or-xxxxx-xxxxx-xxxxxxxxxxxxxxxx)")
    })
}

fn locale(text: &str) -> anyhow::Result<Locale> {
    Locale::parse(text).with_context(|| format!("{text:?} is not a locale such as en, de or fr-CH"))
}

async fn org(enroll: &Enroll, command: OrgCommand, json: bool) -> anyhow::Result<()> {
    match command {
        OrgCommand::Create { name, locale: tag } => {
            let org = enroll.create_org(&name, locale(&tag)?).await?;
            print(json, &org, || {
                format!("{}\t{}\t{}", org.id, org.name, org.default_locale)
            })
        }
        OrgCommand::List => {
            let orgs = enroll.store().orgs().await?;
            print_list(json, &orgs, |org| {
                format!("{}\t{}\t{}", org.id, org.name, org.default_locale)
            })
        }
        OrgCommand::Configure {
            org,
            unknown_address_mail,
        } => {
            let id = org_id(&org)?;
            if enroll.store().org(&id).await?.is_none() {
                anyhow::bail!("no organisation {id}");
            }
            if let Some(send) = unknown_address_mail {
                enroll
                    .store()
                    .set_org_unknown_address_mail(&id, send)
                    .await?;
            }
            let org = enroll
                .store()
                .org(&id)
                .await?
                .with_context(|| format!("no organisation {id}"))?;
            print(json, &org, || {
                format!(
                    "{}\t{}\t{}\tunknown_address_mail={}",
                    org.id, org.name, org.default_locale, org.unknown_address_mail
                )
            })
        }
    }
}

async fn app(enroll: &Enroll, command: AppCommand, json: bool) -> anyhow::Result<()> {
    match command {
        AppCommand::Create {
            org,
            name,
            permissions,
            with_secret,
            public_key,
        } => {
            let permissions = parse_permissions(&permissions)?;
            let app = enroll
                .create_app(&org_id(&org)?, &name, permissions)
                .await?;
            if let Some(path) = &public_key {
                let pem = std::fs::read_to_string(path)
                    .with_context(|| format!("could not read {}", path.display()))?;
                enroll
                    .set_app_public_key(&app.id, PublicKey::from_pem(&pem)?)
                    .await?;
            }
            let secret = match with_secret {
                true => Some(enroll.issue_app_secret(&app.id, Duration::ZERO).await?),
                false => None,
            };
            let secret = secret.as_ref().map(|secret| secret.expose());
            let shown = json!({ "app": app, "secret": secret });
            print(json, &shown, || {
                let mut out = format!("{}\t{}\t{}", app.id, app.name, join(&app.permissions));
                if let Some(secret) = secret {
                    out.push_str(&format!("\nX-DFNS-APPSECRET (shown once): {secret}"));
                }
                out
            })
        }
        AppCommand::RotateSecret {
            app,
            overlap_seconds,
        } => {
            let id = AppId::parse(&app).with_context(|| format!("{app:?} is not an app id"))?;
            let overlap = Duration::from_secs(overlap_seconds);
            let secret = enroll.issue_app_secret(&id, overlap).await?;
            let shown = json!({ "appId": id, "secret": secret.expose(), "overlapSeconds": overlap_seconds });
            print(json, &shown, || {
                format!(
                    "X-DFNS-APPSECRET of {id} (shown once): {}\nthe previous secret works for {overlap_seconds} s more",
                    secret.expose()
                )
            })
        }
        AppCommand::List { org } => {
            let org = org.as_deref().map(org_id).transpose()?;
            let apps = enroll.store().apps(org.as_ref()).await?;
            print_list(json, &apps, |app| {
                format!(
                    "{}\t{}\t{}\t{}",
                    app.id,
                    app.org_id,
                    app.name,
                    join(&app.permissions)
                )
            })
        }
    }
}

fn parse_permissions(names: &[String]) -> anyhow::Result<Vec<Permission>> {
    names
        .iter()
        .map(|name| {
            Permission::parse(name).with_context(|| format!("{name:?} is not a permission name"))
        })
        .collect()
}

fn join(permissions: &[Permission]) -> String {
    permissions
        .iter()
        .map(Permission::as_str)
        .collect::<Vec<_>>()
        .join(",")
}

async fn user(enroll: &Enroll, command: UserCommand, json: bool) -> anyhow::Result<()> {
    match command {
        UserCommand::Create {
            org,
            email,
            kind,
            locale: tag,
        } => {
            let new = NewUser {
                org_id: org_id(&org)?,
                email: EmailAddress::parse(&email)
                    .with_context(|| format!("{email:?} is not a valid email address"))?,
                kind: UserKind::parse(&kind).with_context(|| {
                    format!("{kind:?} is not a kind: use CustomerEmployee or EndUser")
                })?,
                locale: tag.as_deref().map(locale).transpose()?,
                user_action: None,
            };
            let created = enroll.create_user(new).await?;
            let user = &created.user;
            print(json, user, || {
                format!(
                    "{}\t{}\t{}\t{}\nThe registration email is queued as {}.",
                    user.id,
                    user.username,
                    user.kind.as_str(),
                    user.state.as_str(),
                    created.message_id
                )
            })
        }
        UserCommand::Show { user, org } => {
            let found = find_user(enroll, &user, org.as_deref()).await?;
            let codes = enroll.store().codes(&found.id).await?;
            let events = enroll.store().events(found.id.as_str()).await?;
            let codes: Vec<_> = codes
                .iter()
                .map(|code| {
                    json!({
                        "id": code.id, "purpose": code.purpose.as_str(), "state": code.state.as_str(),
                        "failedAttempts": code.failed_attempts, "createdAt": code.created_at, "expiresAt": code.expires_at,
                    })
                })
                .collect();
            let shown = json!({ "user": found, "codes": codes, "events": events });
            print(json, &shown, || {
                let mut out = format!(
                    "{}\t{}\t{}\t{}\torg {}\n",
                    found.id,
                    found.username,
                    found.kind.as_str(),
                    found.state.as_str(),
                    found.org_id
                );
                for event in &events {
                    out.push_str(&format!(
                        "  #{}\t{}\t{}\t{}\n",
                        event.sequence, event.at, event.kind, event.payload
                    ));
                }
                out.trim_end().to_owned()
            })
        }
        UserCommand::Grant {
            user,
            org,
            permissions,
        } => {
            let found = find_user(enroll, &user, org.as_deref()).await?;
            let permissions = parse_permissions(&permissions)?;
            if permissions.is_empty() {
                bail!("name at least one --permission, e.g. Auth:Users:Create");
            }
            let held = enroll.grant(&found.id, &permissions).await?;
            let shown = json!({ "userId": found.id, "permissions": held });
            print(json, &shown, || format!("{}	{}", found.id, join(&held)))
        }
        UserCommand::List { org } => {
            let org = org.as_deref().map(org_id).transpose()?;
            let users = enroll.store().users(org.as_ref()).await?;
            print_list(json, &users, |user| {
                format!(
                    "{}\t{}\t{}\t{}",
                    user.id,
                    user.username,
                    user.kind.as_str(),
                    user.state.as_str()
                )
            })
        }
    }
}

async fn token(enroll: &Enroll, command: TokenCommand, json: bool) -> anyhow::Result<()> {
    let TokenCommand::Create {
        org,
        permissions,
        user,
        name,
    } = command;
    let permissions = parse_permissions(&permissions)?;
    let (user, secret) = match user {
        Some(user) => {
            let found = find_user(enroll, &user, Some(&org)).await?;
            let (_, secret) = enroll
                .create_token(&found, TokenKind::Personal, permissions.clone())
                .await?;
            (found, secret)
        }
        None => {
            let username = EmailAddress::parse(&format!("{name}@machine.invalid"))
                .with_context(|| format!("{name:?} cannot name a machine user"))?;
            let (created, secret) = enroll
                .create_machine_user(&org_id(&org)?, username, permissions.clone())
                .await
                .with_context(|| format!("could not create the machine user {name:?}"))?;
            (created.user, secret)
        }
    };
    let shown = json!({
        "token": secret.expose(),
        "userId": user.id,
        "orgId": user.org_id,
        "permissions": permissions,
    });
    print(json, &shown, || {
        format!(
            "{}\nacts as {} in {} with [{}]; it is shown only this once.",
            secret.expose(),
            user.id,
            user.org_id,
            join(&permissions)
        )
    })
}

/// A user by id, or by email address within `org`.
async fn find_user(enroll: &Enroll, user: &str, org: Option<&str>) -> anyhow::Result<User> {
    let found = match (UserId::parse(user.trim()), org) {
        (Some(id), _) => enroll.store().user(&id).await?,
        (None, Some(org)) => {
            let email = EmailAddress::parse(user)
                .with_context(|| format!("{user:?} is neither a user id nor an email address"))?;
            enroll
                .store()
                .user_by_username(&org_id(org)?, &email)
                .await?
        }
        (None, None) => bail!("give a user id (us-…), or an email address with --org"),
    };
    found.context("no such user")
}

async fn mail(enroll: &Enroll, command: MailCommand, json: bool) -> anyhow::Result<()> {
    let MailCommand::List { to, limit } = command;
    let filter = MessageFilter {
        user_id: None,
        recipient: to,
        org_id: None,
        limit: Some(limit),
    };
    let messages = enroll.store().messages(&filter).await?;
    print_list(json, &messages, |message| {
        format!(
            "{}\t{}\t{}\t{}\t{}\tattempts {}{}",
            message.id,
            message.created_at,
            message.recipient,
            message.template.as_str(),
            message.state.as_str(),
            message.attempts,
            message
                .last_error
                .as_deref()
                .map(|error| format!("\t{error}"))
                .unwrap_or_default()
        )
    })
}
