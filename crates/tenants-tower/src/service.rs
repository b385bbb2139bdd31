//! [`TenantService`]: the per-request work of the layer.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::request::Parts;
use http::uri::PathAndQuery;
use http::{Request, Response, Uri};
use tenants_core::resolve::{Resolved, Resolver, TenantKey, VerifiedToken};
use tenants_core::{Tenant, TenantCatalog, TenantId, TenantStatus};
use tower_service::Service;

use crate::future::{Lookup, ResponseFuture};
use crate::layer::{Config, NoTenant};
use crate::reject::TenantRejection;

/// The service made by [`TenantLayer`](crate::TenantLayer).
pub struct TenantService<S, R, C> {
    inner: S,
    config: Arc<Config<R, C>>,
}

impl<S: Clone, R, C> Clone for TenantService<S, R, C> {
    fn clone(&self) -> Self {
        TenantService {
            inner: self.inner.clone(),
            config: self.config.clone(),
        }
    }
}

impl<S: fmt::Debug, R, C> fmt::Debug for TenantService<S, R, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, R, C> TenantService<S, R, C> {
    pub(crate) fn new(inner: S, config: Arc<Config<R, C>>) -> Self {
        TenantService { inner, config }
    }
}

impl<S, R, C, ReqBody, ResBody> Service<Request<ReqBody>> for TenantService<S, R, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    R: Resolver + 'static,
    C: TenantCatalog + 'static,
    ResBody: From<String>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S, ReqBody, R, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let config = &self.config;
        let (mut parts, body) = request.into_parts();
        let resolved = match config.resolver.resolve(&parts) {
            Ok(Some(resolved)) => resolved,
            Ok(None) => match config.no_tenant {
                NoTenant::Reject => return self.reject(&TenantRejection::Missing),
                NoTenant::Default(id) => Resolved::from_id(id),
                NoTenant::PassThrough => {
                    let request = Request::from_parts(parts, body);
                    return ResponseFuture::inner(self.inner.call(request), None);
                }
            },
            Err(error) => {
                return self.reject(&TenantRejection::from_error(error, config.retry_after));
            }
        };
        if config.strip_prefix
            && let Some(len) = resolved.path_prefix
        {
            strip_prefix(&mut parts, len);
        }
        let at_hand = match &resolved.key {
            TenantKey::Id(id) => config.catalog.get_now(*id),
            TenantKey::Domain(domain) => config.catalog.get_now_by_domain(domain),
        };
        if let Some(found) = at_hand {
            return match admit(config, &mut parts, &resolved.key, found, resolved.token) {
                Ok((id, scoped)) => call_admitted(&mut self.inner, id, scoped, parts, body),
                Err(rejection) => self.reject(&rejection),
            };
        }
        // A cache miss: look the tenant up, then call the service that was polled ready.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::lookup(Lookup::start(
            self.config.clone(),
            resolved,
            parts,
            body,
            inner,
        ))
    }
}

impl<S, R, C> TenantService<S, R, C> {
    fn reject<F, ReqBody>(
        &self,
        rejection: &TenantRejection,
    ) -> ResponseFuture<F, S, ReqBody, R, C> {
        ResponseFuture::rejected(respond(&self.config, rejection))
    }
}

pub(crate) fn respond<R, C>(
    config: &Config<R, C>,
    rejection: &TenantRejection,
) -> Response<String> {
    tracing::debug!(status = %rejection.status(), reason = %rejection, "tenant rejected");
    config.responder.respond(rejection)
}

/// Checks a looked-up tenant and moves it into the request extensions; returns its
/// id, and the tenant again when the inner service runs in its task scope. Shared
/// by the hit path and the lookup future.
pub(crate) fn admit<R, C>(
    config: &Config<R, C>,
    parts: &mut Parts,
    key: &TenantKey,
    found: Option<Arc<Tenant>>,
    token: Option<Arc<VerifiedToken>>,
) -> Result<(TenantId, Option<Arc<Tenant>>), TenantRejection> {
    let tenant = match found {
        Some(tenant) if tenant.status != TenantStatus::Deleted => tenant,
        _ => {
            return Err(TenantRejection::Unknown {
                named: key.to_string(),
            });
        }
    };
    if tenant.status == TenantStatus::Suspended {
        return Err(TenantRejection::Suspended {
            tenant: tenant.id,
            status: config.suspended_status,
        });
    }
    let token = match (token, &config.membership) {
        (Some(token), _) => Some(token),
        (None, Some(source)) => source
            .verify(parts)
            .map_err(|e| TenantRejection::from_error(e, config.retry_after))?,
        (None, None) => None,
    };
    if let Some(token) = token {
        if config.membership.is_some() && !token.is_member(tenant.id) {
            return Err(TenantRejection::NotMember { tenant: tenant.id });
        }
        parts.extensions.insert(token);
    }
    let id = tenant.id;
    let scoped = config.task_scope.then(|| tenant.clone());
    // The first insert allocates the extension map (three small allocations in
    // `http::Extensions`); nothing else on the hit path allocates.
    parts.extensions.insert(tenant);
    Ok((id, scoped))
}

