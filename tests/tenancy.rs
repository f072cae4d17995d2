//! Tenant isolation with `tenant = @user.tenant`, and sharing with
//! `owner = @user.id || @user.id in shared_with`, across every operation.

// A failed unwrap in a test helper is a test failure with a backtrace, which
// is what we want here.
#![allow(clippy::unwrap_used)]

mod common;

use common::{client, ids, send, TestServer};
use serde_json::{json, Value};

async fn user(
    server: &TestServer,
    admin: &str,
    email: &str,
    tenant: Option<&str>,
) -> (String, String) {
    let created = server
        .create_user(
            admin,
            json!({"email": email, "password": "password-123", "tenant": tenant}),
        )
        .await;
    (
        server.signin(email, "password-123").await,
        created["id"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn two_tenants_never_see_or_touch_each_other() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    let tenant_rule = "tenant = @user.tenant && @user.tenant != null";
    server
        .create_collection(&admin, json!({
            "name": "orders",
            "fields": {"tenant": {"type": "string", "required": true}, "amount": {"type": "number"}},
            "rules": {"list": tenant_rule, "view": tenant_rule, "create": tenant_rule, "update": tenant_rule, "delete": tenant_rule},
            "indexes": ["tenant"]
        }))
        .await;
    let (acme, _) = user(&server, &admin, "a@acme.test", Some("acme")).await;
    let (globex, _) = user(&server, &admin, "g@globex.test", Some("globex")).await;
    let records = server.url("/api/collections/orders/records");

    let acme_batch: Vec<Value> = (0..12)
        .map(|n| json!({"tenant": "acme", "amount": n}))
        .collect();
    let (status, _) = send(client().post(&records).bearer_auth(&acme).json(&acme_batch)).await;
    assert_eq!(status, 201);
    let (status, globex_order) = send(
        client()
            .post(&records)
            .bearer_auth(&globex)
            .json(&json!({"tenant": "globex", "amount": 5})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = send(
        client()
            .post(&records)
            .bearer_auth(&globex)
            .json(&json!({"tenant": "acme", "amount": 1})),
    )
    .await;
    assert_eq!(status, 403, "cannot write into another tenant");

    // Lists, filters and every page of a cursor walk stay inside the tenant.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![("limit", "5".to_owned()), ("sort", "-amount".to_owned())];
        if let Some(c) = &cursor {
            query.push(("cursor", c.clone()));
        }
        let (_, page) = send(client().get(&records).bearer_auth(&acme).query(&query)).await;
        assert!(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["tenant"] == "acme"),
            "{page}"
        );
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 12);
    let (_, page) = send(
        client()
            .get(&records)
            .bearer_auth(&acme)
            .query(&[("filter", "tenant = 'globex' || amount = 5")]),
    )
    .await;
    assert!(
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["tenant"] == "acme"),
        "a filter cannot widen the rule: {page}"
    );
    let (_, page) = send(client().get(&records).bearer_auth(&globex)).await;
    assert_eq!(ids(&page), [globex_order["id"].as_str().unwrap()]);

    let theirs = server.url(&format!(
        "/api/collections/orders/records/{}",
        globex_order["id"].as_str().unwrap()
    ));
    assert_eq!(send(client().get(&theirs).bearer_auth(&acme)).await.0, 404);
    assert_eq!(
        send(
            client()
                .patch(&theirs)
                .bearer_auth(&acme)
                .json(&json!({"amount": 0}))
        )
        .await
        .0,
        404
    );
    assert_eq!(
        send(
            client()
                .put(&theirs)
                .bearer_auth(&acme)
                .json(&json!({"tenant": "acme"}))
        )
        .await
        .0,
        404
    );
    assert_eq!(
        send(client().delete(&theirs).bearer_auth(&acme)).await.0,
        404
    );
    let (status, body) = send(
        client()
            .patch(&theirs)
            .bearer_auth(&globex)
            .json(&json!({"tenant": "acme"})),
    )
    .await;
    assert_eq!(
        status, 403,
        "cannot move a record into another tenant: {body}"
    );
    let (_, still) = send(client().get(&theirs).bearer_auth(&globex)).await;
    assert_eq!(
        (still["amount"].clone(), still["tenant"].clone()),
        (json!(5), json!("globex"))
    );

    // A user with no tenant sees nothing.
    let (drifter, _) = user(&server, &admin, "d@nowhere.test", None).await;
    let (_, page) = send(client().get(&records).bearer_auth(&drifter)).await;
    assert_eq!(ids(&page).len(), 0);
}

#[tokio::test]
async fn a_record_is_private_until_shared() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    let rule = "owner = @user.id || @user.id in shared_with";
    server
        .create_collection(&admin, json!({
            "name": "docs",
            "fields": {"title": {"type": "string"}, "shared_with": {"type": "array"}},
            "rules": {"list": rule, "view": rule, "create": "@user != null", "update": "owner = @user.id", "delete": "owner = @user.id"}
        }))
        .await;
    let (alice, _) = user(&server, &admin, "alice@x.test", None).await;
    let (bob, bob_id) = user(&server, &admin, "bob@x.test", None).await;
    let records = server.url("/api/collections/docs/records");
    let (_, doc) = send(
        client()
            .post(&records)
            .bearer_auth(&alice)
            .json(&json!({"title": "plan", "shared_with": []})),
    )
    .await;
    let url = server.url(&format!(
        "/api/collections/docs/records/{}",
        doc["id"].as_str().unwrap()
    ));

    let (_, page) = send(client().get(&records).bearer_auth(&bob)).await;
    assert_eq!(ids(&page).len(), 0, "not shared yet");
    assert_eq!(send(client().get(&url).bearer_auth(&bob)).await.0, 404);

    let (status, _) = send(
        client()
            .patch(&url)
            .bearer_auth(&alice)
            .json(&json!({"shared_with": [bob_id]})),
    )
    .await;
    assert_eq!(status, 200);
    let (_, page) = send(client().get(&records).bearer_auth(&bob)).await;
    assert_eq!(ids(&page).len(), 1, "shared now");
    assert_eq!(send(client().get(&url).bearer_auth(&bob)).await.0, 200);
    let (status, _) = send(
        client()
            .patch(&url)
            .bearer_auth(&bob)
            .json(&json!({"title": "mine"})),
    )
    .await;
    assert_eq!(status, 403, "sharing grants viewing, not editing");
    assert_eq!(send(client().delete(&url).bearer_auth(&bob)).await.0, 403);

    let (status, _) = send(
        client()
            .patch(&url)
            .bearer_auth(&alice)
            .json(&json!({"shared_with": []})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        send(client().get(&url).bearer_auth(&bob)).await.0,
        404,
        "unshared again"
    );
}
