//! Metering counts each tenant's requests, status classes, latency and bytes, and caps
//! the number of tenant labels.
#![cfg(all(feature = "axum", feature = "metrics"))]

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tenants_core::StaticCatalog;
use tenants_core::resolve::HeaderResolver;
use tenants_tower::metering::MeteringLayer;
use tenants_tower::{CurrentTenant, TenantLayer};
use tower::ServiceExt;

#[tokio::test]
async fn counts_per_tenant_with_bounded_labels() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    let catalog = StaticCatalog::from_json_str(
        r#"{"tenants": {"a": {"model": "pool"}, "b": {"model": "pool"}, "c": {"model": "pool"}}}"#,
    )
    .unwrap();
    let app = Router::new()
        .route(
            "/",
            get(|CurrentTenant(t): CurrentTenant| async move {
                if t.id == "b" {
                    (StatusCode::NOT_FOUND, "missing")
                } else {
                    (StatusCode::OK, "hello")
                }
            })
            .post(|body: String| async move { body }),
        )
        .layer(MeteringLayer::new().max_tenants(2))
        .layer(TenantLayer::new(
            HeaderResolver::new("x-tenant-id"),
            catalog,
        ));
    let send = |tenant: &str, body: &'static str| {
        let method = if body.is_empty() { "GET" } else { "POST" };
        app.clone().oneshot(
            Request::builder()
                .method(method)
                .uri("/")
                .header("x-tenant-id", tenant)
                .body(Body::from(body))
                .unwrap(),
        )
    };
    for _ in 0..3 {
        assert_eq!(send("a", "").await.unwrap().status(), StatusCode::OK);
    }
    assert_eq!(
        send("a", "0123456789").await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(send("b", "").await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(send("c", "").await.unwrap().status(), StatusCode::OK);
    // Rejected before a tenant is known: not metered per tenant.
    assert_eq!(
        send("nobody", "").await.unwrap().status(),
        StatusCode::NOT_FOUND
    );

    let mut counters = std::collections::BTreeMap::new();
    let mut latencies = std::collections::BTreeMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        match value {
            DebugValue::Counter(n) => {
                counters.insert(name, n);
            }
            DebugValue::Histogram(samples) => {
                latencies.insert(name, samples.len());
            }
            DebugValue::Gauge(_) => {}
        }
    }
    assert_eq!(counters["tenants_requests_total{tenant=a,status=2xx}"], 4);
    assert_eq!(counters["tenants_requests_total{tenant=b,status=4xx}"], 1);
    assert_eq!(
        counters["tenants_requests_total{tenant=other,status=2xx}"], 1,
        "label cap"
    );
    assert!(
        !counters
            .keys()
            .any(|k| k.contains("tenant=c") || k.contains("nobody"))
    );
    assert_eq!(counters["tenants_request_bytes_total{tenant=a}"], 10);
    assert_eq!(
        counters["tenants_response_bytes_total{tenant=a}"],
        3 * 5 + 10
    );
    assert_eq!(latencies["tenants_request_duration_seconds{tenant=a}"], 4);
}
