//! [`TenantRouter`]: which pool serves a tenant, and what its connection must carry.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tenants_core::{DataModel, SqlIdent, Tenant};

use crate::driver::Driver;
use crate::driver::sealed::Backend;
use crate::driver::sealed::{FailedOpenings, PoolSettings};
use crate::isolation::Scope;
use crate::placement::active_model;
use crate::shape::{Heard, Migrated, SchemaShapes, Shapes, schema_shape_sql};
use crate::silo::{Identity, SiloKey, SiloPools};
use crate::{ConnectionMode, Error, Hazard};

/// How long a pooled connection serves by default before it is closed
/// ([`RouterBuilder::connection_lifetime`]): 30 minutes.
pub const DEFAULT_CONNECTION_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// Hands out connections that see only one tenant's data, in the tenant's data model.
///
/// One router serves tenants of every model at once, each as its record says:
///
/// - **pool**: a shared pool to the default server's database; each transaction sets
///   [`tenants.tenant_id`](crate::TENANT_SETTING), which the tables' row-level
///   security policies read.
/// - **bridge**: a second shared pool to the same database; each transaction sets
///   `search_path` to the tenant's schema (then the [shared
///   schemas](RouterBuilder::shared_schemas)).
/// - **silo**: a pool per tenant database, on the server the record names, opened on
///   first use, closed when idle, all within one [connection
///   budget](RouterBuilder::silo_budget). Its connections are opened with
///   `tenants.tenant_id` set to the tenant (policies of a pool tenant moved to its
///   own database keep working), and each new one is checked before its first use
///   ([`Error::SiloIdentity`]).
///
/// Every hand-out puts the connection's session back as it connected, in the
/// message that opens it, and servers behind a transaction pooler are declared
/// with [`RouterBuilder::connection_mode`].
///
/// The driver decides the types handed out: sqlx's own `Transaction` and
/// `PoolConnection` (`Sqlx`, feature `sqlx`) or deadpool-postgres clients
/// (`Deadpool`, feature `deadpool`). Cloning is cheap; clones share the pools.
///
/// # Examples
///
/// ```no_run
/// # #[cfg(feature = "sqlx")]
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use tenants_db::{Sqlx, TenantRouter};
///
/// let router = TenantRouter::<Sqlx>::builder()
///     .server("main", "postgres://app@db.internal/app") // pool and bridge tenants live here
///     .server("eu", "postgres://app@db-eu.internal/postgres") // silo databases on "eu"
///     .shared_schemas(["shared"])
///     .silo_budget(64)
///     .build()?;
/// # Ok(())
/// # }
/// ```
pub struct TenantRouter<D: Driver> {
    pub(crate) inner: Arc<Inner<D>>,
}

pub(crate) struct Inner<D: Backend> {
    servers: HashMap<Arc<str>, Server<D>>,
    default_server: Arc<str>,
    /// How the default server (pool and bridge tenants) is reached.
    default_mode: ConnectionMode,
    /// The default server is a Citus coordinator.
    default_citus: bool,
    pool_model: D::Pool,
    /// Bridge tenants' connections, whose prepared statements serve every schema
    /// of one shape: all of them on a driver that knows each connection's last
    /// shape ([`Backend::STATEMENTS_PER_CONNECTION`]), else those of the common
    /// shape; then the pool is replaced (the old one closed) whenever its
    /// statements may have gone stale ([`Inner::bridge_statements_stale`]).
    bridge_model: RwLock<BridgeModel<D>>,
    /// Replaced bridge pools still closing, for [`TenantRouter::close`] to wait on.
    retiring: std::sync::Mutex<Vec<D::Pool>>,
    /// How the bridge pools are opened.
    bridge_settings: PoolSettings,
    /// Bridge tenants of the other shapes, on a driver that does not know a
    /// connection's last shape: prepared statements last one hand-out.
    bridge_fallback: Option<D::Pool>,
    /// The bridge schemas' fingerprints.
    schema_shapes: SchemaShapes,
    /// The shared schemas as the tail of a bridge tenant's `search_path`
    /// (`, "shared"`), quoted once.
    shared_path: String,
    silos: SiloPools<D>,
    /// When the shared database's migrations last changed its tables' shapes.
    shapes: Arc<Shapes>,
    /// Set by [`TenantRouter::close`]: the migration listener stops.
    closed: AtomicBool,
    /// What the driver keeps per router (only deadpool keeps anything).
    #[cfg_attr(not(feature = "deadpool"), allow(dead_code))]
    pub(crate) driver_state: D::State,
    /// When an opening last failed (sqlx checks its connections for a while after).
    #[cfg_attr(not(feature = "sqlx"), allow(dead_code))]
    pub(crate) failed_openings: Arc<FailedOpenings>,
}

