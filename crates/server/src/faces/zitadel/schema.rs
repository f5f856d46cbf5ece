//! The REST gateway's JSON, for the OpenAPI document: protobuf's canonical JSON of the
//! `zitadel.user.v2` messages `rest` decodes and writes (the prost types of
//! `enroll_zitadel_proto`, which derive no schema). As protojson does, decoding ignores
//! unknown fields, accepts the proto field names (`given_name`) beside the JSON ones, takes
//! `null` for an optional or message field as absent, and takes an empty body as `{}`; fields
//! holding their default value are left out of answers.

#![allow(
    dead_code,
    reason = "these types only describe the JSON; prost's types carry it"
)]

use std::borrow::Cow;

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

/// `zitadel.object.v2.Organization`; `orgDomain` is not supported (`Unimplemented`).
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ZitadelOrganization)]
pub struct Organization {
    /// An organisation the caller holds `user.write` in (any other id answers
    /// `PermissionDenied`).
    org_id: Option<String>,
}

/// `zitadel.user.v2.SetHumanProfile`.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ZitadelSetHumanProfile)]
pub struct SetHumanProfile {
    #[schema(min_length = 1, max_length = 200)]
    given_name: String,
    #[schema(min_length = 1, max_length = 200)]
    family_name: String,
    /// Accepted and not kept.
    nick_name: Option<String>,
    /// Accepted and not kept.
    display_name: Option<String>,
    /// The language of the user's emails (`en`, `de-CH`); empty is none.
    preferred_language: Option<String>,
    /// Accepted and not kept.
    #[schema(value_type = Option<Gender>)]
    gender: Option<i32>,
}

/// `zitadel.user.v2.Gender`, by name or by number as protojson reads an enum.
pub struct Gender;

impl PartialSchema for Gender {
    fn schema() -> RefOr<Schema> {
        let names = ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some([
                "GENDER_UNSPECIFIED",
                "GENDER_FEMALE",
                "GENDER_MALE",
                "GENDER_DIVERSE",
            ]));
        let numbers = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0))
            .maximum(Some(3));
        OneOfBuilder::new()
            .item(names)
            .item(numbers)
            .description(Some("`zitadel.user.v2.Gender`, by name or by number"))
            .into()
    }
}

impl ToSchema for Gender {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ZitadelGender")
    }
}

/// `isVerified` where only `true` is accepted.
pub struct OnlyTrue;

impl PartialSchema for OnlyTrue {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Boolean)
            .enum_values(Some([true]))
            .into()
    }
}

impl ToSchema for OnlyTrue {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ZitadelIsVerified")
    }
}

/// `zitadel.user.v2.SendEmailVerificationCode`: email the code, linking to `urlTemplate`
/// (Go template syntax with `{{.UserID}}`, `{{.Code}}`, `{{.OrgID}}`, `{{.LoginName}}`,
/// `{{.DisplayName}}`, `{{.PreferredLoginName}}`, `{{.LastEmail}}`) or to the hosted page.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ZitadelSendEmailVerificationCode)]
pub struct SendEmailVerificationCode {
    #[schema(min_length = 1, max_length = 200)]
    url_template: Option<String>,
}

/// `zitadel.user.v2.ReturnEmailVerificationCode`: hand the code back in the answer, send no
/// email.
#[derive(ToSchema)]
#[schema(as = ZitadelReturnEmailVerificationCode)]
pub struct ReturnEmailVerificationCode {}

/// `zitadel.user.v2.SetHumanEmail`; at most one of `sendCode`, `returnCode` and `isVerified`
/// (none: an email linking to the hosted page).
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ZitadelSetHumanEmail)]
pub struct SetHumanEmail {
    #[schema(format = Email, min_length = 1, max_length = 200)]
    email: String,
    send_code: Option<SendEmailVerificationCode>,
    return_code: Option<ReturnEmailVerificationCode>,
    /// `true`: verified from the start, no code.
    is_verified: Option<bool>,
}

/// `zitadel.user.v2.AddHumanUserRequest`. The user is an end user whose username is its
/// address. ZITADEL's other fields are refused as not supported (`Unimplemented`): `userId`,
/// a `username` other than the address, a `phone` number, `password`, `hashedPassword`,
/// `totpSecret`, `metadata`, `idpLinks`, and `organization.orgDomain`.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ZitadelAddHumanUserRequest)]
pub struct AddHumanUserRequest {
    /// The caller's organisation when absent.
    organization: Option<Organization>,
    profile: SetHumanProfile,
    email: SetHumanEmail,
}

/// `zitadel.object.v2.Details`: the user's state after the change.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ZitadelDetails)]
pub struct Details {
    /// The sequence of the user's latest event (a uint64, so a string).
    #[serde(default)]
    #[schema(pattern = r"^[0-9]+$")]
    sequence: String,
    #[serde(default)]
    #[schema(format = DateTime)]
    change_date: String,
    /// The user's organisation.
    #[serde(default)]
    resource_owner: String,
    #[serde(default)]
    #[schema(format = DateTime)]
    creation_date: String,
}

/// `zitadel.user.v2.AddHumanUserResponse`.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ZitadelAddHumanUserResponse)]
pub struct AddHumanUserResponse {
    user_id: String,
    details: Details,
    /// The code, when `returnCode` asked for it.
    #[serde(default)]
    email_code: String,
}

/// `zitadel.user.v2.SetEmailRequest`; the path's `userId` is the user. At most one of
/// `sendCode`, `returnCode` and `isVerified` (none: an email linking to the hosted page).
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ZitadelSetEmailRequest)]
pub struct SetEmailRequest {
    #[schema(format = Email, min_length = 1, max_length = 200)]
    email: String,
    send_code: Option<SendEmailVerificationCode>,
    return_code: Option<ReturnEmailVerificationCode>,
    /// Only `true`: the new address is verified at once.
    #[schema(value_type = Option<OnlyTrue>)]
    is_verified: Option<bool>,
}

/// `zitadel.user.v2.SendEmailCodeRequest` and `ResendEmailCodeRequest`; the path's `userId`
/// is the user. At most one of `sendCode` and `returnCode` (none: an email linking to the
/// hosted page).
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ZitadelEmailCodeRequest)]
pub struct EmailCodeRequest {
    send_code: Option<SendEmailVerificationCode>,
    return_code: Option<ReturnEmailVerificationCode>,
}

/// `zitadel.user.v2.VerifyEmailRequest`; the path's `userId` is the user.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ZitadelVerifyEmailRequest)]
pub struct VerifyEmailRequest {
    #[schema(min_length = 1, max_length = 20)]
    verification_code: String,
}

/// `SetEmailResponse`, `SendEmailCodeResponse` and `ResendEmailCodeResponse`.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ZitadelEmailCodeResponse)]
pub struct EmailCodeResponse {
    details: Details,
    /// The code, when `returnCode` asked for it.
    #[serde(default)]
    verification_code: String,
}

/// `zitadel.user.v2.VerifyEmailResponse`.
#[derive(ToSchema)]
#[schema(as = ZitadelVerifyEmailResponse)]
pub struct VerifyEmailResponse {
    details: Details,
}
