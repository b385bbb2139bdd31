//! A moka cache in front of any catalog.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use moka::Expiry;

use super::TenantCatalog;
use crate::{Error, Tenant, TenantId};

/// A cached answer: a tenant, or the fact that there is none (negative entry).
#[derive(Clone)]
struct Entry(Option<Arc<Tenant>>);

/// Positive entries live `ttl`, negative ones `negative_ttl`.
struct EntryExpiry {
    ttl: Duration,
    negative_ttl: Duration,
}

impl<K> Expiry<K, Entry> for EntryExpiry {
    fn expire_after_create(&self, _: &K, entry: &Entry, _: Instant) -> Option<Duration> {
        Some(match entry.0 {
            Some(_) => self.ttl,
            None => self.negative_ttl,
        })
    }
}

/// Caches tenant lookups of an inner catalog.
///
/// - Hits cost a hash lookup and an `Arc` clone; no call reaches the inner catalog.
/// - Misses are single-flight: concurrent lookups of one id cause one inner load.
/// - Unknown ids are cached too (negative caching) with their own, shorter TTL, so a
///   flood of requests for a tenant that does not exist does not reach the store.
/// - When the inner catalog fails, the last record loaded for that id is served (up to
///   [`serve_stale_for`](CachedCatalogBuilder::serve_stale_for) old), so an outage of
///   the catalog store does not take every tenant down.
/// - [`invalidate`](Self::invalidate) drops an entry at once (after a tenant is
///   suspended, say); a PostgreSQL catalog can call it on `NOTIFY`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tenants_core::{CachedCatalog, DataModel, StaticCatalog, Tenant, TenantCatalog};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tenants_core::Error> {
/// let store = StaticCatalog::new([Tenant::new("acme".parse()?, DataModel::Pool)])?;
/// let catalog = CachedCatalog::builder(store)
///     .max_capacity(50_000)
///     .ttl(Duration::from_secs(30))
///     .negative_ttl(Duration::from_secs(2))
///     .build();
/// assert!(catalog.get("acme".parse()?).await?.is_some());
/// catalog.invalidate("acme".parse()?).await;
/// # Ok(())
/// # }
/// ```
pub struct CachedCatalog<C> {
    inner: Arc<C>,
    by_id: moka::future::Cache<TenantId, Entry>,
    by_domain: moka::future::Cache<Box<str>, Entry>,
    /// Last good record per id, for serving while the inner catalog fails.
    last_known: Option<moka::sync::Cache<TenantId, Arc<Tenant>>>,
}

impl<C> fmt::Debug for CachedCatalog<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedCatalog")
            .field("entries", &self.by_id.entry_count())
            .field("domain_entries", &self.by_domain.entry_count())
            .field("serves_stale", &self.last_known.is_some())
            .finish()
    }
}

/// Configures a [`CachedCatalog`]. Every bound has a default, listed on its method.
#[derive(Debug)]
#[must_use = "call .build() to get the catalog"]
pub struct CachedCatalogBuilder<C> {
    inner: C,
    max_capacity: u64,
    ttl: Duration,
    negative_ttl: Duration,
    stale_for: Option<Duration>,
}

impl<C: TenantCatalog + 'static> CachedCatalog<C> {
    /// A cache with the default settings in front of `inner`.
    pub fn new(inner: C) -> Self {
        Self::builder(inner).build()
    }

    /// Starts configuring a cache in front of `inner`.
    pub fn builder(inner: C) -> CachedCatalogBuilder<C> {
        CachedCatalogBuilder {
            inner,
            max_capacity: 10_000,
            ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(5),
            stale_for: Some(Duration::from_secs(600)),
        }
    }

    /// The inner catalog.
    pub fn inner(&self) -> &C {
        &self.inner
    }

    /// Forgets what is cached for `id` (and every domain entry), so the next lookup
    /// reads the inner catalog.
    pub async fn invalidate(&self, id: TenantId) {
        self.by_id.invalidate(&id).await;
        self.by_domain.invalidate_all();
        if let Some(last_known) = &self.last_known {
            last_known.invalidate(&id);
        }
    }

    /// Forgets everything cached.
    pub fn invalidate_all(&self) {
        self.by_id.invalidate_all();
        self.by_domain.invalidate_all();
        if let Some(last_known) = &self.last_known {
            last_known.invalidate_all();
        }
    }

    fn remember(&self, entry: &Entry) {
        if let (Some(last_known), Some(tenant)) = (&self.last_known, &entry.0) {
            last_known.insert(tenant.id, tenant.clone());
        }
    }

    fn stale(&self, id: TenantId, error: Arc<Error>) -> Result<Option<Arc<Tenant>>, Error> {
        match self.last_known.as_ref().and_then(|l| l.get(&id)) {
            Some(tenant) => Ok(Some(tenant)),
            None => Err(Error::clone(&error)),
        }
    }
}

