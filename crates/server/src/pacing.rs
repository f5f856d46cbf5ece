//! Pacing of the endpoints anyone may call.
//!
//! Each client address may cause so many emails per hour through them (reliability target 12).
//!
//! Their answers come no sooner than a fixed time after the request, so that their timing does
//! not tell an address with an account from one without (target 14). Both paths do the same
//! reads and commit one transaction, but an account's path writes a few more rows and wakes the
//! outbox worker: a fraction of a millisecond that a statistical test over many requests finds,
//! and that the floor hides.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;

use crate::state::AppState;

/// The least time an answer of the endpoints anyone may call takes.
#[derive(Debug, Clone, Copy)]
pub struct AnswerFloor(pub Duration);

pub async fn answer_no_sooner(
    State(AnswerFloor(floor)): State<AnswerFloor>,
    request: Request,
    next: Next,
) -> Response {
    let deadline = tokio::time::Instant::now() + floor;
    let response = next.run(request).await;
    tokio::time::sleep_until(deadline).await;
    response
}

/// Caps the emails one client address may cause through a route anyone may call (see
/// [`enroll_core::service::Enroll::client_may_send`]); the refusal speaks the face's error
/// format `E`. An answer other than a success sent nothing and is not counted.
pub async fn within_client_budget<E>(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response
where
    E: From<enroll_core::Error> + IntoResponse,
{
    let client = peer.ip().to_string();
    if let Err(refused) = state.enroll.client_may_send(&client) {
        return E::from(refused).into_response();
    }
    let response = next.run(request).await;
    if response.status().is_success() {
        state.enroll.client_sent(&client);
    }
    response
}

/// `route`, its answers held back to the floor: for routes anyone may call that send nothing.
pub fn floored(route: MethodRouter<AppState>, state: &AppState) -> MethodRouter<AppState> {
    route.layer(middleware::from_fn_with_state(
        state.answer_floor,
        answer_no_sooner,
    ))
}

/// `route`, held back to the floor and capped per client: for routes anyone may call that send
/// email. Refusals speak the face's error format `E`.
pub fn paced_sender<E>(route: MethodRouter<AppState>, state: &AppState) -> MethodRouter<AppState>
where
    E: From<enroll_core::Error> + IntoResponse + 'static,
{
    let capped = route.layer(middleware::from_fn_with_state(
        state.clone(),
        within_client_budget::<E>,
    ));
    floored(capped, state)
}
