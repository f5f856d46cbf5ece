//! The ZITADEL user service's requests, as protobuf bytes and as canonical JSON: decoding never
//! panics, and what decodes encodes again.
#![no_main]

use enroll_zitadel_proto::zitadel::user::v2::{
    AddHumanUserRequest, ResendEmailCodeRequest, SendEmailCodeRequest, SetEmailRequest,
    VerifyEmailRequest,
};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fn both<T: Message + Default + serde::Serialize + serde::de::DeserializeOwned>(data: &[u8]) {
    if let Ok(message) = T::decode(data) {
        let _ = message.encode_to_vec();
    }
    if let Ok(message) = serde_json::from_slice::<T>(data) {
        let _ = serde_json::to_vec(&message);
    }
}

fuzz_target!(|data: &[u8]| {
    both::<AddHumanUserRequest>(data);
    both::<SetEmailRequest>(data);
    both::<SendEmailCodeRequest>(data);
    both::<ResendEmailCodeRequest>(data);
    both::<VerifyEmailRequest>(data);
});
