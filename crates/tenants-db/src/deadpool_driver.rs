//! The router on deadpool-postgres: handlers get deadpool-postgres clients, and so
//! every tokio-postgres query method.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{
    Client, Hook, HookError, Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod,
    Runtime,
};
use futures_util::{FutureExt, StreamExt};
use tenants_core::{SqlIdent, Tenant};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio_postgres::{AsyncMessage, SimpleQueryMessage};

use crate::driver::Driver;
use crate::driver::sealed::{Backend, PoolSettings};
use crate::isolation::Scope;
use crate::silo::{IDENTITY_SQL, Identity};
use crate::tls::{self, TlsSettings};
use crate::verify::{HAZARDS_SQL, KEEPS_SESSIONS_READ, session_markers};
use crate::{Error, Hazard, TenantRole, TenantRouter};

/// The deadpool-postgres driver for [`TenantRouter`]: `TenantRouter<Deadpool>`
/// hands out [`TenantTransaction`]s and deadpool-postgres [`Client`]s, both of
/// which dereference to [`tokio_postgres::Client`], so handlers use tokio-postgres'
/// own query methods.
///
/// Connections use TLS as their URL's `sslmode` says, over rustls
/// ([`tls`](crate::tls)); pools recycle with
/// [`RecyclingMethod::Fast`] (a liveness check, no statement: the router puts each
/// session back as it connected in the statement that opens its next use);
/// connections unused for the router's
/// [connection idle timeout](crate::RouterBuilder::connection_idle_timeout) are
/// closed by the router's sweeper, and connections past the router's
/// [connection lifetime](crate::RouterBuilder::connection_lifetime) are closed
/// instead of handed out. A bridge-model connection keeps its deadpool statement
/// cache from one tenant to the next while their schemas have the same shape (the
/// same tables, columns and types: PostgreSQL parses a statement again for the new
/// `search_path`), and has it cleared first when the next schema's shape differs:
/// the cache is keyed by SQL text, and the same text names tables of another shape.
///
/// # Examples
///
/// ```no_run
/// # async fn example(tenant: tenants_core::Tenant) -> Result<(), Box<dyn std::error::Error>> {
/// use tenants_db::{Deadpool, TenantRouter};
///
/// let router = TenantRouter::<Deadpool>::builder()
///     .server("main", "postgres://app@localhost/app")
///     .build()?;
/// let tx = router.begin(&tenant).await?;
/// let rows = tx.query("SELECT id, title FROM todos", &[]).await?;
/// tx.commit().await?;
///
/// // One statement, no transaction: the tenant's settings travel with it.
/// let client = router.client(&tenant).await?;
/// let count: i64 = client.query_one("SELECT count(*) FROM todos", &[]).await?.get(0);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub enum Deadpool {}

impl Driver for Deadpool {}

/// Per router: for which bridge schema shape (fingerprint, or `search_path` where
/// schemas share no statements) each pooled connection's cached statements were
/// prepared.
#[derive(Debug)]
pub struct BridgeStatements(moka::sync::Cache<deadpool_postgres::ObjectId, Arc<str>>);

impl Default for BridgeStatements {
    fn default() -> Self {
        BridgeStatements(moka::sync::Cache::new(10_000))
    }
}

impl Backend for Deadpool {
    type Server = PgServer;
    type Pool = Pool;
    type State = BridgeStatements;

    fn parse_server(url: &str) -> Result<PgServer, Error> {
        parse_url(url)
    }

