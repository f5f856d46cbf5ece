//! Development pages: the captured inbox, when mail is not sent over SMTP.

mod mail;

use axum::Router;
use axum::routing::get;

use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/dev/mail", get(mail::list))
        .route("/dev/mail/ui", get(mail::page))
}
