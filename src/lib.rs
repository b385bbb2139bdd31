//! Multi-tenancy for Rust web + PostgreSQL applications.
//!
//! This facade re-exports the `tenants-*` crates; pick the parts with cargo features.
//! [`tenants_core`] (always on) holds tenant identity: [`TenantId`], [`Tenant`],
//! [resolvers](resolve) and [catalogs](catalog).
//!
//! # Example
//!
//! ```
//! use tenants::resolve::{Resolver, SubdomainResolver};
//!
//! let resolver = SubdomainResolver::new(["example.com"]);
//! let (parts, ()) = http::Request::get("/").header("host", "acme.example.com")
//!     .body(())?.into_parts();
//! assert_eq!(resolver.resolve(&parts)?.unwrap().id().unwrap(), "acme");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Feature flags
//!
//! | feature | what it enables | default |
//! |---|---|---|
//! | `jwt` | `resolve::JwtResolver`: the tenant from a verified JWT claim | yes |
//! | `toml` | TOML catalog files | yes |
//! | `yaml` | YAML catalog files | no |
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use tenants_core;
pub use tenants_core::*;
