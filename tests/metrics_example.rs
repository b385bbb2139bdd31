//! The metering example end to end: tenant requests show up at `/metrics` in the
//! Prometheus text format, labelled by tenant.

#[path = "../examples/metrics.rs"]
#[allow(dead_code)]
mod example;

use axum::body::Body;
use http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;

#[tokio::test]
async fn tenant_requests_show_up_at_metrics() {
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .unwrap();
    let app = example::app(prometheus).unwrap();
    for tenant in ["acme", "acme", "globex"] {
        let request = Request::get("/hello")
            .header("x-tenant-id", tenant)
            .body(Body::empty())
            .unwrap();
        assert_eq!(app.clone().oneshot(request).await.unwrap().status(), 200);
    }
    let response = app
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        200,
        "/metrics is a central route, no tenant needed"
    );
    let text = String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    let count = |tenant: &str| {
        text.lines()
            .find(|l| {
                l.starts_with("tenants_requests_total")
                    && l.contains(&format!("tenant=\"{tenant}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_owned)
    };
    assert_eq!(count("acme").as_deref(), Some("2"), "{text}");
    assert_eq!(count("globex").as_deref(), Some("1"), "{text}");
    assert!(text.contains("tenants_request_duration_seconds"), "{text}");
}
