//! `/openapi.json` against the router: every REST route of the faces is documented with the
//! codes it answers, and the documented error bodies are the ones the server writes.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::helpers::{Options, TestApp};

async fn document() -> (TestApp, Value) {
    let app = TestApp::spawn_with(Options {
        smtp: false,
        ..Options::default()
    })
    .await;
    let reply = app.get("/openapi.json").await;
    assert_eq!(reply.status, 200);
    let document = reply.json();
    (app, document)
}

/// `(method, path)` of every `.route("<path>", …<method>(…)…)` in a face's source (the method
/// router may be wrapped, as in `floored(post(…), …)`), the path's parameters written `{}`.
fn routes_in(source: &str) -> BTreeSet<(String, String)> {
    const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];
    let mut routes = BTreeSet::new();
    for (start, _) in source.match_indices(".route(") {
        let rest = &source[start + ".route(".len()..];
        let rest = rest.trim_start().strip_prefix('"').expect("a path literal");
        let (path, rest) = rest.split_once('"').expect("the end of the path");
        // The rest of the call: up to the parenthesis that closes `.route(`.
        let mut depth = 1;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                depth += match c {
                    '(' => 1,
                    ')' => -1,
                    _ => 0,
                };
                depth == 0
            })
            .map(|(at, _)| at)
            .expect("the end of the route");
        let call = &rest[..end];
        let mut methods = Vec::new();
        for method in METHODS {
            let called = format!("{method}(");
            for (at, _) in call.match_indices(&called) {
                if !call[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                    methods.push(method);
                }
            }
        }
        assert_eq!(methods.len(), 1, "{path} is routed with one method: {call}");
        routes.insert((methods[0].to_owned(), without_parameter_names(path)));
    }
    routes
}

fn without_parameter_names(path: &str) -> String {
    let mut out = String::new();
    let mut in_parameter = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_parameter = true;
                out.push_str("{}");
            }
            '}' => in_parameter = false,
            _ if in_parameter => {}
            c => out.push(c),
        }
    }
    out
}

/// The routers of the faces with REST endpoints (the ZITADEL face's gRPC, gRPC-Web and Connect
/// route is not REST, and lives in its `mod.rs`).
fn face_routes() -> BTreeSet<(String, String)> {
    let faces = concat!(env!("CARGO_MANIFEST_DIR"), "/src/faces");
    let mut routes = BTreeSet::new();
    for file in ["dfns/mod.rs", "zitadel/rest.rs", "singularity/mod.rs"] {
        let source = std::fs::read_to_string(format!("{faces}/{file}")).expect("the face's source");
        let found = routes_in(&source);
        assert!(!found.is_empty(), "{file} has routes");
        routes.extend(found);
    }
    routes
}

fn documented_routes(document: &Value) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("a path item").keys() {
            routes.insert((method.clone(), without_parameter_names(path)));
        }
    }
    routes
}