/// The bridge pool whose connections keep statements from one hand-out to the
/// next, and the shape they were prepared for (sqlx; `None` until a shape is
/// common), read and replaced together so that no hand-out takes a pool made for
/// another shape than the one it checked.
struct BridgeModel<D: Backend> {
    pool: D::Pool,
    shape: Option<Arc<str>>,
}

/// A server the router knows: where it is, and how it is reached.
struct Server<D: Backend> {
    connect: D::Server,
    mode: ConnectionMode,
    /// Declared a Citus coordinator ([`RouterBuilder::citus`]).
    citus: bool,
}

/// Where one hand-out's connection comes from.
pub(crate) struct Target<D: Backend> {
    pub(crate) pool: D::Pool,
    pub(crate) scope: Scope,
    /// A silo pool's connection checks, whose failures the hand-out reports.
    identity: Option<Arc<Identity>>,
}

impl<D: Driver> Clone for TenantRouter<D> {
    fn clone(&self) -> Self {
        TenantRouter {
            inner: self.inner.clone(),
        }
    }
}

impl<D: Driver> fmt::Debug for TenantRouter<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut servers: Vec<_> = self.inner.servers.keys().collect();
        servers.sort();
        f.debug_struct("TenantRouter")
            .field("servers", &servers)
            .field("default_server", &self.inner.default_server)
            .field("default_mode", &self.inner.default_mode)
            .field("shared_path", &self.inner.shared_path)
            .field("silos", &self.inner.silos)
            .finish()
    }
}

/// How often a hand-out looks a silo pool up again after finding it closed.
const SILO_RETRIES: usize = 3;

/// A snapshot of the router's silo pools and migration listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouterStats {
    /// Silo pools open now.
    pub open_silos: usize,
    /// Connections of all silo pools, idle, checked out, being opened, or closing
    /// in a pool that was closed for the budget. Never above the budget.
    pub silo_connections: usize,
    /// Migrations announced on [`MIGRATED_CHANNEL`](crate::MIGRATED_CHANNEL) that the router has heard.
    pub migrations_heard: u64,
    /// Whether the router is listening on [`MIGRATED_CHANNEL`](crate::MIGRATED_CHANNEL)
    /// now (never behind a transaction pooler, where no session can listen): only
    /// then do bridge tenants of one schema shape share prepared statements, with
    /// [`RouterBuilder::bridge_statement_sharing`] on.
    pub listening: bool,
}

impl<D: Driver> TenantRouter<D> {
    /// Starts configuring a router on driver `D`. Every setting has a default,
    /// listed on its method; at least one [`server`](RouterBuilder::server) is
    /// required.
    pub fn builder() -> RouterBuilder<D> {
        RouterBuilder {
            servers: Vec::new(),
            modes: Vec::new(),
            citus: Vec::new(),
            default_server: None,
            shared_schemas: Vec::new(),
            pool_connections: 10,
            bridge_connections: 10,
            silo_per_tenant: 2,
            silo_budget: 64,
            silo_idle: Duration::from_secs(300),
            connection_idle: Duration::from_secs(60),
            connection_lifetime: DEFAULT_CONNECTION_LIFETIME,
            acquire_timeout: Duration::from_secs(10),
            bridge_statement_sharing: false,
            driver: PhantomData,
        }
    }

    /// Checks every server before the router serves anyone, and fails with
    /// [`Error::UnsafeRole`] listing every [`Hazard`] found:
    ///
    /// - on each server's own database, the application role: a superuser or
    ///   `BYPASSRLS` role, pool tables it owns, pool tables whose row-level security
    ///   is not both enabled and forced;
    /// - on each server declared [`ConnectionMode::Direct`], that session state
    ///   survives from one statement to the next, which a transaction-mode pooler
    ///   does not keep ([`Hazard::UndeclaredTransactionPooler`]).
    ///
    /// It opens (and closes) two connections per server of its own.
    ///
    /// # Errors
    ///
    /// [`Error::UnsafeRole`] with the hazards, or the error of a server that could
    /// not be checked.
    pub async fn verify(&self) -> Result<(), Error> {
        let mut servers: Vec<_> = self.inner.servers.iter().collect();
        servers.sort_by(|a, b| a.0.cmp(b.0));
        let mut hazards = Vec::new();
        for (name, server) in servers {
            for hazard in check_server::<D>(name, server).await? {
                if !hazards.contains(&hazard) {
                    hazards.push(hazard);
                }
            }
        }
        if hazards.is_empty() {
            Ok(())
        } else {
            Err(Error::UnsafeRole(hazards))
        }
    }
}

