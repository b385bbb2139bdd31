//! A cache in front of any catalog.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use quick_cache::Equivalent;

use super::TenantCatalog;
use crate::{Error, Tenant, TenantId};

/// A cached answer, a tenant or "no such tenant" (a negative entry), and when it
/// stops being fresh.
///
/// Freshness is read from the coarse monotonic clock (`CLOCK_MONOTONIC_COARSE` on
/// Linux, a few milliseconds of resolution): the hit path reads the clock on every
/// request, and the precise clock costs more than the rest of a hit on some machines.
/// TTLs are seconds, so milliseconds of slack do not matter.
#[derive(Clone)]
struct Entry {
    tenant: Option<Arc<Tenant>>,
    fresh_until: coarsetime::Instant,
}

/// Longest TTL honoured (about 68 years); the coarse clock's range is bounded.
const MAX_TTL: Duration = Duration::from_secs(1 << 31);

fn coarse(ttl: Duration) -> coarsetime::Duration {
    coarsetime::Duration::from(ttl.min(MAX_TTL))
}

fn now() -> coarsetime::Instant {
    // Not `now()`: that also stores into a process-wide cache line on every call.
    coarsetime::Instant::now_without_cache_update()
}

type Load = Shared<BoxFuture<'static, Result<Option<Arc<Tenant>>, Error>>>;

/// One cache: fresh answers by key, plus the loads under way (single flight).
struct Tier<K> {
    entries: quick_cache::sync::Cache<K, Entry>,
    loading: Mutex<HashMap<K, Load>>,
}

impl<K: Eq + Hash + Clone> Tier<K> {
    fn new(capacity: usize) -> Self {
        Tier {
            entries: quick_cache::sync::Cache::new(capacity),
            loading: Mutex::new(HashMap::new()),
        }
    }

    fn fresh<Q: Hash + Equivalent<K> + ?Sized>(&self, key: &Q) -> Option<Option<Arc<Tenant>>> {
        self.entries
            .get(key)
            .filter(|entry| entry.fresh_until > now())
            .map(|entry| entry.tenant)
    }

    /// The load under way for `key`, or a new one made by `start`.
    fn load(&self, key: &K, start: impl FnOnce() -> Load) -> Load {
        let mut loading = self.loading.lock().unwrap_or_else(PoisonError::into_inner);
        loading.entry(key.clone()).or_insert_with(start).clone()
    }

    /// Stores a finished load's answer (made by `answer`, once, by the first waiter
    /// to get here) and forgets the load, unless an invalidation superseded the load
    /// meanwhile: its answer may predate the change that caused the invalidation, so
    /// it is handed to its waiters but neither cached nor remembered.
    fn finish(&self, key: &K, load: &Load, answer: impl FnOnce() -> Option<Entry>) {
        let mut loading = self.loading.lock().unwrap_or_else(PoisonError::into_inner);
        if loading.get(key).is_some_and(|l| l.ptr_eq(load)) {
            if let Some(entry) = answer() {
                self.entries.insert(key.clone(), entry);
            }
            loading.remove(key);
        }
    }

    /// Forgets `key`'s entry and any load under way for it.
    fn forget(&self, key: &K) {
        let mut loading = self.loading.lock().unwrap_or_else(PoisonError::into_inner);
        loading.remove(key);
        self.entries.remove(key);
    }

    fn clear(&self) {
        let mut loading = self.loading.lock().unwrap_or_else(PoisonError::into_inner);
        loading.clear();
        self.entries.clear();
    }
}

/// Caches tenant lookups of an inner catalog.
///
/// - A hit is answered by [`get_now`](TenantCatalog::get_now) without a future or an
///   allocation: a hash lookup, a freshness check against the coarse monotonic clock
///   (milliseconds of resolution, a fraction of the precise clock's cost) and an `Arc`
///   clone.
/// - Misses are single-flight: concurrent lookups of one id cause one inner load, and
///   share its answer, error included.
/// - Unknown ids are cached too (negative caching) with their own, shorter TTL, so a
///   flood of requests for a tenant that does not exist does not reach the store.
/// - When the inner catalog fails, the last record loaded for that id is served (up to
///   [`serve_stale_for`](CachedCatalogBuilder::serve_stale_for) old), so an outage of
///   the catalog store does not take every tenant down.
/// - [`invalidate`](Self::invalidate) drops an entry at once (after a tenant is
///   suspended, say); a PostgreSQL catalog can call it on `NOTIFY`.
///
/// The store is [`quick_cache`] (S3-FIFO eviction): in `benches/resolve.rs` its hit
/// costs about a quarter of a `moka` hit, which alone would exceed the request path's
/// budget.
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
/// assert!(catalog.get_now("acme".parse()?).is_some(), "now cached");
/// catalog.invalidate("acme".parse()?);
/// assert!(catalog.get_now("acme".parse()?).is_none());
/// # Ok(())
/// # }
/// ```
pub struct CachedCatalog<C> {
    inner: Arc<C>,
    by_id: Tier<TenantId>,
    by_domain: Tier<Box<str>>,
    /// Last good record per id and when it was loaded, served while the inner
    /// catalog fails.
    last_known: quick_cache::sync::Cache<TenantId, (Arc<Tenant>, Instant)>,
    ttl: Duration,
    negative_ttl: Duration,
    stale_for: Option<Duration>,
}

