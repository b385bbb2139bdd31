//! Silo tenants' connection pools: one per tenant database, opened on first use,
//! closed when idle, all of them inside one global connection budget, and every
//! new connection checked before its first hand-out.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tenants_core::{SqlIdent, TenantId};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::driver::sealed::Backend;
use crate::driver::sealed::PoolSettings;
use crate::error::SiloMismatch;
use crate::isolation::Scope;
use crate::{ConnectionMode, Error, TENANT_SETTING};

/// A silo pool: which server, which database, and the tenant its connections are
/// opened for (two tenant records naming one database get a pool each, so a
/// connection only ever carries one tenant's setting).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct SiloKey {
    pub(crate) server: Arc<str>,
    pub(crate) database: SqlIdent,
    pub(crate) tenant: TenantId,
}

/// One open silo pool, the share of the budget it holds, and how its connection
/// attempts have fared.
pub(crate) struct Silo<P> {
    pub(crate) pool: P,
    /// What the pool's connections must show, and what the last failures found.
    pub(crate) identity: Arc<Identity>,
    /// What each transaction must carry: the tenant setting, behind a pooler.
    pub(crate) scope: Scope,
    /// Hand-outs so far, counted up to [`MOST_USES`].
    uses: AtomicU64,
    /// How much the pool is worth keeping when the budget is spent: its uses plus
    /// the budget's age at its last hand-out ([`SiloPools::pool`]).
    worth: AtomicU64,
    /// Milliseconds since the cache's epoch at the last hand-out.
    last_used: AtomicU64,
    /// The budget this pool reserved (its connection cap); given back once the pool
    /// has closed.
    reserved: Mutex<Option<OwnedSemaphorePermit>>,
    /// Chosen to make room: no other caller making room counts on it.
    chosen: AtomicBool,
}

