//! `SetEmail`, `SendEmailCode`, `ResendEmailCode` and `VerifyEmail`.

use enroll_core::code::CodeSecret;
use enroll_core::service::{CodeDelivery, EmailVerification};
use enroll_zitadel_proto::zitadel::object::v2::Details;
use enroll_zitadel_proto::zitadel::user::v2::{
    ResendEmailCodeRequest, ResendEmailCodeResponse, SendEmailCodeRequest, SendEmailCodeResponse,
    SendEmailVerificationCode, SetEmailRequest, SetEmailResponse, VerifyEmailRequest,
    VerifyEmailResponse, resend_email_code_request, send_email_code_request, set_email_request,
};

use super::call::{self, Call, details};
use super::error::ZitadelError;

pub async fn set_email(
    call: Call,
    request: SetEmailRequest,
) -> Result<SetEmailResponse, ZitadelError> {
    const MESSAGE: &str = "SetEmailRequest";
    use set_email_request::Verification;
    let email = call::email(MESSAGE, "Email", &request.email)?;
    let verification = match &request.verification {
        None => EmailVerification::Code(call::default_delivery()),
        Some(Verification::SendCode(send)) => {
            EmailVerification::Code(call::send_code(MESSAGE, send)?)
        }
        Some(Verification::ReturnCode(_)) => EmailVerification::Code(CodeDelivery::Returned),
        Some(Verification::IsVerified(true)) => EmailVerification::Verified,
        Some(Verification::IsVerified(false)) => {
            return Err(ZitadelError::invalid(
                MESSAGE,
                "IsVerified",
                "value must equal true",
            ));
        }
    };
    let user_id = call::user_id(MESSAGE, &request.user_id)?;
    let changed = call
        .enroll
        .set_email(&call.caller, user_id, email, verification)
        .await?;
    Ok(SetEmailResponse {
        details: Some(details(&changed.user)),
        verification_code: changed.code.map(|code| code.expose().to_owned()),
    })
}

pub async fn send_email_code(
    call: Call,
    request: SendEmailCodeRequest,
) -> Result<SendEmailCodeResponse, ZitadelError> {
    use send_email_code_request::Verification;
    let choice = match &request.verification {
        None => Choice::Default,
        Some(Verification::SendCode(send)) => Choice::Send(send),
        Some(Verification::ReturnCode(_)) => Choice::Return,
    };
    let (details, verification_code) = new_code(
        call,
        "SendEmailCodeRequest",
        &request.user_id,
        choice,
        false,
    )
    .await?;
    Ok(SendEmailCodeResponse {
        details: Some(details),
        verification_code,
    })
}

pub async fn resend_email_code(
    call: Call,
    request: ResendEmailCodeRequest,
) -> Result<ResendEmailCodeResponse, ZitadelError> {
    use resend_email_code_request::Verification;
    let choice = match &request.verification {
        None => Choice::Default,
        Some(Verification::SendCode(send)) => Choice::Send(send),
        Some(Verification::ReturnCode(_)) => Choice::Return,
    };
    let (details, verification_code) = new_code(
        call,
        "ResendEmailCodeRequest",
        &request.user_id,
        choice,
        true,
    )
    .await?;
    Ok(ResendEmailCodeResponse {
        details: Some(details),
        verification_code,
    })
}

/// The `verification` oneof of the send and resend requests, which are alike.
enum Choice<'a> {
    Default,
    Send(&'a SendEmailVerificationCode),
    Return,
}

/// A new code for the user's address: `details`, and the code when it is handed back.
async fn new_code(
    call: Call,
    message: &str,
    user_id: &str,
    choice: Choice<'_>,
    require_pending: bool,
) -> Result<(Details, Option<String>), ZitadelError> {
    let delivery = match choice {
        Choice::Default => call::default_delivery(),
        Choice::Send(send) => call::send_code(message, send)?,
        Choice::Return => CodeDelivery::Returned,
    };
    let user_id = call::user_id(message, user_id)?;
    let sent = call
        .enroll
        .send_email_code(&call.caller, user_id, delivery, require_pending)
        .await?;
    Ok((
        details(&sent.user),
        sent.code.map(|code| code.expose().to_owned()),
    ))
}

/// Any authenticated caller holding the code may verify: the code is the proof.
pub async fn verify_email(
    call: Call,
    request: VerifyEmailRequest,
) -> Result<VerifyEmailResponse, ZitadelError> {
    const MESSAGE: &str = "VerifyEmailRequest";
    call::text(MESSAGE, "VerificationCode", &request.verification_code, 20)?;
    let user_id = call::user_id(MESSAGE, &request.user_id)?;
    let code = CodeSecret::from_user_input(&request.verification_code);
    if code.expose().is_empty() {
        return Err(ZitadelError::code_empty());
    }
    let user = call.enroll.verify_email(user_id, code).await?;
    Ok(VerifyEmailResponse {
        details: Some(details(&user)),
    })
}
