//! [`Provisioner`]: the servers, the migrations and the tenants file the engine
//! works with, and what every part of it asks of them.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use tenants_core::{DataModel, SqlIdent};

use super::environment::Environment;
use super::file::{TableName, TenantsFile, UrlSource};
use super::live;
use super::plan::On;
use sqlx::AssertSqlSafe;
use tenants_db::Error;

/// Plans and applies tenants files against live PostgreSQL servers, and onboards
/// tenants at runtime.
///
/// It connects as each server's admin (the file's `url_env`), which must be allowed
/// to create roles and databases. See the [module docs](super) for an example.
pub struct Provisioner {
    pub(crate) file: TenantsFile,
    pub(crate) servers: HashMap<String, PgConnectOptions>,
    pub(crate) pools: HashMap<String, PgPool>,
    pub(crate) migrator: Option<Arc<Migrator>>,
    pub(crate) parallel: usize,
    /// Where password variables are read when apply creates login roles.
    pub(crate) env: Environment,
}

impl fmt::Debug for Provisioner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provisioner")
            .field("servers", &self.servers.keys().collect::<BTreeSet<_>>())
            .field("tenants", &self.file.tenants.len())
            .field(
                "migrations",
                &self.migrator.as_ref().map(|m| m.iter().count()),
            )
            .field("parallel", &self.parallel)
            .field("env", &self.env)
            .finish()
    }
}

impl Provisioner {
    /// Prepares to provision `file`'s tenants: reads each server's URL (from the
    /// environment for `url_env`) and the migrations. Connections open on first use.
    ///
    /// # Errors
    ///
    /// [`Error::MissingEnv`] naming every unset variable, [`Error::Config`] for a
    /// URL that does not parse, [`Error::Migrations`] for an unreadable migrations
    /// directory.
    pub async fn connect(file: TenantsFile) -> Result<Self, Error> {
        Self::connect_with_env(file, Environment::process()).await
    }

