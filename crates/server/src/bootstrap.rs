//! First start: the server secret, a default organisation and an admin token.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use enroll_core::model::{Locale, Permission, TokenKind};
use enroll_core::secret::ServerSecret;
use enroll_core::service::Enroll;
use serde::{Deserialize, Serialize};

use crate::config::Settings;

/// What `<data-dir>/bootstrap.json` holds.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bootstrap {
    pub org_id: String,
    pub admin_token: String,
}

/// Writes a file only the owner can read, replacing none: the contents are credentials.
fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("could not create {}", path.display()))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("could not write {}", path.display()))
}

/// The configured secret, or the one in the data directory, generated there on first use.
pub fn server_secret(settings: &Settings) -> anyhow::Result<ServerSecret> {
    if let Some(hex) = &settings.secret {
        return ServerSecret::from_hex(hex).context("the configured secret is not valid");
    }
    let path = settings.data_dir.join("secret.key");
    if path.exists() {
        let text = fs::read_to_string(&path)
            .with_context(|| format!("could not read {}", path.display()))?;
        return ServerSecret::from_hex(&text)
            .with_context(|| format!("{} is not a valid secret", path.display()));
    }
    fs::create_dir_all(&settings.data_dir).with_context(|| {
        format!(
            "could not create the data directory {}",
            settings.data_dir.display()
        )
    })?;
    let secret = ServerSecret::generate();
    write_private(&path, format!("{}\n", secret.to_hex()).as_bytes())?;
    Ok(secret)
}

/// On a database without organisations: creates the default one and an admin token holding
/// every permission, and writes both to `bootstrap.json`. Returns where it wrote them.
pub async fn first_start(
    enroll: &Enroll,
    data_dir: &Path,
) -> anyhow::Result<Option<(Bootstrap, PathBuf)>> {
    if !enroll.store().orgs().await?.is_empty() {
        return Ok(None);
    }
    let path = data_dir.join("bootstrap.json");
    fs::create_dir_all(data_dir)
        .with_context(|| format!("could not create the data directory {}", data_dir.display()))?;
    if path.exists() {
        anyhow::bail!(
            "{} exists but the database has no organisation: it belongs to another database; move it away to start afresh",
            path.display()
        );
    }
    let org = enroll.create_org("Default", Locale::english()).await?;
    let (_, token) = enroll
        .create_token(&org.id, TokenKind::Admin, Permission::all())
        .await?;
    let bootstrap = Bootstrap {
        org_id: org.id.to_string(),
        admin_token: token.expose().to_owned(),
    };
    write_private(&path, &serde_json::to_vec_pretty(&bootstrap)?)?;
    Ok(Some((bootstrap, path)))
}
