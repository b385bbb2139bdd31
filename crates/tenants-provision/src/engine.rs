//! [`Provisioner`]: compares a tenants file with the live servers and plans the
//! difference.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use tenants_core::{DataModel, SqlIdent, Tenant, TenantId};

use super::environment::Environment;
use super::file::{TableName, TenantSpec, TenantsFile, UrlSource};
use super::live::{self, GrantRow, PoolTableLive, ServerLive};
use super::plan::{Action, Change, Doomed, MigrateTarget, On, Origin, Plan, Scope, Work};
use super::role::is_tenant_role;
use super::{database, grant, migration, policy, record, role, schema};
use tenants_db::{Error, TenantRole};

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

/// What the servers hold now, as far as the plan needs it.
#[derive(Debug, Default)]
pub(crate) struct Live {
    pub(crate) servers: HashMap<String, ServerLive>,
    pub(crate) schemas: HashSet<String>,
    pub(crate) catalog: bool,
    pub(crate) records: BTreeMap<String, serde_json::Value>,
    /// Where the catalog's tenants live, `schema <name>` or
    /// `database <server>/<name>`, → their id.
    pub(crate) locations: HashMap<String, String>,
    pub(crate) provisioned: BTreeMap<String, String>,
    pub(crate) app_reads_catalog: bool,
    pub(crate) shared_applied: Option<BTreeSet<i64>>,
    pub(crate) templates: HashMap<String, Option<BTreeSet<i64>>>,
    pub(crate) bridge_applied: HashMap<String, BTreeSet<i64>>,
    pub(crate) bridge_grants: HashMap<String, Vec<GrantRow>>,
    pub(crate) pool: Vec<PoolTableLive>,
    pub(crate) pool_grants: Vec<GrantRow>,
    /// `(server, database)` → applied migrations and grants of each silo database.
    pub(crate) silos: HashMap<(String, String), SiloLive>,
}

/// What planning one tenant reads: its declaration, the servers' state, where its
/// objects live, and its group roles.
pub(crate) struct TenantPlan<'a> {
    pub(crate) provisioner: &'a Provisioner,
    pub(crate) spec: &'a TenantSpec,
    pub(crate) live: &'a Live,
    /// The state of the tenant's server.
    pub(crate) server_live: &'a ServerLive,
    pub(crate) scope: Scope,
    pub(crate) origin: Origin,
    /// The tenant's server, its admin database.
    pub(crate) on_server: On,
    /// The shared database (bridge schemas live there).
    pub(crate) shared: On,
    /// The tenant's group roles, by kind.
    pub(crate) roles: Vec<(TenantRole, SqlIdent)>,
    /// The group roles, quoted, comma-separated: for `GRANT .. TO`.
    pub(crate) role_list: String,
}

impl TenantPlan<'_> {
    /// The tenant's server.
    pub(crate) fn server(&self) -> &str {
        &self.spec.server
    }
}

/// What planning the shared objects reads.
pub(crate) struct SharedPlan<'a> {
    pub(crate) provisioner: &'a Provisioner,
    pub(crate) live: &'a Live,
    /// The shared database.
    pub(crate) shared: On,
}

/// A tenant's storage as planned: whether it is created by this plan, and the
/// migrations it has yet to run.
#[derive(Default)]
pub(crate) struct Storage {
    pub(crate) created: bool,
    pub(crate) pending: Vec<i64>,
}

/// A silo database's applied migrations (`None`: no migrations table) and grants.
pub(crate) type SiloLive = (Option<BTreeSet<i64>>, Vec<GrantRow>);

