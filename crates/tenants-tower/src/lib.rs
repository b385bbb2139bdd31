//! Tower layer and axum extractors for [`tenants`](https://docs.rs/tenants): resolve
//! the tenant of every request, look it up, refuse what should be refused, and hand
//! the tenant to the handler.
//!
//! ```
//! use std::sync::Arc;
//!
//! use axum::{Extension, Router, routing::get};
//! use tenants_core::resolve::{HeaderResolver, ResolverExt, SubdomainResolver};
//! use tenants_core::{CachedCatalog, StaticCatalog, Tenant};
//! use tenants_tower::TenantLayer;
//! use tower::ServiceExt;
//!
//! // With the `axum` feature, `CurrentTenant` reads the same extension.
//! async fn hello(Extension(tenant): Extension<Arc<Tenant>>) -> String {
//!     format!("hello, {}", tenant.name)
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let catalog = CachedCatalog::new(StaticCatalog::from_json_str(r#"{"tenants": {
//!     "acme": {"name": "Acme", "model": "pool"},
//!     "globex": {"name": "Globex", "model": "pool", "status": "suspended"}
//! }}"#)?);
//! let resolver = SubdomainResolver::new(["example.com"])
//!     .no_tenant_for_foreign_hosts()
//!     .or(HeaderResolver::new("x-tenant-id"));
//! let app = Router::new()
//!     .route("/", get(hello))
//!     .layer(TenantLayer::new(resolver, catalog));
//!
//! let get = |host: &str| http::Request::get("/").header("host", host)
//!     .body(axum::body::Body::empty()).unwrap();
//! assert_eq!(app.clone().oneshot(get("acme.example.com")).await?.status(), 200);
//! assert_eq!(app.clone().oneshot(get("globex.example.com")).await?.status(), 403);
//! assert_eq!(app.clone().oneshot(get("initech.example.com")).await?.status(), 404);
//! assert_eq!(app.clone().oneshot(get("bad_id.example.com")).await?.status(), 400);
//! # Ok(())
//! # }
//! ```
//!
//! The tenant reaches the handler in the request extensions (`Arc<Tenant>`, read
//! with `CurrentTenant` or `Extension<Arc<Tenant>>`), and, with
//! [`TenantLayer::task_scope`], as the [task-local current tenant](task) that
//! [`task::spawn_with_tenant`] hands on to background work.
//!
//! # Rejections
//!
//! | situation | status | problem `type` |
//! |---|---|---|
//! | malformed id, host or header; resolvers disagree | 400 | `urn:tenants:problem:malformed-tenant` |
//! | no tenant named (with [`NoTenant::Reject`]) | 400 | `urn:tenants:problem:missing-tenant` |
//! | bearer token not trusted | 401 + `WWW-Authenticate` | `urn:tenants:problem:invalid-token` |
//! | tenant suspended | 403 (configurable) | `urn:tenants:problem:suspended-tenant` |
//! | token's subject not a member of the tenant | 403 | `urn:tenants:problem:not-a-member` |
//! | unknown or deleted tenant | 404 | `urn:tenants:problem:unknown-tenant` |
//! | catalog unavailable | 503 + `Retry-After` | `urn:tenants:problem:catalog-unavailable` |
//! | tenant over its [limits](limit) | 429 + `Retry-After` | `urn:tenants:problem:limit-exceeded` |
//!
//! # Feature flags
//!
//! | feature | what it enables | default |
//! |---|---|---|
//! | `axum` | extractors: [`CurrentTenant`], `Option<CurrentTenant>`, [`TenantOptions`] | no |
//! | `metrics` | `metering::MeteringLayer`: per-tenant request metrics through the `metrics` facade | no |
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod extract;
mod future;
mod layer;
pub mod limit;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metering;
mod reject;
mod service;
pub mod task;

#[cfg(feature = "axum")]
pub use extract::{CurrentTenant, TenantOptions};
pub use future::ResponseFuture;
pub use layer::{Membership, NoTenant, TenantLayer};
pub use reject::{ProblemResponder, Responder, TenantRejection};
pub use service::{StrippedPrefix, TenantService};
