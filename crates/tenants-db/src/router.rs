//! [`TenantRouter`]: which pool serves a tenant, and what its connection must carry.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use tenants_core::{DataModel, SqlIdent, Tenant};

use crate::Error;
use crate::driver::Driver;
use crate::driver::sealed::Backend;
use crate::driver::sealed::PoolSettings;
use crate::isolation::Scope;
use crate::placement::active_model;
use crate::silo::{SiloKey, SiloPools};

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
///   own database keep working), so a session needs no statement of its own.
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
    servers: HashMap<Arc<str>, D::Server>,
    default_server: Arc<str>,
    pool_model: D::Pool,
    bridge_model: D::Pool,
    /// The shared schemas as the tail of a bridge tenant's `search_path`
    /// (`, "shared"`), quoted once.
    shared_path: String,
    silos: SiloPools<D>,
    /// What the driver keeps per router (only deadpool keeps anything).
    #[cfg_attr(not(feature = "deadpool"), allow(dead_code))]
    pub(crate) driver_state: D::State,
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
            .field("shared_path", &self.inner.shared_path)
            .field("silos", &self.inner.silos)
            .finish()
    }
}

/// How often a hand-out looks a silo pool up again after finding it closed.
const SILO_RETRIES: usize = 3;

/// A snapshot of the router's silo pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouterStats {
    /// Silo pools open now.
    pub open_silos: usize,
    /// Connections of all silo pools, idle, checked out, being opened, or closing
    /// in a pool that was closed for the budget. Never above the budget.
    pub silo_connections: usize,
}

impl<D: Driver> TenantRouter<D> {
    /// Starts configuring a router on driver `D`. Every setting has a default,
    /// listed on its method; at least one [`server`](RouterBuilder::server) is
    /// required.
    pub fn builder() -> RouterBuilder<D> {
        RouterBuilder {
            servers: Vec::new(),
            default_server: None,
            shared_schemas: Vec::new(),
            pool_connections: 10,
            bridge_connections: 10,
            silo_per_tenant: 2,
            silo_budget: 64,
            silo_idle: Duration::from_secs(300),
            connection_idle: Duration::from_secs(60),
            acquire_timeout: Duration::from_secs(10),
            driver: PhantomData,
        }
    }

    /// Checks the application role on the default server's database and fails with
    /// [`Error::UnsafeRole`] listing every [`Hazard`](crate::Hazard) found: a superuser or
    /// `BYPASSRLS` role, pool tables it owns, pool tables whose row-level security is
    /// not both enabled and forced.
    pub async fn verify(&self) -> Result<(), Error> {
        let hazards = D::hazards(&self.inner.pool_model).await?;
        if hazards.is_empty() {
            Ok(())
        } else {
            Err(Error::UnsafeRole(hazards))
        }
    }
}

impl<D: Driver> TenantRouter<D> {
    /// Hands `tenant`'s pool and the scope its connection must carry to `take`,
    /// which takes a connection. A silo pool the budget closed between lookup and
    /// use is looked up again (up to [`SILO_RETRIES`] times).
    pub(crate) async fn hand_out<T, F, Fut>(&self, tenant: &Tenant, mut take: F) -> Result<T, Error>
    where
        F: FnMut(D::Pool, Scope) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let mut attempt = 0;
        loop {
            let (pool, scope) = self.target(tenant).await?;
            match take(pool, scope).await {
                Err(error) if attempt < SILO_RETRIES && D::is_closed(&error) => attempt += 1,
                result => return result,
            }
        }
    }

    /// Where `tenant`'s connections come from, and what they must carry. Refuses
    /// inactive tenants, and silo tenants on servers the router does not know.
    async fn target(&self, tenant: &Tenant) -> Result<(D::Pool, Scope), Error> {
        let inner = &self.inner;
        Ok(match active_model(tenant)? {
            DataModel::Pool => (inner.pool_model.clone(), Scope::Pool(tenant.id)),
            DataModel::Bridge { schema } => (
                inner.bridge_model.clone(),
                Scope::bridge(tenant.id, schema, &inner.shared_path),
            ),
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
                let key = SiloKey {
                    server: name.clone(),
                    database: database.clone(),
                    tenant: tenant.id,
                };
                (inner.silos.pool(&key, server).await?, Scope::Silo)
            }
        })
    }

    /// Open silo pools and their connections.
    pub fn stats(&self) -> RouterStats {
        let (open_silos, silo_connections) = self.inner.silos.stats();
        RouterStats {
            open_silos,
            silo_connections,
        }
    }

    /// Closes every pool, waiting for checked-out connections to come back.
    pub async fn close(&self) {
        self.inner.silos.close().await;
        D::close(&self.inner.pool_model).await;
        D::close(&self.inner.bridge_model).await;
    }
}

