//! What every method starts from, whatever the protocol: the authenticated caller, and the
//! checks ZITADEL's proto validation rules make on the request, in its wording.

use std::sync::Arc;

use axum::http::HeaderMap;
use enroll_core::Error;
use enroll_core::email::EmailAddress;
use enroll_core::ids::UserId;
use enroll_core::model::{Principal, User};
use enroll_core::service::{CodeDelivery, Enroll};
use enroll_core::url_template::UrlTemplate;
use enroll_zitadel_proto::Timestamp;
use enroll_zitadel_proto::zitadel::object::v2::Details;
use enroll_zitadel_proto::zitadel::user::v2::SendEmailVerificationCode;

use super::error::ZitadelError;
use crate::faces::bearer;

/// One method call: the core, and who calls.
pub struct Call {
    pub enroll: Arc<Enroll>,
    pub caller: Principal,
}

impl Call {
    /// `Authorization: Bearer <personal access token>`; anything else is Unauthenticated.
    pub async fn authenticate(
        enroll: Arc<Enroll>,
        headers: &HeaderMap,
    ) -> Result<Self, ZitadelError> {
        let token = bearer(headers).ok_or(Error::Unauthenticated)?;
        let caller = enroll.authenticate(token).await?;
        Ok(Self { enroll, caller })
    }
}

/// `details` of a change: the user's sequence after it, its time, the user's organisation.
pub fn details(user: &User) -> Details {
    Details {
        sequence: u64::try_from(user.sequence).unwrap_or_default(),
        change_date: Some(Timestamp::from_unix_millis(user.updated_at.as_millis())),
        resource_owner: user.org_id.to_string(),
        creation_date: None,
    }
}

/// A string field with a length rule (in characters, as the validator counts runes).
pub fn text<'a>(
    message: &str,
    field: &str,
    value: &'a str,
    max: usize,
) -> Result<&'a str, ZitadelError> {
    let length = value.chars().count();
    if length == 0 || length > max {
        return Err(ZitadelError::invalid(
            message,
            field,
            &format!("value length must be between 1 and {max} runes, inclusive"),
        ));
    }
    Ok(value)
}

/// A `user_id` field: 1 to 200 characters, and one of ours, or the user does not exist.
pub fn user_id(message: &str, value: &str) -> Result<UserId, ZitadelError> {
    let value = text(message, "UserId", value, 200)?;
    UserId::parse(value).ok_or_else(ZitadelError::user_not_found)
}

pub fn email(message: &str, field: &str, value: &str) -> Result<EmailAddress, ZitadelError> {
    text(message, field, value, 200)?;
    EmailAddress::parse(value).map_err(|error| {
        ZitadelError::invalid(
            message,
            field,
            &format!("value must be a valid email address | caused by: {error}"),
        )
    })
}

/// `sendCode`: an email, with the link the template makes or the hosted page's.
pub fn send_code(
    message: &str,
    send: &SendEmailVerificationCode,
) -> Result<CodeDelivery, ZitadelError> {
    let url_template = match &send.url_template {
        Some(source) => {
            text(message, "SendCode.UrlTemplate", source, 200)?;
            Some(UrlTemplate::parse(source).map_err(|error| ZitadelError::url_template(&error))?)
        }
        None => None,
    };
    Ok(CodeDelivery::Email { url_template })
}

/// No verification chosen: an email with the hosted page's link.
pub fn default_delivery() -> CodeDelivery {
    CodeDelivery::Email { url_template: None }
}