    fn open_pool(
        server: &PgServer,
        silo: Option<&Arc<Identity>>,
        settings: &PoolSettings,
    ) -> Result<Pool, Error> {
        let mut config = server.config.clone();
        if let Some(identity) = silo {
            config.dbname(identity.database());
            if let Some((name, tenant)) = identity.startup_setting() {
                // A tenant id needs no escaping in `options` (no space, no backslash).
                let setting = format!("-c {name}={tenant}");
                let options = match config.get_options() {
                    Some(given) => format!("{given} {setting}"),
                    None => setting,
                };
                config.options(options);
            }
        }
        let manager = Manager::from_connect(
            config,
            server.connect.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let mut builder = Pool::builder(manager)
            .max_size(settings.max_connections as usize)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(settings.acquire_timeout))
            .create_timeout(Some(settings.acquire_timeout))
            .recycle_timeout(Some(settings.acquire_timeout));
        if let Some(identity) = silo {
            let identity = identity.clone();
            builder = builder.post_create(Hook::async_fn(move |client, _| {
                let identity = identity.clone();
                Box::pin(async move {
                    let rows = client
                        .simple_query(IDENTITY_SQL)
                        .await
                        .map_err(HookError::Backend)?;
                    let (database, setting) = first_row(&rows)
                        .map(|row| (row.get(0).unwrap_or_default(), row.get(1)))
                        .unwrap_or_default();
                    identity
                        .check(database, setting)
                        .map_err(HookError::message)
                })
            }));
        }
        let shapes = settings.shapes.clone();
        let lifetime = settings.lifetime;
        builder = builder.pre_recycle(Hook::sync_fn(move |_, metrics| {
            if metrics.age() >= lifetime {
                return Err(HookError::message("served its lifetime"));
            }
            if shapes
                .as_ref()
                .is_some_and(|shapes| shapes.predates_change(Some(metrics.created)))
            {
                return Err(HookError::message("opened before a migration"));
            }
            Ok(())
        }));
        builder.build().map_err(|e| Error::Config(e.to_string()))
    }

    async fn subscribe(
        server: &PgServer,
        channel: &'static str,
    ) -> Option<UnboundedReceiver<String>> {
        let (client, mut connection) = server.connect.connect_raw(&server.config).await.ok()?;
        let (sender, receiver) = unbounded_channel();
        // The client lives as long as the connection is pumped: dropping it would
        // end the connection.
        let (give_client, keep_client) = tokio::sync::oneshot::channel::<tokio_postgres::Client>();
        tokio::spawn(async move {
            let _client = keep_client;
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            loop {
                tokio::select! {
                    () = sender.closed() => break,
                    message = messages.next() => match message {
                        Some(Ok(AsyncMessage::Notification(notification))) => {
                            if sender.send(notification.payload().to_owned()).is_err() {
                                break;
                            }
                        }
                        Some(Ok(_)) => {}
                        // The connection ended: the receiver sees the end.
                        _ => break,
                    },
                }
            }
        });
        client
            .batch_execute(&format!("LISTEN {channel}"))
            .await
            .ok()?;
        give_client.send(client).ok()?;
        Some(receiver)
    }

    fn is_closed(error: &Error) -> bool {
        matches!(error, Error::Pool(PoolError::Closed))
    }

    fn is_empty(pool: &Pool) -> bool {
        pool.status().size == 0
    }

    fn is_timeout(error: &Error) -> bool {
        matches!(error, Error::Pool(PoolError::Timeout(_)))
    }

    fn is_connect_failure(error: &Error) -> bool {
        // A statement's failure is an `Error::Postgres`; the pool's errors come
        // from opening (or checking) a connection, or from waiting for one.
        matches!(
            error,
            Error::Pool(PoolError::Backend(_) | PoolError::PostCreateHook(_))
        )
    }

    async fn keeps_sessions(pool: &Pool) -> Result<bool, Error> {
        let (mark_first, mark_second, expected) = session_markers();
        let first = pool.get().await?;
        let second = pool.get().await?;
        first.batch_execute(&mark_first).await?;
        second.batch_execute(&mark_second).await?;
        let rows = first.simple_query(KEEPS_SESSIONS_READ).await?;
        Ok(first_row(&rows).and_then(|row| row.get(0)) == Some(expected.as_str()))
    }

    fn size(pool: &Pool) -> usize {
        // A connection being created is not in `size` yet, but its caller is among
        // the users; no pool holds more than its maximum.
        let status = pool.status();
        status
            .size
            .max(users(pool))
            .min(status.max_size.max(status.size))
    }

    fn in_use(pool: &Pool) -> usize {
        users(pool)
    }

