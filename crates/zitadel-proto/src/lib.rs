//! The messages and service of ZITADEL's `zitadel.user.v2.UserService` that enroll serves,
//! generated at build time from `proto/` (wire-identical to ZITADEL's, which
//! `tests/node/zitadel-descriptors.mjs` checks against the npm client's own descriptors).
//! Every message serialises as protobuf canonical JSON through serde.

#![allow(clippy::all, clippy::pedantic, missing_docs, unreachable_pub)]

pub mod zitadel {
    pub mod user {
        pub mod v2 {
            include!(concat!(env!("OUT_DIR"), "/zitadel.user.v2.rs"));
            include!(concat!(env!("OUT_DIR"), "/zitadel.user.v2.serde.rs"));
        }
    }
    pub mod object {
        pub mod v2 {
            include!(concat!(env!("OUT_DIR"), "/zitadel.object.v2.rs"));
            include!(concat!(env!("OUT_DIR"), "/zitadel.object.v2.serde.rs"));
        }
    }
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/zitadel.v1.rs"));
        include!(concat!(env!("OUT_DIR"), "/zitadel.v1.serde.rs"));
    }
}

pub mod google {
    pub mod rpc {
        include!(concat!(env!("OUT_DIR"), "/google.rpc.rs"));
    }
}

mod timestamp;

pub use timestamp::Timestamp;

/// The compiled descriptor set of `proto/` (a `google.protobuf.FileDescriptorSet`), for the
/// test that compares it with ZITADEL's.
pub const DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"));

#[cfg(test)]
mod tests {
    //! The reference encodings of zitadel.md §2, made with the npm client's own
    //! `toBinary`/`toJsonString`.

    use prost::Message as _;

    use crate::zitadel::object::v2::Details;
    use crate::zitadel::user::v2::resend_email_code_request::Verification;
    use crate::zitadel::user::v2::{
        ResendEmailCodeRequest, ResendEmailCodeResponse, ReturnEmailVerificationCode,
        SendEmailVerificationCode,
    };

    const ID: &str = "69629023906488334";

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    fn id_field() -> String {
        format!("0a11{}", hex(ID.as_bytes()))
    }

    fn resend(verification: Option<Verification>) -> ResendEmailCodeRequest {
        ResendEmailCodeRequest {
            user_id: ID.to_owned(),
            verification,
        }
    }

    #[test]
    fn an_empty_send_code_is_told_apart_from_no_oneof() {
        let send = resend(Some(Verification::SendCode(
            SendEmailVerificationCode::default(),
        )));
        assert_eq!(hex(&send.encode_to_vec()), format!("{}1200", id_field()));
        let returned = resend(Some(Verification::ReturnCode(
            ReturnEmailVerificationCode {},
        )));
        assert_eq!(
            hex(&returned.encode_to_vec()),
            format!("{}1a00", id_field())
        );
        assert_eq!(hex(&resend(None).encode_to_vec()), id_field());
        let decoded = ResendEmailCodeRequest::decode(send.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded, send);

        let json: ResendEmailCodeRequest =
            serde_json::from_str(&format!(r#"{{"userId":"{ID}","sendCode":{{}}}}"#)).unwrap();
        assert_eq!(json, send);
        let json: ResendEmailCodeRequest =
            serde_json::from_str(&format!(r#"{{"userId":"{ID}"}}"#)).unwrap();
        assert_eq!(json, resend(None));
        let template: ResendEmailCodeRequest = serde_json::from_str(&format!(
            r#"{{"user_id":"{ID}","sendCode":{{"urlTemplate":"https://e/{{{{.Code}}}}"}},"unknown":1}}"#
        ))
        .unwrap();
        assert_eq!(
            template.verification,
            Some(Verification::SendCode(SendEmailVerificationCode {
                url_template: Some("https://e/{{.Code}}".to_owned())
            })),
            "proto names and unknown fields are accepted, as protojson does"
        );
    }

    #[test]
    fn the_response_encodes_as_zitadel_does() {
        let response = ResendEmailCodeResponse {
            details: Some(Details {
                sequence: 2,
                change_date: Some(crate::Timestamp::from_unix_millis(1_735_911_586_823)),
                resource_owner: ID.to_owned(),
                creation_date: None,
            }),
            verification_code: Some("XK4T9P".to_owned()),
        };
        assert_eq!(
            serde_json::to_string(&response).unwrap(),
            format!(
                r#"{{"details":{{"sequence":"2","changeDate":"2025-01-03T13:39:46.823Z","resourceOwner":"{ID}"}},"verificationCode":"XK4T9P"}}"#
            )
        );
        assert_eq!(
            hex(&response.encode_to_vec()),
            format!(
                "0a230802120c08a2d1dfbb0610c0f7b788031a11{}1206584b34543950",
                hex(ID.as_bytes())
            )
        );
    }

    /// Compares every message, enum and method with the descriptors `@zitadel/proto` ships
    /// (installed in `tests/node` by the test command).
    #[test]
    fn the_descriptors_are_zitadels() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/node");
        let file =
            std::env::temp_dir().join(format!("zitadel-descriptors-{}.bin", std::process::id()));
        std::fs::write(&file, crate::DESCRIPTORS).unwrap();
        let output = std::process::Command::new("node")
            .arg("zitadel-descriptors.mjs")
            .arg(&file)
            .current_dir(&dir)
            .output()
            .expect("node runs (the test command installs tests/node)");
        let _ = std::fs::remove_file(&file);
        assert!(
            output.status.success(),
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
