//! Silo tenants' connection pools: one per tenant database, opened on first use,
//! closed when idle, and all of them inside one global connection budget.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tenants_core::{SqlIdent, TenantId};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::Error;
use crate::driver::sealed::Backend;
use crate::driver::sealed::PoolSettings;

/// A silo pool: which server, which database, and the tenant its connections are
/// opened for (two tenant records naming one database get a pool each, so a
/// connection only ever carries one tenant's setting).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct SiloKey {
    pub(crate) server: Arc<str>,
    pub(crate) database: SqlIdent,
    pub(crate) tenant: TenantId,
}

/// One open silo pool and the share of the budget it holds.
struct Silo<P> {
    pool: P,
    /// Milliseconds since the cache's epoch at the last hand-out.
    last_used: AtomicU64,
    /// The budget this pool reserved (its connection cap); given back once the pool
    /// has closed.
    reserved: Mutex<Option<OwnedSemaphorePermit>>,
}

/// The open silo pools.
///
/// Budget: every open pool reserves its per-tenant connection cap from one semaphore
/// of `budget` permits before it exists, and gives the reservation back only after
/// it has closed, so the connections of all silo pools together never exceed the
/// budget, whatever the driver does inside a pool. When the budget is spent, the
/// least recently used pool with nothing checked out is closed to make room (the way
/// pgbouncer evicts idle server connections at its user limit); when every pool is
/// busy, the caller waits up to the acquire timeout.
pub(crate) struct SiloPools<D: Backend> {
    pools: moka::future::Cache<SiloKey, Arc<Silo<D::Pool>>>,
    /// Evicted pools whose connections are still closing; they hold their budget.
    closing: Closing<D::Pool>,
    budget: Arc<Semaphore>,
    limit: u32,
    settings: PoolSettings,
    epoch: Instant,
}

impl<D: Backend> fmt::Debug for SiloPools<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SiloPools")
            .field("open", &self.pools.entry_count())
            .field("budget", &self.limit)
            .field("budget_free", &self.budget.available_permits())
            .field("per_tenant", &self.settings.max_connections)
            .finish()
    }
}

impl<D: Backend> SiloPools<D> {
    /// Pools of `settings.max_connections` each, `budget` connections in all, closed
    /// after `idle` without a hand-out.
    pub(crate) fn new(settings: PoolSettings, budget: u32, idle: Duration) -> Self {
        let closing = Closing::default();
        let pools = moka::future::Cache::builder()
            .time_to_idle(idle)
            .eviction_listener({
                let closing = closing.clone();
                move |_, silo: Arc<Silo<D::Pool>>, _| close_in_background::<D>(silo, &closing)
            })
            .build();
        SiloPools {
            pools,
            closing,
            budget: Arc::new(Semaphore::new(budget as usize)),
            limit: budget,
            settings,
            epoch: Instant::now(),
        }
    }

    /// The pool of a silo database, opened (within the budget) on first use.
    pub(crate) async fn pool(&self, key: &SiloKey, server: &D::Server) -> Result<D::Pool, Error> {
        let silo = match self.pools.get(key).await {
            Some(silo) => silo,
            None => self
                .pools
                .try_get_with_by_ref(key, self.open(key, server))
                .await
                .map_err(Error::unshare)?,
        };
        silo.last_used.store(self.now(), Ordering::Relaxed);
        Ok(silo.pool.clone())
    }

    async fn open(&self, key: &SiloKey, server: &D::Server) -> Result<Arc<Silo<D::Pool>>, Error> {
        let reserved = self.reserve().await?;
        let pool = D::open_pool(
            server,
            Some((key.database.as_str(), key.tenant)),
            &self.settings,
        )?;
        tracing::debug!(server = %key.server, database = %key.database, "opened silo pool");
        Ok(Arc::new(Silo {
            pool,
            last_used: AtomicU64::new(self.now()),
            reserved: Mutex::new(Some(reserved)),
        }))
    }