    async fn close(pool: &Pool) {
        pool.close();
        // Checked-out clients close as they come back, and a connection being
        // created when the pool closed is handed out first; wait for all of them,
        // so the silo budget is given back only once their connections are gone.
        while pool.status().size > 0 || users(pool) > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn close_idle(pool: &Pool, idle: Duration) {
        // Idle connections are in the pool's queue; `last_used` counts from their
        // last hand-out.
        pool.retain(|_, metrics| metrics.last_used() < idle);
    }

    const STATEMENTS_PER_CONNECTION: bool = true;

    fn bridge_migrated(kept: &BridgeStatements) {
        // Every bridge connection then clears its statement cache at its next
        // hand-out, as when the shape changes.
        kept.0.invalidate_all();
    }

    async fn schema_shape(pool: &Pool, sql: &str) -> Result<String, Error> {
        let client = pool.get().await?;
        let rows = client.simple_query(sql).await?;
        Ok(first_row(&rows)
            .and_then(|row| row.get(0))
            .unwrap_or_default()
            .to_owned())
    }

    async fn hazards(pool: &Pool) -> Result<Vec<Hazard>, Error> {
        // A simple query, which a transaction pooler runs whole on one connection.
        let client = pool.get().await?;
        let rows = client.simple_query(HAZARDS_SQL).await?;
        Ok(rows
            .iter()
            .filter_map(|message| match message {
                SimpleQueryMessage::Row(row) => {
                    Hazard::from_row(row.get(0)?, row.get(1)?.to_owned())
                }
                _ => None,
            })
            .collect())
    }
}

/// Sends `sql` without waiting for the answer, so that it reaches the server ahead
/// of whatever the caller sends next on `client`. `sql` must be written so that its
/// failure fails what follows (an opening from [`Scope`](crate::isolation::Scope)).
fn send_ahead(client: &tokio_postgres::Client, sql: &str) -> Result<(), Error> {
    if let Some(sent) = client.batch_execute(sql).now_or_never() {
        // Answered at once: only a closed connection does that.
        sent?;
    }
    Ok(())
}

/// How far a transaction's opening got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opening {
    /// Awaited and not answered without error yet: dropped in this state (the
    /// caller stopped waiting, or the opening failed), the connection is closed,
    /// not pooled again.
    Unconfirmed,
    /// Answered without error, sent ahead (its failure then fails the caller's
    /// statements, and the end finds what made it fail), or refused without harm
    /// (a role the application may not take: refused before `BEGIN`).
    Done,
}

/// Ends a transaction with `end` ([`COMMIT`] or [`ROLLBACK`]), which also checks,
/// in the same message, that the connection may serve again: `DISCARD TEMP` fails
/// on a hoard of temporary tables too large to lock at once, what makes the next
/// opening fail (the hoard this transaction's own opening met, or one its handler
/// left), and costs nothing on a connection holding no temporary table.
///
/// The end's own outcome, and whether the connection may serve again.
async fn end(client: &Client, end: &str) -> (Result<(), tokio_postgres::Error>, bool) {
    let answer = match client.simple_query_raw(end).await {
        Ok(answer) => answer,
        Err(error) => return (Err(error), false),
    };
    let mut answer = std::pin::pin!(answer);
    let mut ended = false;
    while let Some(message) = answer.next().await {
        match message {
            Ok(SimpleQueryMessage::CommandComplete(_)) if !ended => ended = true,
            Ok(_) => {}
            // After the end, the check failed: the end stands.
            Err(_) if ended => return (Ok(()), false),
            Err(error) => return (Err(error), false),
        }
    }
    (Ok(()), ended)
}

/// Commits, then checks the connection ([`end`]).
const COMMIT: &str = "COMMIT; DISCARD TEMP";

/// Rolls back, then checks the connection ([`end`]).
const ROLLBACK: &str = "ROLLBACK; DISCARD TEMP";

/// A session connection whose opening is not answered yet: dropped (the opening
/// failed, or the caller stopped waiting for it), it is closed, not pooled again.
struct Unopened(Option<Client>);

impl Unopened {
    /// The connection, its opening answered without error.
    fn opened(mut self) -> Client {
        match self.0.take() {
            Some(client) => client,
            // Only this consumes the connection.
            None => unreachable!("an opened connection is taken once"),
        }
    }
}

impl Drop for Unopened {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            drop(Object::take(client));
        }
    }
}

/// Whether `error` is the server refusing the role of `begin_as` (not a member,
/// or no such role): refused before `BEGIN`, it leaves the connection as it was.
fn refused_role(error: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    matches!(
        error.code(),
        Some(&SqlState::INSUFFICIENT_PRIVILEGE | &SqlState::UNDEFINED_OBJECT)
    )
}

