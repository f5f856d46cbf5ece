//! The hosted verification page over plain HTTP: a GET shows and changes nothing, the form's
//! POST verifies, and a code that does not work offers a new email within the cooldown.

use enroll_core::ids::UserId;
use serde_json::json;

use crate::helpers::TestApp;

const PAGE: &str = "/ui/login/mail/verification";

/// A user added through the REST face with the code handed back, and its hosted link.
async fn pending_user(app: &TestApp, email: &str) -> (String, String, String) {
    let bearer = format!("Bearer {}", app.admin_token);
    let added = app
        .post(
            "/v2/users/human",
            json!({
                "profile": {"givenName": "Ada", "familyName": "Lovelace"},
                "email": {"email": email, "returnCode": {}},
            })
            .to_string(),
            &[("authorization", &bearer)],
        )
        .await
        .json();
    let user_id = added["userId"].as_str().unwrap().to_owned();
    let code = added["emailCode"].as_str().unwrap().to_owned();
    let link = format!("{PAGE}?userID={user_id}&code={code}&orgID={}", app.org_id);
    (user_id, code, link)
}

async fn verified(app: &TestApp, user_id: &str) -> bool {
    app.enroll
        .store()
        .user(&UserId::parse(user_id).unwrap())
        .await
        .unwrap()
        .unwrap()
        .email_verified_at
        .is_some()
}

async fn submit(
    app: &TestApp,
    path: &str,
    fields: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, String) {
    let response = app
        .client
        .post(app.url(path))
        .form(fields)
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.headers().clone(),
        response.text().await.unwrap(),
    )
}

#[tokio::test]
async fn a_get_shows_the_code_and_only_the_post_verifies() {
    let app = TestApp::spawn().await;
    let (user_id, code, link) = pending_user(&app, "ada@example.com").await;
    for _ in 0..3 {
        let page = app.get(&link).await;
        assert_eq!(page.status, 200);
        assert_eq!(page.header("cache-control"), Some("no-store"));
        assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
        assert!(page.body.contains(r#"data-outcome="form""#));
        assert!(page.body.contains(&format!(r#"value="{code}""#)));
        assert!(page.body.contains(r#"<html lang="en">"#));
    }
    assert!(
        !verified(&app, &user_id).await,
        "fetching the link verifies nothing"
    );

    let fields = [
        ("userID", user_id.as_str()),
        ("code", code.as_str()),
        ("orgID", ""),
    ];
    let (status, _, body) = submit(&app, PAGE, &fields).await;
    assert_eq!(status, 200);
    assert!(body.contains(r#"data-outcome="verified""#), "{body}");
    assert!(verified(&app, &user_id).await);
    let (_, _, again) = submit(&app, PAGE, &fields).await;
    assert!(
        again.contains(r#"data-outcome="already-verified""#),
        "{again}"
    );
}

#[tokio::test]
async fn a_wrong_code_offers_a_new_email_once_per_cooldown() {
    let app = TestApp::spawn().await;
    let (user_id, _, _) = pending_user(&app, "grace@example.com").await;
    let fields = [("userID", user_id.as_str()), ("code", "WRONG1")];
    let (status, _, body) = submit(&app, PAGE, &fields).await;
    assert_eq!(status, 400);
    assert!(body.contains(r#"data-outcome="invalid""#) && body.contains(r#"id="resend-button""#));
    assert!(!verified(&app, &user_id).await);

    let resend = format!("{PAGE}/resend");
    let (status, _, body) = submit(&app, &resend, &[("userID", user_id.as_str())]).await;
    assert_eq!(status, 200);
    assert!(body.contains(r#"data-outcome="resent""#), "{body}");
    let mail = app.mails_to("grace@example.com", 1).await.remove(0);
    let text = mail.text_body().unwrap();
    let link = format!("{}{PAGE}?userID={user_id}&code=", app.base_url);
    let start = text.find(&link).expect("the hosted link") + link.len();
    let code = &text[start..start + 6];

    let (status, headers, body) = submit(&app, &resend, &[("userID", user_id.as_str())]).await;
    assert_eq!(status, 429);
    assert_eq!(headers.get("retry-after").unwrap(), "60");
    assert!(body.contains(r#"data-outcome="cooldown""#) && body.contains("60 seconds"));
    assert_eq!(app.mails_to("grace@example.com", 1).await.len(), 1);

    // Unknown users get the same page as known ones.
    let (status, _, body) = submit(&app, &resend, &[("userID", "us-nobody")]).await;
    assert_eq!(status, 200);
    assert!(body.contains(r#"data-outcome="resent""#));

    let (status, _, body) =
        submit(&app, PAGE, &[("userID", user_id.as_str()), ("code", code)]).await;
    assert_eq!(status, 200, "{body}");
    assert!(verified(&app, &user_id).await);
}

#[tokio::test]
async fn pages_speak_the_users_language_then_the_browsers() {
    let app = TestApp::spawn().await;
    let (_, _, link) = pending_user(&app, "anna@example.com").await;
    let german = app
        .client
        .get(app.url(&link))
        .header("accept-language", "de-CH, de;q=0.9, en;q=0.5")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(german.contains(r#"<html lang="de">"#) && german.contains("E-Mail-Adresse bestätigen"));
    let unknown = app.get(&format!("{PAGE}?userID=us-x&code=ABC")).await;
    assert_eq!(
        unknown.status, 200,
        "the form does not tell whether the user exists"
    );
}
