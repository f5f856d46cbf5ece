//! The requests of each face, as its clients send them, and the loads made of them.

use std::sync::Arc;

use hyper::Method;
use hyper::body::Bytes;
use serde_json::json;

use crate::load::{Call, Check, Load, Protocol};
use crate::seed::{Seeded, dfns_username};

/// Which user of `users` a connection addresses with its `sequence`-th request: the
/// connections walk the users in turn, so each user is resent to as rarely as possible.
fn spread(connection: usize, connections: usize, sequence: u64, users: usize) -> usize {
    let step = u64::try_from(connections).unwrap_or(1);
    let index = sequence
        .saturating_mul(step)
        .saturating_add(u64::try_from(connection).unwrap_or(0));
    usize::try_from(index % u64::try_from(users.max(1)).unwrap_or(1)).unwrap_or(0)
}

/// A load that cycles through prepared calls.
fn cycling(protocol: Protocol, check: Check, connections: usize, calls: Vec<Call>) -> Load {
    let calls = Arc::new(calls);
    Load {
        protocol,
        check,
        connections,
        requests: Arc::new(move |connection, sequence| {
            Some(calls[spread(connection, connections, sequence, calls.len())].clone())
        }),
    }
}

/// `GET /healthz`: the HTTP ceiling.
pub fn ceiling(connections: usize) -> Load {
    cycling(
        Protocol::Http1,
        Check::Success,
        connections,
        vec![Call::new(Method::GET, "/healthz")],
    )
}

/// Dfns `PUT /auth/registration/code` (no auth) to the given users.
pub fn dfns_resend(seeded: &Seeded, users: &[usize], connections: usize) -> Load {
    let calls = users
        .iter()
        .map(|&index| {
            Call::new(Method::PUT, "/auth/registration/code")
                .json(&json!({"username": dfns_username(index), "orgId": seeded.org_id}))
        })
        .collect();
    cycling(Protocol::Http1, Check::Success, connections, calls)
}

/// Dfns resend to every seeded user.
pub fn dfns_resend_all(seeded: &Seeded, connections: usize) -> Load {
    let users: Vec<usize> = (0..seeded.dfns_users).collect();
    dfns_resend(seeded, &users, connections)
}

/// ZITADEL REST `POST /v2/users/{userId}/email/resend`, the code emailed.
pub fn zitadel_rest_resend(seeded: &Seeded, connections: usize) -> Load {
    let calls = seeded
        .zitadel_users
        .iter()
        .map(|user| {
            Call::new(Method::POST, format!("/v2/users/{user}/email/resend"))
                .bearer(&seeded.token)
                .json(&json!({"sendCode": {}}))
        })
        .collect();
    cycling(Protocol::Http1, Check::Success, connections, calls)
}

/// Appends a protobuf length-delimited field (wire type 2).
fn field(out: &mut Vec<u8>, number: u8, bytes: &[u8]) {
    out.push((number << 3) | 2);
    let mut length = bytes.len();
    while length >= 0x80 {
        out.push(u8::try_from(length & 0x7f).unwrap_or(0) | 0x80);
        length >>= 7;
    }
    out.push(u8::try_from(length).unwrap_or(0));
    out.extend_from_slice(bytes);
}

/// A gRPC message frame: uncompressed, length, message.
fn grpc_frame(message: &[u8]) -> Bytes {
    let mut frame = Vec::with_capacity(5 + message.len());
    frame.push(0);
    frame.extend_from_slice(&u32::try_from(message.len()).unwrap_or(0).to_be_bytes());
    frame.extend_from_slice(message);
    Bytes::from(frame)
}

/// `zitadel.user.v2.ResendEmailCodeRequest { user_id = 1; send_code = 2 {} }`, framed.
pub fn resend_email_code_message(user_id: &str) -> Bytes {
    let mut message = Vec::new();
    field(&mut message, 1, user_id.as_bytes());
    field(&mut message, 2, &[]);
    grpc_frame(&message)
}

