//! Resolvers: who is the tenant of this request?
//!
//! A [`Resolver`] reads the request head ([`http::request::Parts`]) synchronously and
//! answers one of three things:
//!
//! - `Ok(Some(resolved))`: the request names a tenant ([`Resolved`]);
//! - `Ok(None)`: the request names no tenant (the layer then applies its
//!   "no tenant" policy);
//! - `Err(error)`: the request names a tenant badly (a malformed id, a hostile host,
//!   a forged token). This is never turned into "no tenant": the request is refused.
//!
//! Resolvers validate the id once, here at the edge; everything downstream receives a
//! [`TenantId`].
//!
//! | resolver | reads |
//! |---|---|
//! | [`SubdomainResolver`] | `acme.example.com` → `acme` |
//! | [`CustomDomainResolver`] | the whole host, looked up in the catalog's `domains` |
//! | [`HeaderResolver`] | a header such as `X-Tenant-Id` |
//! | [`PathResolver`] | a path segment, `/t/{tenant}/...` |
//! | `JwtResolver` (feature `jwt`) | a claim of a verified bearer token |
//! | [`Fixed`], [`from_fn`] | a constant, or any closure |
//!
//! Combine them with [`ResolverExt::or`] (first match) and [`ResolverExt::agree`]
//! (every resolver that finds a tenant must find the same one).
//!
//! # Examples
//!
//! ```
//! use http::Request;
//! use tenants_core::resolve::{HeaderResolver, Resolver, ResolverExt, SubdomainResolver};
//!
//! let resolver = SubdomainResolver::new(["example.com"])
//!     .no_tenant_for_foreign_hosts()
//!     .or(HeaderResolver::new("x-tenant-id"));
//!
//! let (parts, ()) = Request::get("/").header("host", "Acme.example.com:8080")
//!     .body(())?.into_parts();
//! assert_eq!(resolver.resolve(&parts)?.unwrap().id().unwrap(), "acme");
//!
//! let (parts, ()) = Request::get("/").header("host", "localhost")
//!     .header("x-tenant-id", "globex").body(())?.into_parts();
//! assert_eq!(resolver.resolve(&parts)?.unwrap().id().unwrap(), "globex");
//!
//! let (parts, ()) = Request::get("/").header("host", "bad_name.example.com")
//!     .body(())?.into_parts();
//! assert!(resolver.resolve(&parts).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod combinator;
mod header;
mod host;
#[cfg(feature = "jwt")]
mod issuer;
#[cfg(feature = "remote-jwks")]
mod jwks;
#[cfg(feature = "jwt")]
mod jwt;
mod path;
mod token;

use std::sync::Arc;

use http::request::Parts;

pub use combinator::{Agree, FirstMatch, Fixed, FromFn, ResolverExt, from_fn};
pub use header::HeaderResolver;
pub use host::{CustomDomainResolver, SubdomainResolver, request_host};
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub use issuer::IssuerResolver;
#[cfg(feature = "remote-jwks")]
#[cfg_attr(docsrs, doc(cfg(feature = "remote-jwks")))]
pub use jwks::{MIN_INTERVAL_FLOOR, Refresh, RemoteJwks};
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub use jwt::{Algorithm, JwtKeys, JwtResolver, KeySource, install_crypto_provider};
pub use path::PathResolver;
pub use token::VerifiedToken;

use crate::{Error, TenantId};

/// Finds the tenant a request is for. See the [module docs](self).
pub trait Resolver: Send + Sync {
    /// Resolves the tenant of a request from its head.
    fn resolve(&self, parts: &Parts) -> Result<Option<Resolved>, Error>;
}

impl<R: Resolver + ?Sized> Resolver for Arc<R> {
    fn resolve(&self, parts: &Parts) -> Result<Option<Resolved>, Error> {
        (**self).resolve(parts)
    }
}

impl<R: Resolver + ?Sized> Resolver for Box<R> {
    fn resolve(&self, parts: &Parts) -> Result<Option<Resolved>, Error> {
        (**self).resolve(parts)
    }
}

impl<R: Resolver + ?Sized> Resolver for &R {
    fn resolve(&self, parts: &Parts) -> Result<Option<Resolved>, Error> {
        (**self).resolve(parts)
    }
}

/// How a resolver named the tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TenantKey {
    /// By id.
    Id(TenantId),
    /// By custom domain (lowercase, no port, no trailing dot); the catalog maps it to a
    /// tenant with [`TenantCatalog::get_by_domain`](crate::TenantCatalog::get_by_domain).
    Domain(Box<str>),
}

impl std::fmt::Display for TenantKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TenantKey::Id(id) => write!(f, "tenant {id}"),
            TenantKey::Domain(domain) => write!(f, "domain {domain}"),
        }
    }
}

/// A tenant found in a request.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Resolved {
    /// How the request names the tenant.
    pub key: TenantKey,
    /// Length in bytes of the path prefix that named the tenant (`/t/acme` → 7), when a
    /// [`PathResolver`] found it; the layer can strip it for nested routers.
    pub path_prefix: Option<usize>,
    /// The verified bearer token the tenant came from, when a token resolver found it;
    /// the layer reuses it for membership checks instead of verifying twice.
    pub token: Option<Arc<VerifiedToken>>,
}

impl Resolved {
    /// A tenant named by id.
    pub fn from_id(id: TenantId) -> Self {
        Resolved {
            key: TenantKey::Id(id),
            path_prefix: None,
            token: None,
        }
    }

    /// A tenant named by a custom domain.
    pub fn from_domain(domain: impl Into<Box<str>>) -> Self {
        Resolved {
            key: TenantKey::Domain(domain.into()),
            path_prefix: None,
            token: None,
        }
    }

    /// Sets the matched path prefix length.
    pub fn with_path_prefix(mut self, len: usize) -> Self {
        self.path_prefix = Some(len);
        self
    }

    /// Attaches the verified token the tenant came from.
    pub fn with_token(mut self, token: Arc<VerifiedToken>) -> Self {
        self.token = Some(token);
        self
    }

    /// The tenant id, when the tenant is named by id.
    pub fn id(&self) -> Option<TenantId> {
        match self.key {
            TenantKey::Id(id) => Some(id),
            TenantKey::Domain(_) => None,
        }
    }
}
