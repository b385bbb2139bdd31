//! Multi-tenancy for Rust web + PostgreSQL applications.
//!
//! This facade re-exports the `tenants-*` crates; pick the parts with cargo features.
//! [`tenants_core`] (always on) holds tenant identity: [`TenantId`], [`Tenant`],
//! [resolvers](resolve) and [catalogs](catalog); [`tower`] (feature `tower`) holds the
//! layer that puts the tenant into every request, and the axum extractors.
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
//! | `jwt` | `resolve::JwtResolver` and `resolve::IssuerResolver`: the tenant from a verified JWT's claim or issuer (aws-lc-rs) | yes |
//! | `remote-jwks` | `resolve::RemoteJwks`: keys from an issuer's JWKS URL or discovery document, refreshed (reqwest with rustls) | no |
//! | `toml` | TOML catalog files | yes |
//! | `yaml` | YAML catalog files | no |
//! | `tower` | [`tower::TenantLayer`] | yes |
//! | `axum` | axum extractors: `tower::CurrentTenant`, `tower::TenantOptions` | yes |
//! | `metrics` | `tower::metering::MeteringLayer`: per-tenant request metrics | no |
//! | `db` | [`db`]: the connection router | with `sqlite` or `sqlx` |
//! | `sqlite` | `db::sqlite::SqliteSilo`: silo tenants in SQLite files, no server needed | yes |
//! | `sqlx` | PostgreSQL routing handing out sqlx types, and the PostgreSQL catalog | yes |
//! | `provision` | [`provision`]: tenants as code (tenants file, plan, apply, migrate, doctor, move, runtime sign-up) | yes |
//! | `deadpool` | PostgreSQL routing handing out deadpool-postgres clients | no |
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use tenants_core;
pub use tenants_core::*;

/// The tower layer and axum extractors ([`tenants_tower`]).
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod tower {
    pub use tenants_tower::*;
}

/// The connection router ([`tenants_db`]).
#[cfg(feature = "db")]
#[cfg_attr(docsrs, doc(cfg(feature = "db")))]
pub mod db {
    pub use tenants_db::*;
}

/// Tenants as code ([`tenants_provision`]).
#[cfg(feature = "provision")]
#[cfg_attr(docsrs, doc(cfg(feature = "provision")))]
pub mod provision {
    pub use tenants_provision::*;
}
