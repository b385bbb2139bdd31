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
#[derive(Clone)]
pub struct StrippedPrefix {
    // The request's path and query as they came, the prefix being their first `len`
    // bytes: kept as they are rather than copied, which would allocate per request.
    original: PathAndQuery,
    len: usize,
}

impl StrippedPrefix {
    /// The prefix, as it was in the path: `/t/acme`.
    pub fn as_str(&self) -> &str {
        self.original.as_str().get(..self.len).unwrap_or_default()
    }
}

impl PartialEq for StrippedPrefix {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for StrippedPrefix {}

impl fmt::Debug for StrippedPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StrippedPrefix")
            .field(&self.as_str())
            .finish()
    }
}

/// Removes the first `len` bytes of the path (`/t/acme/todos?x` → `/todos?x`), and
/// records them as the request's [`StrippedPrefix`]. Leaves the request as it is when
/// `len` does not end inside the path.
fn strip_prefix(parts: &mut Parts, len: usize) {
    let Some(original) = parts.uri.path_and_query() else {
        return;
    };
    let path = original.path();
    if len > path.len() || !path.is_char_boundary(len) {
        return;
    }
    // The rest of the path and the query are one slice of the original.
    let stripped = match (&path[len..], original.query()) {
        ("", None) => Ok(PathAndQuery::from_static("/")),
        ("", Some(query)) => PathAndQuery::try_from(format!("/?{query}")),
        _ => PathAndQuery::try_from(&original.as_str()[len..]),
    };
    let Ok(stripped) = stripped else {
        return;
    };
    // A server receives the origin form (`/t/acme/todos`): no scheme or authority to
    // copy; a proxy's absolute form keeps both.
    let mut uri = http::uri::Parts::default();
    uri.scheme = parts.uri.scheme().cloned();
    uri.authority = parts.uri.authority().cloned();
    uri.path_and_query = Some(stripped);
    let Ok(uri) = Uri::from_parts(uri) else {
        return;
    };
    if let Some(original) = std::mem::replace(&mut parts.uri, uri)
        .into_parts()
        .path_and_query
    {
        parts.extensions.insert(StrippedPrefix { original, len });
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

    fn stripped(uri: &str, len: usize) -> (String, Option<String>) {
        let (mut parts, ()) = Request::get(uri).body(()).unwrap().into_parts();
        strip_prefix(&mut parts, len);
        let prefix = parts.extensions.get::<StrippedPrefix>();
        (parts.uri.to_string(), prefix.map(|p| p.as_str().to_owned()))
    }

    #[test]
    fn strips_every_form_of_the_rest() {
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(stripped("/t/acme", 7), ("/".into(), some("/t/acme")));
        assert_eq!(
            stripped("/t/acme?x=1", 7),
            ("/?x=1".into(), some("/t/acme"))
        );
        assert_eq!(stripped("/t/acme/", 7), ("/".into(), some("/t/acme")));
        assert_eq!(
            stripped("http://h.test:8080/t/acme/a?b", 7),
            ("http://h.test:8080/a?b".into(), some("/t/acme"))
        );
        // The query is not the path: a length past the path changes nothing.
        assert_eq!(stripped("/t/acme?x=1", 9), ("/t/acme?x=1".into(), None));
    }

    #[test]
    fn prefixes_compare_by_their_text() {
        let prefix = |uri: &str| {
            let (mut parts, ()) = Request::get(uri).body(()).unwrap().into_parts();
            strip_prefix(&mut parts, 7);
            parts.extensions.remove::<StrippedPrefix>().unwrap()
        };
        assert_eq!(prefix("/t/acme/a"), prefix("/t/acme/b?c"));
        assert_ne!(prefix("/t/acme/a"), prefix("/t/beta/a"));
        assert_eq!(
            format!("{:?}", prefix("/t/acme/a")),
            r#"StrippedPrefix("/t/acme")"#
        );
    }
}
