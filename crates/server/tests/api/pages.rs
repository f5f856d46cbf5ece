//! The hosted verification page over plain HTTP: a GET shows and changes nothing, the form's
//! POST verifies, and a code that does not work offers a new email within the cooldown.

use enroll_core::ids::UserId;
use serde_json::json;

use crate::helpers::{TestApp, run_node_with};

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

/// The page in headless Chromium (`tests/node/verification-page.mjs`): a link scanner's visit
/// changes nothing, the user's click verifies, a wrong code offers one new email per cooldown,
/// and the page speaks the user's saved language, then the browser's.
#[tokio::test]
async fn the_page_works_in_a_real_browser_and_a_scanner_verifies_nothing() {
    let app = TestApp::spawn().await;
    let link = |path: &str| format!("{}{path}", app.base_url);
    let (verify_id, _, verify) = pending_user(&app, "verify@example.com").await;
    let (scanner_id, _, scanner) = pending_user(&app, "scanner@example.com").await;
    let (wrong_id, _, _) = pending_user(&app, "wrong@example.com").await;
    let wrong = format!("{PAGE}?userID={wrong_id}&code=WRONG1&orgID={}", app.org_id);
    let (_, _, french) = pending_user(&app, "francoise@example.com").await;
    let bearer = format!("Bearer {}", app.admin_token);
    let german_user = app
        .post(
            "/v2/users/human",
            json!({
                "profile": {"givenName": "Anna", "familyName": "Schmidt", "preferredLanguage": "de"},
                "email": {"email": "anna@example.com", "returnCode": {}},
            })
            .to_string(),
            &[("authorization", &bearer)],
        )
        .await
        .json();
    let german = format!(
        "{PAGE}?userID={}&code={}&orgID={}",
        german_user["userId"].as_str().unwrap(),
        german_user["emailCode"].as_str().unwrap(),
        app.org_id
    );
    let config = json!({
        "baseUrl": app.base_url,
        "screenshots": null,
        "links": {
            "verify": link(&verify),
            "scanner": link(&scanner),
            "wrong": link(&wrong),
            "german": link(&german),
            "french": link(&french),
        },
    });
    let config_path = app.data_dir.path().join("verification-page.json");
    std::fs::write(&config_path, config.to_string()).unwrap();

    let done = run_node_with(
        "verification-page.mjs",
        &[config_path.to_str().unwrap()],
        &[],
    )
    .await;
    assert_eq!(
        done["checks"],
        json!(["scanner", "verify", "wrong", "german", "french", "typed"]),
        "{done}"
    );
    assert!(verified(&app, &verify_id).await, "the click verified");
    assert!(
        !verified(&app, &scanner_id).await,
        "the scanner's visits verified nothing"
    );
    assert!(!verified(&app, &wrong_id).await);
    let resent = app.mails_to("wrong@example.com", 1).await;
    assert_eq!(resent.len(), 1, "one new email per cooldown");
}