impl<C> fmt::Debug for CachedCatalog<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedCatalog")
            .field("entries", &self.by_id.entries.len())
            .field("domain_entries", &self.by_domain.entries.len())
            .field("ttl", &self.ttl)
            .field("negative_ttl", &self.negative_ttl)
            .field("stale_for", &self.stale_for)
            .finish()
    }
}

/// Configures a [`CachedCatalog`]. Every bound has a default, listed on its method.
#[derive(Debug)]
#[must_use = "call .build() to get the catalog"]
pub struct CachedCatalogBuilder<C> {
    inner: C,
    max_capacity: usize,
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
    pub fn invalidate(&self, id: TenantId) {
        self.by_id.forget(&id);
        self.by_domain.clear();
        self.last_known.remove(&id);
    }

    /// Forgets everything cached.
    pub fn invalidate_all(&self) {
        self.by_id.clear();
        self.by_domain.clear();
        self.last_known.clear();
    }

    /// The cache entry for a load's answer. A found record is also remembered for
    /// stale serving; an id the store no longer knows (`looked_up`, for loads by
    /// id) is forgotten there too, so an outage cannot bring a deleted tenant back.
    fn entry(&self, looked_up: Option<TenantId>, tenant: Option<Arc<Tenant>>) -> Entry {
        match (&tenant, looked_up) {
            (Some(tenant), _) if self.stale_for.is_some() => {
                self.last_known
                    .insert(tenant.id, (tenant.clone(), Instant::now()));
            }
            (None, Some(id)) => {
                self.last_known.remove(&id);
            }
            _ => {}
        }
        let ttl = if tenant.is_some() {
            self.ttl
        } else {
            self.negative_ttl
        };
        Entry {
            tenant,
            fresh_until: now().saturating_add(coarse(ttl)),
        }
    }

    fn stale(&self, id: TenantId) -> Option<Arc<Tenant>> {
        let max_age = self.stale_for?;
        let (tenant, loaded) = self.last_known.get(&id)?;
        (loaded.elapsed() <= max_age).then_some(tenant)
    }
}

impl<C: TenantCatalog + 'static> CachedCatalogBuilder<C> {
    /// Most tenants kept (default 10,000); S3-FIFO eviction keeps the busy ones.
    pub fn max_capacity(mut self, tenants: usize) -> Self {
        self.max_capacity = tenants.max(1);
        self
    }

    /// How long a found tenant is served from the cache (default 60 s; at most about
    /// 68 years).
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
        CachedCatalog {
            inner: Arc::new(self.inner),
            by_id: Tier::new(self.max_capacity),
            by_domain: Tier::new(self.max_capacity),
            last_known: quick_cache::sync::Cache::new(self.max_capacity),
            ttl: self.ttl,
            negative_ttl: self.negative_ttl,
            stale_for: self.stale_for,
        }
    }
}