    /// Like [`connect`](Self::connect), reading the variables the file names
    /// (`url_env` now, `password_env` and `app_password_env` when apply creates
    /// login roles) from `env` instead of the process environment.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), tenants_db::Error> {
    /// use tenants_provision::{Environment, Provisioner, TenantsFile};
    ///
    /// let env = Environment::process().var("DATABASE_URL", "postgres://postgres@localhost/app");
    /// let provisioner = Provisioner::connect_with_env(TenantsFile::load("tenants.toml")?, env).await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub async fn connect_with_env(mut file: TenantsFile, env: Environment) -> Result<Self, Error> {
        // A file built in code rather than loaded may name servers it lacks; every
        // later step relies on them.
        if !file.servers.contains_key(&file.default_server) {
            return Err(Error::Config(format!(
                "the default server {:?} is not among the servers",
                file.default_server
            )));
        }
        for spec in &mut file.tenants {
            if spec.server.is_empty() {
                spec.server = file.default_server.clone();
            }
            if !file.servers.contains_key(&spec.server) {
                return Err(Error::Config(format!(
                    "tenant {}: server {:?} is not among the servers",
                    spec.tenant.id, spec.server
                )));
            }
        }
        let mut missing = Vec::new();
        let mut servers = HashMap::new();
        for (name, server) in &file.servers {
            let url = match &server.url {
                UrlSource::Inline(url) => url.clone(),
                UrlSource::Env(var) => match env.get(var) {
                    Some(url) => url,
                    None => {
                        missing.push(format!("{var} (URL of server {name})"));
                        continue;
                    }
                },
            };
            let options = tenants_db::Sqlx::connect_options(&url).map_err(|e| e.in_server(name))?;
            servers.insert(name.clone(), options.application_name("tenants"));
        }
        if !missing.is_empty() {
            return Err(Error::MissingEnv(missing));
        }
        let migrator = match &file.shared.migrations {
            Some(dir) => {
                let mut migrator =
                    Migrator::new(dir.as_path())
                        .await
                        .map_err(|source| Error::Migrations {
                            path: dir.display().to_string(),
                            source,
                        })?;
                // Each tenant takes its own lock; sqlx's lock is one per database and
                // would run the bridge schemas of a database one at a time.
                migrator.set_locking(false);
                Some(Arc::new(migrator))
            }
            None => None,
        };
        let mut provisioner = Provisioner {
            file,
            servers,
            pools: HashMap::new(),
            migrator,
            parallel: 8,
            env,
        };
        provisioner.open_pools();
        Ok(provisioner)
    }

    /// How many tenants are worked on at once (default 8). Each holds up to two
    /// connections; keep it well below the servers' `max_connections`.
    pub fn parallelism(mut self, tenants: usize) -> Self {
        self.parallel = tenants.max(1);
        self.open_pools();
        self
    }

    /// Migrates every tenant with `migrator` instead of the file's `[shared]
    /// migrations` directory.
    ///
    /// For applications that onboard tenants at runtime
    /// ([`provision`](Self::provision)) with their migrations embedded in the binary
    /// by `sqlx::migrate!`, so no migrations directory has to be shipped next to it.
    /// The same migrations must be used by every run against the same servers, as
    /// with a directory.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(file: tenants_provision::TenantsFile) -> Result<(), tenants_db::Error> {
    /// use tenants_provision::Provisioner;
    ///
    /// let provisioner = Provisioner::connect(file)
    ///     .await?
    ///     .migrations(sqlx::migrate!("tests/migrations"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn migrations(mut self, mut migrator: Migrator) -> Self {
        // As for a directory: each tenant takes its own lock.
        migrator.set_locking(false);
        self.migrator = Some(Arc::new(migrator));
        self
    }

    fn open_pools(&mut self) {
        self.pools = self
            .servers
            .iter()
            .map(|(name, options)| {
                let pool = PgPoolOptions::new()
                    .max_connections(self.parallel as u32 + 2)
                    .min_connections(0)
                    .connect_lazy_with(options.clone());
                (name.clone(), pool)
            })
            .collect();
    }

    /// The tenants file being provisioned.
    pub fn file(&self) -> &TenantsFile {
        &self.file
    }

    /// Closes every connection.
    pub async fn close(&self) {
        for pool in self.pools.values() {
            pool.close().await;
        }
    }

    pub(crate) fn pool(&self, server: &str) -> Result<&PgPool, Error> {
        self.pools
            .get(server)
            .ok_or_else(|| Error::Config(format!("unknown server {server:?}")))
    }

    pub(crate) fn shared_pool(&self) -> Result<&PgPool, Error> {
        self.pool(&self.file.default_server)
    }

    /// The server holding a tenant's data: the one its silo names, or the default
    /// server (that of the shared database, pool and bridge tenants).
    pub(crate) fn server_of<'a>(&'a self, model: &'a DataModel) -> &'a str {
        match model {
            DataModel::Silo {
                server: Some(server),
                ..
            } => server,
            _ => &self.file.default_server,
        }
    }

    /// The tables holding a tenant's rows of the `[shared] pool_tables`: those
    /// tables (in the shared database, or in a silo's own database, where they keep
    /// their names), or their copies in a bridge tenant's schema.
    pub(crate) fn tenant_tables(&self, model: &DataModel) -> Vec<TableName> {
        let tables = &self.file.shared.pool_tables;
        match model {
            DataModel::Bridge { schema } => tables
                .iter()
                .map(|t| TableName {
                    schema: schema.clone(),
                    table: t.table.clone(),
                })
                .collect(),
            DataModel::Pool | DataModel::Silo { .. } => tables.clone(),
        }
    }

    /// Connection options for a server's admin database (the shared database, for
    /// the default server).
    pub(crate) fn server_options(&self, server: &str) -> Result<PgConnectOptions, Error> {
        self.servers
            .get(server)
            .cloned()
            .ok_or_else(|| Error::Config(format!("unknown server {server:?}")))
    }

    /// Connection options for one database of a server.
    pub(crate) fn database(
        &self,
        server: &str,
        database: &SqlIdent,
    ) -> Result<PgConnectOptions, Error> {
        Ok(self.server_options(server)?.database(database.as_str()))
    }

    pub(crate) fn app_role(&self, server: &str) -> Option<&SqlIdent> {
        self.file.servers.get(server)?.app_role.as_ref()
    }

    /// Migration versions not in `applied` (all of them when `None`).
    pub(crate) fn pending(&self, applied: Option<&BTreeSet<i64>>) -> Vec<i64> {
        let Some(migrator) = &self.migrator else {
            return Vec::new();
        };
        migrator
            .iter()
            .filter(|m| !m.migration_type.is_down_migration())
            .map(|m| m.version)
            .filter(|v| applied.is_none_or(|a| !a.contains(v)))
            .collect()
    }

    /// Where a tenant's own data lives, as [`Live::locations`] keys it: `None` for
    /// the pool. `server` is the tenant's server, when known.
    pub(crate) fn location(&self, model: &DataModel, server: Option<&str>) -> Option<String> {
        match model {
            DataModel::Pool => None,
            DataModel::Bridge { schema } => Some(format!("schema {schema}")),
            DataModel::Silo { database, .. } => {
                let server = server.unwrap_or_else(|| self.server_of(model));
                Some(format!("database {server}/{database}"))
            }
        }
    }

    /// Whether `server`'s admin database is the shared database of a Citus
    /// coordinator.
    pub(crate) fn on_citus(&self, server: &str) -> bool {
        server == self.file.default_server && super::citus::declared(self)
    }

    /// Runs `statements` on `on` (a server's admin database, or one of its
    /// databases), batched in one round trip or one by one.
    pub(crate) async fn run_sql(
        &self,
        on: &On,
        statements: &[String],
        batched: bool,
    ) -> Result<(), Error> {
        match &on.database {
            None if batched && self.on_citus(&on.server) => {
                // One transaction still, one message per statement (see `batch`).
                let mut tx = self.pool(&on.server)?.begin().await?;
                batch(&mut tx, statements, true).await?;
                Ok(tx.commit().await?)
            }
            None => {
                let mut conn = self.pool(&on.server)?.acquire().await?;
                run_statements(&mut conn, statements, batched).await
            }
            Some(database) => {
                let mut conn = live::connect(&self.database(&on.server, database)?).await?;
                let result = run_statements(&mut conn, statements, batched).await;
                live::close(conn, result).await
            }
        }
    }
}

/// Runs `statements` in one round trip (`batched`), or one by one for those that
/// refuse a transaction.
pub(crate) async fn run_statements(
    conn: &mut sqlx::PgConnection,
    statements: &[String],
    batched: bool,
) -> Result<(), Error> {
    batch(conn, statements, !batched).await
}

/// Runs `statements` in one round trip (an implicit transaction of its own, or
/// part of the caller's), or one message each on a Citus coordinator
/// (`one_by_one`): Citus sends a DDL statement on a distributed table to the
/// shards as the text of the message that held it, and a message of several
/// statements then fails there ("cannot insert multiple commands into a prepared
/// statement").
pub(crate) async fn batch(
    conn: &mut sqlx::PgConnection,
    statements: &[String],
    one_by_one: bool,
) -> Result<(), Error> {
    if one_by_one {
        for sql in statements {
            sqlx::raw_sql(AssertSqlSafe(sql.as_str()))
                .execute(&mut *conn)
                .await?;
        }
    } else if !statements.is_empty() {
        sqlx::raw_sql(AssertSqlSafe(statements.join(";\n")))
            .execute(conn)
            .await?;
    }
    Ok(())
}
