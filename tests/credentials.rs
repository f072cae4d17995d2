//! A request may present its credential in several places (`Authorization`,
//! `X-Api-Key`, and for realtime `?token=` and a `bearer.` subprotocol).
//! Every credential presented counts: one that is invalid is 401 even next
//! to a good one, and two different valid ones are 400.

// A failed unwrap in a test helper is a test failure with a backtrace, which
// is what we want here.
#![allow(clippy::unwrap_used)]

mod common;

use common::live::Sse;
use common::{client, error_code, send, TestServer};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};

const GARBAGE: &str = "not-a-token";
const UNKNOWN_KEY: &str = "pbk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

async fn api_key(server: &TestServer, admin: &str) -> String {
    let (status, key) = send(
        client()
            .post(server.url("/api/keys"))
            .bearer_auth(admin)
            .json(&json!({"name": "backend", "roles": ["admin"]})),
    )
    .await;
    assert_eq!(status, 201, "{key}");
    key["secret"].as_str().unwrap().to_owned()
}

async fn topics_with(server: &TestServer, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut request = client().get(server.url("/api/topics"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(request).await
}

#[tokio::test]
async fn an_invalid_credential_next_to_a_valid_one_is_401_on_rest() {
    let server = TestServer::start();
    let token = server.admin_token().await;
    let key = api_key(&server, &token).await;
    let bearer = |t: &str| format!("Bearer {t}");

    for headers in [
        vec![
            ("authorization", bearer(&token)),
            ("x-api-key", GARBAGE.into()),
        ],
        vec![
            ("authorization", bearer(&token)),
            ("x-api-key", UNKNOWN_KEY.into()),
        ],
        vec![
            ("authorization", bearer(GARBAGE)),
            ("x-api-key", key.clone()),
        ],
        vec![
            ("authorization", "Basic YTpi".into()),
            ("x-api-key", key.clone()),
        ],
        vec![
            ("authorization", bearer(&token)),
            ("authorization", bearer(GARBAGE)),
        ],
    ] {
        let pairs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let (status, body) = topics_with(&server, &pairs).await;
        assert_eq!(status, 401, "{pairs:?}: {body}");
        assert_eq!(error_code(&body), "unauthorized", "{pairs:?}");
    }

    // Two different credentials that are both valid: which one is meant?
    let (status, body) = topics_with(
        &server,
        &[("authorization", &bearer(&token)), ("x-api-key", &key)],
    )
    .await;
    assert_eq!((status, error_code(&body)), (400, "bad_request"), "{body}");

    // The same credential twice is one credential.
    let (status, body) = topics_with(
        &server,
        &[("authorization", &bearer(&key)), ("x-api-key", &key)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Each alone works.
    assert_eq!(topics_with(&server, &[("x-api-key", &key)]).await.0, 200);
    let auth = bearer(&token);
    assert_eq!(
        topics_with(&server, &[("authorization", &auth)]).await.0,
        200
    );
}

/// The status of a WebSocket handshake to `/api/realtime{query}` with
/// `headers`: 101, or what the server answered instead.
async fn ws_status(server: &TestServer, query: &str, headers: &[(&str, &str)]) -> u16 {
    let url = server.base.replacen("http://", "ws://", 1) + "/api/realtime" + query;
    let mut request = url.into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((_, response)) => response.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("handshake failed: {e}"),
    }
}

#[tokio::test]
async fn an_invalid_credential_next_to_a_valid_one_is_401_on_realtime() {
    let server = TestServer::start();
    let token = server.admin_token().await;
    let key = api_key(&server, &token).await;
    let auth = format!("Bearer {token}");
    let bad_query = format!("?token={GARBAGE}");
    let good_query = format!("?token={token}");
    let bad_protocol = format!("pulsebase.v1, bearer.{GARBAGE}");
    let good_protocol = format!("pulsebase.v1, bearer.{token}");

    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16);
    let cases: [Case; 7] = [
        (&bad_query, vec![("authorization", &auth)], 401),
        (&good_query, vec![("authorization", "Bearer nope")], 401),
        (
            &good_query,
            vec![("sec-websocket-protocol", &bad_protocol)],
            401,
        ),
        (
            "",
            vec![
                ("authorization", &auth),
                ("sec-websocket-protocol", &bad_protocol),
            ],
            401,
        ),
        (&good_query, vec![("x-api-key", &key)], 400),
        (
            &good_query,
            vec![("sec-websocket-protocol", &good_protocol)],
            101,
        ),
        (&good_query, vec![("authorization", &auth)], 101),
    ];
    for (query, headers, expected) in cases {
        assert_eq!(
            ws_status(&server, query, &headers).await,
            expected,
            "{query} {headers:?}"
        );
    }

    let sse_query = |token: &str| format!("topic=_users&token={token}");
    let (status, sse) = Sse::open(&server, &sse_query(GARBAGE), &[("authorization", &auth)]).await;
    let body = sse.body_json().await;
    assert_eq!((status, error_code(&body)), (401, "unauthorized"), "{body}");
    let (status, sse) = Sse::open(&server, &sse_query(&token), &[("x-api-key", UNKNOWN_KEY)]).await;
    assert_eq!(status, 401, "{}", sse.body_json().await);
    let (status, _sse) = Sse::open(&server, &sse_query(&token), &[("authorization", &auth)]).await;
    assert_eq!(status, 200);
}