/// Configures a [`TenantRouter`]; get one from [`TenantRouter::builder`].
#[must_use = "call .build() to get the router"]
pub struct RouterBuilder<D> {
    servers: Vec<(String, String)>,
    default_server: Option<String>,
    shared_schemas: Vec<String>,
    pool_connections: u32,
    bridge_connections: u32,
    silo_per_tenant: u32,
    silo_budget: u32,
    silo_idle: Duration,
    connection_idle: Duration,
    acquire_timeout: Duration,
    driver: PhantomData<fn() -> D>,
}

impl<D> fmt::Debug for RouterBuilder<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Server URLs may carry passwords: show their names only.
        let servers: Vec<_> = self.servers.iter().map(|(name, _)| name).collect();
        f.debug_struct("RouterBuilder")
            .field("servers", &servers)
            .field("default_server", &self.default_server)
            .field("shared_schemas", &self.shared_schemas)
            .field("pool_connections", &self.pool_connections)
            .field("bridge_connections", &self.bridge_connections)
            .field("silo_per_tenant", &self.silo_per_tenant)
            .field("silo_budget", &self.silo_budget)
            .field("silo_idle", &self.silo_idle)
            .field("connection_idle", &self.connection_idle)
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

    /// Connections of the shared pool serving bridge-model tenants (default 10).
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
    /// spent, the least recently used idle silo pool is closed to make room.
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

    /// How long a caller waits for a connection or for silo budget (default 10 s).
    pub fn acquire_timeout(mut self, wait: Duration) -> Self {
        self.acquire_timeout = wait;
        self
    }

    /// Builds the router, without connecting: connections open on
    /// first use. Inside a Tokio runtime, it also checks the application role in the
    /// background and logs a warning for each [hazard](crate::Hazard) found.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for no servers, an unparsable URL, an unknown default
    /// server, an unsafe schema name, or sizes that cannot work.
    pub fn build(self) -> Result<TenantRouter<D>, Error> {
        let (first, _) = self
            .servers
            .first()
            .ok_or_else(|| Error::Config("a router needs at least one server".into()))?;
        let default_server: Arc<str> = self.default_server.as_deref().unwrap_or(first).into();
        let mut servers = HashMap::new();
        for (name, url) in &self.servers {
            let server =
                D::parse_server(url).map_err(|e| Error::Config(format!("server {name:?}: {e}")))?;
            if servers
                .insert(Arc::<str>::from(name.as_str()), server)
                .is_some()
            {
                return Err(Error::Config(format!("server {name:?} is listed twice")));
            }
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
        let settings = |max_connections, statement_cache| PoolSettings {
            max_connections,
            acquire_timeout: self.acquire_timeout,
            idle_timeout: self.connection_idle,
            statement_cache,
        };
        let pool_model = D::open_pool(default, None, &settings(self.pool_connections, true))?;
        let bridge_model = D::open_pool(default, None, &settings(self.bridge_connections, false))?;
        let silos = SiloPools::new(
            settings(self.silo_per_tenant, true),
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
                pool_model,
                bridge_model,
                shared_path,
                silos,
                driver_state: D::State::default(),
            }),
        };
        router.warn_about_hazards();
        router.sweep_idle(sweep_every, self.connection_idle);
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
                D::close_idle(&inner.bridge_model, connection_idle);
            }
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
