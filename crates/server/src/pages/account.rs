//! The hosted pages of the Singularity face's emails, for servers without a frontend of their
//! own: confirm an address, choose a new password, ask for a reset, sign up. A GET only shows a
//! form; its POST acts, so link scanners use up nothing.

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use enroll_core::Error;
use enroll_core::email::EmailAddress;
use enroll_core::error::retry_after_seconds;
use enroll_core::model::User;
use enroll_core::service::NewAccount;
use serde::{Deserialize, Serialize};

use super::texts::Language;
use super::{FORGOT_PASSWORD_PATH, RESET_PASSWORD_PATH, SIGN_UP_PATH, VERIFY_EMAIL_PATH, locale};
use crate::faces::browser_locale;
use crate::state::AppState;

/// Which page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Page {
    Verify,
    Reset,
    Forgot,
    Register,
}

impl Page {
    const fn name(self) -> &'static str {
        match self {
            Self::Verify => "verify",
            Self::Reset => "reset",
            Self::Forgot => "forgot",
            Self::Register => "register",
        }
    }

    const fn path(self) -> &'static str {
        match self {
            Self::Verify => VERIFY_EMAIL_PATH,
            Self::Reset => RESET_PASSWORD_PATH,
            Self::Forgot => FORGOT_PASSWORD_PATH,
            Self::Register => SIGN_UP_PATH,
        }
    }
}

/// What a page shows, named as its `<main data-outcome>`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Form,
    Verified,
    AlreadyVerified,
    Invalid,
    /// The password was changed.
    Done,
    /// The input broke a rule; the form is shown again with the reason.
    Rejected(String),
    /// A reset link may be on its way (the page says the same for any address).
    Sent,
    Registered,
    Cooldown(u64),
    MailOff,
    Failed,
}

impl Outcome {
    const fn name(&self) -> &'static str {
        match self {
            Self::Form => "form",
            Self::Verified => "verified",
            Self::AlreadyVerified => "already-verified",
            Self::Invalid => "invalid",
            Self::Done => "done",
            Self::Rejected(_) => "rejected",
            Self::Sent => "sent",
            Self::Registered => "registered",
            Self::Cooldown(_) => "cooldown",
            Self::MailOff => "mail-off",
            Self::Failed => "failed",
        }
    }

    const fn status(&self) -> StatusCode {
        match self {
            Self::Form
            | Self::Verified
            | Self::AlreadyVerified
            | Self::Done
            | Self::Sent
            | Self::Registered => StatusCode::OK,
            Self::Invalid | Self::Rejected(_) => StatusCode::BAD_REQUEST,
            Self::Cooldown(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::MailOff | Self::Failed => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The outcome of a failed call: rule breaks are shown, faults are logged.
    fn of(error: &Error) -> Self {
        match error {
            Error::CodeInvalid | Error::CodeExpired | Error::CodeExhausted => Self::Invalid,
            Error::EmailAlreadyVerified => Self::AlreadyVerified,
            Error::PasswordRejected(reason) => Self::Rejected(reason.to_string()),
            Error::Invalid(reason) => Self::Rejected(reason.clone()),
            Error::Cooldown { retry_after } => Self::Cooldown(retry_after_seconds(*retry_after)),
            Error::MailDisabled => Self::MailOff,
            error => {
                tracing::error!(%error, "an account page's request failed");
                Self::Failed
            }
        }
    }
}

/// The fields of every form; each page uses some.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct Fields {
    #[serde(default)]
    token: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    name: String,
    /// Never shown again.
    #[serde(default, skip_serializing)]
    password: String,
}

pub async fn show_verify(
    state: State<AppState>,
    headers: HeaderMap,
    fields: Query<Fields>,
) -> Response {
    show(state, headers, fields, Page::Verify).await
}

pub async fn show_reset(
    state: State<AppState>,
    headers: HeaderMap,
    fields: Query<Fields>,
) -> Response {
    show(state, headers, fields, Page::Reset).await
}

pub async fn show_forgot(
    state: State<AppState>,
    headers: HeaderMap,
    fields: Query<Fields>,
) -> Response {
    show(state, headers, fields, Page::Forgot).await
}

pub async fn show_register(
    state: State<AppState>,
    headers: HeaderMap,
    fields: Query<Fields>,
) -> Response {
    show(state, headers, fields, Page::Register).await
}

async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(fields): Query<Fields>,
    page: Page,
) -> Response {
    let user = link_user(&state, &fields).await;
    render(
        &state,
        &headers,
        user.as_ref(),
        page,
        &fields,
        &Outcome::Form,
    )
    .await
}