/// The hazards of one server: its role's, and an undeclared transaction pooler.
async fn check_server<D: Backend>(name: &str, server: &Server<D>) -> Result<Vec<Hazard>, Error> {
    let settings = PoolSettings {
        max_connections: 2,
        acquire_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(10),
        lifetime: DEFAULT_CONNECTION_LIFETIME,
        statement_cache: false,
        liveness_check: true,
        shapes: None,
        failed_openings: Default::default(),
    };
    let pool = D::open_pool(&server.connect, None, &settings)?;
    let checked = async {
        let mut hazards = D::hazards(&pool).await?;
        // The database reports being a Citus coordinator; only an undeclared one is
        // a hazard, under the router's name for the server.
        hazards.retain(|h| !(server.citus && matches!(h, Hazard::UndeclaredCitus { .. })));
        for hazard in &mut hazards {
            if let Hazard::UndeclaredCitus { server } = hazard {
                name.clone_into(server);
            }
        }
        if server.mode == ConnectionMode::Direct && !D::keeps_sessions(&pool).await? {
            hazards.push(Hazard::UndeclaredTransactionPooler {
                server: name.to_owned(),
            });
        }
        Ok(hazards)
    }
    .await;
    D::close(&pool).await;
    checked
}

impl<D: Driver> TenantRouter<D> {
    /// Hands `tenant`'s pool and the scope its connection must carry to `take`,
    /// which takes a connection. A silo pool the budget closed between lookup and
    /// use is looked up again (up to [`SILO_RETRIES`] times). A `session` hand-out
    /// (outside a transaction) is refused on a server behind a transaction pooler.
    pub(crate) async fn hand_out<T, F, Fut>(
        &self,
        tenant: &Tenant,
        session: bool,
        mut take: F,
    ) -> Result<T, Error>
    where
        F: FnMut(D::Pool, Scope) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let mut attempt = 0;
        loop {
            let target = self.target(tenant, session).await?;
            let (result, shared) = match target.identity {
                Some(identity) => {
                    let pool = target.pool.clone();
                    let taken = take(target.pool, target.scope);
                    (
                        identity.guard::<T, D>(taken, || D::is_empty(&pool)).await,
                        false,
                    )
                }
                None => (take(target.pool, target.scope).await, true),
            };
            // A silo pool the budget closed, or a dead idle connection of a shared
            // pool (they hand out without a liveness round trip of their own).
            let retry =
                |error: &Error| D::is_closed(error) || (shared && D::is_dead_connection(error));
            match result {
                Err(error) if attempt < SILO_RETRIES && retry(&error) => attempt += 1,
                result => return result,
            }
        }
    }

    /// Where `tenant`'s connections come from, and what they must carry. Refuses
    /// inactive tenants, silo tenants on servers the router does not know, and
    /// session hand-outs behind a transaction pooler.
    async fn target(&self, tenant: &Tenant, session: bool) -> Result<Target<D>, Error> {
        let inner = &self.inner;
        let refuse_session = |server: &str, mode| {
            if session && mode == ConnectionMode::TransactionPooler {
                return Err(Error::SessionBehindPooler {
                    tenant: tenant.id,
                    server: server.to_owned(),
                });
            }
            Ok(())
        };
        let refuse_shared = || {
            refuse_session(&inner.default_server, inner.default_mode)?;
            if session && inner.default_citus {
                return Err(Error::SessionOnCitus {
                    tenant: tenant.id,
                    server: inner.default_server.to_string(),
                });
            }
            Ok(())
        };
        let shared = |pool: &D::Pool, scope: Scope| {
            refuse_shared()?;
            Ok(Target {
                pool: pool.clone(),
                scope: scope.on_citus(inner.default_citus),
                identity: None,
            })
        };
        match active_model(tenant)? {
            DataModel::Pool => shared(&inner.pool_model, Scope::pool(tenant.id)),
            DataModel::Bridge { schema } => {
                refuse_shared()?;
                let scope = Scope::bridge(tenant.id, schema, &inner.shared_path);
                let (pool, shape) = self.bridge_pool(schema).await;
                shared(&pool, scope.with_shape(shape))
            }
            DataModel::Silo { server, database } => {
                let name = server.as_deref().unwrap_or(&inner.default_server);
                let (name, server) =
                    inner
                        .servers
                        .get_key_value(name)
                        .ok_or_else(|| Error::UnknownServer {
                            tenant: tenant.id,
                            server: name.to_owned(),
                        })?;
                refuse_session(name, server.mode)?;
                let key = SiloKey {
                    server: name.clone(),
                    database: database.clone(),
                    tenant: tenant.id,
                };
                let silo = inner.silos.pool(&key, &server.connect, server.mode).await?;
                Ok(Target {
                    pool: silo.pool.clone(),
                    scope: silo.scope.clone(),
                    identity: Some(silo.identity.clone()),
                })
            }
        }
    }

    /// The pool for a bridge tenant of `schema`, and the schema's fingerprint
    /// where schemas of one shape share statements (`None`: its connection keeps
    /// statements for it alone, by its `search_path`).
    async fn bridge_pool(&self, schema: &SqlIdent) -> (D::Pool, Option<Arc<str>>) {
        let inner = &self.inner;
        let shape = if inner.schema_shapes.share() {
            self.schema_shape(schema).await
        } else {
            None
        };
        let Some(shape) = shape else {
            // Statements kept for this schema alone (deadpool), or for one
            // hand-out (sqlx).
            let pool = match &inner.bridge_fallback {
                Some(fallback) => fallback.clone(),
                None => inner.bridge_model(),
            };
            return (pool, None);
        };
        let Some(fallback) = &inner.bridge_fallback else {
            return (inner.bridge_model(), Some(shape));
        };
        let model = inner.bridge_model.read().unwrap_or_else(|e| e.into_inner());
        let pool = if model.shape.as_ref() == Some(&shape) {
            model.pool.clone()
        } else {
            fallback.clone()
        };
        (pool, Some(shape))
    }

    /// `schema`'s fingerprint, read on a bridge connection when not known yet;
    /// `None` when it cannot be read (the hand-out then shares no statement, and
    /// meets the same failure itself if the server is gone).
    async fn schema_shape(&self, schema: &SqlIdent) -> Option<Arc<str>> {
        let (inner, shapes) = (&self.inner, &self.inner.schema_shapes);
        if let Some(shape) = shapes.get(schema) {
            return Some(shape);
        }
        let generation = shapes.generation();
        let read = D::schema_shape(&inner.bridge_model(), &schema_shape_sql(schema)).await;
        let shape: Arc<str> = match read {
            Ok(shape) => shape.into(),
            Err(error) => {
                tracing::warn!(%error, %schema, "could not read the schema's shape");
                return None;
            }
        };
        // A reading that raced a migration of the schema may be stale: share
        // nothing on it.
        if !shapes.insert(schema, generation, shape.clone()) {
            return None;
        }
        inner.follow_common_shape();
        Some(shape)
    }

    /// Open silo pools and their connections.
    pub fn stats(&self) -> RouterStats {
        let (open_silos, silo_connections) = self.inner.silos.stats();
        RouterStats {
            open_silos,
            silo_connections,
            migrations_heard: self.inner.shapes.heard(),
            listening: self.inner.schema_shapes.is_listening(),
        }
    }

    /// Closes every pool, waiting for checked-out connections to come back; the
    /// migration listener closes its connection within a few seconds.
    pub async fn close(&self) {
        // Under the bridge pool's lock: no replacement starts after this.
        {
            let _model = self.inner.bridge_model.write();
            self.inner.closed.store(true, Ordering::Relaxed);
        }
        self.inner.silos.close().await;
        D::close(&self.inner.pool_model).await;
        D::close(&self.inner.bridge_model()).await;
        let retiring = std::mem::take(
            &mut *self
                .inner
                .retiring
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for pool in retiring {
            D::close(&pool).await;
        }
        if let Some(fallback) = &self.inner.bridge_fallback {
            D::close(fallback).await;
        }
    }
}