/// The open silo pools.
///
/// Budget: every open pool reserves its per-tenant connection cap from one semaphore
/// of `budget` permits before it exists, and gives the reservation back only after
/// it has closed, so the connections of all silo pools together never exceed the
/// budget, whatever the driver does inside a pool. When the budget is spent, the pool
/// least worth keeping among those with nothing checked out is closed to make room;
/// when every pool is busy, the caller waits up to the acquire timeout.
///
/// Worth is least-frequently-used with dynamic aging (LFU-DA, Arlitt et al., "Evaluating
/// content management techniques for Web proxy caches", 2000): a pool's hand-outs
/// (counted up to [`MOST_USES`], as TinyLFU's counters saturate) plus the budget's
/// age at its last hand-out, the age being the worth of the last pool closed for
/// room; the least recently used goes first among equals. A tenant seen once is
/// closed before one in steady use, however recent, so under skewed traffic the
/// budget keeps the busy tenants' connections (pgbouncer, closing the least
/// recently used idle server connection at its user limit, reconnects them); the
/// age lets a tenant that stopped being busy go after a bounded number of closes.
pub(crate) struct SiloPools<D: Backend> {
    pools: moka::future::Cache<SiloKey, Arc<Silo<D::Pool>>>,
    /// Evicted pools whose connections are still closing; they hold their budget.
    closing: Closing<D::Pool>,
    budget: Arc<Semaphore>,
    /// The worth of the last pool closed for room (never decreasing).
    age: AtomicU64,
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
            age: AtomicU64::new(0),
            budget: Arc::new(Semaphore::new(budget as usize)),
            limit: budget,
            settings,
            epoch: Instant::now(),
        }
    }

    /// The pool of a silo database, opened (within the budget) on first use on a
    /// server reached in `mode`.
    pub(crate) async fn pool(
        &self,
        key: &SiloKey,
        server: &D::Server,
        mode: ConnectionMode,
    ) -> Result<Arc<Silo<D::Pool>>, Error> {
        let silo = match self.pools.get(key).await {
            Some(silo) => silo,
            None => self
                .pools
                .try_get_with_by_ref(key, self.open(key, server, mode))
                .await
                .map_err(Error::unshare)?,
        };
        let uses = (silo.uses.load(Ordering::Relaxed) + 1).min(MOST_USES);
        silo.uses.store(uses, Ordering::Relaxed);
        let age = self.age.load(Ordering::Relaxed);
        silo.worth.store(uses + age, Ordering::Relaxed);
        silo.last_used.store(self.now(), Ordering::Relaxed);
        Ok(silo)
    }

    async fn open(
        &self,
        key: &SiloKey,
        server: &D::Server,
        mode: ConnectionMode,
    ) -> Result<Arc<Silo<D::Pool>>, Error> {
        let reserved = self.reserve().await?;
        let direct = mode == ConnectionMode::Direct;
        let identity = Arc::new(Identity {
            server: key.server.clone(),
            database: key.database.clone(),
            tenant: key.tenant,
            setting_at_connect: direct,
            failure: Mutex::default(),
            failed: tokio::sync::Notify::new(),
        });
        let pool = D::open_pool(server, Some(&identity), &self.settings)?;
        tracing::debug!(server = %key.server, database = %key.database, "opened silo pool");
        Ok(Arc::new(Silo {
            pool,
            identity,
            scope: Scope::silo((!direct).then_some(key.tenant)),
            // Worth its coming first hand-out already, and the most recent among
            // equals: of the pools worth as little, the last to make room.
            uses: AtomicU64::new(0),
            worth: AtomicU64::new(1 + self.age.load(Ordering::Relaxed)),
            last_used: AtomicU64::new(self.now()),
            reserved: Mutex::new(Some(reserved)),
            chosen: AtomicBool::new(false),
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
            self.close_least_worth_keeping().await;
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

    /// Closes the pool least worth keeping among those with no connection checked
    /// out, and ages the budget to its worth. Callers making room at once choose
    /// different pools: two closing one would leave the second waiting for room
    /// that the first takes.
    async fn close_least_worth_keeping(&self) {
        loop {
            let victim = self
                .pools
                .iter()
                .filter(|(_, silo)| {
                    !silo.chosen.load(Ordering::Relaxed) && D::in_use(&silo.pool) == 0
                })
                .min_by_key(|(_, silo)| {
                    let worth = silo.worth.load(Ordering::Relaxed);
                    (worth, silo.last_used.load(Ordering::Relaxed))
                });
            let Some((key, silo)) = victim else {
                return;
            };
            if silo.chosen.swap(true, Ordering::AcqRel) {
                continue;
            }
            tracing::debug!(server = %key.server, database = %key.database, "closing idle silo pool for budget");
            self.age
                .fetch_max(silo.worth.load(Ordering::Relaxed), Ordering::Relaxed);
            self.pools.invalidate(&*key).await;
            return;
        }
    }

    /// Closes the pools of `database` (`None`: every pool) after a migration: their
    /// connections' cached statements may no longer match the tables. Checked-out
    /// connections finish their work first; the next hand-out opens a new pool.
    pub(crate) async fn retire(&self, database: Option<&str>) {
        let keys: Vec<_> = self
            .pools
            .iter()
            .filter(|(key, _)| database.is_none_or(|d| key.database.as_str() == d))
            .map(|(key, _)| key)
            .collect();
        for key in keys {
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

/// The count of hand-outs a silo pool's worth stops growing at: one busy for a
/// long time outlives one busy now by no more than this many steps of the age.
const MOST_USES: u64 = 15;

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

/// What every new connection of a silo pool must show before its first hand-out,
/// and what the pool's last failed connection attempts found.
///
/// The drivers run [`IDENTITY_SQL`] on each new connection (sqlx `after_connect`,
/// deadpool `post_create`) and hand the answer to [`Identity::check`]; a connection
/// that fails is closed by its driver, never handed out. After a failure, hand-outs
/// are refused with the same error for a while that doubles with each failure in a
/// row (from [`FIRST_BACKOFF`] to [`MAX_BACKOFF`]), so a misrouted or refused silo
/// costs one connection attempt per back-off, not one per request.
pub struct Identity {
    pub(crate) server: Arc<str>,
    pub(crate) database: SqlIdent,
    pub(crate) tenant: TenantId,
    /// Whether connections carry the tenant setting from their start (direct
    /// servers); behind a transaction pooler each transaction sets it.
    pub(crate) setting_at_connect: bool,
    failure: Mutex<Option<Failure>>,
    /// Wakes hand-outs waiting for a connection when one fails its check (sqlx
    /// retries a failed `after_connect` until its acquire timeout).
    failed: tokio::sync::Notify,
}

/// What a silo connection reports about itself: its database and tenant setting.
pub(crate) const IDENTITY_SQL: &str =
    "SELECT current_database()::text, current_setting('tenants.tenant_id', true)";

/// The first refusal period after a failed silo connection attempt.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest refusal period, reached after about seven failures in a row.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

struct Failure {
    error: Arc<Error>,
    until: Instant,
    in_a_row: u32,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("server", &self.server)
            .field("database", &self.database)
            .field("tenant", &self.tenant)
            .field("setting_at_connect", &self.setting_at_connect)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// The database a silo connection must reach.
    pub(crate) fn database(&self) -> &str {
        self.database.as_str()
    }

    /// The tenant setting a silo connection must carry from its start, if any
    /// (`options=-c tenants.tenant_id=..`).
    pub(crate) fn startup_setting(&self) -> Option<(&'static str, &str)> {
        self.setting_at_connect
            .then(|| (TENANT_SETTING, self.tenant.as_str()))
    }

    /// Checks what a new connection reported ([`IDENTITY_SQL`]); on a mismatch,
    /// records the failure (starting a refusal period) and returns its message for
    /// the driver's own error.
    pub(crate) fn check(&self, database: &str, setting: Option<&str>) -> Result<(), String> {
        let setting_ok = !self.setting_at_connect || setting == Some(self.tenant.as_str());
        if database == self.database.as_str() && setting_ok {
            return Ok(());
        }
        let error = Error::SiloIdentity(Box::new(SiloMismatch {
            tenant: self.tenant,
            server: self.server.to_string(),
            expected_database: self.database.to_string(),
            found_database: database.to_owned(),
            expected_setting: self.setting_at_connect,
            found_setting: setting.map(str::to_owned),
        }));
        let message = error.to_string();
        self.fail(error);
        self.failed.notify_waiters();
        Err(message)
    }

    /// Hands out through `take`, unless a recent failure is still being served;
    /// a connection failing its check while `take` waits ends the wait with that
    /// failure, and a failed connection attempt starts a refusal period.
    ///
    /// A wait for a connection that ran out while the pool held none (`empty`)
    /// counts as a failed attempt too: the drivers retry a refused connection
    /// until their wait runs out, and every request would wait that long again.
    pub(crate) async fn guard<T, D: Backend>(
        &self,
        take: impl std::future::Future<Output = Result<T, Error>>,
        empty: impl Fn() -> bool,
    ) -> Result<T, Error> {
        if let Some(error) = self.refusing() {
            return Err(Error::Shared(error));
        }
        let failed = self.failed.notified();
        let mut failed = std::pin::pin!(failed);
        failed.as_mut().enable();
        let result = tokio::select! {
            result = take => result,
            () = failed => return Err(self.last_failure()),
        };
        match result {
            Ok(value) => {
                self.recovered();
                Ok(value)
            }
            Err(error) if D::is_connect_failure(&error) || (D::is_timeout(&error) && empty()) => {
                if let Some(error) = self.refusing() {
                    // A connection failed its check while this one connected.
                    return Err(Error::Shared(error));
                }
                let error = Arc::new(Error::SiloUnavailable {
                    tenant: self.tenant,
                    server: self.server.clone(),
                    database: self.database.to_string(),
                    source: Box::new(error),
                });
                Err(Error::Shared(self.fail_shared(error)))
            }
            Err(error) => Err(error),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Failure>> {
        self.failure.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The failure being served, while its refusal period lasts.
    fn refusing(&self) -> Option<Arc<Error>> {
        let failure = self.lock();
        let failure = failure.as_ref()?;
        (Instant::now() < failure.until).then(|| failure.error.clone())
    }

    fn last_failure(&self) -> Error {
        match self.lock().as_ref() {
            Some(failure) => Error::Shared(failure.error.clone()),
            // Only a recorded failure wakes a waiter; a reset in between is a
            // recovery, which the caller may simply retry.
            None => Error::Config("a silo connection failed its check".into()),
        }
    }

    fn fail(&self, error: Error) {
        self.fail_shared(Arc::new(error));
    }

    fn fail_shared(&self, error: Arc<Error>) -> Arc<Error> {
        let mut failure = self.lock();
        if let Some(current) = failure.as_mut()
            && Instant::now() < current.until
        {
            // An attempt still under way when the refusal began (sqlx retries a
            // failed check in the background): the period does not grow for it.
            current.error = error.clone();
            return error;
        }
        let in_a_row = failure.as_ref().map_or(0, |f| f.in_a_row) + 1;
        let backoff = FIRST_BACKOFF
            .saturating_mul(1 << (in_a_row - 1).min(7))
            .min(MAX_BACKOFF);
        tracing::warn!(server = %self.server, database = %self.database, tenant = %self.tenant,
            %error, retry_in = ?backoff, "silo connection refused");
        *failure = Some(Failure {
            error: error.clone(),
            until: Instant::now() + backoff,
            in_a_row,
        });
        error
    }

    fn recovered(&self) {
        let mut failure = self.lock();
        if failure.is_some() {
            *failure = None;
        }
    }
}
