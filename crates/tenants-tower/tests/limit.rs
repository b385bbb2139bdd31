//! Per-tenant limits: a tenant at its limit gets 429 and takes nothing from another.
#![cfg(feature = "axum")]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::routing::get;
use http::{Request, StatusCode};
use tenants_core::StaticCatalog;
use tenants_core::resolve::HeaderResolver;
use tenants_tower::limit::{Limits, TenantLimitLayer};
use tenants_tower::{CurrentTenant, TenantLayer};
use tokio::sync::Semaphore;
use tower::ServiceExt;

fn app(gate: Arc<Semaphore>) -> Router {
    let catalog = StaticCatalog::from_json_str(
        r#"{"tenants": {
        "noisy": {"model": "pool", "plan": "free"},
        "quiet": {"model": "pool", "plan": "free"},
        "metered": {"model": "pool", "options": {"limits": {"rate_per_second": 0.5, "burst": 2}}}
    }}"#,
    )
    .unwrap();
    async fn handler(
        CurrentTenant(t): CurrentTenant,
        State(gate): State<Arc<Semaphore>>,
    ) -> &'static str {
        if t.id == "noisy" {
            gate.acquire().await.unwrap().forget();
        }
        "ok"
    }
    Router::new()
        .route("/", get(handler))
        .with_state(gate)
        .layer(
            TenantLimitLayer::new(Limits::unlimited())
                .plan("free", Limits::unlimited().concurrency(2)),
        )
        .layer(TenantLayer::new(
            HeaderResolver::new("x-tenant-id"),
            catalog,
        ))
}

fn request(tenant: &str) -> Request<Body> {
    Request::get("/")
        .header("x-tenant-id", tenant)
        .body(Body::empty())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_tenant_does_not_slow_another() {
    let gate = Arc::new(Semaphore::new(0));
    let app = app(gate.clone());

    // Six requests of the noisy tenant: two hold its concurrency slots at the gate,
    // four are refused at once.
    let noisy: Vec<_> = (0..6)
        .map(|_| tokio::spawn(app.clone().oneshot(request("noisy"))))
        .collect();
    let mut refused = 0;
    let mut pending = Vec::new();
    for mut task in noisy {
        match tokio::time::timeout(std::time::Duration::from_millis(500), &mut task).await {
            Ok(response) => {
                let response = response.unwrap().unwrap();
                assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
                assert!(response.headers().contains_key("retry-after"));
                refused += 1;
            }
            Err(_) => pending.push(task),
        }
    }
    assert_eq!(refused, 4);
    assert_eq!(pending.len(), 2, "two noisy requests are in flight");

    // Meanwhile the quiet tenant (same plan, same limits) is served in full.
    let quiet: Vec<_> = (0..20)
        .map(|_| tokio::spawn(app.clone().oneshot(request("quiet"))))
        .collect();
    for task in quiet {
        assert_eq!(task.await.unwrap().unwrap().status(), StatusCode::OK);
    }

    assert!(
        pending.iter().all(|t| !t.is_finished()),
        "still held while quiet was served"
    );

    // Releasing the noisy requests frees the slots: the noisy tenant is served again.
    gate.add_permits(3);
    for task in pending {
        assert_eq!(task.await.unwrap().unwrap().status(), StatusCode::OK);
    }
    let response = app.clone().oneshot(request("noisy")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn rate_limits_come_from_the_tenant_options() {
    let app = app(Arc::new(Semaphore::new(0)));
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(app.clone().oneshot(request("metered")).await.unwrap());
    }
    assert_eq!(statuses[0].status(), StatusCode::OK);
    assert_eq!(statuses[1].status(), StatusCode::OK);
    assert_eq!(statuses[2].status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(statuses[2].headers()["retry-after"], "2");
    assert_eq!(
        statuses[2].headers()["content-type"],
        "application/problem+json"
    );
}