impl<D: Backend> Inner<D> {
    /// The pool of bridge tenants of the common shape (of all, on deadpool).
    fn bridge_model(&self) -> D::Pool {
        let model = self.bridge_model.read().unwrap_or_else(|e| e.into_inner());
        model.pool.clone()
    }

    /// Makes the sqlx bridge pool that keeps statements the common shape's: a
    /// pool made for another shape is replaced.
    fn follow_common_shape(&self) {
        if D::STATEMENTS_PER_CONNECTION {
            return;
        }
        let common = self.schema_shapes.common();
        let mut model = self.bridge_model.write().unwrap_or_else(|e| e.into_inner());
        if model.shape == common {
            return;
        }
        // Until a shape is common no tenant was given the pool: nothing to drop.
        if model.shape.is_some() {
            self.replace_bridge_pool(&mut model);
        }
        model.shape = common;
    }

    /// Whether connections may hold statements of schemas of `shape` that other
    /// schemas run: any shape on deadpool, the shape of the pool that keeps them
    /// on sqlx (the other pool's statements last one hand-out).
    fn shared(&self, shape: &Arc<str>) -> bool {
        if D::STATEMENTS_PER_CONNECTION {
            return true;
        }
        let model = self.bridge_model.read().unwrap_or_else(|e| e.into_inner());
        model.shape.as_ref() == Some(shape)
    }

