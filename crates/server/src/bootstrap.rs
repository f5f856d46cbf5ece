//! First start: the server secret, a default organisation and its admin service account.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use enroll_core::credential::generate_p256_key;
use enroll_core::email::EmailAddress;
use enroll_core::model::{Locale, Permission};
use enroll_core::secret::ServerSecret;
use enroll_core::service::Enroll;
use serde::{Deserialize, Serialize};

use crate::config::Settings;

/// The username of the service account made on first start.
pub const ADMIN_USERNAME: &str = "admin@enroll.invalid";

/// What `<data-dir>/bootstrap.json` holds: the default organisation and its admin, a service
/// account holding every permission, with its token and the key that signs its user actions.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bootstrap {
    pub org_id: String,
    pub admin_user_id: String,
    pub admin_token: String,
    /// The `credId` to sign user actions with (`@dfns/sdk-keysigner`'s `credId`).
    pub admin_credential_id: String,
    /// PKCS#8 PEM of the admin's P-256 key; it exists only in this file.
    pub admin_private_key: String,
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
    let (public_key, private_key) = generate_p256_key();
    let username = EmailAddress::parse(ADMIN_USERNAME)
        .unwrap_or_else(|_| unreachable!("the admin's username is an address"));
    let (admin, token) = enroll
        .create_service_account(&org.id, username, public_key, Permission::all())
        .await?;
    let bootstrap = Bootstrap {
        org_id: org.id.to_string(),
        admin_user_id: admin.user.id.to_string(),
        admin_token: token.expose().to_owned(),
        admin_credential_id: admin
            .credential
            .context("the admin was created with its key")?
            .cred_id,
        admin_private_key: private_key,
    };
    write_private(&path, &serde_json::to_vec_pretty(&bootstrap)?)?;
    Ok(Some((bootstrap, path)))
}
