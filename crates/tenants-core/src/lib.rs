//! Tenant identity for multi-tenant Rust services: who is the tenant of this request,
//! and what do we know about it?
//!
//! `tenants-core` is the HTTP-server- and database-independent part of
//! [`tenants`](https://docs.rs/tenants): the validated [`TenantId`], the [`Tenant`]
//! record with its [`DataModel`] (pool, bridge or silo), the [resolvers](resolve) that
//! find the tenant in a request head, and the [catalogs](catalog) that hold tenant
//! records, with a [`CachedCatalog`] for the request path.
//!
//! # Example
//!
//! ```
//! use tenants_core::resolve::{HeaderResolver, Resolver, ResolverExt, SubdomainResolver};
//! use tenants_core::{CachedCatalog, IdPolicy, StaticCatalog, TenantCatalog, TenantKey};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Who is the tenant? The subdomain of example.com, else the X-Tenant-Id header.
//! let resolver = SubdomainResolver::new(["example.com"])
//!     .id_policy(IdPolicy::new().reserve(["www", "api"]))
//!     .no_tenant_for_foreign_hosts()
//!     .or(HeaderResolver::new("x-tenant-id"));
//!
//! // What do we know about it? A static catalog, cached.
//! let catalog = CachedCatalog::new(StaticCatalog::from_json_str(r#"{"tenants": {
//!     "acme": {"name": "Acme", "model": "bridge", "schema": "acme"}
//! }}"#)?);
//!
//! let request = http::Request::get("/todos").header("host", "acme.example.com").body(())?;
//! let (parts, ()) = request.into_parts();
//! let Some(found) = resolver.resolve(&parts)? else { panic!("no tenant") };
//! let TenantKey::Id(id) = found.key else { panic!("not by id") };
//! let tenant = catalog.get(id).await?.expect("known tenant");
//! assert_eq!(tenant.name, "Acme");
//! assert_eq!(tenant.model.name(), "bridge");
//! # Ok(())
//! # }
//! ```
//!
//! # Feature flags
//!
//! | feature | what it enables | default |
//! |---|---|---|
//! | `toml` | [`StaticCatalog::from_toml_str`] and `.toml` catalog files | yes |
//! | `yaml` | `StaticCatalog::from_yaml_str` and `.yaml`/`.yml` catalog files | no |
//! | `jwt` | `resolve::JwtResolver` and `resolve::IssuerResolver`: the tenant from a verified JWT's claim or issuer (aws-lc-rs) | no |
//! | `remote-jwks` | `resolve::RemoteJwks`: keys from an issuer's JWKS URL or discovery document, refreshed (reqwest with rustls) | no |
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod catalog;
mod error;
mod id;
pub mod resolve;
mod tenant;

pub use catalog::{CachedCatalog, StaticCatalog, TenantCatalog};
pub use error::{Error, TokenError};
pub use id::{IdPolicy, IdRule, MAX_LEN, TenantId};
pub use resolve::{Resolved, Resolver, TenantKey};
pub use tenant::{DataModel, OptionsSection, SqlIdent, Tenant, TenantStatus};
