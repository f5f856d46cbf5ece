//! The page a verification email links to (ZITADEL's path and parameters):
//! `GET /ui/login/mail/verification?userID=…&code=…&orgID=…` shows the code in a form; only
//! its POST verifies. A code that does not work offers a new email.

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use enroll_core::Error;
use enroll_core::code::CodeSecret;
use enroll_core::error::retry_after_seconds;
use enroll_core::ids::{OrgId, UserId};
use enroll_core::model::User;
use serde::{Deserialize, Serialize};

use super::locale;
use super::texts::Language;
use crate::state::AppState;

pub const PATH: &str = "/ui/login/mail/verification";
pub const RESEND_PATH: &str = "/ui/login/mail/verification/resend";

/// The link's parameters, and the form's fields: the same names.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct Link {
    #[serde(rename = "userID", default)]
    user_id: String,
    #[serde(default)]
    code: String,
    #[serde(rename = "orgID", default)]
    org_id: String,
}

/// What a page shows, named as its `<main data-outcome>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Form,
    Verified,
    Invalid,
    AlreadyVerified,
    Resent,
    Cooldown(u64),
    Failed,
}

impl Outcome {
    const fn name(self) -> &'static str {
        match self {
            Self::Form => "form",
            Self::Verified => "verified",
            Self::Invalid => "invalid",
            Self::AlreadyVerified => "already-verified",
            Self::Resent => "resent",
            Self::Cooldown(_) => "cooldown",
            Self::Failed => "failed",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Self::Form | Self::Verified | Self::AlreadyVerified | Self::Resent => StatusCode::OK,
            Self::Invalid => StatusCode::BAD_REQUEST,
            Self::Cooldown(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Failed => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

pub async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(link): Query<Link>,
) -> Response {
    let user = user_of(&state, &link).await;
    render(&state, &headers, user.as_ref(), &link, Outcome::Form).await
}

pub async fn verify(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(link): Form<Link>,
) -> Response {
    let outcome = match UserId::parse(link.user_id.trim()) {
        Some(user_id) => {
            let code = CodeSecret::from_user_input(&link.code);
            match state.enroll.verify_email(user_id, code).await {
                Ok(_) => Outcome::Verified,
                Err(error) => failure(&error),
            }
        }
        None => Outcome::Invalid,
    };
    let user = user_of(&state, &link).await;
    // A verified address explains a code that no longer works.
    let outcome = match (&user, outcome) {
        (Some(user), Outcome::Invalid) if user.email_verified_at.is_some() => {
            Outcome::AlreadyVerified
        }
        (_, outcome) => outcome,
    };
    render(&state, &headers, user.as_ref(), &link, outcome).await
}

/// A new email, if a code is pending; the page says the same whether one was, so that it
/// tells nothing about the address.
pub async fn resend(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(link): Form<Link>,
) -> Response {
    let outcome = match UserId::parse(link.user_id.trim()) {
        Some(user_id) => match state.enroll.request_email_code(user_id).await {
            Ok(()) => Outcome::Resent,
            Err(Error::Cooldown { retry_after }) => {
                Outcome::Cooldown(retry_after_seconds(retry_after))
            }
            Err(Error::Unavailable(_) | Error::Internal { .. }) => Outcome::Failed,
            Err(_) => Outcome::Resent,
        },
        None => Outcome::Resent,
    };
    let user = user_of(&state, &link).await;
    render(&state, &headers, user.as_ref(), &link, outcome).await
}

fn failure(error: &Error) -> Outcome {
    match error {
        Error::Unavailable(_) | Error::Internal { .. } => {
            tracing::error!(%error, "a verification failed");
            Outcome::Failed
        }
        _ => Outcome::Invalid,
    }
}

async fn user_of(state: &AppState, link: &Link) -> Option<User> {
    let id = UserId::parse(link.user_id.trim())?;
    state.enroll.store().user(&id).await.ok().flatten()
}

async fn render(
    state: &AppState,
    headers: &HeaderMap,
    user: Option<&User>,
    link: &Link,
    outcome: Outcome,
) -> Response {
    let org_id = user
        .map(|user| user.org_id.clone())
        .or_else(|| OrgId::parse(link.org_id.trim()));
    let org = match &org_id {
        Some(id) => state.enroll.store().org(id).await.ok().flatten(),
        None => None,
    };
    let language: Language = locale::choose(
        user.and_then(|user| user.locale.as_ref()),
        headers,
        org.as_ref().map(|org| &org.default_locale),
    );
    let texts = language.texts();
    let seconds = match outcome {
        Outcome::Cooldown(seconds) => seconds,
        _ => 0,
    };
    let retry_after = match outcome {
        Outcome::Cooldown(seconds) => Some(seconds),
        _ => None,
    };
    super::render(
        PAGE,
        minijinja::context! {
            lang => language.tag(),
            t => texts,
            outcome => outcome.name(),
            link => link,
            org_name => org.as_ref().map(|org| org.name.clone()),
            cooldown => texts.cooldown_body.replace("{seconds}", &seconds.to_string()),
            path => PATH,
            resend_path => RESEND_PATH,
        },
        outcome.status(),
        retry_after,
    )
}

const PAGE: &str = r#"<!doctype html>
<html lang="{{ lang }}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{% if outcome == "form" %}{{ t.form_title }}{% elif outcome == "verified" %}{{ t.verified_title }}{% elif outcome == "invalid" %}{{ t.invalid_title }}{% elif outcome == "already-verified" %}{{ t.already_title }}{% elif outcome == "resent" %}{{ t.resent_title }}{% elif outcome == "cooldown" %}{{ t.cooldown_title }}{% else %}{{ t.error_title }}{% endif %}{% if org_name %} · {{ org_name }}{% endif %}</title>
<style>
 body { margin: 0; padding: 24px; background: #f5f5f7; font: 16px/1.5 -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; color: #1d1d1f; }
 main { max-width: 28rem; margin: 10vh auto 0; background: #fff; border-radius: 12px; padding: 32px; }
 h1 { font-size: 1.4rem; margin: 0 0 12px; }
 p { margin: 0 0 16px; }
 label { display: block; font-weight: 600; margin-bottom: 6px; }
 input[name=code] { box-sizing: border-box; width: 100%; padding: 10px 12px; font: 600 22px/1.2 ui-monospace, Menlo, Consolas, monospace; letter-spacing: 2px; text-align: center; border: 1px solid #d2d2d7; border-radius: 8px; margin-bottom: 16px; }
 button { width: 100%; padding: 12px; border: 0; border-radius: 8px; background: #0071e3; color: #fff; font: 600 16px/1 inherit; cursor: pointer; }
 .secondary { background: #e8e8ed; color: #1d1d1f; }
 .muted { color: #6e6e73; font-size: 14px; }
 hr { border: 0; border-top: 1px solid #e8e8ed; margin: 24px 0; }
</style>
</head>
<body>
<main data-outcome="{{ outcome }}">
{% if outcome == "form" or outcome == "invalid" %}
 {% if outcome == "form" %}
 <h1>{{ t.form_title }}</h1>
 <p>{{ t.form_intro }}</p>
 {% else %}
 <h1>{{ t.invalid_title }}</h1>
 <p>{{ t.invalid_body }}</p>
 {% endif %}
 <form id="verify" method="post" action="{{ path }}">
  <input type="hidden" name="userID" value="{{ link.userID }}">
  <input type="hidden" name="orgID" value="{{ link.orgID }}">
  <label for="code">{{ t.code_label }}</label>
  <input id="code" name="code" value="{{ link.code }}" autocomplete="one-time-code" autocapitalize="characters" spellcheck="false" maxlength="20" required>
  <button id="verify-button" type="submit">{{ t.verify_button }}</button>
 </form>
 {% if outcome == "invalid" %}
 <hr>
 <p class="muted">{{ t.resend_intro }}</p>
 <form id="resend" method="post" action="{{ resend_path }}">
  <input type="hidden" name="userID" value="{{ link.userID }}">
  <input type="hidden" name="orgID" value="{{ link.orgID }}">
  <button id="resend-button" class="secondary" type="submit">{{ t.resend_button }}</button>
 </form>
 {% endif %}
{% elif outcome == "verified" %}
 <h1>{{ t.verified_title }}</h1>
 <p>{{ t.verified_body }}</p>
{% elif outcome == "already-verified" %}
 <h1>{{ t.already_title }}</h1>
 <p>{{ t.already_body }}</p>
{% elif outcome == "resent" %}
 <h1>{{ t.resent_title }}</h1>
 <p>{{ t.resent_body }}</p>
{% elif outcome == "cooldown" %}
 <h1>{{ t.cooldown_title }}</h1>
 <p>{{ cooldown }}</p>
{% else %}
 <h1>{{ t.error_title }}</h1>
 <p>{{ t.error_body }}</p>
{% endif %}
</main>
</body>
</html>
"#;