/// A route added to a face without its `utoipa::path` (or a documented path no route serves)
/// fails here.
#[tokio::test]
async fn every_rest_route_of_the_faces_is_documented() {
    let (_app, document) = document().await;
    let routed = face_routes();
    let documented = documented_routes(&document);
    assert_eq!(
        routed.difference(&documented).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "routed and not documented"
    );
    assert_eq!(
        documented.difference(&routed).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "documented and not routed"
    );
    // The parser sees every face: 12 Singularity, 10 Dfns and 5 ZITADEL routes.
    assert_eq!(routed.len(), 11 + 10 + 5);
    let operation_ids: Vec<&str> = document["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .filter_map(|operation| operation["operationId"].as_str())
        .filter(|id| id.starts_with("Dfns") || id.starts_with("Zitadel"))
        .collect();
    assert_eq!(
        operation_ids.len(),
        operation_ids.iter().collect::<BTreeSet<_>>().len(),
        "operation ids are unique: {operation_ids:?}"
    );
}

/// Each Dfns and ZITADEL endpoint lists the statuses it answers with, each error in its face's
/// error body, under its face's tag and credentials.
#[tokio::test]
async fn dfns_and_zitadel_endpoints_list_their_codes_and_credentials() {
    let (_app, document) = document().await;
    let dfns_error = "#/components/schemas/DfnsErrorResponse";
    let zitadel_error = "#/components/schemas/ZitadelError";
    for (method, path, tag, codes, security) in [
        (
            "put",
            "/auth/registration/code",
            "Dfns",
            &[200, 400, 401, 413, 429, 500, 503][..],
            json!([{}, {"dfns_app_id": []}]),
        ),
        (
            "put",
            "/auth/manage/users/send-registration-email",
            "Dfns",
            &[200, 400, 401, 403, 413, 429, 500, 503],
            json!([{}, {"dfns_app_id": []}]),
        ),
        (
            "post",
            "/auth/registration/init",
            "Dfns",
            &[200, 400, 401, 403, 413, 500, 503],
            json!([{}, {"dfns_app_id": []}]),
        ),
        (
            "post",
            "/auth/registration",
            "Dfns",
            &[200, 400, 401, 413, 500, 503],
            json!([{"bearer": []}, {"bearer": [], "dfns_app_id": []}]),
        ),
        (
            "post",
            "/auth/login/init",
            "Dfns",
            &[200, 400, 401, 403, 413, 500, 503],
            json!([{}, {"dfns_app_id": []}]),
        ),
        (
            "post",
            "/auth/login",
            "Dfns",
            &[200, 400, 401, 403, 413, 500, 503],
            json!([{}, {"dfns_app_id": []}]),
        ),
        (
            "put",
            "/auth/logout",
            "Dfns",
            &[200, 400, 401, 413, 500, 503],
            json!([{"bearer": []}, {"bearer": [], "dfns_app_id": []}]),
        ),
        (
            "post",
            "/auth/action/init",
            "Dfns",
            &[200, 400, 401, 403, 413, 500, 503],
            json!([{"bearer": []}, {"bearer": [], "dfns_app_id": []}]),
        ),
        (
            "post",
            "/auth/action",
            "Dfns",
            &[200, 400, 401, 403, 413, 500, 503],
            json!([{"bearer": []}, {"bearer": [], "dfns_app_id": []}]),
        ),
        (
            "post",
            "/auth/users",
            "Dfns",
            &[200, 400, 401, 403, 409, 413, 500, 503],
            json!([
                {"bearer": [], "dfns_user_action": []},
                {"bearer": [], "dfns_user_action": [], "dfns_app_id": []}
            ]),
        ),
        (
            "post",
            "/v2/users/human",
            "ZITADEL",
            &[200, 400, 401, 403, 404, 409, 429, 500, 501, 503],
            json!([{"bearer": []}]),
        ),
        (
            "post",
            "/v2/users/{userId}/email",
            "ZITADEL",
            &[200, 400, 401, 403, 404, 409, 429, 500, 503],
            json!([{"bearer": []}]),
        ),
        (
            "post",
            "/v2/users/{userId}/email/send",
            "ZITADEL",
            &[200, 400, 401, 403, 404, 429, 500, 503],
            json!([{"bearer": []}]),
        ),
        (
            "post",
            "/v2/users/{userId}/email/resend",
            "ZITADEL",
            &[200, 400, 401, 403, 404, 429, 500, 503],
            json!([{"bearer": []}]),
        ),
        (
            "post",
            "/v2/users/{userId}/email/verify",
            "ZITADEL",
            &[200, 400, 401, 404, 500, 503],
            json!([{"bearer": []}]),
        ),
    ] {
        let operation = &document["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is documented");
        assert_eq!(operation["tags"], json!([tag]), "{method} {path}");
        assert_eq!(operation["security"], security, "{method} {path}");
        assert!(
            operation["requestBody"]["content"]["application/json"].is_object(),
            "{method} {path} takes JSON"
        );
        let responses = operation["responses"].as_object().unwrap();
        let listed: Vec<u16> = responses.keys().map(|code| code.parse().unwrap()).collect();
        let mut sorted = listed.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, codes, "{method} {path}");
        let error = if tag == "Dfns" {
            dfns_error
        } else {
            zitadel_error
        };
        for (code, response) in responses {
            let schema = &response["content"]["application/json"]["schema"]["$ref"];
            if code.starts_with('2') {
                assert!(
                    schema.as_str().is_some_and(|name| name != error),
                    "{method} {path} {code}"
                );
            } else {
                assert_eq!(schema, error, "{method} {path} {code}");
            }
        }
    }
    // A cooldown says when to try again.
    let resend = &document["paths"]["/auth/registration/code"]["put"]["responses"]["429"];
    assert!(resend["headers"]["Retry-After"].is_object());
    // The gateway takes an empty body as `{}`; so does Dfns's logout, and nothing else.
    assert_eq!(
        document["paths"]["/v2/users/{userId}/email/verify"]["post"]["requestBody"]["required"],
        false
    );
    assert_eq!(
        document["paths"]["/auth/logout"]["put"]["requestBody"]["required"],
        false
    );
    assert_eq!(
        document["paths"]["/auth/login"]["post"]["requestBody"]["required"],
        true
    );
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(
        (
            &schemes["dfns_app_id"]["in"],
            &schemes["dfns_app_id"]["name"]
        ),
        (&json!("header"), &json!("X-DFNS-APPID"))
    );
    assert_eq!(schemes["dfns_user_action"]["name"], "X-DFNS-USERACTION");
    let tags: Vec<&str> = document["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tag| tag["name"].as_str().unwrap())
        .collect();
    assert_eq!(tags, ["Dfns", "Singularity", "ZITADEL"]);
}

/// The keys of an object, sorted.
fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap_or_else(|| panic!("an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

/// The properties a schema of the document names, sorted, and whether it allows others.
fn properties<'a>(document: &'a Value, schema: &str) -> (Vec<&'a str>, Vec<&'a str>) {
    let schema = &document["components"]["schemas"][schema];
    let mut required: Vec<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|name| name.as_str().unwrap())
        .collect();
    required.sort_unstable();
    (keys(&schema["properties"]), required)
}

/// The error schemas are the bodies the faces write: every property required, none other.
#[tokio::test]
async fn the_documented_error_bodies_are_the_ones_the_faces_write() {
    let (app, document) = document().await;

    let dfns = app
        .client
        .post(app.url("/auth/login/init"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(dfns.status(), 400);
    let body: Value = dfns.json().await.unwrap();
    let (names, required) = properties(&document, "DfnsErrorResponse");
    assert_eq!((keys(&body), &required), (names.clone(), &names));
    let (names, required) = properties(&document, "DfnsErrorMessage");
    assert_eq!((keys(&body["error"]), &required), (names.clone(), &names));

    let zitadel = app
        .client
        .post(app.url("/v2/users/us-nobody/email/send"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(zitadel.status(), 404);
    let body: Value = zitadel.json().await.unwrap();
    let (names, required) = properties(&document, "ZitadelError");
    assert_eq!((keys(&body), &required), (names.clone(), &names));
    let (names, required) = properties(&document, "ZitadelErrorDetail");
    assert_eq!(
        (keys(&body["details"][0]), &required),
        (names.clone(), &names)
    );
    assert_eq!(body["code"], 5);
}
