//! [`TenantLayer`]: configuration and builder methods.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use http::request::Parts;
use tenants_core::resolve::{Resolver, VerifiedToken};
use tenants_core::{Error, TenantCatalog, TenantId};
use tower_layer::Layer;

use crate::reject::{ProblemResponder, Responder, SharedResponder};
use crate::service::TenantService;

/// What the layer does with a request that names no tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum NoTenant {
    /// Refuse it with [`TenantRejection::Missing`](crate::TenantRejection::Missing)
    /// (400). The default: no tenant never means some tenant by accident.
    #[default]
    Reject,
    /// Serve it as this tenant (single-tenant fallbacks, demos).
    Default(TenantId),
    /// Pass it to the inner service without a tenant, for central routes such as
    /// sign-up and health checks. Handlers then see no tenant in the extensions.
    PassThrough,
}

/// Reads a verified token from a request for the membership check.
///
/// Implemented for closures, so a `JwtResolver` plugs in as
/// `move |parts: &Parts| jwt.verify(parts)`.
pub trait Membership: Send + Sync + 'static {
    /// The request's verified token, `Ok(None)` when it carries none.
    fn verify(&self, parts: &Parts) -> Result<Option<Arc<VerifiedToken>>, Error>;
}

impl<F> Membership for F
where
    F: Fn(&Parts) -> Result<Option<Arc<VerifiedToken>>, Error> + Send + Sync + 'static,
{
    fn verify(&self, parts: &Parts) -> Result<Option<Arc<VerifiedToken>>, Error> {
        self(parts)
    }
}

/// Everything a [`TenantService`] needs, shared by all clones of it; the layer
/// builds one.
#[derive(Clone)]
pub(crate) struct Config<R, C> {
    pub(crate) resolver: R,
    pub(crate) catalog: C,
    pub(crate) no_tenant: NoTenant,
    pub(crate) suspended_status: StatusCode,
    pub(crate) strip_prefix: bool,
    pub(crate) task_scope: bool,
    pub(crate) membership: Option<Arc<dyn Membership>>,
    pub(crate) responder: SharedResponder,
    pub(crate) retry_after: Duration,
}

/// Resolves the tenant of every request, looks it up in a catalog, and puts it into
/// the request extensions as an `Arc<Tenant>`.
///
/// Per request: resolve → catalog lookup (a cache hit needs no await) → status check
/// → optional membership check → extensions (`Arc<Tenant>`, and the
/// `Arc<VerifiedToken>` when a token was verified) → the inner service, inside a
/// tracing span with a `tenant` field. Whatever goes wrong becomes a
/// [`TenantRejection`](crate::TenantRejection), answered as problem details.
///
/// # Examples
///
/// ```
/// use axum::{Extension, Router, routing::get};
/// use std::sync::Arc;
/// use tenants_core::resolve::SubdomainResolver;
/// use tenants_core::{CachedCatalog, StaticCatalog, Tenant};
/// use tenants_tower::TenantLayer;
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let catalog = CachedCatalog::new(StaticCatalog::from_json_str(
///     r#"{"tenants": {"acme": {"name": "Acme", "model": "pool"}}}"#,
/// )?);
/// let app = Router::new()
///     .route("/", get(|Extension(tenant): Extension<Arc<Tenant>>| async move { tenant.name.clone() }))
///     .layer(TenantLayer::new(SubdomainResolver::new(["example.com"]), catalog));
///
/// let request = http::Request::get("/").header("host", "acme.example.com").body(axum::body::Body::empty())?;
/// let response = app.clone().oneshot(request).await?;
/// assert_eq!(response.status(), 200);
///
/// let request = http::Request::get("/").header("host", "nobody.example.com").body(axum::body::Body::empty())?;
/// let response = app.oneshot(request).await?;
/// assert_eq!(response.status(), 404);
/// assert_eq!(response.headers()["content-type"], "application/problem+json");
/// # Ok(())
/// # }
/// ```
pub struct TenantLayer<R, C> {
    config: Config<Arc<R>, Arc<C>>,
}

impl<R, C> Clone for TenantLayer<R, C> {
    fn clone(&self) -> Self {
        TenantLayer {
            config: self.config.clone(),
        }
    }
}

impl<R, C> fmt::Debug for TenantLayer<R, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = &self.config;
        f.debug_struct("TenantLayer")
            .field("no_tenant", &config.no_tenant)
            .field("suspended_status", &config.suspended_status)
            .field("strip_prefix", &config.strip_prefix)
            .field("task_scope", &config.task_scope)
            .field("membership", &config.membership.is_some())
            .field("retry_after", &config.retry_after)
            .finish_non_exhaustive()
    }
}

