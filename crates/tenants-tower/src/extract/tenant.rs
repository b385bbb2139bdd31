//! The current tenant.

use std::ops::Deref;
use std::sync::Arc;

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;
use tenants_core::Tenant;

use crate::TenantRejection;

/// The tenant of the request, as put there by [`TenantLayer`](crate::TenantLayer).
///
/// Without a tenant (the layer is missing, or passed the request through) it rejects
/// with the layer's "missing tenant" problem (400). Use `Option<CurrentTenant>` on
/// routes that serve both.
#[derive(Debug, Clone)]
pub struct CurrentTenant(pub Arc<Tenant>);

impl Deref for CurrentTenant {
    type Target = Tenant;

    fn deref(&self) -> &Tenant {
        &self.0
    }
}

impl IntoResponse for TenantRejection {
    fn into_response(self) -> Response {
        self.problem_response().map(axum_core::body::Body::from)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CurrentTenant {
    type Rejection = TenantRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Arc<Tenant>>()
            .cloned()
            .map(CurrentTenant)
            .ok_or(TenantRejection::Missing)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for CurrentTenant {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Arc<Tenant>>()
            .cloned()
            .map(CurrentTenant))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for crate::StrippedPrefix {
    type Rejection = TenantRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<crate::StrippedPrefix>()
            .cloned()
            .ok_or(TenantRejection::Missing)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for crate::StrippedPrefix {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<crate::StrippedPrefix>().cloned())
    }
}