/// Reading one silo database: `(server, database)` and what it holds.
pub(crate) type SiloRead<'a> =
    futures_util::future::BoxFuture<'a, Result<((String, String), SiloLive), Error>>;

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
            let options =
                tenants_db::Sqlx::connect_options(&url).map_err(|e| in_server(e, name))?;
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

    /// Compares the file with the servers: what [`apply`](Self::apply) would do.
    /// Tenants registered by the file (not at runtime) that the file no longer
    /// declares are planned as drops.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when a tenant would take another tenant's live objects:
    /// a schema or database the catalog records for another tenant (onboarded at
    /// runtime, or registered under an id the file no longer uses), or a user that
    /// is another tenant's login user or group role. Otherwise, database errors.
    pub async fn plan(&self) -> Result<Plan, Error> {
        let specs: Vec<&TenantSpec> = self.file.tenants.iter().collect();
        if specs
            .iter()
            .any(|s| matches!(s.tenant.model, DataModel::Bridge { .. }))
        {
            self.check_bridge_migrations()?;
        }
        let live = self.read_live(&specs).await?;
        // With migrations pending, they may fix the keys: apply checks the keys
        // again once they ran.
        if self.pending(live.shared_applied.as_ref()).is_empty() {
            tenant_scoped_keys(&self.file.shared.pool_tables, &live.pool)?;
        }
        let mut plan = Plan::default();
        self.plan_shared(&live, &specs, &mut plan.changes);
        for spec in &specs {
            self.plan_tenant(spec, &live, Origin::File, &mut plan.changes)?;
        }
        let removed: Vec<TenantId> = live
            .provisioned
            .iter()
            .filter(|(id, origin)| {
                *origin == Origin::File.as_str()
                    && !self.file.tenants.iter().any(|t| t.tenant.id == id.as_str())
            })
            .filter_map(|(id, _)| id.parse().ok())
            .collect();
        for id in removed {
            self.plan_destroy(id, &live, &mut plan.changes);
        }
        Ok(plan)
    }

    /// Refuses shared migrations that a bridge tenant cannot run inside its own
    /// schema (see [`bridge_migrations`](super::bridge_migrations)).
    pub(crate) fn check_bridge_migrations(&self) -> Result<(), Error> {
        match &self.migrator {
            Some(migrator) => {
                super::bridge_migrations::check(migrator, self.file.shared.migrations.as_deref())
            }
            None => Ok(()),
        }
    }

    /// What destroying `tenant` would drop: its database, schema or pool rows, its
    /// roles and users, and its catalog entry.
    pub async fn destroy_plan(&self, tenant: TenantId) -> Result<Plan, Error> {
        let live = self.read_live(&[]).await?;
        let mut plan = Plan::default();
        self.plan_destroy(tenant, &live, &mut plan.changes);
        Ok(plan)
    }

    /// Reads what the servers hold of everything the file declares: the servers'
    /// roles and databases, the catalog, the pool tables, the bridge schemas, the
    /// silo templates and databases.
    ///
    /// # Errors
    ///
    /// [`Error::AdminBehindPooler`] when a server's admin connection loses its
    /// session between statements (migrations need session locks and a
    /// `search_path` given at connection start); database errors.
    pub(crate) async fn read_live(&self, specs: &[&TenantSpec]) -> Result<Live, Error> {
        let mut live = Live::default();
        for (name, pool) in &self.pools {
            if !tenants_db::Sqlx::keeps_sessions(pool).await? {
                return Err(Error::AdminBehindPooler {
                    server: name.clone(),
                });
            }
            live.servers
                .insert(name.clone(), ServerLive::read(pool).await?);
        }
        let shared = self.shared_pool()?;
        let schemas: Vec<String> = sqlx::query_scalar("SELECT nspname::text FROM pg_namespace")
            .fetch_all(shared)
            .await?;
        live.schemas = schemas.into_iter().collect();
        record::read(self, shared, &mut live).await?;
        policy::read(self, shared, &mut live).await?;
        schema::read_bridges(shared, specs, &mut live).await?;
        database::read_templates(self, &mut live).await?;
        database::read_silos(self, specs, &mut live).await?;
        Ok(live)
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

    /// Plans what every tenant shares, in dependency order: the catalog, the
    /// application roles and their grants on the catalog, the shared schemas, the
    /// shared migrations and the pool tables' row-level security, and the silo
    /// template databases.
    pub(crate) fn plan_shared(
        &self,
        live: &Live,
        specs: &[&TenantSpec],
        changes: &mut Vec<Change>,
    ) {
        let t = SharedPlan {
            provisioner: self,
            live,
            shared: On {
                server: self.file.default_server.clone(),
                database: None,
            },
        };
        record::plan_catalog(&t, changes);
        role::plan_app_roles(&t, changes);
        record::plan_app_reads_catalog(&t, changes);
        schema::plan_shared(&t, changes);
        let migrating = migration::plan_shared(&t, changes);
        policy::plan_pool_tables(&t, migrating, changes);
        database::plan_templates(&t, specs, changes);
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

    /// Refuses a tenant that would take another tenant's objects on the live
    /// server: a database or schema the catalog records for another tenant (one
    /// onboarded at runtime, or still registered under a previous id), a login user
    /// that belongs to another tenant's roles, or another tenant's group role.
    /// Apply would otherwise adopt them: revoke the other tenant's grants, or give
    /// the other tenant's users this tenant's data; a move out of the pool would
    /// empty the other tenant's copies of the pool tables before copying its rows.
    fn check_not_foreign(
        &self,
        spec: &TenantSpec,
        server: &str,
        server_live: &ServerLive,
        live: &Live,
    ) -> Result<(), Error> {
        let id = spec.tenant.id;
        let refuse = |what: String| {
            Err(Error::Config(format!(
                "tenant {id}: {what}; nothing was changed: give tenant {id} a name of its own"
            )))
        };
        if let Some(location) = self.location(&spec.tenant.model, Some(server))
            && let Some(owner) = live.locations.get(&location)
            && owner != id.as_str()
        {
            let (kind, name) = location.split_once(' ').unwrap_or(("", &location));
            let name = name.rsplit('/').next().unwrap_or(name);
            return refuse(format!("{kind} {name} is tenant {owner}'s"));
        }
        let own: Vec<SqlIdent> = TenantRole::ALL.iter().map(|r| r.role_name(&id)).collect();
        for user in &spec.users {
            let Some(role) = server_live.roles.get(user.name.as_str()) else {
                continue;
            };
            if !role.login && is_tenant_role(user.name.as_str()) && !own.contains(&user.name) {
                return refuse(format!("user {} is another tenant's group role", user.name));
            }
            let foreign = server_live
                .tenant_groups
                .get(user.name.as_str())
                .into_iter()
                .flatten()
                .find(|group| !own.iter().any(|o| o.as_str() == group.as_str()));
            if let Some(group) = foreign {
                return refuse(format!(
                    "user {} is another tenant's user (a member of {group})",
                    user.name
                ));
            }
        }
        Ok(())
    }

    /// Plans one tenant's objects, in dependency order: its group roles, its
    /// storage (schema or database) and migrations, its table grants, its users,
    /// the application's membership in its roles, and last its catalog record.
    pub(crate) fn plan_tenant(
        &self,
        spec: &TenantSpec,
        live: &Live,
        origin: Origin,
        changes: &mut Vec<Change>,
    ) -> Result<(), Error> {
        let t = self.tenant_plan(spec, live, origin)?;
        role::plan_group_roles(&t, changes);
        let storage = match &spec.tenant.model {
            DataModel::Pool => Storage::default(),
            DataModel::Bridge { schema } => schema::plan(&t, schema, changes),
            DataModel::Silo { database, .. } => database::plan(&t, database, changes),
        };
        migration::plan_tenant(&t, &storage.pending, changes);
        grant::plan_tenant(&t, &storage, changes);
        role::plan_users(&t, changes);
        role::plan_app_membership(&t, changes);
        record::plan(&t, changes)
    }

    /// What planning `spec` reads, after checking it takes no other tenant's
    /// objects.
    fn tenant_plan<'a>(
        &'a self,
        spec: &'a TenantSpec,
        live: &'a Live,
        origin: Origin,
    ) -> Result<TenantPlan<'a>, Error> {
        let id = spec.tenant.id;
        let server = spec.server.as_str();
        let server_live = live
            .servers
            .get(server)
            .ok_or_else(|| Error::Config(format!("tenant {id}: unknown server {server:?}")))?;
        self.check_not_foreign(spec, server, server_live, live)?;
        let roles: Vec<(TenantRole, SqlIdent)> = TenantRole::ALL
            .iter()
            .map(|r| (*r, r.role_name(&id)))
            .collect();
        let role_list = roles
            .iter()
            .map(|(_, n)| n.quoted())
            .collect::<Vec<_>>()
            .join(", ");
        Ok(TenantPlan {
            provisioner: self,
            spec,
            live,
            server_live,
            scope: Scope::Tenant(id),
            origin,
            on_server: On {
                server: server.to_owned(),
                database: None,
            },
            shared: On {
                server: self.file.default_server.clone(),
                database: None,
            },
            roles,
            role_list,
        })
    }

    pub(crate) fn plan_destroy(&self, id: TenantId, live: &Live, changes: &mut Vec<Change>) {
        let scope = Scope::Tenant(id);
        let record: Option<Tenant> =
            self.file.tenant(&id).map(|s| s.tenant.clone()).or_else(|| {
                live.records
                    .get(id.as_str())
                    .and_then(|r| serde_json::from_value(r.clone()).ok())
            });
        let server = match &record {
            Some(tenant) => self.server_of(&tenant.model).to_owned(),
            None => self.file.default_server.clone(),
        };
        let Some(server_live) = live.servers.get(&server) else {
            return;
        };
        let roles: Vec<SqlIdent> = TenantRole::ALL.iter().map(|r| r.role_name(&id)).collect();
        let users = logins_in(server_live, &roles, self.app_role(&server));
        let lines = self.destroy_lines(id, record.as_ref(), live, server_live, &roles, &users);
        if lines.is_empty() {
            return;
        }
        let doomed = Doomed {
            tenant: id,
            record,
            server,
            users: users
                .into_iter()
                .filter_map(|u| SqlIdent::new(u).ok())
                .collect(),
            pool_tables: self.file.shared.pool_tables.clone(),
        };
        for (i, (object, detail)) in lines.into_iter().enumerate() {
            let work = if i == 0 {
                Work::Destroy(Box::new(doomed.clone()))
            } else {
                Work::Note
            };
            let mut change = Change::new(scope, Action::Drop, object, work);
            change.detail = detail;
            changes.push(change);
        }
    }

    /// What destroying the tenant removes, in the words the plan shows: its data,
    /// users, roles and catalog entry.
    fn destroy_lines(
        &self,
        id: TenantId,
        record: Option<&Tenant>,
        live: &Live,
        server_live: &ServerLive,
        roles: &[SqlIdent],
        users: &BTreeSet<String>,
    ) -> Vec<(String, Option<String>)> {
        let mut lines: Vec<(String, Option<String>)> = Vec::new();
        match record.map(|t| &t.model) {
            Some(DataModel::Silo { database, .. })
                if server_live.databases.contains(database.as_str()) =>
            {
                lines.push((
                    format!("database {database}"),
                    Some("and all its data".into()),
                ));
            }
            Some(DataModel::Bridge { schema }) if live.schemas.contains(schema.as_str()) => {
                lines.push((format!("schema {schema}"), Some("and all its data".into())));
            }
            Some(DataModel::Pool) if !self.file.shared.pool_tables.is_empty() => {
                let tables: Vec<_> = self
                    .file
                    .shared
                    .pool_tables
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                lines.push((format!("rows of tenant {id}"), Some(tables.join(", "))));
            }
            _ => {}
        }
        for user in users {
            lines.push((format!("user {user}"), None));
        }
        for role in roles.iter().filter(|r| server_live.has_role(r)) {
            lines.push((format!("role {role}"), None));
        }
        if live.records.contains_key(id.as_str()) || live.provisioned.contains_key(id.as_str()) {
            lines.push(("catalog entry".into(), None));
        }
        lines
    }
}

