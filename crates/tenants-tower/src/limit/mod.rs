//! Per-tenant limits: noisy-neighbour protection.
//!
//! [`TenantLimitLayer`] caps each tenant's concurrent requests and request rate (token
//! bucket). A tenant over a limit gets 429 with `Retry-After` at once, without queueing,
//! so one tenant saturating its limits takes nothing from another.
//!
//! Limits come, in order of precedence, from the tenant's `limits` options section
//! ([`Limits`] is an [`OptionsSection`](tenants_core::OptionsSection)), from its plan
//! ([`TenantLimitLayer::plan`]), or from the default.
//!
//! Put it inside the [`TenantLayer`](crate::TenantLayer) (which supplies the tenant):
//! with axum, `.layer(TenantLimitLayer::new(..)).layer(TenantLayer::new(..))`.

mod layer;
mod state;

pub use layer::{LimitFuture, TenantLimit, TenantLimitLayer};
pub use state::Limits;