    /// The bridge connections' statements may not fit their schemas any more:
    /// deadpool clears each connection's cache at its next hand-out; sqlx's pool
    /// of the common shape is replaced by a new one, and the old one closes as
    /// its connections come back (a hand-out that finds it closed takes the
    /// new one).
    fn bridge_statements_stale(&self) {
        if D::STATEMENTS_PER_CONNECTION {
            D::bridge_migrated(&self.driver_state);
            return;
        }
        let mut model = self.bridge_model.write().unwrap_or_else(|e| e.into_inner());
        // Until a shape is common no tenant was given the pool.
        if model.shape.is_some() {
            self.replace_bridge_pool(&mut model);
        }
    }

    /// Puts a new pool in place of `model`'s and closes the old one in the
    /// background (as its connections come back), unless the router is closed.
    fn replace_bridge_pool(&self, model: &mut BridgeModel<D>) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        let Some(server) = self.servers.get(&self.default_server) else {
            return;
        };
        let Ok(fresh) = D::open_pool(&server.connect, None, &self.bridge_settings) else {
            // The settings opened the first pool; a failure here leaves the old one.
            return;
        };
        let old = std::mem::replace(&mut model.pool, fresh);
        let mut retiring = self.retiring.lock().unwrap_or_else(|e| e.into_inner());
        retiring.retain(|pool| !D::is_empty(pool));
        retiring.push(old.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { D::close(&old).await });
        }
    }
}

/// Configures a [`TenantRouter`]; get one from [`TenantRouter::builder`].
#[must_use = "call .build() to get the router"]
pub struct RouterBuilder<D> {
    servers: Vec<(String, String)>,
    modes: Vec<(String, ConnectionMode)>,
    citus: Vec<String>,
    default_server: Option<String>,
    shared_schemas: Vec<String>,
    pool_connections: u32,
    bridge_connections: u32,
    silo_per_tenant: u32,
    silo_budget: u32,
    silo_idle: Duration,
    connection_idle: Duration,
    connection_lifetime: Duration,
    acquire_timeout: Duration,
    bridge_statement_sharing: bool,
    driver: PhantomData<fn() -> D>,
}

impl<D> fmt::Debug for RouterBuilder<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Server URLs may carry passwords: show their names only.
        let servers: Vec<_> = self.servers.iter().map(|(name, _)| name).collect();
        f.debug_struct("RouterBuilder")
            .field("servers", &servers)
            .field("modes", &self.modes)
            .field("citus", &self.citus)
            .field("default_server", &self.default_server)
            .field("shared_schemas", &self.shared_schemas)
            .field("pool_connections", &self.pool_connections)
            .field("bridge_connections", &self.bridge_connections)
            .field("silo_per_tenant", &self.silo_per_tenant)
            .field("silo_budget", &self.silo_budget)
            .field("silo_idle", &self.silo_idle)
            .field("connection_idle", &self.connection_idle)
            .field("connection_lifetime", &self.connection_lifetime)
            .field("acquire_timeout", &self.acquire_timeout)
            .finish()
    }
}

impl<D: Driver> RouterBuilder<D> {
    /// A database server, by the name tenant records use (`server = "eu"`). The first
    /// server added is the default: its URL's database holds the pool and bridge
    /// tenants, and silo tenants without a `server` live on it.
    ///
    /// The URL's role is the application's: it must not be a superuser, have
    /// `BYPASSRLS` or own pool tables ([`verify`](TenantRouter::verify) checks).
    pub fn server(mut self, name: impl Into<String>, url: impl Into<String>) -> Self {
        self.servers.push((name.into(), url.into()));
        self
    }

    /// Declares how the application reaches server `name` (default
    /// [`ConnectionMode::Direct`]). Declare [`ConnectionMode::TransactionPooler`]
    /// for a server URL that points at pgbouncer, Supavisor, PgDog or RDS Proxy in
    /// transaction mode: session hand-outs are then refused, silo tenants carry
    /// their tenant in each transaction, and the router does not listen for
    /// migrations (see [`ConnectionMode`] for what the pooler must do for prepared
    /// statements).
    pub fn connection_mode(mut self, name: impl Into<String>, mode: ConnectionMode) -> Self {
        self.modes.push((name.into(), mode));
        self
    }

    /// Declares server `name` a Citus coordinator (Citus 11 or later), whose workers
    /// hold the shards of its distributed tables and schemas. Pool tenants' rows
    /// then live in tables distributed by `tenant_id`, bridge tenants in
    /// distributed schemas, and the router:
    ///
    /// - opens each transaction with a bare `BEGIN`, then the session reset and
    ///   the tenant's settings (one more round trip): Citus forwards the whole text
    ///   of a message holding a `SET LOCAL` to the workers, and a `BEGIN` in it
    ///   would warn on every worker connection;
    /// - makes Citus forward the transaction's settings to the workers
    ///   (`SET LOCAL citus.propagate_set_commands = 'local'`, Citus's default being
    ///   `none`), so the shards' policies see the tenant;
    /// - refuses session hand-outs of pool and bridge tenants
    ///   ([`Error::SessionOnCitus`]): Citus forwards `SET LOCAL`, never `SET`, and
    ///   the policies on the shards (of pool tables, and of a bridge tenant's
    ///   copies of them) read the tenant setting there.
    ///
    /// The application role should have `citus.propagate_set_commands = 'local'`
    /// too (`tenants apply` sets it; [`verify`](TenantRouter::verify) checks it):
    /// the application's own transactions outside the router would otherwise
    /// reach no tenant's rows on the workers. Pool-table queries are routed to the one shard of the tenant only when they name
    /// it (`WHERE tenant_id = $1`); filtered by the policy alone they reach every
    /// shard, with the same rows. `verify` also reports a Citus coordinator not
    /// declared.
    pub fn citus(mut self, name: impl Into<String>) -> Self {
        self.citus.push(name.into());
        self
    }

