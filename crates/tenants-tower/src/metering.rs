//! Per-tenant metering: how much does each tenant consume?
//!
//! [`MeteringLayer`] records, for every request that reached a tenant, through the
//! [`metrics`] facade (so any exporter works: Prometheus, StatsD, OpenTelemetry):
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `tenants_requests_total` | counter | `tenant`, `status` (`2xx`, `4xx`, …) |
//! | `tenants_request_duration_seconds` | histogram | `tenant` |
//! | `tenants_request_bytes_total` | counter | `tenant` |
//! | `tenants_response_bytes_total` | counter | `tenant` |
//!
//! Body sizes are taken from the body's exact size hint or its `Content-Length`;
//! streamed bodies of unknown length count as 0. The `tenant` label is bounded: past
//! [`max_tenants`](MeteringLayer::max_tenants) distinct tenants, new ones are counted
//! as `other`, so a flood of tenants cannot blow up the metrics backend.
//!
//! Put it inside the [`TenantLayer`](crate::TenantLayer) (which supplies the tenant).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use http::header::CONTENT_LENGTH;
use http::{HeaderMap, Request, Response};
use http_body::Body;
use metrics::SharedString;
use pin_project_lite::pin_project;
use tenants_core::{Tenant, TenantId};
use tower_layer::Layer;
use tower_service::Service;

/// The label for tenants past the cap.
const OTHER: &str = "other";

struct Labels {
    max: usize,
    known: Mutex<HashMap<TenantId, SharedString>>,
}

impl Labels {
    fn of(&self, tenant: TenantId) -> SharedString {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(label) = known.get(&tenant) {
            return label.clone();
        }
        if known.len() >= self.max {
            return SharedString::const_str(OTHER);
        }
        let label = SharedString::from(tenant.to_string());
        known.insert(tenant, label.clone());
        label
    }
}

/// Records per-tenant request metrics. See the [module docs](self).
#[derive(Clone)]
pub struct MeteringLayer {
    labels: Arc<Labels>,
}

impl fmt::Debug for MeteringLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeteringLayer")
            .field("max_tenants", &self.labels.max)
            .finish()
    }
}

impl Default for MeteringLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl MeteringLayer {
    /// Metering with a cap of 1,000 distinct tenant labels.
    pub fn new() -> Self {
        MeteringLayer {
            labels: Arc::new(Labels {
                max: 1_000,
                known: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Most distinct `tenant` label values; later tenants are labelled `other`.
    pub fn max_tenants(self, max: usize) -> Self {
        MeteringLayer {
            labels: Arc::new(Labels {
                max,
                known: Mutex::new(HashMap::new()),
            }),
        }
    }
}

impl<S> Layer<S> for MeteringLayer {
    type Service = Metering<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Metering {
            inner,
            labels: self.labels.clone(),
        }
    }
}

/// The service made by [`MeteringLayer`].
#[derive(Clone)]
pub struct Metering<S> {
    inner: S,
    labels: Arc<Labels>,
}

impl<S: fmt::Debug> fmt::Debug for Metering<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metering")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

fn size(hint: http_body::SizeHint, headers: &HeaderMap) -> u64 {
    hint.exact()
        .or_else(|| {
            headers
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Metering<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ReqBody: Body,
    ResBody: Body,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = MeteringFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let tenant = request
            .extensions()
            .get::<Arc<Tenant>>()
            .map(|t| self.labels.of(t.id));
        if let Some(tenant) = &tenant {
            let bytes = size(request.body().size_hint(), request.headers());
            metrics::counter!("tenants_request_bytes_total", "tenant" => tenant.clone())
                .increment(bytes);
        }
        MeteringFuture {
            inner: self.inner.call(request),
            tenant,
            start: Instant::now(),
        }
    }
}

pin_project! {
    /// Response future of [`Metering`].
    pub struct MeteringFuture<F> {
        #[pin]
        inner: F,
        tenant: Option<SharedString>,
        start: Instant,
    }
}

impl<F> fmt::Debug for MeteringFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeteringFuture").finish_non_exhaustive()
    }
}

impl<F, ResBody, E> Future for MeteringFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    ResBody: Body,
{
    type Output = Result<Response<ResBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let output = ready!(this.inner.poll(cx));
        if let (Some(tenant), Ok(response)) = (this.tenant.take(), &output) {
            let class = match response.status().as_u16() / 100 {
                1 => "1xx",
                2 => "2xx",
                3 => "3xx",
                4 => "4xx",
                _ => "5xx",
            };
            metrics::counter!("tenants_requests_total", "tenant" => tenant.clone(), "status" => class)
                .increment(1);
            metrics::histogram!("tenants_request_duration_seconds", "tenant" => tenant.clone())
                .record(this.start.elapsed().as_secs_f64());
            let bytes = size(response.body().size_hint(), response.headers());
            metrics::counter!("tenants_response_bytes_total", "tenant" => tenant).increment(bytes);
        }
        Poll::Ready(output)
    }
}
