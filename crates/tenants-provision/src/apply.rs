//! Executing a [`Plan`]: shared changes first, then every tenant, a few at a time,
//! each tenant's failure kept to itself.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use futures_util::StreamExt;
use sqlx::AssertSqlSafe;
use tenants_core::{DataModel, TenantId};

use super::file::{TableName, TenantSpec};
use super::live::{self, quote_ident};
use super::plan::{Change, Doomed, Origin, Plan, Scope, Work};
use super::provisioner::Provisioner;
use super::{citus, policy, record};
use tenants_db::{Error, PgCatalog, TENANT_SETTING, TenantRole};

/// How [`Provisioner::apply`] runs.
#[derive(Clone, Default)]
pub struct ApplyOptions {
    allow_destroy: bool,
    progress: Option<Arc<dyn Fn(Progress) + Send + Sync>>,
}

impl fmt::Debug for ApplyOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApplyOptions")
            .field("allow_destroy", &self.allow_destroy)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl ApplyOptions {
    /// Defaults: refuse to drop tenants, report no progress.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lets the plan drop tenants and their data (default: refused with
    /// [`Error::DestroyRefused`] before anything runs).
    pub fn allow_destroy(mut self, allow: bool) -> Self {
        self.allow_destroy = allow;
        self
    }

    /// Calls `report` as tenants start and finish, for a progress bar.
    pub fn on_progress(mut self, report: impl Fn(Progress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(report));
        self
    }

    fn report(&self, progress: Progress) {
        if let Some(report) = &self.progress {
            report(progress);
        }
    }
}

/// Progress of an [`apply`](Provisioner::apply).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Progress {
    /// The shared changes are done; this many tenants have changes to apply.
    Tenants(usize),
    /// A tenant is done, well or not.
    TenantDone {
        /// The tenant.
        tenant: TenantId,
        /// `false` when it failed.
        ok: bool,
    },
}

/// What an apply did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Report {
    /// Changes made.
    pub applied: usize,
    /// Tenants whose changes all succeeded.
    pub succeeded: Vec<TenantId>,
    /// Tenants that failed, with the error that stopped each; their other changes
    /// were not attempted, and other tenants went on.
    pub failures: Vec<(TenantId, Error)>,
}

impl Report {
    /// `true` when no tenant failed.
    pub fn is_success(&self) -> bool {
        self.failures.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} change(s) applied, {} tenant(s) done",
            self.applied,
            self.succeeded.len()
        )?;
        if !self.failures.is_empty() {
            write!(f, ", {} failed:", self.failures.len())?;
            for (tenant, error) in &self.failures {
                write!(f, "\n  {tenant}: {error}")?;
            }
        }
        Ok(())
    }
}

/// One tenant's changes being applied: the tenant, how many changes were made, and
/// how it ended.
type TenantRun<'a> = futures_util::future::BoxFuture<'a, (TenantId, usize, Result<(), Error>)>;