/// ZITADEL gRPC `UserService/ResendEmailCode` over HTTP/2, the code emailed.
pub fn zitadel_grpc_resend(seeded: &Seeded, connections: usize) -> Load {
    let calls = seeded
        .zitadel_users
        .iter()
        .map(|user| {
            Call::new(Method::POST, "/zitadel.user.v2.UserService/ResendEmailCode")
                .bearer(&seeded.token)
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(resend_email_code_message(user))
        })
        .collect();
    cycling(Protocol::Http2, Check::Grpc, connections, calls)
}

/// Singularity `POST /api/auth/email/verification/send`, each account with its own session.
pub fn singularity_resend(seeded: &Seeded, connections: usize) -> Load {
    let calls = seeded
        .sessions
        .iter()
        .map(|session| Call::new(Method::POST, "/api/auth/email/verification/send").bearer(session))
        .collect();
    cycling(Protocol::Http1, Check::Success, connections, calls)
}

/// ZITADEL REST `POST /v2/users/human`: a new user per request, its code emailed.
pub fn zitadel_add_human(seeded: &Seeded, connections: usize, run: &str) -> Load {
    let token = seeded.token.clone();
    let run = run.to_owned();
    Load {
        protocol: Protocol::Http1,
        check: Check::Success,
        connections,
        requests: Arc::new(move |connection, sequence| {
            Some(
                Call::new(Method::POST, "/v2/users/human")
                    .bearer(&token)
                    .json(&json!({
                        "profile": {"givenName": "Bench", "familyName": format!("User {sequence}")},
                        "email": {
                            "email": format!("new-{run}-{connection}-{sequence}@bench.example"),
                            "sendCode": {}
                        }
                    })),
            )
        }),
    }
}

/// The calls that fetch a fresh code for each ZITADEL user, handed back (`returnCode`):
/// a resend in the first round (the seeded users have a code pending), a new address in the
/// next ones (a verified address has no code to resend).
pub fn zitadel_code_calls(seeded: &Seeded, round: usize) -> Vec<Call> {
    seeded
        .zitadel_users
        .iter()
        .enumerate()
        .map(|(index, user)| {
            if round == 0 {
                Call::new(Method::POST, format!("/v2/users/{user}/email/resend"))
                    .bearer(&seeded.token)
                    .json(&json!({"returnCode": {}}))
            } else {
                Call::new(Method::POST, format!("/v2/users/{user}/email"))
                    .bearer(&seeded.token)
                    .json(&json!({
                        "email": format!("z{index}r{round}@bench.example"),
                        "returnCode": {}
                    }))
            }
        })
        .collect()
}

/// ZITADEL REST `POST /v2/users/{userId}/email/verify` with each user's code, once each.
pub fn zitadel_verify(seeded: &Seeded, codes: &[String], connections: usize) -> Load {
    let calls: Arc<Vec<Call>> = Arc::new(
        seeded
            .zitadel_users
            .iter()
            .zip(codes)
            .map(|(user, code)| {
                Call::new(Method::POST, format!("/v2/users/{user}/email/verify"))
                    .bearer(&seeded.token)
                    .json(&json!({"verificationCode": code}))
            })
            .collect(),
    );
    Load {
        protocol: Protocol::Http1,
        check: Check::Success,
        connections,
        requests: Arc::new(move |connection, sequence| {
            let index = usize::try_from(sequence)
                .ok()?
                .checked_mul(connections)?
                .checked_add(connection)?;
            calls.get(index).cloned()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resend_email_code_is_framed_protobuf() {
        let frame = resend_email_code_message("us-1");
        assert_eq!(
            frame.as_ref(),
            &[0, 0, 0, 0, 8, 0x0a, 4, b'u', b's', b'-', b'1', 0x12, 0]
        );
    }

    #[test]
    fn connections_walk_every_user() {
        let mut seen: Vec<usize> = (0..4)
            .flat_map(|connection| (0..3).map(move |sequence| spread(connection, 4, sequence, 12)))
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..12).collect::<Vec<_>>());
    }
}