impl<C: TenantCatalog + 'static> CachedCatalogBuilder<C> {
    /// Most tenants kept (default 10,000); least recently used ones go first.
    pub fn max_capacity(mut self, tenants: u64) -> Self {
        self.max_capacity = tenants;
        self
    }

    /// How long a found tenant is served from the cache (default 60 s).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long "no such tenant" is remembered (default 5 s).
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }

    /// How old a record may be when it is served because the inner catalog fails
    /// (default 10 minutes; `None` turns stale serving off).
    pub fn serve_stale_for(mut self, max_age: Option<Duration>) -> Self {
        self.stale_for = max_age;
        self
    }

    /// Builds the cache.
    pub fn build(self) -> CachedCatalog<C> {
        let expiry = || EntryExpiry {
            ttl: self.ttl,
            negative_ttl: self.negative_ttl,
        };
        CachedCatalog {
            inner: Arc::new(self.inner),
            by_id: moka::future::Cache::builder()
                .max_capacity(self.max_capacity)
                .expire_after(expiry())
                .build(),
            by_domain: moka::future::Cache::builder()
                .max_capacity(self.max_capacity)
                .expire_after(expiry())
                .build(),
            last_known: self.stale_for.map(|age| {
                moka::sync::Cache::builder()
                    .max_capacity(self.max_capacity)
                    .time_to_live(age)
                    .build()
            }),
        }
    }
}