/// The logins (not superusers, not the application role) that are members of
/// `roles`.
fn logins_in(server: &ServerLive, roles: &[SqlIdent], app: Option<&SqlIdent>) -> BTreeSet<String> {
    let mut users = BTreeSet::new();
    for role in roles {
        for member in server.members.get(role.as_str()).into_iter().flatten() {
            let login = server
                .roles
                .get(member)
                .is_some_and(|r| r.login && !r.superuser);
            if login && app.is_none_or(|a| a.as_str() != member) {
                users.insert(member.clone());
            }
        }
    }
    users
}

/// Refuses pool tables whose unique keys or foreign keys to pool tables do not
/// lead with `tenant_id` ([`Error::TenantScopedKeys`], one line per key).
pub(crate) fn tenant_scoped_keys(
    tables: &[TableName],
    live: &[live::PoolTableLive],
) -> Result<(), Error> {
    let problems: Vec<String> = tables
        .iter()
        .zip(live)
        .flat_map(|(table, state)| {
            state
                .keys_without_tenant
                .iter()
                .map(move |key| format!("{table}: {key}"))
        })
        .collect();
    if problems.is_empty() {
        return Ok(());
    }
    Err(Error::TenantScopedKeys {
        problems,
        why: "lead each with tenant_id: PRIMARY KEY (tenant_id, id), \
              UNIQUE (tenant_id, email), FOREIGN KEY (tenant_id, order_id) \
              REFERENCES orders (tenant_id, id)",
    })
}