impl Provisioner {
    /// Executes `plan`: the shared changes in order (any failure stops the apply),
    /// then each tenant's changes in order, [`parallelism`](Self::parallelism)
    /// tenants at a time. A tenant that fails stops there, its error is recorded
    /// (in the [`Report`] and in `tenants.provisioned`), and the others go on;
    /// running apply again resumes where each tenant stopped.
    ///
    /// # Errors
    ///
    /// Before anything runs: [`Error::DestroyRefused`] when the plan drops tenants
    /// and `options` does not allow it, [`Error::MissingEnv`] when a password
    /// variable is not set. Later: the error of a failed shared change.
    pub async fn apply(&self, plan: &Plan, options: &ApplyOptions) -> Result<Report, Error> {
        let destroyed = plan.destroyed_tenants();
        if !destroyed.is_empty() && !options.allow_destroy {
            return Err(Error::DestroyRefused(destroyed));
        }
        let missing: Vec<String> = plan
            .changes
            .iter()
            .filter_map(|c| match &c.work {
                Work::CreateLogin {
                    password: Some(password),
                    name,
                    ..
                } => password
                    .resolve(&self.env)
                    .err()
                    .map(|var| format!("{var} (password of {name})")),
                _ => None,
            })
            .collect();
        if !missing.is_empty() {
            return Err(Error::MissingEnv(missing));
        }

        let mut report = Report::default();
        for change in plan.changes_of(Scope::Shared) {
            self.execute(change).await?;
            report.applied += 1;
        }
        // Changes by index: references in the stream's items would make its futures
        // not provably `Send`.
        let mut tenants: BTreeMap<TenantId, Vec<usize>> = BTreeMap::new();
        for (index, change) in plan.changes.iter().enumerate() {
            if let Scope::Tenant(id) = change.scope {
                tenants.entry(id).or_default().push(index);
            }
        }
        options.report(Progress::Tenants(tenants.len()));
        // Boxed: the compiler cannot prove an unboxed closure's futures `Send` for
        // every lifetime, and applications await `apply` in spawned tasks.
        let mut done = futures_util::stream::iter(tenants)
            .map(|(id, changes)| -> TenantRun<'_> {
                Box::pin(async move {
                    let mut applied = 0;
                    for index in changes {
                        if let Err(error) = self.execute(&plan.changes[index]).await {
                            self.record_failure(id, &error).await;
                            return (id, applied, Err(error));
                        }
                        applied += 1;
                    }
                    (id, applied, Ok(()))
                })
            })
            .buffer_unordered(self.parallel);
        while let Some((id, applied, result)) = done.next().await {
            report.applied += applied;
            options.report(Progress::TenantDone {
                tenant: id,
                ok: result.is_ok(),
            });
            match result {
                Ok(()) => report.succeeded.push(id),
                Err(error) => report.failures.push((id, error)),
            }
        }
        report.failures.sort_by_key(|(id, _)| *id);
        report.succeeded.sort();
        Ok(report)
    }

    /// Runs the pending migrations of the shared database, the templates and every
    /// provisioned tenant, then brings their table grants and pool-table security
    /// up to date.
    ///
    /// A tenant of the file whose schema or database does not exist is not created
    /// here (that is [`apply`](Self::apply)'s work): it is a failure of the report,
    /// [`Error::NotProvisioned`], and every other tenant is still migrated.
    pub async fn migrate(&self, options: &ApplyOptions) -> Result<Report, Error> {
        let plan = self.plan().await?;
        let mut missing: BTreeMap<TenantId, String> = BTreeMap::new();
        for change in plan.changes.iter().filter(|c| c.storage) {
            if let Scope::Tenant(tenant) = change.scope {
                missing.insert(tenant, change.object.clone());
            }
        }
        let changes = plan
            .changes
            .into_iter()
            .filter(|c| {
                matches!(
                    c.work,
                    Work::Migrate(_)
                        | Work::SyncGrants(_)
                        | Work::SecurePoolTables(_)
                        | Work::Distribute { .. }
                        | Work::ReferenceTables(_)
                ) && !matches!(c.scope, Scope::Tenant(t) if missing.contains_key(&t))
            })
            .collect();
        let mut report = self.apply(&Plan { changes }, options).await?;
        for (tenant, object) in missing {
            report.succeeded.retain(|done| *done != tenant);
            report.failures.push((
                tenant,
                Error::NotProvisioned {
                    tenant,
                    missing: object,
                },
            ));
        }
        report.failures.sort_by_key(|(id, _)| *id);
        Ok(report)
    }

    /// Creates or updates one tenant now, idempotently: its roles, its schema or
    /// database (migrated), its grants and users, and its catalog entry. This is
    /// runtime onboarding: call it when a tenant signs up. The tenant is recorded
    /// as declared at runtime, so `plan` never proposes to drop it.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a tenant the file's servers cannot hold, and any error
    /// of the changes (the tenant is left as far as it got; calling again resumes).
    pub async fn provision(&self, spec: &TenantSpec) -> Result<(), Error> {
        let spec = self.check_runtime(spec)?;
        let live = self.read_live(&[&spec]).await?;
        let origin = self.origin(spec.tenant.id);
        let mut plan = Plan::default();
        self.plan_shared(&live, &[&spec], &mut plan.changes);
        self.plan_tenant(&spec, &live, origin, &mut plan.changes)?;
        let report = self.apply(&plan, &ApplyOptions::new()).await?;
        match report.failures.into_iter().next() {
            Some((_, error)) => Err(error),
            None => Ok(()),
        }
    }

    /// Who declares `tenant`: the file, or else the application at runtime.
    fn origin(&self, tenant: TenantId) -> Origin {
        match self.file.tenant(&tenant) {
            Some(_) => Origin::File,
            None => Origin::Runtime,
        }
    }

    fn check_runtime(&self, spec: &TenantSpec) -> Result<TenantSpec, Error> {
        let mut spec = spec.clone();
        let id = spec.tenant.id;
        if matches!(spec.tenant.model, DataModel::Bridge { .. }) {
            self.check_bridge_migrations()?;
        }
        if spec.server.is_empty() {
            spec.server = self.file.default_server.clone();
        }
        let Some(server) = self.file.servers.get(&spec.server) else {
            return Err(Error::Config(format!(
                "tenant {id}: unknown server {:?}",
                spec.server
            )));
        };
        match &spec.tenant.model {
            DataModel::Pool | DataModel::Bridge { .. }
                if spec.server != self.file.default_server =>
            {
                return Err(Error::Config(format!(
                    "tenant {id}: pool and bridge tenants live on server {:?}",
                    self.file.default_server
                )));
            }
            DataModel::Pool if !spec.users.is_empty() => {
                return Err(Error::Config(format!(
                    "tenant {id}: pool tenants cannot have login users"
                )));
            }
            DataModel::Bridge { schema }
                if ["public", "tenants"].contains(&schema.as_str())
                    || self.file.shared.schemas.contains(schema) =>
            {
                return Err(Error::Config(format!(
                    "tenant {id}: schema {schema} is shared"
                )));
            }
            DataModel::Silo { database, .. } if *database == server.template => {
                return Err(Error::Config(format!(
                    "tenant {id}: database {database} is the template"
                )));
            }
            _ => {}
        }
        Ok(spec)
    }

    async fn record_failure(&self, tenant: TenantId, error: &Error) {
        let Ok(pool) = self.shared_pool() else { return };
        let origin = self.origin(tenant);
        let recorded = sqlx::query(
            "INSERT INTO tenants.provisioned (id, origin, error) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET error = EXCLUDED.error, updated_at = now()",
        )
        .bind(tenant.as_str())
        .bind(origin.as_str())
        .bind(error.to_string())
        .execute(pool)
        .await;
        if let Err(e) = recorded {
            tracing::warn!(%tenant, error = %e, "could not record the tenant's failure");
        }
    }

    async fn execute(&self, change: &Change) -> Result<(), Error> {
        tracing::debug!(scope = ?change.scope, object = %change.object, "applying");
        match &change.work {
            Work::Sql(on, statements) => self.run_sql(on, statements, true).await,
            Work::SqlEach(on, statements) => self.run_sql(on, statements, false).await,
            Work::InstallCatalog => record::install_catalog(self).await,
            Work::CreateLogin {
                server,
                name,
                member_of,
                password,
                search_path,
            } => {
                self.create_login(
                    server,
                    name,
                    member_of.as_ref(),
                    password.as_ref(),
                    search_path.as_deref(),
                )
                .await
            }
            Work::Migrate(target) => self.run_migrations(target).await,
            Work::SyncGrants(spec) => self.sync_grants(spec).await,
            Work::SecurePoolTables(tables) => {
                let mut conn = self.shared_pool()?.acquire().await?;
                let citus = self.on_citus(&self.file.default_server);
                policy::secure_tables(&mut conn, tables, false, citus).await
            }
            Work::Distribute {
                table,
                colocate_with,
            } => citus::distribute(self.shared_pool()?, table, colocate_with.as_ref()).await,
            Work::ReferenceTables(schema) => {
                citus::reference_tables(self.shared_pool()?, schema).await
            }
            Work::Register(tenant, origin) => record::register(self, tenant, *origin).await,
            Work::Move(tenant, origin) => self.move_rows(tenant, *origin).await,
            Work::Destroy(doomed) => self.destroy(doomed).await,
            Work::Note => Ok(()),
        }
    }

    async fn destroy(&self, doomed: &Doomed) -> Result<(), Error> {
        let id = doomed.tenant;
        let shared = self.shared_pool()?;
        let server = self.pool(&doomed.server)?;
        match doomed.record.as_ref().map(|t| &t.model) {
            Some(DataModel::Silo { database, .. }) => {
                let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", database.quoted());
                sqlx::raw_sql(AssertSqlSafe(sql)).execute(server).await?;
            }
            Some(DataModel::Bridge { schema }) => {
                let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", schema.quoted());
                sqlx::raw_sql(AssertSqlSafe(sql)).execute(shared).await?;
            }
            Some(DataModel::Pool) => {
                let state = live::pool_tables(shared, &doomed.pool_tables).await?;
                let mut tx = shared.begin().await?;
                sqlx::query("SELECT set_config($1, $2, true)")
                    .bind(TENANT_SETTING)
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await?;
                // Owned: a borrowed iterator held across an await would make the
                // future not provably `Send`.
                let tables: Vec<(TableName, live::PoolTableLive)> =
                    doomed.pool_tables.iter().cloned().zip(state).collect();
                for (table, live) in tables {
                    if live.exists && live.tenant_column {
                        let sql = format!("DELETE FROM {} WHERE tenant_id = $1", table.quoted());
                        sqlx::query(AssertSqlSafe(sql))
                            .bind(id.as_str())
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                tx.commit().await?;
            }
            None => {}
        }
        for user in &doomed.users {
            let sql = format!("DROP ROLE IF EXISTS {}", user.quoted());
            sqlx::raw_sql(AssertSqlSafe(sql)).execute(server).await?;
        }
        let existing: Vec<String> =
            sqlx::query_scalar("SELECT rolname::text FROM pg_roles WHERE rolname = ANY($1)")
                .bind(
                    TenantRole::ALL
                        .iter()
                        .map(|r| r.role_name(&id).to_string())
                        .collect::<Vec<_>>(),
                )
                .fetch_all(server)
                .await?;
        if !existing.is_empty() {
            let list = existing
                .iter()
                .map(|r| quote_ident(r))
                .collect::<Vec<_>>()
                .join(", ");
            // Their grants go first: on the tenant's server's admin database, which
            // for the default server is the shared one (pool tables, catalog).
            sqlx::raw_sql(AssertSqlSafe(format!("DROP OWNED BY {list}")))
                .execute(server)
                .await?;
            sqlx::raw_sql(AssertSqlSafe(format!("DROP ROLE IF EXISTS {list}")))
                .execute(server)
                .await?;
        }
        let installed: bool =
            sqlx::query_scalar("SELECT to_regclass('tenants.provisioned') IS NOT NULL")
                .fetch_one(shared)
                .await?;
        if installed {
            PgCatalog::new(shared.clone()).remove(id).await?;
            sqlx::query("DELETE FROM tenants.provisioned WHERE id = $1")
                .bind(id.as_str())
                .execute(shared)
                .await?;
        }
        Ok(())
    }
}
