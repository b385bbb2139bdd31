//! The router on sqlx: handlers get sqlx's own `Transaction` and `PoolConnection`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use std::sync::Arc;

use sqlx::pool::PoolConnection;
use std::time::Instant;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, Executor, Postgres, Row, Transaction};
use tenants_core::{SqlIdent, Tenant};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use crate::driver::Driver;
use crate::driver::sealed::Backend;
use crate::driver::sealed::{FailedOpenings, PoolSettings};
use crate::isolation::Opening;
use crate::silo::{IDENTITY_SQL, Identity};
use crate::verify::{HAZARDS_SQL, KEEPS_SESSIONS_READ, session_markers};
use crate::{Error, Hazard, TenantRole, TenantRouter};

/// The sqlx driver for [`TenantRouter`]: `TenantRouter<Sqlx>` hands out
/// [`sqlx::Transaction`]s and [`sqlx::pool::PoolConnection`]s.
///
/// Pools are sqlx `PgPool`s. sqlx's prepared statement cache is keyed by SQL text,
/// and the same text names different tables in different tenants' schemas, so
/// bridge tenants are served by two pools: one for the schemas of the shape most
/// schemas have (the same tables, columns and types), whose statements they
/// share (PostgreSQL parses a statement again for the new `search_path`), and one
/// for the others, whose cache lasts one hand-out: it is emptied (the statements
/// closed on the server) when the connection comes back.
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

impl Sqlx {
    /// sqlx connection options for a `postgres://` URL, its TLS parameters read as
    /// libpq reads them ([`tls`](crate::tls)): what the router, the catalog and the
    /// provisioning engine connect with. Build your own pools (a
    /// [`PgCatalog`](crate::PgCatalog)'s, say) from these rather than from
    /// `PgPool::connect(url)`, whose `sslmode=require` does not verify a certificate
    /// even when `sslrootcert` is given.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tenants_db::Error> {
    /// use tenants_db::Sqlx;
    ///
    /// let options = Sqlx::connect_options("postgres://app@db.example.com/app?sslmode=require")?;
    /// let pool = sqlx::postgres::PgPoolOptions::new().connect_lazy_with(options);
    ///
    /// // sqlx cannot retry a refused plain connection with TLS: refused, not weakened.
    /// let allow = Sqlx::connect_options("postgres://app@db.example.com/app?sslmode=allow");
    /// assert!(matches!(allow, Err(tenants_db::Error::Tls(_))));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Tls`] for TLS settings that cannot be honoured (see
    /// [`TlsSettings::from_url`](crate::tls::TlsSettings::from_url); sqlx also
    /// refuses `sslmode=allow`, `channel_binding=require` and `sslsni=0`),
    /// [`Error::Config`] for a URL sqlx cannot parse.
    pub fn connect_options(url: &str) -> Result<PgConnectOptions, Error> {
        crate::tls::sqlx_options(url)
    }

    /// Whether the connections of `pool` keep their session between statements:
    /// `false` behind a transaction-mode pooler, where a setting made on one client
    /// connection is not there for its next statement. Takes two connections of
    /// the pool for a moment (see [`TenantRouter::verify`]).
    ///
    /// # Errors
    ///
    /// [`Error::Database`] when the pool cannot hand out two connections.
    pub async fn keeps_sessions(pool: &PgPool) -> Result<bool, Error> {
        <Sqlx as Backend>::keeps_sessions(pool).await
    }
}

impl Backend for Sqlx {
    type Server = PgConnectOptions;
    type Pool = PgPool;
    type State = ();

    fn parse_server(url: &str) -> Result<PgConnectOptions, Error> {
        Sqlx::connect_options(url)
    }

    fn open_pool(
        server: &PgConnectOptions,
        silo: Option<&Arc<Identity>>,
        settings: &PoolSettings,
    ) -> Result<PgPool, Error> {
        let mut options = server.clone();
        let mut pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .min_connections(0)
            .acquire_timeout(settings.acquire_timeout)
            .idle_timeout(settings.idle_timeout)
            .max_lifetime(settings.lifetime)
            .test_before_acquire(settings.liveness_check);
        if let Some(identity) = silo {
            options = options.database(identity.database());
            if let Some(setting) = identity.startup_setting() {
                options = options.options([setting]);
            }
            let identity = identity.clone();
            pool = pool.after_connect(move |connection, _| {
                let identity = identity.clone();
                Box::pin(async move {
                    // A simple query: no statement outlives it, even behind a pooler.
                    let row = sqlx::raw_sql(IDENTITY_SQL).fetch_one(connection).await?;
                    let database: String = row.try_get(0)?;
                    let setting: Option<String> = row.try_get(1)?;
                    identity
                        .check(&database, setting.as_deref())
                        .map_err(|message| sqlx::Error::Configuration(message.into()))
                })
            });
        }
        // sqlx itself closes a connection past `max_lifetime` only when it comes
        // back or its maintenance task runs; this also keeps one from being handed
        // out, as on deadpool.
        let (shapes, lifetime) = (settings.shapes.clone(), settings.lifetime);
        let failed_openings = settings.failed_openings.clone();
        pool = pool.before_acquire(move |connection, meta| {
            let stale = meta.age >= lifetime
                || shapes.as_ref().is_some_and(|shapes| {
                    shapes.predates_change(Instant::now().checked_sub(meta.age))
                });
            // A connection that came back before its failure was recorded is
            // checked here.
            let check = !stale && failed_openings.recent();
            Box::pin(async move { Ok(!stale && (!check || fit(connection).await)) })
        });
        // With its cache off, sqlx still prepares a named statement for every
        // persistent query and never closes it: the backend would keep every plan
        // until the connection closes. So the cache stays on, to know which
        // statements to close, and empties when the connection comes back, before
        // another tenant's schema could meet them. Emptying it also forgets the type
        // ids sqlx looked up by name, which name the previous tenant's own types (an
        // enum of its schema, say); with nothing cached it sends nothing.
        let clear_statements = !settings.statement_cache;
        let failed_openings = settings.failed_openings.clone();
        pool = pool.after_release(move |connection, _| {
            let check = failed_openings.recent();
            Box::pin(async move {
                if check && !fit(connection).await {
                    return Ok(false);
                }
                if clear_statements {
                    connection.clear_cached_statements().await?;
                }
                Ok(true)
            })
        });
        Ok(pool.connect_lazy_with(options))
    }

