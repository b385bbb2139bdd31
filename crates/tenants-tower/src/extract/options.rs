//! The current tenant's typed options.

use std::sync::Arc;

use axum_core::extract::FromRequestParts;
use http::request::Parts;
use tenants_core::{OptionsSection, Tenant};

use crate::TenantRejection;

/// A typed section of the current tenant's options, read with
/// [`Tenant::options`](tenants_core::Tenant::options).
///
/// Rejects with "missing tenant" (400) without a tenant, and with a 500 problem when
/// the tenant's section does not deserialize (the details go to the logs).
///
/// # Examples
///
/// ```
/// use serde::Deserialize;
/// use tenants_core::OptionsSection;
/// use tenants_tower::TenantOptions;
///
/// #[derive(Deserialize)]
/// struct Auth {
///     #[serde(default)]
///     token_lifetime_secs: Option<u64>,
/// }
/// impl OptionsSection for Auth {
///     const SECTION: &'static str = "auth";
/// }
///
/// async fn token_lifetime(TenantOptions(auth): TenantOptions<Auth>) -> String {
///     auth.token_lifetime_secs.unwrap_or(3600).to_string()
/// }
/// # let _ = axum::Router::<()>::new().route("/", axum::routing::get(token_lifetime));
/// ```
#[derive(Debug, Clone)]
pub struct TenantOptions<T>(pub T);

impl<S, T> FromRequestParts<S> for TenantOptions<T>
where
    S: Send + Sync,
    T: OptionsSection + Send,
{
    type Rejection = TenantRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let tenant = parts
            .extensions
            .get::<Arc<Tenant>>()
            .ok_or(TenantRejection::Missing)?;
        match tenant.options::<T>() {
            Ok(options) => Ok(TenantOptions(options)),
            Err(error) => {
                tracing::error!(%error, "tenant options do not deserialize");
                Err(TenantRejection::Misconfigured(error))
            }
        }
    }
}
