//! The JSON bodies of every REST endpoint of the three faces, sent to the real server (SQLite in
//! a temporary directory, mail captured) over TCP: whatever the bytes, the answer is never a 5xx
//! other than 501 (a ZITADEL field the server does not implement), and its body is JSON in the
//! face's error format.
#![no_main]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, OnceLock};

use enroll::config::Settings;
use enroll::startup::Application;
use enroll_core::clock::SystemClock;
use libfuzzer_sys::fuzz_target;

struct Server {
    address: SocketAddr,
    bearer: String,
    user_id: String,
    org_id: String,
}

/// (method, path, whether the admin's bearer token goes along); `{user}` and `{org}` name the
/// admin user and its organisation.
const ENDPOINTS: &[(&str, &str, bool)] = &[
    ("PUT", "/auth/registration/code", false),
    ("PUT", "/auth/manage/users/send-registration-email", true),
    ("POST", "/auth/registration/init", false),
    ("POST", "/auth/registration", true),
    ("POST", "/auth/login/init", false),
    ("POST", "/auth/login", false),
    ("PUT", "/auth/logout", false),
    ("POST", "/auth/action/init", true),
    ("POST", "/auth/action", true),
    ("POST", "/auth/users", true),
    ("POST", "/v2/users/human", true),
    ("POST", "/v2/users/{user}/email", true),
    ("POST", "/v2/users/{user}/email/send", true),
    ("POST", "/v2/users/{user}/email/resend", true),
    ("POST", "/v2/users/{user}/email/verify", true),
    ("POST", "/zitadel.user.v2.UserService/AddHumanUser", true),
    ("POST", "/zitadel.user.v2.UserService/VerifyEmail", true),
    ("POST", "/api/auth/register", false),
    ("POST", "/api/auth/login", false),
    ("POST", "/api/auth/refresh", false),
    ("POST", "/api/auth/email/verification?token=x", false),
    ("POST", "/api/auth/password/reset-request", false),
    ("POST", "/api/auth/password/reset?token=x", false),
];

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let data_dir = std::env::temp_dir().join(format!("enroll-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data_dir);
        let settings = Settings {
            listen: "127.0.0.1:0".parse().expect("an address"),
            data_dir,
            answer_floor_ms: 0,
            max_emails_per_client_per_hour: 0,
            max_emails_per_address: u32::MAX,
            max_emails_per_org_per_hour: 0,
            ..Settings::default()
        };
        let (started, ready) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().expect("a runtime");
            runtime.block_on(async move {
                let application = Application::build(&settings, Arc::new(SystemClock))
                    .await
                    .expect("the server starts");
                let (bootstrap, _) = application.bootstrap().expect("a first start").clone();
                started
                    .send(Server {
                        address: application.address(),
                        bearer: bootstrap.admin_token.clone(),
                        user_id: bootstrap.admin_user_id.clone(),
                        org_id: bootstrap.org_id.clone(),
                    })
                    .expect("the fuzzer waits");
                application
                    .run_until_stopped(std::future::pending())
                    .await
                    .expect("the server runs");
            });
        });
        ready.recv().expect("the server started")
    })
}

fuzz_target!(|input: (u8, Vec<u8>)| {
    let (choice, body) = input;
    let server = server();
    let (method, path, authorised) = ENDPOINTS[usize::from(choice) % ENDPOINTS.len()];
    let path = path
        .replace("{user}", &server.user_id)
        .replace("{org}", &server.org_id);
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if authorised {
        request.push_str(&format!("Authorization: Bearer {}\r\n", server.bearer));
    }
    request.push_str("\r\n");
    let mut stream = TcpStream::connect(server.address).expect("the server listens");
    stream.write_all(request.as_bytes()).expect("the request goes");
    stream.write_all(&body).expect("the body goes");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("the answer comes");
    let text = String::from_utf8_lossy(&answer);
    let status: u16 = text
        .split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text}"));
    assert!(
        status < 500 || status == 501,
        "{method} {path} answered {status}: {text}"
    );
    let (_, answer_body) = text.split_once("\r\n\r\n").unwrap_or_default();
    if status >= 400 && !answer_body.is_empty() {
        assert!(
            serde_json::from_str::<serde_json::Value>(answer_body).is_ok(),
            "{method} {path} answered {status} without JSON: {text}"
        );
    }
});