    /// Makes another server the default (default: the first one added).
    pub fn default_server(mut self, name: impl Into<String>) -> Self {
        self.default_server = Some(name.into());
        self
    }

    /// Schemas searched after a bridge tenant's own, for shared tables and
    /// extensions (default: none, so a table missing from a tenant's schema is an
    /// error rather than a fall-through to shared data).
    pub fn shared_schemas<I, S>(mut self, schemas: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.shared_schemas = schemas.into_iter().map(Into::into).collect();
        self
    }

    /// Connections of the shared pool serving pool-model tenants (default 10).
    pub fn pool_connections(mut self, max: u32) -> Self {
        self.pool_connections = max;
        self
    }

    /// Whether bridge tenants whose schemas have the same shape (the same tables,
    /// columns and types) share prepared statements (default off). On, a bridge
    /// statement is prepared once per connection and shape rather than once per
    /// hand-out: one round trip less per statement (on the router bench, a
    /// transaction with one point query went from 0.53–0.67 to 0.69–0.99 × the
    /// raw pool). PostgreSQL parses a statement again when `search_path`
    /// changed since its last use, and refuses one whose result would change
    /// shape, so no tenant reads another's tables through it. What it asks:
    ///
    /// - migrations of bridge schemas are announced
    ///   (`pg_notify('tenants_migrated', 'schema:<name>')`, as `tenants migrate`
    ///   does): until then, the statements shared with a migrated schema fail
    ///   ("cached plan must not change result type") on the connections that keep
    ///   them;
    /// - no statement returns a table's whole row (`SELECT t FROM items t`):
    ///   every table has a row type of its own, so such a statement fails in
    ///   every other schema for the life of the connection that keeps it (or use
    ///   unnamed statements for it: sqlx `.persistent(false)`, tokio-postgres
    ///   `query` with a `&str`).
    ///
    /// Schemas share only while the router listens for announcements
    /// ([`RouterStats::listening`]): never behind a transaction pooler.
    pub fn bridge_statement_sharing(mut self, share: bool) -> Self {
        self.bridge_statement_sharing = share;
        self
    }

    /// Connections of the shared pool serving bridge-model tenants (default 10).
    /// On sqlx, bridge tenants whose schema's shape is not the common one have a
    /// second pool of this size (see [`Sqlx`](crate::Sqlx)); a pool replaced after
    /// a migration closes its connections as they come back.
    pub fn bridge_connections(mut self, max: u32) -> Self {
        self.bridge_connections = max;
        self
    }

    /// Most connections one silo tenant's pool may open (default 2). Each open silo
    /// pool reserves this many connections of the [budget](Self::silo_budget).
    pub fn silo_connections_per_tenant(mut self, max: u32) -> Self {
        self.silo_per_tenant = max;
        self
    }

    /// Most connections all silo pools together may hold (default 64). When it is
    /// spent, an idle silo pool is closed to make room: of a tenant seen once before
    /// one in steady use, the least recently used among equals (least frequently
    /// used with dynamic aging, hand-outs counted up to 15), so under skewed traffic
    /// the busy tenants keep their connections.
    pub fn silo_budget(mut self, connections: u32) -> Self {
        self.silo_budget = connections;
        self
    }

    /// How long a silo pool stays open without use (default 5 minutes).
    pub fn silo_idle_timeout(mut self, idle: Duration) -> Self {
        self.silo_idle = idle;
        self
    }

    /// How long an unused connection stays open in any pool (default 60 s).
    pub fn connection_idle_timeout(mut self, idle: Duration) -> Self {
        self.connection_idle = idle;
        self
    }

