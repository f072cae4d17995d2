//! Users admin API: admins manage users; identity changes revoke
//! old tokens at once; the last admin stays.

// A failed unwrap in a test helper is a test failure with a backtrace, which
// is what we want here.
#![allow(clippy::unwrap_used)]

mod common;

use common::{client, error_code, send, Options, TestServer, ADMIN_EMAIL, ADMIN_PASSWORD};
use serde_json::{json, Value};

async fn patch(server: &TestServer, admin: &str, id: &str, body: Value) -> (u16, Value) {
    send(
        client()
            .patch(server.url(&format!("/api/users/{id}")))
            .bearer_auth(admin)
            .json(&body),
    )
    .await
}

async fn me(server: &TestServer, token: &str) -> u16 {
    send(client().get(server.url("/api/auth/me")).bearer_auth(token))
        .await
        .0
}

#[tokio::test]
async fn admins_create_list_get_update_and_delete_users() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    let user = server
        .create_user(
            &admin,
            json!({
                "email": "Ann@Example.com", "password": "password-123", "name": "Ann",
                "roles": ["collector"], "groups": ["north"], "tenant": "acme"
            }),
        )
        .await;
    assert_eq!(user["email"], "ann@example.com");
    assert_eq!(
        (
            user["roles"].clone(),
            user["groups"].clone(),
            user["tenant"].clone()
        ),
        (json!(["collector"]), json!(["north"]), json!("acme"))
    );
    assert!(user.get("password_hash").is_none());
    for n in 0..4 {
        server.create_user(&admin, json!({"email": format!("u{n}@example.com"), "password": "password-123", "tenant": "other"})).await;
    }
    let (status, body) = send(
        client()
            .post(server.url("/api/users"))
            .bearer_auth(&admin)
            .json(&json!({"email": "ann@example.com", "password": "password-123"})),
    )
    .await;
    assert_eq!((status, error_code(&body)), (409, "conflict"));
    let (status, body) = send(
        client()
            .post(server.url("/api/users"))
            .bearer_auth(&admin)
            .json(&json!({"email": "x@example.com", "password": "short"})),
    )
    .await;
    assert_eq!((status, error_code(&body)), (400, "validation_failed"));

    let (_, page) = send(
        client()
            .get(server.url("/api/users"))
            .bearer_auth(&admin)
            .query(&[("limit", "4")]),
    )
    .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 4);
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let (_, rest) = send(
        client()
            .get(server.url("/api/users"))
            .bearer_auth(&admin)
            .query(&[("limit", "4"), ("cursor", cursor.as_str())]),
    )
    .await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 2, "6 users in all");
    assert_eq!(rest["next_cursor"], Value::Null);
    let (_, filtered) = send(
        client()
            .get(server.url("/api/users"))
            .bearer_auth(&admin)
            .query(&[("filter", "tenant = 'other'")]),
    )
    .await;
    assert_eq!(filtered["items"].as_array().unwrap().len(), 4);

    let id = user["id"].as_str().unwrap();
    let (status, fetched) = send(
        client()
            .get(server.url(&format!("/api/users/{id}")))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!((status, fetched.clone()), (200, user.clone()));
    let (status, updated) = patch(
        &server,
        &admin,
        id,
        json!({"name": "Ann B", "tenant": null, "groups": []}),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(
        (
            updated["name"].clone(),
            updated["tenant"].clone(),
            updated["groups"].clone()
        ),
        (json!("Ann B"), Value::Null, json!([]))
    );
    let (status, _) = send(
        client()
            .delete(server.url(&format!("/api/users/{id}")))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = send(
        client()
            .get(server.url(&format!("/api/users/{id}")))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn identity_changes_revoke_old_tokens_at_once() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    let user = server
        .create_user(
            &admin,
            json!({"email": "bo@example.com", "password": "password-123", "roles": ["viewer"]}),
        )
        .await;
    let id = user["id"].as_str().unwrap().to_owned();

    let token = server.signin("bo@example.com", "password-123").await;
    patch(&server, &admin, &id, json!({"name": "Bo"})).await;
    assert_eq!(me(&server, &token).await, 200, "a name change keeps tokens");
    patch(
        &server,
        &admin,
        &id,
        json!({"roles": ["viewer", "collector"]}),
    )
    .await;
    assert_eq!(me(&server, &token).await, 401, "a role change revokes them");

    let (_, session) = send(
        client()
            .post(server.url("/api/auth/signin"))
            .json(&json!({"email": "bo@example.com", "password": "password-123"})),
    )
    .await;
    let token = session["token"].as_str().unwrap().to_owned();
    patch(
        &server,
        &admin,
        &id,
        json!({"password": "new-password-456"}),
    )
    .await;
    assert_eq!(
        me(&server, &token).await,
        401,
        "a password change revokes them"
    );
    let (status, _) = send(
        client()
            .post(server.url("/api/auth/refresh"))
            .json(&json!({"refresh_token": session["refresh_token"]})),
    )
    .await;
    assert_eq!(status, 401, "and the refresh tokens issued before it");
    let (status, _) = send(
        client()
            .post(server.url("/api/auth/signin"))
            .json(&json!({"email": "bo@example.com", "password": "password-123"})),
    )
    .await;
    assert_eq!(status, 401, "the old password is gone");

    let token = server.signin("bo@example.com", "new-password-456").await;
    patch(&server, &admin, &id, json!({"disabled": true})).await;
    assert_eq!(me(&server, &token).await, 401, "disabling revokes them");
    let (status, _) = send(
        client()
            .post(server.url("/api/auth/signin"))
            .json(&json!({"email": "bo@example.com", "password": "new-password-456"})),
    )
    .await;
    assert_eq!(status, 401, "a disabled user cannot sign in");

    patch(&server, &admin, &id, json!({"disabled": false})).await;
    let token = server.signin("bo@example.com", "new-password-456").await;
    let (status, _) = send(
        client()
            .delete(server.url(&format!("/api/users/{id}")))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(me(&server, &token).await, 401, "deleting revokes them");
}

#[tokio::test]
async fn the_last_admin_cannot_be_removed_and_non_admins_are_refused() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    let (_, me_body) = send(client().get(server.url("/api/auth/me")).bearer_auth(&admin)).await;
    let admin_id = me_body["id"].as_str().unwrap().to_owned();
    let (status, body) = patch(&server, &admin, &admin_id, json!({"roles": []})).await;
    assert_eq!((status, error_code(&body)), (409, "conflict"));
    let (status, _) = patch(&server, &admin, &admin_id, json!({"disabled": true})).await;
    assert_eq!(status, 409);
    let (status, _) = send(
        client()
            .delete(server.url(&format!("/api/users/{admin_id}")))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!(status, 409);

    server
        .create_user(
            &admin,
            json!({"email": "second@example.com", "password": "password-123", "roles": ["admin"]}),
        )
        .await;
    let (status, _) = patch(&server, &admin, &admin_id, json!({"roles": ["viewer"]})).await;
    assert_eq!(status, 200, "with a second admin the first may step down");

    let viewer = server.signin(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (status, body) = send(client().get(server.url("/api/users")).bearer_auth(&viewer)).await;
    assert_eq!((status, error_code(&body)), (403, "forbidden"));
    let (status, _) = send(client().get(server.url("/api/users"))).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn an_empty_tenant_is_no_tenant() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    let user = server
        .create_user(
            &admin,
            json!({"email": "t@example.com", "password": "password-123", "tenant": ""}),
        )
        .await;
    assert_eq!(user["tenant"], Value::Null, "{user}");
    let id = user["id"].as_str().unwrap().to_owned();
    let (_, user) = patch(&server, &admin, &id, json!({"tenant": "acme"})).await;
    assert_eq!(user["tenant"], "acme");
    let (_, user) = patch(&server, &admin, &id, json!({"tenant": ""})).await;
    assert_eq!(user["tenant"], Value::Null, "{user}");
}

#[tokio::test]
async fn a_refused_user_names_every_bad_field_at_once() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    let (status, body) = send(
        client()
            .post(server.url("/api/users"))
            .bearer_auth(&admin)
            .json(&json!({"email": "bad", "password": "short", "roles": ["a b"], "groups": [""]})),
    )
    .await;
    assert_eq!((status, error_code(&body)), (400, "validation_failed"));
    let details = body["error"]["details"].as_object().expect("details");
    let mut named: Vec<&str> = details.keys().map(String::as_str).collect();
    named.sort_unstable();
    assert_eq!(named, ["email", "groups", "password", "roles"], "{body}");
}

/// A NUL or another control character in an email would be stored, shown
/// in the admin UI and sent to mail tools as is: every way in refuses it.
#[tokio::test]
async fn control_characters_in_an_email_are_refused_everywhere() {
    let server = TestServer::start_with(Options {
        env: vec![("PULSEBASE_ALLOW_SIGNUP".into(), "true".into())],
        ..Options::default()
    });
    let admin = server.admin_token().await;
    let user = server
        .create_user(
            &admin,
            json!({"email": "fine@example.com", "password": "password-123"}),
        )
        .await;
    let id = user["id"].as_str().unwrap().to_owned();
    let names_email = |(status, body): (u16, Value)| {
        assert_eq!(
            (status, error_code(&body)),
            (400, "validation_failed"),
            "{body}"
        );
        assert!(body["error"]["details"]["email"].is_string(), "{body}");
    };
    for email in [
        "nul\u{0}@example.com",
        "bell@exa\u{7}mple.com",
        "del\u{7f}@example.com",
        "esc\u{1b}[31m@example.com",
        "c1\u{9b}@example.com",
    ] {
        let body = json!({"email": email, "password": "password-123"});
        names_email(
            send(
                client()
                    .post(server.url("/api/users"))
                    .bearer_auth(&admin)
                    .json(&body),
            )
            .await,
        );
        names_email(send(client().post(server.url("/api/auth/signup")).json(&body)).await);
        names_email(patch(&server, &admin, &id, json!({"email": email})).await);
    }
    let (_, stored) = send(
        client()
            .get(server.url(&format!("/api/users/{id}")))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!(stored["email"], "fine@example.com");
}

/// Many admins' edits of one user at once: every change applies to the
/// user as stored, so a rename that read the user before a disable cannot
/// write the old `disabled: false` (and the old token generation) back.
#[tokio::test]
async fn concurrent_edits_cannot_undo_a_disable_or_a_role_change() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    let password = "password-123";
    let user = server
        .create_user(
            &admin,
            json!({"email": "busy@example.com", "password": password, "roles": ["a"]}),
        )
        .await;
    let id = user["id"].as_str().unwrap().to_owned();
    for round in 0..4 {
        let token = server.signin("busy@example.com", password).await;
        // Round by round: a disable, then a role change, among renames.
        let decisive = if round % 2 == 0 {
            json!({"disabled": true})
        } else {
            json!({"roles": [format!("r{round}")]})
        };
        let edits = (0..40).map(|i| {
            let body = if i == 20 {
                decisive.clone()
            } else {
                json!({"name": format!("name {round}.{i}")})
            };
            let request = client()
                .patch(server.url(&format!("/api/users/{id}")))
                .bearer_auth(&admin)
                .json(&body);
            tokio::spawn(send(request))
        });
        for edit in edits.collect::<Vec<_>>() {
            let (status, body) = edit.await.unwrap();
            assert_eq!(status, 200, "{body}");
        }
        let (_, stored) = send(
            client()
                .get(server.url(&format!("/api/users/{id}")))
                .bearer_auth(&admin),
        )
        .await;
        if round % 2 == 0 {
            assert_eq!(stored["disabled"], true, "round {round}: {stored}");
        } else {
            assert_eq!(
                stored["roles"],
                json!([format!("r{round}")]),
                "round {round}: {stored}"
            );
        }
        assert_eq!(
            me(&server, &token).await,
            401,
            "round {round}: the old token still works"
        );
        // Ready for the next round.
        let (status, _) = patch(&server, &admin, &id, json!({"disabled": false})).await;
        assert_eq!(status, 200);
    }
}