    /// Takes one pool's share of the budget, closing idle pools to make room.
    async fn reserve(&self) -> Result<OwnedSemaphorePermit, Error> {
        let share = self.settings.max_connections;
        let deadline = Instant::now() + self.settings.acquire_timeout;
        loop {
            if let Ok(permit) = self.budget.clone().try_acquire_many_owned(share) {
                return Ok(permit);
            }
            self.close_least_recently_used().await;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::BudgetExhausted {
                    budget: self.limit,
                    waited: self.settings.acquire_timeout,
                });
            }
            // Closing gives permits back a moment later; wake on them, or look for
            // a newly idle pool again soon.
            let wait = left.min(Duration::from_millis(50));
            if let Ok(Ok(permit)) =
                tokio::time::timeout(wait, self.budget.clone().acquire_many_owned(share)).await
            {
                return Ok(permit);
            }
        }
    }

    /// Closes the least recently used pool that has no connection checked out.
    async fn close_least_recently_used(&self) {
        let victim = self
            .pools
            .iter()
            .filter(|(_, silo)| D::in_use(&silo.pool) == 0)
            .min_by_key(|(_, silo)| silo.last_used.load(Ordering::Relaxed))
            .map(|(key, _)| key);
        if let Some(key) = victim {
            tracing::debug!(server = %key.server, database = %key.database, "closing idle silo pool for budget");
            self.pools.invalidate(&*key).await;
        }
    }

    /// Open silo pools, and the connections of all silo pools, open or closing.
    pub(crate) fn stats(&self) -> (usize, usize) {
        let open: Vec<_> = self.pools.iter().map(|(_, silo)| silo).collect();
        let mut all: Vec<_> = open
            .iter()
            .chain(self.closing.lock().iter())
            .cloned()
            .collect();
        // A pool evicted while this looked counts once.
        all.sort_by_key(Arc::as_ptr);
        all.dedup_by(|a, b| Arc::ptr_eq(a, b));
        let connections = all.iter().map(|silo| D::size(&silo.pool)).sum();
        (open.len(), connections)
    }

    /// Closes the pools idle for longer than the idle timeout (the cache does this
    /// as a side effect of use; a quiet router needs it done on a timer), and the
    /// idle connections of the others.
    pub(crate) async fn sweep(&self) {
        self.pools.run_pending_tasks().await;
        for (_, silo) in self.pools.iter() {
            D::close_idle(&silo.pool, self.settings.idle_timeout);
        }
    }

    /// Closes every silo pool, waiting for their connections to close.
    pub(crate) async fn close(&self) {
        let open: Vec<_> = self.pools.iter().map(|(_, silo)| silo).collect();
        self.pools.invalidate_all();
        self.pools.run_pending_tasks().await;
        for silo in open {
            D::close(&silo.pool).await;
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// Evicted silo pools still closing.
struct Closing<P>(Arc<Mutex<Vec<Arc<Silo<P>>>>>);

impl<P> Clone for Closing<P> {
    fn clone(&self) -> Self {
        Closing(self.0.clone())
    }
}

impl<P> Default for Closing<P> {
    fn default() -> Self {
        Closing(Arc::default())
    }
}

impl<P> Closing<P> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Silo<P>>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Closes an evicted pool in a task of its own, then gives its budget back. The
/// caller that evicted it (often a request making room for another tenant) waits
/// on the budget, with a deadline, never on the closing itself, which lasts until
/// the pool's checked-out connections come back.
fn close_in_background<D: Backend>(silo: Arc<Silo<D::Pool>>, closing: &Closing<D::Pool>) {
    closing.lock().push(silo.clone());
    let closing = closing.clone();
    let close = async move {
        D::close(&silo.pool).await;
        closing.lock().retain(|other| !Arc::ptr_eq(other, &silo));
        silo.reserved
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    };
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn(close)),
        // Outside a runtime the pool cannot be closed gracefully; dropping it
        // closes its idle connections and gives the budget back.
        Err(_) => drop(close),
    }
}
