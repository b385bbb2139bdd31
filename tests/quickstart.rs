//! The quickstart end to end, on SQLite files and on PostgreSQL: its todos stay with
//! their tenant, unknown subdomains get the layer's 404 problem, and the HTML page
//! escapes what users typed.

#[path = "../examples/quickstart/main.rs"]
#[allow(dead_code)]
mod quickstart;

#[path = "common/http.rs"]
#[allow(dead_code)] // Only the status and body of an answer are read here.
mod http;

use axum::http::{Request, StatusCode};
use serde_json::{Value, json};

/// A request to `path` on `host`; the answer's status and body.
async fn call(
    app: &axum::Router,
    host: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, String) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", host);
    let answer = http::send(app, http::with_json(request, body)).await;
    (answer.status, answer.body)
}

#[tokio::test]
async fn todos_stay_with_their_tenant_in_sqlite_files() {
    let dir = std::env::temp_dir().join(format!("tenants-quickstart-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    todos_stay_with_their_tenant(quickstart::app(&dir).await.unwrap()).await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn todos_stay_with_their_tenant_in_postgres_schemas() {
    let url = tenants_test_support::postgres().fresh_database();
    todos_stay_with_their_tenant(quickstart::app_on_postgres(&url).await.unwrap()).await;
    // Starting again on the same database finds the schemas migrated already.
    let again = quickstart::app_on_postgres(&url).await.unwrap();
    let (status, body) = call(&again, "tenant-a.localhost", "GET", "/todos", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(&body)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn todos_stay_with_their_tenant_on_a_tls_only_server() {
    // `DATABASE_URL` with sslmode=verify-full, to a server that refuses plain TCP.
    let url = tenants_test_support::tls_postgres().fresh_database();
    assert!(url.contains("sslmode=verify-full"), "{url}");
    todos_stay_with_their_tenant(quickstart::app_on_postgres(&url).await.unwrap()).await;
}

async fn todos_stay_with_their_tenant(app: axum::Router) {
    let (status, body) = call(
        &app,
        "tenant-a.localhost:3000",
        "POST",
        "/todos",
        Some(json!({"title": "<b>ship</b>"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let created: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(created["title"], "<b>ship</b>");
    assert!(created["id"].is_i64());

    let (status, body) = call(&app, "tenant-a.localhost:3000", "GET", "/todos", None).await;
    assert_eq!(status, StatusCode::OK);
    let todos: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(todos.as_array().unwrap().len(), 1);

    for other in ["tenant-b.localhost:3000", "TENANT-C.localhost"] {
        let (status, body) = call(&app, other, "GET", "/todos", None).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "[]"), "{other}");
    }

    let (status, html) = call(&app, "tenant-a.localhost", "GET", "/", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("&lt;b&gt;ship&lt;/b&gt;") && !html.contains("<b>ship"),
        "{html}"
    );
    assert!(html.contains("Tenant A"));

    let (status, body) = call(&app, "nobody.localhost:3000", "GET", "/todos", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["type"],
        "urn:tenants:problem:unknown-tenant"
    );

    let (status, _) = call(
        &app,
        "tenant-a.localhost",
        "POST",
        "/todos",
        Some(json!({"title": "  "})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = call(&app, "localhost:3000", "GET", "/todos", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "the apex names no tenant");
}
