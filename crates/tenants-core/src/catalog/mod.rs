//! Catalogs: where tenant records come from.
//!
//! [`TenantCatalog`] is the trait the layer and router read tenants through.
//! [`StaticCatalog`] holds a fixed set (from code or a file: the "no master database"
//! deployment); [`CachedCatalog`] puts a cache with negative caching, single-flight
//! loads and stale serving in front of any catalog, such as a PostgreSQL-backed one.

mod cached;
mod file;
mod r#static;

use std::sync::Arc;

use async_trait::async_trait;

pub use cached::{CachedCatalog, CachedCatalogBuilder};
pub use r#static::StaticCatalog;

use crate::{Error, Tenant, TenantId};

/// A source of tenant records.
///
/// Implementations return `Ok(None)` for tenants they do not know, and
/// [`Error::CatalogUnavailable`] when their backing store fails (the layer then answers
/// 503, never a default tenant).
#[async_trait]
pub trait TenantCatalog: Send + Sync {
    /// The tenant with this id.
    async fn get(&self, id: TenantId) -> Result<Option<Arc<Tenant>>, Error>;

    /// The answer [`get`](Self::get) would give, when the catalog has it at hand
    /// without waiting (an in-memory catalog, a fresh cache entry); `None` when only
    /// `get` can tell. The request path calls this first, so a cache hit costs no
    /// future and no allocation.
    fn get_now(&self, id: TenantId) -> Option<Option<Arc<Tenant>>> {
        let _ = id;
        None
    }

    /// The tenant owning this custom domain (lowercase, without port or trailing dot).
    async fn get_by_domain(&self, domain: &str) -> Result<Option<Arc<Tenant>>, Error>;

    /// The answer [`get_by_domain`](Self::get_by_domain) would give, when the catalog
    /// has it at hand without waiting, like [`get_now`](Self::get_now).
    fn get_now_by_domain(&self, domain: &str) -> Option<Option<Arc<Tenant>>> {
        let _ = domain;
        None
    }

    /// Every tenant, in id order.
    async fn list(&self) -> Result<Vec<Arc<Tenant>>, Error>;
}

#[async_trait]
impl<C: TenantCatalog + ?Sized> TenantCatalog for Arc<C> {
    async fn get(&self, id: TenantId) -> Result<Option<Arc<Tenant>>, Error> {
        (**self).get(id).await
    }

    fn get_now(&self, id: TenantId) -> Option<Option<Arc<Tenant>>> {
        (**self).get_now(id)
    }

    async fn get_by_domain(&self, domain: &str) -> Result<Option<Arc<Tenant>>, Error> {
        (**self).get_by_domain(domain).await
    }

    fn get_now_by_domain(&self, domain: &str) -> Option<Option<Arc<Tenant>>> {
        (**self).get_now_by_domain(domain)
    }

    async fn list(&self) -> Result<Vec<Arc<Tenant>>, Error> {
        (**self).list().await
    }
}