/// Calls the inner service with an admitted request, inside the tenant's span and,
/// with `scoped`, its task scope. Shared by the hit path and the lookup future.
// Inlined so that the request head is not copied once more on its way through.
#[inline(always)]
pub(crate) fn call_admitted<S, ReqBody, R, C>(
    inner: &mut S,
    id: TenantId,
    scoped: Option<Arc<Tenant>>,
    parts: Parts,
    body: ReqBody,
) -> ResponseFuture<S::Future, S, ReqBody, R, C>
where
    S: Service<Request<ReqBody>>,
{
    let span = span(id);
    let request = Request::from_parts(parts, body);
    match scoped {
        None => ResponseFuture::inner(inner.call(request), span),
        Some(tenant) => {
            let future = crate::task::sync_scope(tenant.clone(), || inner.call(request));
            ResponseFuture::scoped(crate::task::scope(tenant, future), span)
        }
    }
}

/// The `tenant` span the inner service runs in, when anyone records INFO spans.
///
/// Building a span costs something even when no subscriber takes it (with the `log`
/// feature of `tracing`, which sqlx turns on, it goes through the `log` fallback), so
/// the cheap global level check comes first; the macro then asks the subscriber.
pub(crate) fn span(id: TenantId) -> Option<tracing::Span> {
    if !tracing::level_enabled!(tracing::Level::INFO) {
        return None;
    }
    let span = tracing::info_span!("tenant", tenant = %id);
    (!span.is_disabled()).then_some(span)
}

/// The path prefix the layer stripped from the request (`/t/acme` of
/// `/t/acme/todos`), in the request's extensions, so a handler behind
/// [`strip_path_prefix`](crate::TenantLayer::strip_path_prefix) can build links that
/// keep the tenant (`format!("{}/todos/{id}", prefix.as_str())`). With axum, it is an
/// extractor (`StrippedPrefix`, or `Option<StrippedPrefix>` on routes also served
/// without a tenant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrippedPrefix(pub Arc<str>);

impl StrippedPrefix {
    /// The prefix, as it was in the path: `/t/acme`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Removes the first `len` bytes of the path (`/t/acme/todos?x` → `/todos?x`), and
/// records them as the request's [`StrippedPrefix`].
fn strip_prefix(parts: &mut Parts, len: usize) {
    let path = parts.uri.path();
    let (Some(prefix), Some(rest)) = (path.get(..len), path.get(len..)) else {
        return;
    };
    let prefix = StrippedPrefix(prefix.into());
    let rest = if rest.is_empty() { "/" } else { rest };
    let path_and_query = match parts.uri.query() {
        Some(query) => format!("{rest}?{query}"),
        None => rest.to_owned(),
    };
    let mut uri = std::mem::take(&mut parts.uri).into_parts();
    if let Ok(pq) = PathAndQuery::try_from(path_and_query) {
        uri.path_and_query = Some(pq);
    }
    if let Ok(uri) = Uri::from_parts(uri) {
        parts.uri = uri;
        parts.extensions.insert(prefix);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_and_keeps_the_query() {
        let (mut parts, ()) = Request::get("/t/acme/todos?page=2")
            .body(())
            .unwrap()
            .into_parts();
        strip_prefix(&mut parts, 7);
        assert_eq!(parts.uri, "/todos?page=2");
        assert_eq!(
            parts.extensions.get::<StrippedPrefix>().unwrap().as_str(),
            "/t/acme"
        );
        let (mut parts, ()) = Request::get("http://h.test/t/acme")
            .body(())
            .unwrap()
            .into_parts();
        strip_prefix(&mut parts, 7);
        assert_eq!(parts.uri, "http://h.test/");
    }
}