/// The first row of a simple query's answer.
fn first_row(messages: &[SimpleQueryMessage]) -> Option<&tokio_postgres::SimpleQueryRow> {
    messages.iter().find_map(|message| match message {
        SimpleQueryMessage::Row(row) => Some(row),
        _ => None,
    })
}

/// Clients checked out of `pool`, plus callers waiting for one, including those
/// whose connection is being created (deadpool counts a connection in `size` only
/// once it exists).
fn users(pool: &Pool) -> usize {
    let status = pool.status();
    status.size - status.available + status.waiting
}

impl TenantRouter<Deadpool> {
    /// Begins a transaction that sees only `tenant`'s data, with no round trip of
    /// its own.
    ///
    /// The message that opens it (the session put back as it connected, `BEGIN`,
    /// the tenant's settings) goes ahead of the caller's first statement without
    /// waiting for its answer: tokio-postgres sends a request when its future is
    /// first polled and the server answers in order. If the opening
    /// fails (a dead connection, or a `DISCARD TEMP` that a handler's hoard of
    /// temporary tables makes fail), the caller's statements fail too: everything
    /// that can fail follows `BEGIN`, and a failure there aborts the transaction.
    /// The message that ends the transaction checks the connection with `DISCARD
    /// TEMP`, and one that fails it (a hoard met, or left) is closed.
    /// (On a Citus coordinator, where the transaction opens in
    /// two messages, and in [`begin_as`](Self::begin_as), whose role can be
    /// refused, the opening is awaited instead, one round trip, and its errors are
    /// returned here.)
    ///
    /// Call [`commit`](TenantTransaction::commit) to keep its work; dropping it (or
    /// [`rollback`](TenantTransaction::rollback)) undoes it.
    ///
    /// # Errors
    ///
    /// [`Error::Inactive`] for a suspended or deleted tenant,
    /// [`Error::UnknownServer`] for a silo on a server the router does not know,
    /// [`Error::BudgetExhausted`] when no silo connection comes free in time,
    /// [`Error::SiloIdentity`] and [`Error::SiloUnavailable`] (inside
    /// [`Error::Shared`]) when a silo connection reaches the wrong database or
    /// cannot be opened, [`Error::Pool`] and [`Error::Postgres`] when the database
    /// fails.
    pub async fn begin(&self, tenant: &Tenant) -> Result<TenantTransaction, Error> {
        self.begin_with_role(tenant, None).await
    }

    /// Like [`begin`](Self::begin), with the transaction running as the tenant's
    /// `role` (`SET LOCAL ROLE`), so the database's grants decide what it may do.
    /// The application role must be a member of the tenant's role.
    pub async fn begin_as(
        &self,
        tenant: &Tenant,
        role: TenantRole,
    ) -> Result<TenantTransaction, Error> {
        self.begin_with_role(tenant, Some(role.role_name(&tenant.id)))
            .await
    }

    async fn begin_with_role(
        &self,
        tenant: &Tenant,
        role: Option<SqlIdent>,
    ) -> Result<TenantTransaction, Error> {
        let (client, scope) = self.connection(tenant, false).await?;
        // From here on, dropping the guard (an error, or this future being
        // cancelled mid-way) rolls back whatever the server got, or closes the
        // connection while an awaited opening is unconfirmed.
        let mut transaction = TenantTransaction {
            client: Some(client),
            opening: Opening::Unconfirmed,
        };
        let opening = scope.begin(role.as_ref());
        if role.is_none() && opening.then.is_none() {
            send_ahead(&transaction, &opening.first)?;
            transaction.opening = Opening::Done;
            return Ok(transaction);
        }
        let opened = async {
            transaction.batch_execute(&opening.first).await?;
            if let Some(then) = &opening.then {
                transaction.batch_execute(then).await?;
            }
            Ok::<_, tokio_postgres::Error>(())
        };
        let opened = opened.await;
        if opened.is_ok() || opened.as_ref().is_err_and(refused_role) {
            transaction.opening = Opening::Done;
        }
        opened?;
        Ok(transaction)
    }

