//! [`TenantLimitLayer`] and its service.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tenants_core::{Tenant, TenantId};
use tower_layer::Layer;
use tower_service::Service;

use super::state::{InFlight, Limits, TenantState};
use crate::reject::{ProblemResponder, Responder, SharedResponder};

struct Config {
    default: Limits,
    plans: HashMap<String, Limits>,
    states: quick_cache::sync::Cache<TenantId, Arc<TenantState>>,
    responder: SharedResponder,
}

impl Config {
    fn limits_of(&self, tenant: &Tenant) -> Limits {
        if tenant
            .options
            .contains_key(<Limits as tenants_core::OptionsSection>::SECTION)
        {
            match tenant.options::<Limits>() {
                Ok(limits) => return limits,
                Err(error) => tracing::warn!(%error, "ignoring invalid tenant limits"),
            }
        }
        tenant
            .plan
            .as_ref()
            .and_then(|plan| self.plans.get(plan))
            .copied()
            .unwrap_or(self.default)
    }
}

/// Per-tenant concurrency and rate limits. See the [module docs](super).
///
/// # Examples
///
/// ```
/// use tenants_tower::limit::{Limits, TenantLimitLayer};
///
/// let limits = TenantLimitLayer::new(Limits::unlimited().concurrency(16).rate(50.0, 100))
///     .plan("free", Limits::unlimited().concurrency(2).rate(5.0, 10))
///     .plan("enterprise", Limits::unlimited());
/// # let _ = limits;
/// ```
#[derive(Clone)]
pub struct TenantLimitLayer {
    config: Arc<Config>,
}

impl fmt::Debug for TenantLimitLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantLimitLayer")
            .field("default", &self.config.default)
            .field("plans", &self.config.plans)
            .finish_non_exhaustive()
    }
}

impl TenantLimitLayer {
    /// Limits for tenants whose plan and options set none.
    pub fn new(default: Limits) -> Self {
        TenantLimitLayer {
            config: Arc::new(Config {
                default,
                plans: HashMap::new(),
                states: quick_cache::sync::Cache::new(100_000),
                responder: Arc::new(ProblemResponder),
            }),
        }
    }

    fn config_mut(&mut self) -> &mut Config {
        // Builder methods run before the layer is shared; copy otherwise.
        if Arc::get_mut(&mut self.config).is_none() {
            let old = &self.config;
            self.config = Arc::new(Config {
                default: old.default,
                plans: old.plans.clone(),
                states: quick_cache::sync::Cache::new(100_000),
                responder: old.responder.clone(),
            });
        }
        Arc::get_mut(&mut self.config).unwrap_or_else(|| unreachable!("just made unique"))
    }

    /// Limits for tenants on `plan`.
    pub fn plan(mut self, plan: impl Into<String>, limits: Limits) -> Self {
        self.config_mut().plans.insert(plan.into(), limits);
        self
    }

    /// Renders the 429 rejections (default: problem details).
    pub fn responder(mut self, responder: impl Responder) -> Self {
        self.config_mut().responder = Arc::new(responder);
        self
    }
}

impl<S> Layer<S> for TenantLimitLayer {
    type Service = TenantLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TenantLimit {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service made by [`TenantLimitLayer`].
#[derive(Clone)]
pub struct TenantLimit<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S: fmt::Debug> fmt::Debug for TenantLimit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantLimit")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for TenantLimit<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<String>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = LimitFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let Some(tenant) = request.extensions().get::<Arc<Tenant>>().cloned() else {
            return LimitFuture::admitted(self.inner.call(request), None);
        };
        let config = &self.config;
        let state = config.states.get(&tenant.id).unwrap_or_else(|| {
            let state = Arc::new(TenantState::new(tenant.clone(), config.limits_of(&tenant)));
            config.states.insert(tenant.id, state.clone());
            state
        });
        match state.admit(&tenant, |t| config.limits_of(t)) {
            Ok(guard) => LimitFuture::admitted(self.inner.call(request), Some(guard)),
            Err(rejection) => LimitFuture::rejected(config.responder.respond(&rejection)),
        }
    }
}

pin_project! {
    /// Response future of [`TenantLimit`]: holds the request's concurrency slot until
    /// the response is ready or the request is dropped.
    pub struct LimitFuture<F> {
        #[pin]
        inner: Option<F>,
        rejected: Option<Response<String>>,
        slot: Option<InFlight>,
    }
}

impl<F> fmt::Debug for LimitFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimitFuture").finish_non_exhaustive()
    }
}

impl<F> LimitFuture<F> {
    fn admitted(inner: F, slot: Option<InFlight>) -> Self {
        LimitFuture {
            inner: Some(inner),
            rejected: None,
            slot,
        }
    }

    fn rejected(response: Response<String>) -> Self {
        LimitFuture {
            inner: None,
            rejected: Some(response),
            slot: None,
        }
    }
}

impl<F, ResBody, E> Future for LimitFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    ResBody: From<String>,
{
    type Output = Result<Response<ResBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.inner.as_pin_mut() {
            Some(inner) => {
                let output = std::task::ready!(inner.poll(cx));
                this.slot.take();
                Poll::Ready(output)
            }
            None => {
                let response = this.rejected.take().unwrap_or_default();
                Poll::Ready(Ok(response.map(ResBody::from)))
            }
        }
    }
}