    async fn schema_shape(pool: &PgPool, sql: &str) -> Result<String, Error> {
        let row = sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
            .fetch_one(pool)
            .await?;
        Ok(row.try_get(0)?)
    }

    async fn subscribe(
        server: &PgConnectOptions,
        channel: &'static str,
    ) -> Option<UnboundedReceiver<String>> {
        // A pool of its own: the listener keeps its connection for good.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_lazy_with(server.clone());
        let mut listener = PgListener::connect_with(&pool).await.ok()?;
        listener.listen(channel).await.ok()?;
        let (sender, receiver) = unbounded_channel();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = sender.closed() => break,
                    received = listener.try_recv() => match received {
                        Ok(Some(notification)) => {
                            if sender.send(notification.payload().to_owned()).is_err() {
                                break;
                            }
                        }
                        // Lost (`Ok(None)`) or failed: the receiver sees the end.
                        _ => break,
                    },
                }
            }
            drop(listener);
            pool.close().await;
        });
        Some(receiver)
    }

    fn is_closed(error: &Error) -> bool {
        matches!(error, Error::Database(sqlx::Error::PoolClosed))
    }

    fn is_dead_connection(error: &Error) -> bool {
        match error {
            Error::Database(sqlx::Error::Io(_)) => true,
            // admin_shutdown, crash_shutdown, cannot_connect_now: the backend is gone.
            Error::Database(sqlx::Error::Database(db)) => {
                db.code().is_some_and(|code| code.starts_with("57P0"))
            }
            _ => false,
        }
    }

    fn is_empty(pool: &PgPool) -> bool {
        pool.size() == 0
    }

    fn is_timeout(error: &Error) -> bool {
        matches!(error, Error::Database(sqlx::Error::PoolTimedOut))
    }

    fn is_connect_failure(error: &Error) -> bool {
        let Error::Database(error) = error else {
            return false;
        };
        match error {
            sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Configuration(_) => true,
            // Connection exceptions, authorization, no such database: PostgreSQL
            // answers these only to a connection attempt.
            sqlx::Error::Database(db) => db
                .code()
                .is_some_and(|code| ["08", "28", "3D"].iter().any(|c| code.starts_with(c))),
            _ => false,
        }
    }

    async fn keeps_sessions(pool: &PgPool) -> Result<bool, Error> {
        let (mark_first, mark_second, expected) = session_markers();
        let mut first = pool.acquire().await?;
        let mut second = pool.acquire().await?;
        first.execute(AssertSqlSafe(mark_first)).await?;
        second.execute(AssertSqlSafe(mark_second)).await?;
        let row = sqlx::raw_sql(KEEPS_SESSIONS_READ)
            .fetch_one(&mut *first)
            .await?;
        let seen: Option<String> = row.try_get(0)?;
        Ok(seen == Some(expected))
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
        // A simple query, which a transaction pooler runs whole on one connection.
        let rows = sqlx::raw_sql(HAZARDS_SQL).fetch_all(pool).await?;
        let mut hazards = Vec::new();
        for row in rows {
            let kind: String = row.try_get(0)?;
            hazards.extend(Hazard::from_row(&kind, row.try_get(1)?));
        }
        Ok(hazards)
    }
}

/// Whether a connection may be handed out again after an opening failed
/// somewhere ([`FailedOpenings`]): `DISCARD TEMP` fails on a connection inside a
/// failed transaction and on one holding more temporary tables than the server can
/// lock at once (what makes openings fail), and costs nothing on one holding none.
async fn fit(connection: &mut PgConnection) -> bool {
    sqlx::raw_sql("DISCARD TEMP")
        .execute(connection)
        .await
        .is_ok()
}