    /// A client scoped to `tenant` for work outside a transaction (each statement
    /// commits on its own).
    ///
    /// One message puts the session back as it connected (whatever a previous user
    /// set: role, `search_path`, any setting) and then makes the tenant's settings
    /// for the session; a silo connection keeps the tenant setting it was opened
    /// with. Unlike [`begin`](Self::begin)'s, it is awaited (one round trip): with no
    /// transaction to abort, nothing would make the caller's statements fail if it
    /// failed (a handler that left more temporary tables than the server can lock
    /// at once makes its `DISCARD TEMP` fail), and they would run without the
    /// tenant's settings, against the leftover tables. A connection whose opening
    /// failed is closed.
    ///
    /// # Errors
    ///
    /// Those of [`begin`](Self::begin), and [`Error::SessionBehindPooler`] when the
    /// tenant's server is declared a transaction pooler, where no session state
    /// survives a statement: use [`begin`](Self::begin) there.
    pub async fn client(&self, tenant: &Tenant) -> Result<Client, Error> {
        let (client, scope) = self.connection(tenant, true).await?;
        let session = Unopened(Some(client));
        if let Some(client) = &session.0 {
            client.batch_execute(&scope.session()).await?;
        }
        Ok(session.opened())
    }

    /// A connection for `tenant`, with its statement cache made safe for the
    /// tenant's schema, and the settings it must carry.
    async fn connection(&self, tenant: &Tenant, session: bool) -> Result<(Client, Scope), Error> {
        let (client, scope) = self
            .hand_out(tenant, session, |pool, scope| async move {
                Ok((pool.get().await?, scope))
            })
            .await?;
        if let Some(key) = scope.statements_key() {
            let kept = &self.inner.driver_state.0;
            let id = Object::id(&client);
            if kept.get(&id).as_deref() != Some(key) {
                client.statement_cache.clear();
                kept.insert(id, key.into());
            }
        }
        Ok((client, scope))
    }
}

/// A tenant transaction on a deadpool-postgres client.
///
/// It dereferences to the client, so every tokio-postgres query method works on
/// it (`query`, `execute`, `prepare_cached`, `copy_in`, ...). End it with
/// [`commit`](Self::commit) or [`rollback`](Self::rollback); dropping it rolls back,
/// in a background task, before the connection goes back to its pool. The message
/// that ends it also runs `DISCARD TEMP`, and a connection where that fails (a
/// handler's hoard of temporary tables too large to lock at once, which would fail
/// every later opening on it), whose end failed, or whose awaited opening was not
/// answered, is closed instead.
pub struct TenantTransaction {
    client: Option<Client>,
    opening: Opening,
}

impl fmt::Debug for TenantTransaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantTransaction").finish_non_exhaustive()
    }
}

impl Deref for TenantTransaction {
    type Target = Client;

    fn deref(&self) -> &Client {
        match &self.client {
            Some(client) => client,
            // Only `commit`, `rollback` and `drop` take the client, and they consume
            // the transaction.
            None => unreachable!("a finished transaction is not reachable"),
        }
    }
}

impl TenantTransaction {
    /// Commits the transaction.
    ///
    /// # Errors
    ///
    /// [`Error::Postgres`] when the server refuses the `COMMIT` (the connection is
    /// then closed). As with tokio-postgres' own transactions, a transaction a
    /// statement aborted answers `COMMIT` by rolling back, without an error.
    pub async fn commit(mut self) -> Result<(), Error> {
        self.finish(COMMIT).await
    }

    /// Rolls the transaction back.
    pub async fn rollback(mut self) -> Result<(), Error> {
        self.finish(ROLLBACK).await
    }

    async fn finish(&mut self, statement: &str) -> Result<(), Error> {
        let Some(client) = self.client.take() else {
            return Ok(());
        };
        let (ended, fit) = end(&client, statement).await;
        if ended.is_err() || !fit {
            // Unknown transaction state, or what would fail the next opening.
            drop(Object::take(client));
        }
        Ok(ended?)
    }
}

impl Drop for TenantTransaction {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        let runtime = tokio::runtime::Handle::try_current();
        match (self.opening, runtime) {
            (Opening::Done, Ok(runtime)) => {
                runtime.spawn(async move {
                    if let (Err(_), _) | (_, false) = end(&client, ROLLBACK).await {
                        drop(Object::take(client));
                    }
                });
            }
            // An unconfirmed opening, or no runtime to roll back on: close the
            // connection rather than return it to the pool in an unknown state.
            _ => drop(Object::take(client)),
        }
    }
}

