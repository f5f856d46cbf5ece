//! `AddHumanUser`: a user with an address, to verify with a code or verified from the start.

use enroll_core::Error;
use enroll_core::ids::OrgId;
use enroll_core::model::{Locale, Permission};
use enroll_core::service::{CodeDelivery, EmailVerification, NewHuman};
use enroll_zitadel_proto::zitadel::object::v2::organization::Org;
use enroll_zitadel_proto::zitadel::user::v2::{
    AddHumanUserRequest, AddHumanUserResponse, set_human_email,
};

use super::call::{self, Call, details};
use super::error::ZitadelError;

const MESSAGE: &str = "AddHumanUserRequest";

pub async fn add_human_user(
    call: Call,
    request: AddHumanUserRequest,
) -> Result<AddHumanUserResponse, ZitadelError> {
    let new = parse(&call, &request)?;
    let added = call.enroll.add_human(&call.caller, new).await?;
    Ok(AddHumanUserResponse {
        user_id: added.user.id.to_string(),
        details: Some(details(&added.user)),
        email_code: added.code.map(|code| code.expose().to_owned()),
        phone_code: None,
    })
}

fn parse(call: &Call, request: &AddHumanUserRequest) -> Result<NewHuman, ZitadelError> {
    let profile = request
        .profile
        .as_ref()
        .ok_or_else(|| ZitadelError::invalid(MESSAGE, "Profile", "value is required"))?;
    call::text(MESSAGE, "Profile.GivenName", &profile.given_name, 200)?;
    call::text(MESSAGE, "Profile.FamilyName", &profile.family_name, 200)?;
    let human_email = request
        .email
        .as_ref()
        .ok_or_else(|| ZitadelError::invalid(MESSAGE, "Email", "value is required"))?;
    let email = call::email(MESSAGE, "Email.Email", &human_email.email)?;
    if let Some(username) = &request.username {
        call::text(MESSAGE, "Username", username, 200)?;
        // The address is the username here; another one could not be signed in with.
        if !username.trim().eq_ignore_ascii_case(email.as_str()) {
            return Err(unsupported("a username other than the email address"));
        }
    }
    if request.user_id.is_some() {
        return Err(unsupported("choosing the user id (userId)"));
    }
    if request
        .phone
        .as_ref()
        .is_some_and(|phone| !phone.phone.is_empty())
    {
        return Err(unsupported("phone numbers"));
    }
    if request.password_type.is_some() || request.totp_secret.is_some() {
        return Err(unsupported("passwords and TOTP secrets"));
    }
    if !request.metadata.is_empty() || !request.idp_links.is_empty() {
        return Err(unsupported("metadata and identity provider links"));
    }
    use set_human_email::Verification;
    let verification = match &human_email.verification {
        None | Some(Verification::IsVerified(false)) => {
            EmailVerification::Code(call::default_delivery())
        }
        Some(Verification::SendCode(send)) => {
            EmailVerification::Code(call::send_code(MESSAGE, send)?)
        }
        Some(Verification::ReturnCode(_)) => EmailVerification::Code(CodeDelivery::Returned),
        Some(Verification::IsVerified(true)) => EmailVerification::Verified,
    };
    let locale = match profile.preferred_language.as_deref() {
        None | Some("") => None,
        Some(tag) => Some(Locale::parse(tag).ok_or_else(|| {
            ZitadelError::invalid(
                MESSAGE,
                "Profile.PreferredLanguage",
                "value must be a language tag such as en or de-CH",
            )
        })?),
    };
    Ok(NewHuman {
        org_id: org_id(call, request)?,
        email,
        locale,
        verification,
    })
}

/// The organisation named, or the caller's. One that cannot exist is one the caller holds no
/// permission in, as ZITADEL answers.
fn org_id(call: &Call, request: &AddHumanUserRequest) -> Result<OrgId, ZitadelError> {
    match request
        .organization
        .as_ref()
        .and_then(|org| org.org.as_ref())
    {
        None => Ok(call.caller.user.org_id.clone()),
        Some(Org::OrgId(id)) => OrgId::parse(id).ok_or_else(|| {
            Error::PermissionDenied {
                principal: call.caller.describe(),
                permission: Permission::USER_WRITE,
            }
            .into()
        }),
        Some(Org::OrgDomain(_)) => Err(unsupported("organisations named by domain (orgDomain)")),
    }
}

fn unsupported(what: &str) -> ZitadelError {
    ZitadelError::unimplemented(format!("enroll does not support {what} in AddHumanUser"))
}