    /// How long a connection serves before it is closed instead of handed out again
    /// (default [`DEFAULT_CONNECTION_LIFETIME`], 30 minutes, sqlx's own default;
    /// at least 1 s), in every pool that hands out connections. It is checked when
    /// a connection would be handed out (and, on sqlx, when it comes back): one
    /// handed out just before its lifetime ends serves its caller to the end.
    ///
    /// A PostgreSQL backend keeps the catalog entries of every table it has
    /// touched for as long as it lives, and never frees them: about 70 kB per
    /// ten-table bridge schema on PostgreSQL 15, so a connection that has served
    /// 1,000 bridge tenants holds about 70 MB of server memory
    /// (`benches/catalog_memory.rs`). A connection holds what it touched within
    /// its lifetime; a shorter one trades connection set-ups (a few milliseconds
    /// each, more with TLS) and catalog reloads in the new backend for memory.
    pub fn connection_lifetime(mut self, lifetime: Duration) -> Self {
        self.connection_lifetime = lifetime.max(Duration::from_secs(1));
        self
    }

    /// How long a caller waits for a connection or for silo budget (default 10 s).
    pub fn acquire_timeout(mut self, wait: Duration) -> Self {
        self.acquire_timeout = wait;
        self
    }

    /// Builds the router, without connecting: connections open on
    /// first use. Inside a Tokio runtime, it also checks the application role in the
    /// background and logs a warning for each [hazard](crate::Hazard) found, and
    /// (on a direct default server) keeps one connection of its own listening for
    /// migrations on [`MIGRATED_CHANNEL`](crate::MIGRATED_CHANNEL), so statements cached before one are
    /// never used after it.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for no servers, an unparsable URL, an unknown default
    /// server, a connection mode for an unknown server, an unsafe schema name, or
    /// sizes that cannot work.
    pub fn build(self) -> Result<TenantRouter<D>, Error> {
        let (first, _) = self
            .servers
            .first()
            .ok_or_else(|| Error::Config("a router needs at least one server".into()))?;
        let default_server: Arc<str> = self.default_server.as_deref().unwrap_or(first).into();
        let mut servers = HashMap::new();
        for (name, url) in &self.servers {
            let connect = D::parse_server(url).map_err(|e| e.in_server(name))?;
            let server = Server {
                connect,
                mode: ConnectionMode::Direct,
                citus: false,
            };
            if servers
                .insert(Arc::<str>::from(name.as_str()), server)
                .is_some()
            {
                return Err(Error::Config(format!("server {name:?} is listed twice")));
            }
        }
        for (name, mode) in &self.modes {
            let server = servers.get_mut(name.as_str()).ok_or_else(|| {
                Error::Config(format!(
                    "connection mode for server {name:?}, which is not listed"
                ))
            })?;
            server.mode = *mode;
        }
        for name in &self.citus {
            let server = servers.get_mut(name.as_str()).ok_or_else(|| {
                Error::Config(format!("server {name:?} is declared citus but not listed"))
            })?;
            server.citus = true;
        }
        let default = servers.get(&default_server).ok_or_else(|| {
            Error::Config(format!(
                "the default server {default_server:?} is not listed"
            ))
        })?;
        let mut shared_path = String::new();
        for schema in &self.shared_schemas {
            let schema =
                SqlIdent::new(schema).map_err(|e| Error::Config(format!("shared schemas: {e}")))?;
            shared_path.push_str(", ");
            shared_path.push_str(&schema.quoted());
        }
        if self.pool_connections == 0 || self.bridge_connections == 0 || self.silo_per_tenant == 0 {
            return Err(Error::Config("pool sizes must be at least 1".into()));
        }
        if self.silo_per_tenant > self.silo_budget {
            return Err(Error::Config(format!(
                "silo_connections_per_tenant ({}) exceeds silo_budget ({})",
                self.silo_per_tenant, self.silo_budget
            )));
        }
        let default_mode = default.mode;
        let default_citus = default.citus;
        let shapes = Arc::new(Shapes::default());
        let failed_openings = Arc::new(FailedOpenings::default());
        let settings = |max_connections, statement_cache| PoolSettings {
            max_connections,
            acquire_timeout: self.acquire_timeout,
            idle_timeout: self.connection_idle,
            lifetime: self.connection_lifetime,
            statement_cache,
            liveness_check: false,
            shapes: Some(shapes.clone()),
            failed_openings: failed_openings.clone(),
        };
        let pool_model = D::open_pool(
            &default.connect,
            None,
            &settings(self.pool_connections, true),
        )?;
        let bridge_settings = settings(self.bridge_connections, true);
        let bridge_model = D::open_pool(&default.connect, None, &bridge_settings)?;
        let bridge_fallback = (!D::STATEMENTS_PER_CONNECTION)
            .then(|| {
                let settings = settings(self.bridge_connections, false);
                D::open_pool(&default.connect, None, &settings)
            })
            .transpose()?;
        let silos = SiloPools::new(
            // Silo pools keep the driver's liveness check: a dead connection there
            // would read as a failed connect and start the silo's back-off.
            PoolSettings {
                shapes: None,
                liveness_check: true,
                ..settings(self.silo_per_tenant, true)
            },
            self.silo_budget,
            self.silo_idle,
        );
        // Often enough that neither idle timeout is overrun by more than a quarter.
        let sweep_every = (self.silo_idle.min(self.connection_idle) / 4)
            .clamp(Duration::from_millis(50), Duration::from_secs(30));
        let router = TenantRouter {
            inner: Arc::new(Inner {
                servers,
                default_server,
                default_mode,
                default_citus,
                pool_model,
                bridge_model: RwLock::new(BridgeModel {
                    pool: bridge_model,
                    shape: None,
                }),
                retiring: std::sync::Mutex::new(Vec::new()),
                bridge_settings,
                bridge_fallback,
                // Sharing starts once the migration listener listens.
                schema_shapes: SchemaShapes::new(self.bridge_statement_sharing),
                shared_path,
                silos,
                shapes,
                closed: AtomicBool::new(false),
                driver_state: D::State::default(),
                failed_openings,
            }),
        };
        router.warn_about_hazards();
        router.sweep_idle(sweep_every, self.connection_idle);
        if default_mode == ConnectionMode::Direct {
            router.listen_for_migrations();
        }
        Ok(router)
    }
}

