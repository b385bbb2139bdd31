//! axum extractors for the tenant the layer put into the request.

mod options;
mod tenant;

pub use options::TenantOptions;
pub use tenant::CurrentTenant;
