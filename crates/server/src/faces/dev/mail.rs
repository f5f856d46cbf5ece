//! `GET /dev/mail` (JSON) and `GET /dev/mail/ui` (HTML): the mail the inbox transport captured.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use enroll_core::model::CapturedMail;
use serde::Deserialize;
use serde_json::json;

use crate::state::AppState;

#[derive(Debug, Deserialize)]
pub struct MailQuery {
    to: Option<String>,
}

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>enroll — captured mail</title>
<style>
 body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; padding: 0 1rem; color: #1d1d1f; }
 h1 { font-size: 1.4rem; }
 article { border: 1px solid #d2d2d7; border-radius: 8px; margin: 1rem 0; padding: 0.8rem 1rem; }
 header { display: flex; justify-content: space-between; gap: 1rem; flex-wrap: wrap; }
 .meta { color: #6e6e73; font-size: 0.9em; }
 pre { white-space: pre-wrap; background: #f5f5f7; padding: 0.6rem; border-radius: 6px; }
 iframe { width: 100%; height: 22rem; border: 1px solid #d2d2d7; border-radius: 6px; }
</style>
</head>
<body>
<h1>Captured mail{% if to %} to {{ to }}{% endif %}</h1>
<form method="get"><label>Recipient <input name="to" value="{{ to or '' }}"></label> <button>Filter</button></form>
{% for mail in mails %}
<article>
 <header><strong>{{ mail.subject }}</strong><span class="meta">{{ mail.createdAt }}</span></header>
 <div class="meta">To {{ mail.to }} · From {{ mail.from }} · {{ mail.messageId }}</div>
 <pre>{{ mail.text }}</pre>
 <details><summary>HTML part</summary><iframe sandbox srcdoc="{{ mail.html }}"></iframe></details>
</article>
{% else %}
<p>No mail captured{% if to %} for {{ to }}{% endif %}.</p>
{% endfor %}
</body>
</html>
"#;

fn inbox_disabled() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error": { "message": "The development inbox is off: mail is sent over SMTP." } })),
    )
        .into_response()
}

async fn captured(state: &AppState, to: Option<&str>) -> Result<Vec<CapturedMail>, Response> {
    state
        .enroll
        .store()
        .captured(to.map(str::trim).filter(|to| !to.is_empty()))
        .await
        .map_err(|error| crate::faces::dfns::DfnsError::from(error).into_response())
}

pub async fn list(State(state): State<AppState>, Query(query): Query<MailQuery>) -> Response {
    if !state.inbox_enabled {
        return inbox_disabled();
    }
    match captured(&state, query.to.as_deref()).await {
        Ok(mails) => Json(mails).into_response(),
        Err(response) => response,
    }
}

pub async fn page(State(state): State<AppState>, Query(query): Query<MailQuery>) -> Response {
    if !state.inbox_enabled {
        return inbox_disabled();
    }
    let mails = match captured(&state, query.to.as_deref()).await {
        Ok(mails) => mails,
        Err(response) => return response,
    };
    let mut environment = minijinja::Environment::new();
    environment.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    let rendered = environment
        .render_str(PAGE, minijinja::context! { mails => mails, to => query.to })
        .unwrap_or_else(|error| format!("<p>The page could not be rendered: {error}</p>"));
    Html(rendered).into_response()
}
