//! [`ResponseFuture`]: the future returned by [`TenantService`](crate::TenantService).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::request::Parts;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tenants_core::resolve::{Resolved, Resolver, TenantKey};
use tenants_core::{Error, Tenant, TenantCatalog};
use tokio::task::futures::TaskLocalFuture;
use tower_service::Service;

use crate::layer::Config;
use crate::reject::TenantRejection;
use crate::service::{admit, call_admitted, respond};

type BoxLookup = Pin<Box<dyn Future<Output = Result<Option<Arc<Tenant>>, Error>> + Send>>;

/// A catalog lookup under way, with what is needed to go on once it is done.
pub(crate) struct Lookup<S, ReqBody, R, C> {
    future: BoxLookup,
    config: Arc<Config<R, C>>,
    resolved: Resolved,
    request: Option<(Parts, ReqBody, S)>,
}

impl<S, ReqBody, R, C> Lookup<S, ReqBody, R, C>
where
    C: TenantCatalog + 'static,
    R: Resolver + 'static,
{
    pub(crate) fn start(
        config: Arc<Config<R, C>>,
        resolved: Resolved,
        parts: Parts,
        body: ReqBody,
        inner: S,
    ) -> Self {
        let lookup = config.clone();
        let future: BoxLookup = match resolved.key.clone() {
            TenantKey::Id(id) => Box::pin(async move { lookup.catalog.get(id).await }),
            TenantKey::Domain(domain) => {
                Box::pin(async move { lookup.catalog.get_by_domain(&domain).await })
            }
        };
        Lookup {
            future,
            config,
            resolved,
            request: Some((parts, body, inner)),
        }
    }
}

pin_project! {
    /// Response future of [`TenantService`](crate::TenantService).
    pub struct ResponseFuture<F, S, ReqBody, R, C> {
        #[pin]
        state: State<F, S, ReqBody, R, C>,
        span: Option<tracing::Span>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, S, ReqBody, R, C> {
        Rejected { response: Option<Response<String>> },
        // Boxed: a miss allocates anyway, and the hit path then moves a small future.
        Lookup { lookup: Box<Lookup<S, ReqBody, R, C>> },
        Inner { #[pin] future: F },
        Scoped { #[pin] future: TaskLocalFuture<Option<Arc<Tenant>>, F> },
    }
}

impl<F, S, ReqBody, R, C> fmt::Debug for ResponseFuture<F, S, ReqBody, R, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, S, ReqBody, R, C> ResponseFuture<F, S, ReqBody, R, C> {
    pub(crate) fn inner(future: F, span: Option<tracing::Span>) -> Self {
        ResponseFuture {
            state: State::Inner { future },
            span,
        }
    }

    pub(crate) fn scoped(
        future: TaskLocalFuture<Option<Arc<Tenant>>, F>,
        span: Option<tracing::Span>,
    ) -> Self {
        ResponseFuture {
            state: State::Scoped { future },
            span,
        }
    }

    pub(crate) fn rejected(response: Response<String>) -> Self {
        ResponseFuture {
            state: State::Rejected {
                response: Some(response),
            },
            span: None,
        }
    }

    pub(crate) fn lookup(lookup: Lookup<S, ReqBody, R, C>) -> Self {
        ResponseFuture {
            state: State::Lookup {
                lookup: Box::new(lookup),
            },
            span: None,
        }
    }
}

impl<F, S, ReqBody, ResBody, R, C> Future for ResponseFuture<F, S, ReqBody, R, C>
where
    F: Future<Output = Result<Response<ResBody>, S::Error>>,
    S: Service<Request<ReqBody>, Response = Response<ResBody>, Future = F>,
    ResBody: From<String>,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                StateProj::Rejected { response } => {
                    let response = response.take().unwrap_or_default();
                    return Poll::Ready(Ok(response.map(ResBody::from)));
                }
                StateProj::Inner { future } => {
                    let _entered = this.span.as_ref().map(tracing::Span::enter);
                    return future.poll(cx);
                }
                StateProj::Scoped { future } => {
                    let _entered = this.span.as_ref().map(tracing::Span::enter);
                    return future.poll(cx);
                }
                StateProj::Lookup { lookup } => {
                    let found = ready!(lookup.future.as_mut().poll(cx));
                    let Some((mut parts, body, mut inner)) = lookup.request.take() else {
                        return Poll::Ready(Ok(Response::new(ResBody::from(String::new()))));
                    };
                    let config = &lookup.config;
                    let token = lookup.resolved.token.take();
                    let admitted = found
                        .map_err(|e| TenantRejection::from_error(e, config.retry_after))
                        .and_then(|found| {
                            admit(config, &mut parts, &lookup.resolved.key, found, token)
                        });
                    match admitted {
                        Ok((id, scoped)) => call_admitted(&mut inner, id, scoped, parts, body),
                        Err(rejection) => ResponseFuture::rejected(respond(config, &rejection)),
                    }
                }
            };
            // The lookup is done: go on as the future of an admitted or refused request.
            *this.span = next.span;
            this.state.set(next.state);
        }
    }
}
