//! The router on sqlx: handlers get sqlx's own `Transaction` and `PoolConnection`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Executor, Postgres, Transaction};
use tenants_core::{SqlIdent, Tenant, TenantId};

use crate::driver::Driver;
use crate::driver::sealed::Backend;
use crate::driver::sealed::PoolSettings;
use crate::verify::HAZARDS_SQL;
use crate::{Error, Hazard, TENANT_SETTING, TenantRole, TenantRouter};

/// The sqlx driver for [`TenantRouter`]: `TenantRouter<Sqlx>` hands out
/// [`sqlx::Transaction`]s and [`sqlx::pool::PoolConnection`]s.
///
/// Pools are sqlx `PgPool`s. The bridge-model pool runs without sqlx's prepared
/// statement cache: the cache is keyed by SQL text, and the same text names
/// different tables in different tenants' schemas (PostgreSQL would refuse a cached
/// statement whose result columns changed with the schema).
///
/// # Examples
///
/// ```no_run
/// # async fn example(tenant: tenants_core::Tenant) -> Result<(), Box<dyn std::error::Error>> {
/// use tenants_db::{Sqlx, TenantRouter};
///
/// let router = TenantRouter::<Sqlx>::builder()
///     .server("main", "postgres://app@localhost/app")
///     .build()?;
/// let mut tx = router.begin(&tenant).await?;
/// let todos: Vec<(i64, String)> = sqlx::query_as("SELECT id, title FROM todos")
///     .fetch_all(&mut *tx)
///     .await?;
/// tx.commit().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub enum Sqlx {}

impl Driver for Sqlx {}

impl Backend for Sqlx {
    type Server = PgConnectOptions;
    type Pool = PgPool;
    type State = ();

    fn parse_server(url: &str) -> Result<PgConnectOptions, Error> {
        url.parse()
            .map_err(|e: sqlx::Error| Error::Config(e.to_string()))
    }

    fn open_pool(
        server: &PgConnectOptions,
        silo: Option<(&str, TenantId)>,
        settings: &PoolSettings,
    ) -> Result<PgPool, Error> {
        let mut options = server.clone();
        if let Some((database, tenant)) = silo {
            options = options
                .database(database)
                .options([(TENANT_SETTING, tenant.as_str())]);
        }
        if !settings.statement_cache {
            options = options.statement_cache_capacity(0);
        }
        Ok(PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .min_connections(0)
            .acquire_timeout(settings.acquire_timeout)
            .idle_timeout(settings.idle_timeout)
            .connect_lazy_with(options))
    }

    fn is_closed(error: &Error) -> bool {
        matches!(error, Error::Database(sqlx::Error::PoolClosed))
    }

    fn size(pool: &PgPool) -> usize {
        pool.size() as usize
    }

    fn in_use(pool: &PgPool) -> usize {
        (pool.size() as usize).saturating_sub(pool.num_idle())
    }

    async fn close(pool: &PgPool) {
        pool.close().await;
    }

    async fn hazards(pool: &PgPool) -> Result<Vec<Hazard>, Error> {
        let rows: Vec<(String, String)> = sqlx::query_as(HAZARDS_SQL).fetch_all(pool).await?;
        Ok(rows
            .into_iter()
            .filter_map(|(kind, subject)| Hazard::from_row(&kind, subject))
            .collect())
    }
}

impl TenantRouter<Sqlx> {
    /// Begins a transaction that sees only `tenant`'s data, with the `BEGIN` message
    /// (isolation adds no round trip; sqlx's own liveness check of a pooled
    /// connection stays, as on any sqlx pool).
    ///
    /// Drop it or call `rollback` to undo; `commit` to keep. The tenant's settings
    /// end with the transaction.
    ///
    /// # Errors
    ///
    /// [`Error::Inactive`] for a suspended or deleted tenant,
    /// [`Error::UnknownServer`] for a silo on a server the router does not know,
    /// [`Error::BudgetExhausted`] when no silo connection comes free in time, and
    /// [`Error::Database`] when the database fails.
    pub async fn begin(&self, tenant: &Tenant) -> Result<Transaction<'static, Postgres>, Error> {
        self.begin_with_role(tenant, None).await
    }

    /// Like [`begin`](Self::begin), with the transaction running as the tenant's
    /// `role` (`SET LOCAL ROLE`), so the database's grants decide what it may do.
    /// The application role must be a member of the tenant's role.
    pub async fn begin_as(
        &self,
        tenant: &Tenant,
        role: TenantRole,
    ) -> Result<Transaction<'static, Postgres>, Error> {
        self.begin_with_role(tenant, Some(role.role_name(&tenant.id)))
            .await
    }

    async fn begin_with_role(
        &self,
        tenant: &Tenant,
        role: Option<SqlIdent>,
    ) -> Result<Transaction<'static, Postgres>, Error> {
        self.hand_out(tenant, |pool, scope| {
            begin_on(pool, scope.begin(role.as_ref()))
        })
        .await
    }

    /// A connection scoped to `tenant` for work outside a transaction (each
    /// statement commits on its own).
    ///
    /// The tenant's settings are made for the session, in one statement; every
    /// connection the router hands out from a shared pool gets its own tenant's
    /// settings first, so what a previous user left is replaced before anything else
    /// runs. A silo connection was opened with its tenant's setting and serves no
    /// other tenant: it is handed out as it is.
    pub async fn acquire(&self, tenant: &Tenant) -> Result<PoolConnection<Postgres>, Error> {
        self.hand_out(tenant, |pool, scope| async move {
            let mut connection = pool.acquire().await?;
            if let Some(session) = scope.session() {
                connection.execute(AssertSqlSafe(session)).await?;
            }
            Ok(connection)
        })
        .await
    }
}

/// Begins a transaction with `sql` on a connection of `pool`.
///
/// sqlx gives a connection back to its pool when a `begin` future is dropped while
/// the server is still answering, without knowing whether `BEGIN` ran: the
/// connection could then wait in the pool inside a transaction that still carries
/// this tenant's settings. So a begin the caller stops waiting for is finished in a
/// task of its own, and the transaction nobody wants is then dropped, and so rolled
/// back, like any other.
async fn begin_on(pool: PgPool, sql: String) -> Result<Transaction<'static, Postgres>, Error> {
    let begin = async move { pool.begin_with(AssertSqlSafe(sql)).await };
    Ok(FinishOnDrop(Some(Box::pin(begin))).await?)
}

/// Polls the inner future; if dropped before it finished, finishes it in a task
/// of its own (and drops its output there).
struct FinishOnDrop<F: Future + Send + 'static>(Option<Pin<Box<F>>>)
where
    F::Output: Send;

impl<F: Future + Send + 'static> Future for FinishOnDrop<F>
where
    F::Output: Send,
{
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // Polled after completion: there is nothing left to give.
        let Some(future) = self.0.as_mut() else {
            return Poll::Pending;
        };
        let output = ready!(future.as_mut().poll(cx));
        self.0 = None;
        Poll::Ready(output)
    }
}

impl<F: Future + Send + 'static> Drop for FinishOnDrop<F>
where
    F::Output: Send,
{
    fn drop(&mut self) {
        if let Some(future) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move { drop(future.await) });
        }
    }
}
