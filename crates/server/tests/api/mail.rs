//! Delivery end to end: SMTP outages, the inbox transport and the delivery log.

use std::time::Duration;

use enroll_core::model::MessageState;
use enroll_testkit::smtp::Mode;

use crate::helpers::{Options, TestApp};

#[tokio::test]
async fn the_email_arrives_once_after_smtp_was_down() {
    let app = TestApp::spawn().await;
    app.smtp().set_mode(Mode::RefuseConnections);
    app.create_user("jane@example.com").await;
    // Let the worker fail at least once, then schedule retries by moving the clock.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = app.delivery_log().await;
    assert_eq!(log[0].state, MessageState::Queued, "{log:?}");
    assert!(
        log[0].attempts >= 1 && log[0].last_error.is_some(),
        "{log:?}"
    );

    app.smtp().set_mode(Mode::TempFail);
    app.clock.advance(Duration::from_secs(5));
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    app.smtp().set_mode(Mode::Accept);
    app.clock.advance(Duration::from_secs(60));
    let mails = app.mails_to("jane@example.com", 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.mails_to("jane@example.com", 1).await;

    let log = app.delivery_log().await;
    assert_eq!(log[0].state, MessageState::Sent);
    assert!(
        !log[0].has_content,
        "the sealed content is erased after delivery"
    );
    let message_id = mails[0].message_id.clone().expect("a Message-ID");
    assert!(
        message_id.starts_with(&format!("<{}@", log[0].id)),
        "{message_id}"
    );
}

#[tokio::test]
async fn a_permanent_failure_is_abandoned_and_logged() {
    let app = TestApp::spawn().await;
    app.smtp().set_mode(Mode::PermFail);
    app.create_user("jane@example.com").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let log = app.delivery_log().await;
        if log[0].state == MessageState::Abandoned {
            assert_eq!(log[0].attempts, 1);
            assert!(
                log[0]
                    .last_error
                    .as_deref()
                    .unwrap_or_default()
                    .contains("550"),
                "{log:?}"
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{log:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_inbox_captures_mail_and_shows_it() {
    let app = TestApp::spawn_with(Options {
        smtp: false,
        ..Options::default()
    })
    .await;
    app.create_user("jane@example.com").await;
    app.create_user("joe@example.com").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mails = loop {
        let reply = app.get("/dev/mail?to=jane@example.com").await;
        assert_eq!(reply.status, 200);
        let mails = reply.json();
        if mails.as_array().is_some_and(|mails| !mails.is_empty())
            || tokio::time::Instant::now() > deadline
        {
            break mails;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mails = mails.as_array().unwrap();
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    for key in ["id", "to", "subject", "text", "html", "createdAt"] {
        assert!(mail.get(key).is_some(), "{key} in {mail}");
    }
    assert_eq!(mail["to"], "jane@example.com");
    let code = enroll_testkit::smtp::find_registration_code(mail["text"].as_str().unwrap())
        .expect("a code in the text");
    assert!(app.code_verifies("jane@example.com", &code).await);

    // Both mails are captured before the page is read.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app
        .get("/dev/mail")
        .await
        .json()
        .as_array()
        .map_or(0, Vec::len)
        < 2
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "joe's mail was not captured"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let page = app.get("/dev/mail/ui").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("jane@example.com") && page.body.contains("joe@example.com"));
}

#[tokio::test]
async fn the_dev_inbox_is_off_when_mail_goes_over_smtp() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/dev/mail").await.status, 404);
    assert_eq!(app.get("/dev/mail/ui").await.status, 404);
}