pub(crate) fn migrate_target(spec: &TenantSpec, server: &str) -> Option<MigrateTarget> {
    match &spec.tenant.model {
        DataModel::Pool => None,
        DataModel::Bridge { schema } => Some(MigrateTarget::Schema {
            tenant: spec.tenant.id,
            schema: schema.clone(),
        }),
        DataModel::Silo { database, .. } => Some(MigrateTarget::Database {
            tenant: spec.tenant.id,
            server: server.to_owned(),
            database: database.clone(),
        }),
    }
}

pub(crate) fn pending_detail(pending: &[i64]) -> String {
    let shown: Vec<String> = pending.iter().take(5).map(ToString::to_string).collect();
    let more = if pending.len() > 5 { ", ..." } else { "" };
    format!("{} pending: {}{more}", pending.len(), shown.join(", "))
}

pub(crate) fn changed_keys(old: &serde_json::Value, new: &serde_json::Value) -> String {
    let empty = serde_json::Map::new();
    let old = old.as_object().unwrap_or(&empty);
    let new = new.as_object().unwrap_or(&empty);
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let changed: Vec<&str> = keys
        .into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .map(String::as_str)
        .collect();
    format!("changed: {}", changed.join(", "))
}

/// A configuration error about one server, with the server's name in front.
fn in_server(error: Error, name: &str) -> Error {
    match error {
        Error::Tls(why) => Error::Tls(format!("server {name:?}: {why}")),
        Error::Config(why) => Error::Config(format!("server {name:?}: {why}")),
        other => other,
    }
}