#[async_trait]
impl<C: TenantCatalog + 'static> TenantCatalog for CachedCatalog<C> {
    async fn get(&self, id: TenantId) -> Result<Option<Arc<Tenant>>, Error> {
        if let Some(entry) = self.by_id.get(&id).await {
            return Ok(entry.0);
        }
        let inner = self.inner.clone();
        let loaded = self
            .by_id
            .try_get_with(id, async move { inner.get(id).await.map(Entry) })
            .await;
        match loaded {
            Ok(entry) => {
                self.remember(&entry);
                Ok(entry.0)
            }
            Err(error) => self.stale(id, error),
        }
    }

    async fn get_by_domain(&self, domain: &str) -> Result<Option<Arc<Tenant>>, Error> {
        if let Some(entry) = self.by_domain.get(domain).await {
            return Ok(entry.0);
        }
        let inner = self.inner.clone();
        let key: Box<str> = domain.into();
        let lookup = key.clone();
        self.by_domain
            .try_get_with(
                key,
                async move { inner.get_by_domain(&lookup).await.map(Entry) },
            )
            .await
            .map(|entry| {
                self.remember(&entry);
                entry.0
            })
            .map_err(|error| Error::clone(&error))
    }

    async fn list(&self) -> Result<Vec<Arc<Tenant>>, Error> {
        self.inner.list().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DataModel, StaticCatalog};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// A catalog that counts loads, can be slowed down and can be made to fail.
    struct Probe {
        inner: StaticCatalog,
        loads: AtomicUsize,
        failing: AtomicBool,
        delay: Duration,
    }

    impl Probe {
        fn new(delay: Duration) -> Self {
            Probe {
                inner: StaticCatalog::new([
                    Tenant::new("a".parse().unwrap(), DataModel::Pool).with_domain("a.test")
                ])
                .unwrap(),
                loads: AtomicUsize::new(0),
                failing: AtomicBool::new(false),
                delay,
            }
        }
    }

    #[derive(Debug, thiserror::Error)]
    #[error("store down")]
    struct Down;

    #[async_trait]
    impl TenantCatalog for Probe {
        async fn get(&self, id: TenantId) -> Result<Option<Arc<Tenant>>, Error> {
            self.loads.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            if self.failing.load(Ordering::SeqCst) {
                return Err(Error::unavailable(Down));
            }
            self.inner.get(id).await
        }
        async fn get_by_domain(&self, domain: &str) -> Result<Option<Arc<Tenant>>, Error> {
            self.loads.fetch_add(1, Ordering::SeqCst);
            self.inner.get_by_domain(domain).await
        }
        async fn list(&self) -> Result<Vec<Arc<Tenant>>, Error> {
            self.inner.list().await
        }
    }

    fn id(s: &str) -> TenantId {
        s.parse().unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_cause_one_load() {
        let catalog = Arc::new(CachedCatalog::new(Probe::new(Duration::from_millis(50))));
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let catalog = catalog.clone();
                tokio::spawn(async move { catalog.get(id("a")).await })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap().unwrap().id, "a");
        }
        assert_eq!(catalog.inner().loads.load(Ordering::SeqCst), 1);
        catalog.get(id("a")).await.unwrap();
        assert_eq!(catalog.inner().loads.load(Ordering::SeqCst), 1, "hit");
    }

    #[tokio::test]
    async fn unknown_tenants_are_cached_negatively_for_their_own_ttl() {
        let catalog = CachedCatalog::builder(Probe::new(Duration::ZERO))
            .negative_ttl(Duration::from_millis(100))
            .build();
        for _ in 0..10 {
            assert!(catalog.get(id("nobody")).await.unwrap().is_none());
        }
        assert_eq!(catalog.inner().loads.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(catalog.get(id("nobody")).await.unwrap().is_none());
        assert_eq!(catalog.inner().loads.load(Ordering::SeqCst), 2, "expired");
        catalog.get(id("a")).await.unwrap();
        catalog.get(id("a")).await.unwrap();
        assert_eq!(
            catalog.inner().loads.load(Ordering::SeqCst),
            3,
            "positive ttl is longer"
        );
    }

    #[tokio::test]
    async fn serves_last_known_record_while_the_store_fails() {
        let catalog = CachedCatalog::builder(Probe::new(Duration::ZERO))
            .ttl(Duration::from_millis(50))
            .build();
        assert!(catalog.get(id("a")).await.unwrap().is_some());
        catalog.inner().failing.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(
            catalog.get(id("a")).await.unwrap().unwrap().id,
            "a",
            "stale"
        );
        assert!(matches!(
            catalog.get(id("b")).await,
            Err(Error::CatalogUnavailable(_))
        ));

        let strict = CachedCatalog::builder(Probe::new(Duration::ZERO))
            .ttl(Duration::from_millis(50))
            .serve_stale_for(None)
            .build();
        strict.get(id("a")).await.unwrap();
        strict.inner().failing.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(strict.get(id("a")).await.is_err());
    }

    #[tokio::test]
    async fn invalidation_reloads() {
        let catalog = CachedCatalog::new(Probe::new(Duration::ZERO));
        assert!(catalog.get(id("a")).await.unwrap().unwrap().is_active());
        assert_eq!(
            catalog.get_by_domain("a.test").await.unwrap().unwrap().id,
            "a"
        );
        catalog.invalidate(id("a")).await;
        catalog.get(id("a")).await.unwrap();
        catalog.get_by_domain("a.test").await.unwrap();
        assert_eq!(catalog.inner().loads.load(Ordering::SeqCst), 4);
        catalog.invalidate_all();
        catalog.get(id("a")).await.unwrap();
        assert_eq!(catalog.inner().loads.load(Ordering::SeqCst), 5);
    }
}