#[async_trait]
impl<C: TenantCatalog + 'static> TenantCatalog for CachedCatalog<C> {
    async fn get(&self, id: TenantId) -> Result<Option<Arc<Tenant>>, Error> {
        if let Some(answer) = self.by_id.fresh(&id) {
            return Ok(answer);
        }
        let load = self.by_id.load(&id, || {
            let inner = self.inner.clone();
            async move { inner.get(id).await }.boxed().shared()
        });
        let answer = load.clone().await;
        self.by_id.finish(&id, &load, || {
            answer
                .as_ref()
                .ok()
                .map(|t| self.entry(Some(id), t.clone()))
        });
        match answer {
            Ok(tenant) => Ok(tenant),
            Err(error) => self.stale(id).map(Some).ok_or(error),
        }
    }

    fn get_now(&self, id: TenantId) -> Option<Option<Arc<Tenant>>> {
        self.by_id.fresh(&id)
    }

    fn get_now_by_domain(&self, domain: &str) -> Option<Option<Arc<Tenant>>> {
        self.by_domain.fresh(domain)
    }

    async fn get_by_domain(&self, domain: &str) -> Result<Option<Arc<Tenant>>, Error> {
        if let Some(answer) = self.by_domain.fresh(domain) {
            return Ok(answer);
        }
        let key: Box<str> = domain.into();
        let load = self.by_domain.load(&key, || {
            let inner = self.inner.clone();
            let domain = key.clone();
            async move { inner.get_by_domain(&domain).await }
                .boxed()
                .shared()
        });
        let answer = load.clone().await;
        self.by_domain.finish(&key, &load, || {
            answer.as_ref().ok().map(|t| self.entry(None, t.clone()))
        });
        answer
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
        /// The store has deleted every tenant.
        emptied: AtomicBool,
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
                emptied: AtomicBool::new(false),
                delay,
            }
        }

        fn loads(&self) -> usize {
            self.loads.load(Ordering::SeqCst)
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
            if self.emptied.load(Ordering::SeqCst) {
                return Ok(None);
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
        assert_eq!(catalog.inner().loads(), 1);
        assert_eq!(catalog.get_now(id("a")).unwrap().unwrap().id, "a", "hit");
        catalog.get(id("a")).await.unwrap();
        assert_eq!(catalog.inner().loads(), 1, "hit");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_share_one_failure() {
        let probe = Probe::new(Duration::from_millis(50));
        probe.failing.store(true, Ordering::SeqCst);
        let catalog = Arc::new(CachedCatalog::new(probe));
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let catalog = catalog.clone();
                tokio::spawn(async move { catalog.get(id("a")).await })
            })
            .collect();
        for task in tasks {
            assert!(matches!(
                task.await.unwrap(),
                Err(Error::CatalogUnavailable(_))
            ));
        }
        assert_eq!(catalog.inner().loads(), 1);
        assert!(catalog.get_now(id("a")).is_none(), "errors are not cached");
    }

    #[tokio::test]
    async fn a_cancelled_load_is_finished_by_the_next_caller() {
        let catalog = CachedCatalog::new(Probe::new(Duration::from_millis(30)));
        let first = catalog.get(id("a"));
        assert!(
            tokio::time::timeout(Duration::from_millis(5), first)
                .await
                .is_err()
        );
        assert_eq!(catalog.get(id("a")).await.unwrap().unwrap().id, "a");
        assert_eq!(
            catalog.inner().loads(),
            1,
            "the second caller joined the first load"
        );
    }

    #[tokio::test]
    async fn unknown_tenants_are_cached_negatively_for_their_own_ttl() {
        let catalog = CachedCatalog::builder(Probe::new(Duration::ZERO))
            .negative_ttl(Duration::from_millis(100))
            .build();
        for _ in 0..10 {
            assert!(catalog.get(id("nobody")).await.unwrap().is_none());
        }
        assert_eq!(catalog.get_now(id("nobody")), Some(None));
        assert_eq!(catalog.inner().loads(), 1);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(catalog.get_now(id("nobody")), None, "expired");
        assert!(catalog.get(id("nobody")).await.unwrap().is_none());
        assert_eq!(catalog.inner().loads(), 2);
        catalog.get(id("a")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        catalog.get(id("a")).await.unwrap();
        assert_eq!(catalog.inner().loads(), 3, "positive ttl is longer");
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

        let short = CachedCatalog::builder(Probe::new(Duration::ZERO))
            .ttl(Duration::from_millis(10))
            .serve_stale_for(Some(Duration::from_millis(50)))
            .build();
        short.get(id("a")).await.unwrap();
        short.inner().failing.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(short.get(id("a")).await.is_err(), "too old to serve");
    }

    #[tokio::test]
    async fn invalidation_reloads() {
        let catalog = CachedCatalog::new(Probe::new(Duration::ZERO));
        assert!(catalog.get(id("a")).await.unwrap().unwrap().is_active());
        assert_eq!(
            catalog.get_by_domain("a.test").await.unwrap().unwrap().id,
            "a"
        );
        catalog.get_by_domain("a.test").await.unwrap();
        assert_eq!(catalog.inner().loads(), 2);
        catalog.invalidate(id("a"));
        catalog.get(id("a")).await.unwrap();
        catalog.get_by_domain("a.test").await.unwrap();
        assert_eq!(catalog.inner().loads(), 4);
        catalog.invalidate_all();
        catalog.get(id("a")).await.unwrap();
        assert_eq!(catalog.inner().loads(), 5);
    }

    #[tokio::test]
    async fn a_load_overtaken_by_invalidation_is_not_cached() {
        let catalog = Arc::new(CachedCatalog::new(Probe::new(Duration::from_millis(50))));
        let early = tokio::spawn({
            let catalog = catalog.clone();
            async move { catalog.get(id("a")).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        // The record changes while the load is under way; its answer may be old.
        catalog.invalidate(id("a"));
        assert!(
            early.await.unwrap().unwrap().is_some(),
            "waiters still get it"
        );
        assert!(
            catalog.get_now(id("a")).is_none(),
            "the superseded answer must not be cached"
        );
        catalog.inner().failing.store(true, Ordering::SeqCst);
        assert!(
            catalog.get(id("a")).await.is_err(),
            "nor kept to serve while the store fails"
        );
        catalog.inner().failing.store(false, Ordering::SeqCst);
        catalog.get(id("a")).await.unwrap();
        assert_eq!(
            catalog.inner().loads(),
            3,
            "a fresh load after invalidation"
        );
    }

    #[tokio::test]
    async fn a_tenant_gone_from_the_store_is_not_served_stale() {
        let catalog = CachedCatalog::builder(Probe::new(Duration::ZERO))
            .ttl(Duration::from_millis(20))
            .negative_ttl(Duration::from_millis(20))
            .build();
        assert!(catalog.get(id("a")).await.unwrap().is_some());
        catalog.inner().emptied.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(catalog.get(id("a")).await.unwrap().is_none(), "deleted");
        catalog.inner().failing.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(
            catalog.get(id("a")).await.is_err(),
            "an outage does not bring the deleted tenant back"
        );
    }
}
