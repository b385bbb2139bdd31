//! Per-tenant metering exposed to Prometheus: every tenant's request count, status
//! classes, latency histogram and bytes, at `/metrics`.
//!
//! Run it:
//!
//! ```sh
//! cargo run --example metrics --features metrics    # listens on 127.0.0.1:3001 (PORT overrides)
//! curl -H 'x-tenant-id: acme' http://127.0.0.1:3001/hello
//! curl http://127.0.0.1:3001/metrics | grep tenants_
//! ```

use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tenants::StaticCatalog;
use tenants::resolve::HeaderResolver;
use tenants::tower::metering::MeteringLayer;
use tenants::tower::{CurrentTenant, TenantLayer};

/// The app: tenant routes behind the tenant and metering layers, and a central
/// `/metrics` route outside them.
pub(crate) fn app(prometheus: PrometheusHandle) -> Result<Router, tenants::Error> {
    let catalog = StaticCatalog::from_json_str(
        r#"{"tenants": {"acme": {"model": "pool"}, "globex": {"model": "pool"}}}"#,
    )?;
    let tenant_routes = Router::new()
        .route(
            "/hello",
            get(|CurrentTenant(t): CurrentTenant| async move { format!("hello, {}", t.id) }),
        )
        .layer(MeteringLayer::new().max_tenants(500))
        .layer(TenantLayer::new(
            HeaderResolver::new("x-tenant-id"),
            catalog,
        ));
    Ok(Router::new()
        .route("/metrics", get(move || async move { prometheus.render() }))
        .merge(tenant_routes))
}

#[allow(dead_code)] // The end-to-end test includes this file and calls `app` only.
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port
            .parse()
            .map_err(|_| format!("PORT={port:?} is not a port number"))?,
        Err(_) => 3001,
    };
    let prometheus = PrometheusBuilder::new().install_recorder()?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!(
        "metering example on http://127.0.0.1:{port}: try /hello with x-tenant-id: acme, then /metrics"
    );
    axum::serve(listener, app(prometheus)?).await?;
    Ok(())
}