impl<R: Resolver, C: TenantCatalog> TenantLayer<R, C> {
    /// A layer resolving with `resolver` and looking tenants up in `catalog` (wrap it
    /// in a [`CachedCatalog`](tenants_core::CachedCatalog) unless it is in memory).
    pub fn new(resolver: R, catalog: C) -> Self {
        TenantLayer {
            config: Config {
                resolver: Arc::new(resolver),
                catalog: Arc::new(catalog),
                no_tenant: NoTenant::Reject,
                suspended_status: StatusCode::FORBIDDEN,
                strip_prefix: false,
                task_scope: false,
                membership: None,
                responder: Arc::new(ProblemResponder),
                retry_after: Duration::from_secs(5),
            },
        }
    }

    /// What to do with requests that name no tenant (default [`NoTenant::Reject`]).
    pub fn on_no_tenant(mut self, policy: NoTenant) -> Self {
        self.config.no_tenant = policy;
        self
    }

    /// The status for suspended tenants (default 403; 402 or 423 are common choices).
    pub fn suspended_status(mut self, status: StatusCode) -> Self {
        self.config.suspended_status = status;
        self
    }

    /// Strips the path prefix that named the tenant (`/t/acme/todos` → `/todos`), so
    /// an inner router needs no tenant segment in its routes (default off).
    ///
    /// With axum, wrap the router (`tower::Layer::layer(&tenant_layer, router)` or
    /// `ServiceBuilder::new().layer(tenant_layer).service(router)`):
    /// `Router::layer` runs after routing, too late to change the path it routes on.
    pub fn strip_path_prefix(mut self, strip: bool) -> Self {
        self.config.strip_prefix = strip;
        self
    }

    /// Runs the inner service of every admitted request in a [task scope](crate::task)
    /// of its tenant, so code without the request at hand reads it with
    /// [`task::current`](crate::task::current) and background work started with
    /// [`task::spawn_with_tenant`](crate::task::spawn_with_tenant) keeps it (default
    /// off: it costs an `Arc` clone and a task-local swap per poll).
    pub fn task_scope(mut self, enabled: bool) -> Self {
        self.config.task_scope = enabled;
        self
    }

    /// Checks that the subject of the request's verified token belongs to the
    /// resolved tenant, whichever resolver found it; a request whose token lists
    /// other tenants gets 403. Requests without a token pass (authentication is the
    /// application's business); a token that fails verification gets 401.
    pub fn membership(mut self, source: impl Membership) -> Self {
        self.config.membership = Some(Arc::new(source));
        self
    }

    /// Renders rejections (default: RFC 9457 problem details).
    pub fn responder(mut self, responder: impl Responder) -> Self {
        self.config.responder = Arc::new(responder);
        self
    }

    /// `Retry-After` sent when the catalog is unavailable (default 5 s).
    pub fn retry_after(mut self, wait: Duration) -> Self {
        self.config.retry_after = wait;
        self
    }
}

impl<S, R, C> Layer<S> for TenantLayer<R, C> {
    type Service = TenantService<S, Arc<R>, Arc<C>>;

    fn layer(&self, inner: S) -> Self::Service {
        TenantService::new(inner, Arc::new(self.config.clone()))
    }
}
