//! The optional headers of older Dfns SDKs: `X-DFNS-NONCE` and `X-DFNS-APPID`.

use axum::http::HeaderMap;
use enroll_core::Error;
use enroll_core::ids::AppId;
use enroll_core::nonce::Nonce;

/// `base64url(JSON {"uuid", "date"})`, padded or not; absent is fine (the current SDK sends
/// none), malformed is not.
pub fn nonce(headers: &HeaderMap) -> Result<Option<Nonce>, Error> {
    let Some(value) = headers.get("x-dfns-nonce") else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| Error::NonceInvalid)?;
    Nonce::from_header(text).map(Some)
}

/// The app a request names, if any; a malformed id is an unknown app.
pub fn app_id(headers: &HeaderMap) -> Result<Option<AppId>, Error> {
    let Some(value) = headers.get("x-dfns-appid") else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| Error::UnknownApp)?;
    AppId::parse(text.trim()).map(Some).ok_or(Error::UnknownApp)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use base64::Engine as _;
    use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};

    use super::*;

    fn with(name: &'static str, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn a_nonce_as_old_sdks_build_it_parses() {
        let json =
            r#"{"uuid":"2b3c6f1e-8a4d-4c5e-9f70-1a2b3c4d5e6f","date":"2026-11-22T10:00:00.000Z"}"#;
        let header = URL_SAFE_NO_PAD.encode(json);
        let nonce = nonce(&with("x-dfns-nonce", &header)).unwrap().unwrap();
        assert_eq!(nonce.key, "2b3c6f1e-8a4d-4c5e-9f70-1a2b3c4d5e6f");
        assert_eq!(nonce.date.to_rfc3339(), "2026-11-22T10:00:00Z");
        let padded = URL_SAFE.encode(json);
        assert!(
            super::nonce(&with("x-dfns-nonce", &padded))
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn malformed_nonces_are_invalid_and_absent_ones_fine() {
        assert!(nonce(&HeaderMap::new()).unwrap().is_none());
        for bad in [
            "%%%",
            "e30",
            &URL_SAFE_NO_PAD.encode(r#"{"nonce":"x","datetime":"y"}"#),
        ] {
            assert!(
                matches!(nonce(&with("x-dfns-nonce", bad)), Err(Error::NonceInvalid)),
                "{bad}"
            );
        }
    }

    #[test]
    fn app_ids_must_look_like_app_ids() {
        assert!(app_id(&HeaderMap::new()).unwrap().is_none());
        assert!(matches!(
            app_id(&with("x-dfns-appid", "nope")),
            Err(Error::UnknownApp)
        ));
        assert!(
            app_id(&with("x-dfns-appid", "ap-2fh3k-9ak2b-4kd93jfd7sldk3jf"))
                .unwrap()
                .is_some()
        );
    }
}