pub async fn verify(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Response {
    let outcome = match state.enroll.verify_account(&fields.token).await {
        Ok(_) => Outcome::Verified,
        Err(error) => Outcome::of(&error),
    };
    let user = link_user(&state, &fields).await;
    render(
        &state,
        &headers,
        user.as_ref(),
        Page::Verify,
        &fields,
        &outcome,
    )
    .await
}

pub async fn reset(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Response {
    // Read before the reset, which uses the token up.
    let user = link_user(&state, &fields).await;
    let outcome = match state
        .enroll
        .reset_password(&fields.token, &fields.password)
        .await
    {
        Ok(_) => Outcome::Done,
        Err(error) => Outcome::of(&error),
    };
    render(
        &state,
        &headers,
        user.as_ref(),
        Page::Reset,
        &fields,
        &outcome,
    )
    .await
}

pub async fn forgot(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Response {
    let face = &state.singularity;
    let outcome = match EmailAddress::parse(&fields.email) {
        Ok(email) => match state
            .enroll
            .request_password_reset(
                face.org_id.clone(),
                email,
                None,
                browser_locale(&headers),
                face.links.as_ref(),
            )
            .await
        {
            Ok(()) => Outcome::Sent,
            Err(error) => Outcome::of(&error),
        },
        Err(error) => Outcome::Rejected(error.to_string()),
    };
    render(&state, &headers, None, Page::Forgot, &fields, &outcome).await
}

pub async fn register(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Response {
    let face = &state.singularity;
    let outcome = match EmailAddress::parse(&fields.email) {
        Ok(email) => {
            let new = NewAccount {
                org_id: face.org_id.clone(),
                email,
                password: fields.password.clone(),
                name: fields.name.clone(),
                locale: None,
                browser_locale: browser_locale(&headers),
            };
            match state.enroll.sign_up(new, face.links.as_ref()).await {
                Ok(_) => Outcome::Registered,
                Err(error) => Outcome::of(&error),
            }
        }
        Err(error) => Outcome::Rejected(error.to_string()),
    };
    render(&state, &headers, None, Page::Register, &fields, &outcome).await
}

/// The user a link's token names, for the page's language.
async fn link_user(state: &AppState, fields: &Fields) -> Option<User> {
    if fields.token.is_empty() {
        return None;
    }
    state
        .enroll
        .link_token_user(&fields.token)
        .await
        .ok()
        .flatten()
}

async fn render(
    state: &AppState,
    headers: &HeaderMap,
    user: Option<&User>,
    page: Page,
    fields: &Fields,
    outcome: &Outcome,
) -> Response {
    let org = state
        .enroll
        .store()
        .org(&state.singularity.org_id)
        .await
        .ok()
        .flatten();
    let language: Language = locale::choose(
        user.and_then(|user| user.locale.as_ref()),
        headers,
        org.as_ref().map(|org| &org.default_locale),
    );
    let texts = language.account_texts();
    let (reason, seconds) = match outcome {
        Outcome::Rejected(reason) => (reason.as_str(), 0),
        Outcome::Cooldown(seconds) => ("", *seconds),
        _ => ("", 0),
    };
    let retry_after = match outcome {
        Outcome::Cooldown(seconds) => Some(*seconds),
        _ => None,
    };
    super::render(
        TEMPLATE,
        minijinja::context! {
            lang => language.tag(),
            t => texts,
            page => page.name(),
            outcome => outcome.name(),
            fields => fields,
            reason => reason,
            cooldown => texts.cooldown_body.replace("{seconds}", &seconds.to_string()),
            org_name => org.as_ref().map(|org| org.name.clone()),
            path => page.path(),
            forgot_path => FORGOT_PASSWORD_PATH,
        },
        outcome.status(),
        retry_after,
    )
}

const TEMPLATE: &str = r#"<!doctype html>
<html lang="{{ lang }}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
{%- set show_form = outcome in ["form", "rejected"] %}
{%- if outcome == "verified" %}{% set title = t.verified_title %}{% set body = t.verified_body %}
{%- elif outcome == "already-verified" %}{% set title = t.already_title %}{% set body = t.already_body %}
{%- elif outcome == "invalid" and page == "verify" %}{% set title = t.verify_invalid_title %}{% set body = t.verify_invalid_body %}
{%- elif outcome == "invalid" %}{% set title = t.reset_invalid_title %}{% set body = t.reset_invalid_body %}
{%- elif outcome == "done" %}{% set title = t.reset_done_title %}{% set body = t.reset_done_body %}
{%- elif outcome == "sent" %}{% set title = t.forgot_sent_title %}{% set body = t.forgot_sent_body %}
{%- elif outcome == "registered" %}{% set title = t.registered_title %}{% set body = t.registered_body %}
{%- elif outcome == "cooldown" %}{% set title = t.cooldown_title %}{% set body = cooldown %}
{%- elif outcome == "mail-off" %}{% set title = t.mail_off_title %}{% set body = t.mail_off_body %}
{%- elif outcome == "failed" %}{% set title = t.error_title %}{% set body = t.error_body %}
{%- elif outcome == "rejected" %}{% set title = t.rejected_title %}{% set body = reason %}
{%- elif page == "verify" %}{% set title = t.verify_title %}{% set body = t.verify_intro %}
{%- elif page == "reset" %}{% set title = t.reset_title %}{% set body = t.reset_intro %}
{%- elif page == "forgot" %}{% set title = t.forgot_title %}{% set body = t.forgot_intro %}
{%- else %}{% set title = t.register_title %}{% set body = t.register_intro %}{% endif %}
<title>{{ title }}{% if org_name %} · {{ org_name }}{% endif %}</title>
<style>
 body { margin: 0; padding: 24px; background: #f5f5f7; font: 16px/1.5 -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; color: #1d1d1f; }
 main { max-width: 28rem; margin: 10vh auto 0; background: #fff; border-radius: 12px; padding: 32px; }
 h1 { font-size: 1.4rem; margin: 0 0 12px; }
 p { margin: 0 0 16px; }
 label { display: block; font-weight: 600; margin-bottom: 6px; }
 input:not([type=hidden]) { box-sizing: border-box; width: 100%; padding: 10px 12px; font: inherit; border: 1px solid #d2d2d7; border-radius: 8px; margin-bottom: 16px; }
 button { width: 100%; padding: 12px; border: 0; border-radius: 8px; background: #0071e3; color: #fff; font: 600 16px/1 inherit; cursor: pointer; }
 .reason { color: #b00020; }
 a { color: #0071e3; }
</style>
</head>
<body>
<main data-page="{{ page }}" data-outcome="{{ outcome }}">
 <h1>{{ title }}</h1>
 <p{% if outcome == "rejected" %} class="reason"{% endif %}>{{ body }}</p>
{%- if show_form %}
 <form id="{{ page }}" method="post" action="{{ path|safe }}">
 {%- if page in ["verify", "reset"] %}
  <input type="hidden" name="token" value="{{ fields.token }}">
 {%- endif %}
 {%- if page == "register" %}
  <label for="name">{{ t.name_label }}</label>
  <input id="name" name="name" value="{{ fields.name }}" autocomplete="name" maxlength="100" required>
 {%- endif %}
 {%- if page in ["forgot", "register"] %}
  <label for="email">{{ t.email_label }}</label>
  <input id="email" name="email" type="email" value="{{ fields.email }}" autocomplete="email" maxlength="254" required>
 {%- endif %}
 {%- if page in ["reset", "register"] %}
  <label for="password">{{ t.password_label }}</label>
  <input id="password" name="password" type="password" autocomplete="new-password" minlength="8" maxlength="128" required>
 {%- endif %}
  <button id="{{ page }}-button" type="submit">{% if page == "verify" %}{{ t.verify_button }}{% elif page == "reset" %}{{ t.reset_button }}{% elif page == "forgot" %}{{ t.forgot_button }}{% else %}{{ t.register_button }}{% endif %}</button>
 </form>
{%- elif outcome == "invalid" and page == "reset" %}
 <p><a href="{{ forgot_path|safe }}">{{ t.forgot_link }}</a></p>
{%- endif %}
</main>
</body>
</html>
"#;