impl TenantRouter<Sqlx> {
    /// Begins a transaction that sees only `tenant`'s data, with the `BEGIN` message
    /// (isolation adds no round trip). On the shared pools (pool and bridge tenants)
    /// that message is also the liveness check: sqlx's own ping before a hand-out is
    /// off, and a connection found dead is closed and another taken (sqlx still pings
    /// every connection when it comes back).
    ///
    /// Drop it or call `rollback` to undo; `commit` to keep. The tenant's settings
    /// end with the transaction.
    ///
    /// When the server refuses the opening, sqlx gives the connection back to its
    /// pool without saying which it was, possibly inside a failed transaction or
    /// with what made the opening fail (a handler's hoard of temporary tables that
    /// `DISCARD TEMP` cannot lock at once): for 10 s after such an error, every
    /// connection runs `DISCARD TEMP` when it comes back and before it is handed
    /// out, and is closed if that fails.
    ///
    /// # Errors
    ///
    /// [`Error::Inactive`] for a suspended or deleted tenant,
    /// [`Error::UnknownServer`] for a silo on a server the router does not know,
    /// [`Error::BudgetExhausted`] when no silo connection comes free in time,
    /// [`Error::SiloIdentity`] and [`Error::SiloUnavailable`] (inside
    /// [`Error::Shared`]) when a silo connection reaches the wrong database or
    /// cannot be opened, and [`Error::Database`] when the database fails.
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
        let failed_openings = &self.inner.failed_openings;
        self.hand_out(tenant, false, |pool, scope| {
            begin_on(pool, scope.begin(role.as_ref()), failed_openings.clone())
        })
        .await
    }

    /// A connection scoped to `tenant` for work outside a transaction (each
    /// statement commits on its own).
    ///
    /// One statement first puts the session back as it connected (whatever a
    /// previous user set: role, `search_path`, any setting) and then makes the
    /// tenant's settings for the session; a silo connection keeps the tenant
    /// setting it was opened with. A connection whose opening fails is closed.
    ///
    /// # Errors
    ///
    /// Those of [`begin`](Self::begin), and [`Error::SessionBehindPooler`] when the
    /// tenant's server is declared a transaction pooler, where no session state
    /// survives a statement: use [`begin`](Self::begin) there.
    pub async fn acquire(&self, tenant: &Tenant) -> Result<PoolConnection<Postgres>, Error> {
        self.hand_out(tenant, true, |pool, scope| async move {
            let mut session = Unopened(Some(pool.acquire().await?));
            if let Some(connection) = &mut session.0 {
                connection.execute(AssertSqlSafe(scope.session())).await?;
            }
            Ok(session.opened())
        })
        .await
    }
}

/// Begins a transaction with `opening` on a connection of `pool`.
///
/// sqlx gives a connection back to its pool when a `begin` future is dropped while
/// the server is still answering, without knowing whether `BEGIN` ran: the
/// connection could then wait in the pool inside a transaction that still carries
/// this tenant's settings. So a begin the caller stops waiting for is finished in a
/// task of its own, and the transaction nobody wants is then dropped, and so rolled
/// back, like any other.
/// A second message of the opening runs inside the transaction; dropping the
/// transaction on its failure rolls it back.
///
/// When the server refuses the opening (but for a role the application may not
/// take, refused before `BEGIN`), the failure is recorded in `failed_openings`
/// before the caller hears of it, and whether or not the caller still waits: the
/// connection goes back to the pool, and is checked there ([`FailedOpenings`]).
async fn begin_on(
    pool: PgPool,
    opening: Opening,
    failed_openings: Arc<FailedOpenings>,
) -> Result<Transaction<'static, Postgres>, Error> {
    let begin = async move {
        let begun = async {
            let mut transaction = pool.begin_with(AssertSqlSafe(opening.first)).await?;
            if let Some(then) = opening.then {
                transaction.execute(AssertSqlSafe(then)).await?;
            }
            Ok::<_, sqlx::Error>(transaction)
        }
        .await;
        if let Err(sqlx::Error::Database(error)) = &begun
            && !refused_role(error.as_ref())
        {
            failed_openings.record();
        }
        begun
    };
    Ok(FinishOnDrop(Some(Box::pin(begin))).await?)
}

/// Whether the server refused the role of `begin_as` (not a member, or no such
/// role): refused before `BEGIN`, it leaves the connection as it was.
fn refused_role(error: &dyn sqlx::error::DatabaseError) -> bool {
    // insufficient_privilege, undefined_object
    matches!(error.code().as_deref(), Some("42501" | "42704"))
}

/// A session connection whose opening is not answered yet: dropped (the opening
/// failed, or the caller stopped waiting for it), it is closed, not pooled again.
struct Unopened(Option<PoolConnection<Postgres>>);

impl Unopened {
    /// The connection, its opening answered without error.
    fn opened(mut self) -> PoolConnection<Postgres> {
        match self.0.take() {
            Some(connection) => connection,
            // Only this consumes the connection.
            None => unreachable!("an opened connection is taken once"),
        }
    }
}

impl Drop for Unopened {
    fn drop(&mut self) {
        if let Some(mut connection) = self.0.take() {
            connection.close_on_drop();
        }
    }
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