impl<D: Driver> TenantRouter<D> {
    /// Closes idle silo pools and idle connections on a timer, for as long as the
    /// router lives, when built inside a Tokio runtime (otherwise idle silo pools
    /// close as a side effect of use).
    fn sweep_idle(&self, every: Duration, connection_idle: Duration) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let inner = Arc::downgrade(&self.inner);
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(inner) = inner.upgrade() else { return };
                inner.silos.sweep().await;
                D::close_idle(&inner.pool_model, connection_idle);
                D::close_idle(&inner.bridge_model(), connection_idle);
                if let Some(fallback) = &inner.bridge_fallback {
                    D::close_idle(fallback, connection_idle);
                }
            }
        });
    }

    /// Listens for migrations on the default server's database, for as long as the
    /// router lives, when built inside a Tokio runtime: a migrated shared database
    /// retires the shared pools' older connections, a migrated silo database closes
    /// its pools (see [`MIGRATED_CHANNEL`](crate::MIGRATED_CHANNEL)). Behind a transaction pooler no session
    /// can listen, so the router does not.
    fn listen_for_migrations(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Some(server) = self.inner.servers.get(&self.inner.default_server) else {
            return;
        };
        let server = server.connect.clone();
        let inner = Arc::downgrade(&self.inner);
        let spawn = runtime.clone();
        runtime.spawn(async move {
            crate::shape::listen::<D>(server, move |heard| {
                let Some(inner) = inner.upgrade() else {
                    return false;
                };
                if inner.closed.load(Ordering::Relaxed) {
                    return false;
                }
                match heard {
                    Heard::Migrated(payload) => match Migrated::parse(payload) {
                        Migrated::Shared => {
                            inner.shapes.changed();
                            let _ = inner.schema_shapes.migrated(None);
                        }
                        Migrated::Schema(schema) => {
                            inner.shapes.heard_other();
                            let schema = SqlIdent::new(schema).ok();
                            let before = inner.schema_shapes.migrated(schema.as_ref());
                            // A statement prepared in the schema between its
                            // migration and now has its new shape, under the old
                            // one's name. A schema the router never served (a new
                            // tenant's) left nothing.
                            let stale = match before {
                                Some(shape) => inner.shared(&shape),
                                // Never read: without sharing, deadpool keeps each
                                // schema's statements from one hand-out to the next.
                                None => schema.is_none() || !inner.schema_shapes.share(),
                            };
                            if stale {
                                inner.bridge_statements_stale();
                            }
                        }
                        Migrated::Database(database) => {
                            inner.shapes.heard_other();
                            let database = database.to_owned();
                            spawn.spawn(async move { inner.silos.retire(Some(&database)).await });
                        }
                    },
                    Heard::Listening => inner.schema_shapes.listening(true),
                    Heard::Lost => inner.schema_shapes.listening(false),
                    Heard::Reconnected => {
                        inner.shapes.changed();
                        spawn.spawn(async move { inner.silos.retire(None).await });
                    }
                    Heard::Quiet => {}
                }
                true
            })
            .await;
        });
    }

    /// Logs a warning for each hazard of the application role, in the background,
    /// when built inside a Tokio runtime.
    fn warn_about_hazards(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let pool = self.inner.pool_model.clone();
        runtime.spawn(async move {
            match D::hazards(&pool).await {
                Ok(hazards) => {
                    for hazard in hazards {
                        tracing::warn!(%hazard, "tenant isolation hazard");
                    }
                }
                Err(error) => tracing::debug!(%error, "could not check the application role"),
            }
        });
    }
}