/// A tokio-postgres configuration and the way to connect with it.
#[derive(Clone)]
pub struct PgServer {
    pub(crate) config: tokio_postgres::Config,
    pub(crate) connect: PgConnect,
}

impl std::fmt::Debug for PgServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgServer")
            .field("config", &self.config)
            .field("allow", &self.connect.allow)
            .finish_non_exhaustive()
    }
}

/// Opens tokio-postgres connections over rustls, with `sslmode=allow`'s retry.
#[derive(Clone)]
pub(crate) struct PgConnect {
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    /// `sslmode=allow`: plain first, TLS when the plain connection fails.
    allow: bool,
}

/// Reads a server URL: its TLS settings ([`tls`]) and the rest, for tokio-postgres.
pub(crate) fn parse_url(url: &str) -> Result<PgServer, Error> {
    use tokio_postgres::config::{ChannelBinding as Binding, SslMode as Mode};

    let (settings, rest) = TlsSettings::from_url(url)?;
    let mut config: tokio_postgres::Config = rest
        .parse()
        .map_err(|e: tokio_postgres::Error| Error::Config(format!("invalid URL: {e}")))?;
    // A TLS setting tokio-postgres read is one the URL parser above did not see:
    // never let the one below overwrite it.
    if config.get_ssl_mode() != Mode::Prefer || config.get_channel_binding() != Binding::Prefer {
        return Err(Error::Tls(
            "the URL carries TLS settings where they cannot be read (a `?` in the user \
             name or password? percent-encode it)"
                .into(),
        ));
    }
    config.ssl_mode(match settings.mode() {
        tls::SslMode::Disable | tls::SslMode::Allow => Mode::Disable,
        tls::SslMode::Prefer => Mode::Prefer,
        tls::SslMode::Require | tls::SslMode::VerifyCa | tls::SslMode::VerifyFull => Mode::Require,
    });
    config.channel_binding(match settings.channel_binding() {
        tls::ChannelBinding::Disable => Binding::Disable,
        tls::ChannelBinding::Prefer => Binding::Prefer,
        tls::ChannelBinding::Require => Binding::Require,
    });
    let connect = PgConnect {
        tls: tokio_postgres_rustls::MakeRustlsConnect::new(settings.client_config()?),
        allow: settings.mode() == tls::SslMode::Allow,
    };
    Ok(PgServer { config, connect })
}

/// A tokio-postgres connection over [`PgConnect`]'s connector.
type PgConnection = tokio_postgres::Connection<
    tokio_postgres::Socket,
    <tokio_postgres_rustls::MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<
        tokio_postgres::Socket,
    >>::Stream,
>;

impl PgConnect {
    /// Connects, and drives the connection on a task of its own; the connection
    /// ends when the client is dropped.
    pub(crate) async fn connect(
        &self,
        config: &tokio_postgres::Config,
    ) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), tokio_postgres::Error> {
        let (client, connection) = self.connect_raw(config).await?;
        let driver = tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended");
            }
        });
        Ok((client, driver))
    }

    /// Connects and hands over the connection itself, for a caller that reads its
    /// messages (`LISTEN`). With `sslmode=allow`, a refused plain connection is
    /// tried again with TLS.
    pub(crate) async fn connect_raw(
        &self,
        config: &tokio_postgres::Config,
    ) -> Result<(tokio_postgres::Client, PgConnection), tokio_postgres::Error> {
        match config.connect(self.tls.clone()).await {
            Err(_) if self.allow => {
                let mut with_tls = config.clone();
                with_tls.ssl_mode(tokio_postgres::config::SslMode::Require);
                with_tls.connect(self.tls.clone()).await
            }
            result => result,
        }
    }
}

impl deadpool_postgres::Connect for PgConnect {
    fn connect(
        &self,
        config: &tokio_postgres::Config,
    ) -> futures_util::future::BoxFuture<
        '_,
        Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>,
    > {
        let config = config.clone();
        Box::pin(async move { PgConnect::connect(self, &config).await })
    }
}
