//! Silo tenants in SQLite files: one database file per tenant in a directory.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{Sqlite, Transaction};
use tenants_core::{DataModel, SqlIdent, Tenant};

use crate::Error;
use crate::placement::active_model;

/// Routes silo tenants to SQLite files, one per tenant: `{dir}/{database}.sqlite3`.
///
/// Each tenant's file gets its own small connection pool, opened (and migrated, when
/// [`migrations`](Self::migrations) are set) on first use and closed after
/// [`idle_timeout`](Self::idle_timeout) without use; at most
/// [`max_open_tenants`](Self::max_open_tenants) pools are open at once. The file name
/// comes from the tenant's validated `database` name, never from request input.
/// Tenants of other models are refused with [`Error::ModelNotServed`].
///
/// See the [crate docs](crate) for an example.
#[derive(Clone)]
pub struct SqliteSilo {
    dir: PathBuf,
    max_connections: u32,
    idle_timeout: Duration,
    max_open_tenants: u64,
    migrator: Option<Arc<Migrator>>,
    pools: moka::future::Cache<SqlIdent, SqlitePool>,
}

impl fmt::Debug for SqliteSilo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteSilo")
            .field("dir", &self.dir)
            .field("max_connections", &self.max_connections)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_open_tenants", &self.max_open_tenants)
            .field("open_tenants", &self.pools.entry_count())
            .finish()
    }
}

impl SqliteSilo {
    /// Tenant files in `dir` (created on first use), with the defaults listed on each
    /// builder method.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let mut silo = SqliteSilo {
            dir: dir.into(),
            max_connections: 4,
            idle_timeout: Duration::from_secs(600),
            max_open_tenants: 1_000,
            migrator: None,
            pools: moka::future::Cache::new(0),
        };
        silo.pools = silo.cache();
        silo
    }

    fn cache(&self) -> moka::future::Cache<SqlIdent, SqlitePool> {
        moka::future::Cache::builder()
            .max_capacity(self.max_open_tenants)
            .time_to_idle(self.idle_timeout)
            .async_eviction_listener(|_, pool: SqlitePool, _| {
                Box::pin(async move { pool.close().await })
            })
            .build()
    }

    /// Connections per tenant file (default 4).
    pub fn max_connections(mut self, per_tenant: u32) -> Self {
        self.max_connections = per_tenant.max(1);
        self
    }

    /// How long an unused tenant pool stays open (default 10 minutes).
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = idle;
        self.pools = self.cache();
        self
    }

    /// Most tenant pools open at once (default 1,000); the least used close first.
    pub fn max_open_tenants(mut self, tenants: u64) -> Self {
        self.max_open_tenants = tenants;
        self.pools = self.cache();
        self
    }

    /// Migrations run on each tenant file when its pool opens (idempotent: applied
    /// versions are recorded in the file).
    pub fn migrations(mut self, migrator: Migrator) -> Self {
        self.migrator = Some(Arc::new(migrator));
        self
    }

    /// The directory holding the tenant files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The pool of the tenant's file, opened (and migrated) on first use.
    pub async fn pool(&self, tenant: &Tenant) -> Result<SqlitePool, Error> {
        let database = match active_model(tenant)? {
            DataModel::Silo { database, .. } => database,
            _ => {
                return Err(Error::ModelNotServed {
                    tenant: tenant.id,
                    model: tenant.model.name(),
                });
            }
        };
        if let Some(pool) = self.pools.get(database).await {
            return Ok(pool);
        }
        let tenant_id = tenant.id;
        let path = self.dir.join(format!("{database}.sqlite3"));
        let dir = self.dir.clone();
        let max_connections = self.max_connections;
        let migrator = self.migrator.clone();
        self.pools
            .try_get_with(database.clone(), async move {
                std::fs::create_dir_all(&dir).map_err(|source| Error::Storage {
                    tenant: tenant_id,
                    source,
                })?;
                let options = SqliteConnectOptions::new()
                    .filename(&path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(5));
                let pool = SqlitePoolOptions::new()
                    .max_connections(max_connections)
                    .connect_with(options)
                    .await?;
                if let Some(migrator) = migrator {
                    migrator.run(&pool).await.map_err(|source| Error::Migrate {
                        tenant: tenant_id,
                        source,
                    })?;
                }
                tracing::debug!(tenant = %tenant_id, path = %path.display(), "opened tenant database");
                Ok(pool)
            })
            .await
            .map_err(Error::unshare)
    }

    /// Begins a transaction on the tenant's database.
    pub async fn begin(&self, tenant: &Tenant) -> Result<Transaction<'static, Sqlite>, Error> {
        Ok(self.pool(tenant).await?.begin().await?)
    }

    /// A connection to the tenant's database, for work outside a transaction.
    pub async fn acquire(&self, tenant: &Tenant) -> Result<PoolConnection<Sqlite>, Error> {
        Ok(self.pool(tenant).await?.acquire().await?)
    }

    /// Closes every open tenant pool.
    pub async fn close(&self) {
        for (_, pool) in self.pools.iter() {
            pool.close().await;
        }
        self.pools.invalidate_all();
        self.pools.run_pending_tasks().await;
    }
}
