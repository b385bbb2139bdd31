//! Migration history: the shared migrations a tenant's schema or database has yet
//! to run.

use std::collections::BTreeSet;

use tenants_core::SqlIdent;

use super::context::{SharedPlan, TenantPlan, migrate_target, pending_detail};
use super::live;
use super::plan::{Action, Change, MigrateTarget, Scope, Work};
use super::provisioner::Provisioner;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgConnectOptions;
use tenants_db::{Error, MIGRATED_CHANNEL, Migrated};

/// Plans the shared database's pending migrations, when it holds pool tables;
/// `true` when some are pending.
pub(crate) fn plan_shared(t: &SharedPlan<'_>, changes: &mut Vec<Change>) -> bool {
    if t.provisioner.file.shared.pool_tables.is_empty() {
        return false;
    }
    let pending = t.provisioner.pending(t.live.shared_applied.as_ref());
    if pending.is_empty() {
        return false;
    }
    changes.push(
        Change::new(
            Scope::Shared,
            Action::Update,
            "migrations of the shared database",
            Work::Migrate(MigrateTarget::Shared),
        )
        .detail(pending_detail(&pending)),
    );
    true
}

/// Plans a template database's pending migrations (`applied`: what it ran, `None`
/// when it does not exist yet).
pub(crate) fn plan_template(
    t: &SharedPlan<'_>,
    server: &str,
    template: &SqlIdent,
    applied: Option<&BTreeSet<i64>>,
    changes: &mut Vec<Change>,
) {
    let pending = t.provisioner.pending(applied);
    if !pending.is_empty() {
        changes.push(
            Change::new(
                Scope::Shared,
                Action::Update,
                format!("migrations of template {template}"),
                Work::Migrate(MigrateTarget::Template {
                    server: server.to_owned(),
                    database: template.clone(),
                }),
            )
            .detail(pending_detail(&pending)),
        );
    }
}

/// Plans running a tenant's pending migrations in its own schema or database
/// (pool tenants share the shared database's run).
pub(crate) fn plan_tenant(t: &TenantPlan<'_>, pending: &[i64], changes: &mut Vec<Change>) {
    if let Some(target) = migrate_target(t.spec, t.server())
        && !pending.is_empty()
    {
        changes.push(
            Change::new(t.scope, Action::Update, "migrations", Work::Migrate(target))
                .detail(pending_detail(pending)),
        );
    }
}

impl Provisioner {
    /// Connection options for a migration target, and the lock key that keeps two
    /// runs off the same target.
    fn migration_connection(
        &self,
        target: &MigrateTarget,
    ) -> Result<(PgConnectOptions, String), Error> {
        let shared = &self.file.default_server;
        Ok(match target {
            MigrateTarget::Shared => (self.server_options(shared)?, "shared".into()),
            MigrateTarget::Template { server, database } => (
                self.database(server, database)?,
                format!("template {server}"),
            ),
            MigrateTarget::Schema { tenant, schema } => {
                let mut path = vec![schema.quoted()];
                path.extend(self.file.shared.schemas.iter().map(SqlIdent::quoted));
                let options = self
                    .server_options(shared)?
                    .options([("search_path", path.join(","))]);
                (options, format!("tenant {tenant}"))
            }
            MigrateTarget::Database {
                tenant,
                server,
                database,
            } => (self.database(server, database)?, format!("tenant {tenant}")),
        })
    }

    /// Runs `target`'s pending migrations, under a session advisory lock.
    ///
    /// # Errors
    ///
    /// [`Error::Migrate`] (a tenant's), [`Error::Migrations`] (the shared database's
    /// or a template's), [`Error::CitusMigration`] for a file of several statements
    /// Citus refused; database errors.
    pub(crate) async fn run_migrations(&self, target: &MigrateTarget) -> Result<(), Error> {
        let Some(migrator) = &self.migrator else {
            return Ok(());
        };
        let (options, key) = self.migration_connection(target)?;
        let citus = match target {
            MigrateTarget::Shared | MigrateTarget::Schema { .. } => {
                self.on_citus(&self.file.default_server)
            }
            _ => false,
        };
        let tenant = match target {
            MigrateTarget::Schema { tenant, .. } | MigrateTarget::Database { tenant, .. } => {
                Some(*tenant)
            }
            _ => None,
        };
        // A bridge tenant's history lives in its schema, named so: whatever the
        // search path says, it is read and written there.
        let in_schema;
        let migrator = match target {
            MigrateTarget::Schema { schema, .. } => {
                in_schema = in_schema_history(migrator, schema);
                &in_schema
            }
            _ => &**migrator,
        };
        let mut conn = live::connect(&options).await?;
        let result = async {
            // Released when the connection closes, whatever happens.
            sqlx::query("SELECT pg_advisory_lock(hashtextextended($1, 0))")
                .bind(format!("tenants.migrate {key}"))
                .execute(&mut conn)
                .await?;
            // `run_direct` rather than `run`: sqlx's `run(&mut conn)` cannot be proven
            // `Send` ("`Acquire` is not general enough"), and sqlx keeps this entry
            // point for that reason.
            migrator
                .run_direct(None, &mut conn, false)
                .await
                .map_err(|source| match tenant {
                    _ if citus && several_statements(&source) => Error::CitusMigration {
                        target: key.clone(),
                        source,
                    },
                    Some(tenant) => Error::Migrate { tenant, source },
                    None => Error::Migrations {
                        path: key.clone(),
                        source,
                    },
                })
        }
        .await;
        let migrated = live::close(conn, result).await;
        // Announced even when a migration failed: the ones before it were applied.
        let announced = self.announce_migration(target).await;
        migrated.and(announced)
    }

    /// Tells the routers listening on the shared database that `target`'s tables
    /// may have changed shape, so they stop using statements prepared before
    /// (see [`MIGRATED_CHANNEL`]). Templates serve no requests.
    async fn announce_migration(&self, target: &MigrateTarget) -> Result<(), Error> {
        let migrated = match target {
            MigrateTarget::Shared => Migrated::Shared,
            MigrateTarget::Schema { schema, .. } => Migrated::Schema(schema.as_str()),
            MigrateTarget::Database { database, .. } => Migrated::Database(database.as_str()),
            MigrateTarget::Template { .. } => return Ok(()),
        };
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(MIGRATED_CHANNEL)
            .bind(migrated.payload())
            .execute(self.shared_pool()?)
            .await?;
        Ok(())
    }
}

/// `migrator`'s migrations, with their history in `schema`'s `_sqlx_migrations`,
/// schema-qualified.
fn in_schema_history(migrator: &Migrator, schema: &SqlIdent) -> Migrator {
    let mut scoped = Migrator::with_migrations(migrator.iter().cloned().collect());
    // The options sqlx has no getters for are read from its (public) fields.
    scoped.set_ignore_missing(migrator.ignore_missing);
    scoped.no_tx = migrator.no_tx;
    scoped.set_locking(false);
    scoped.dangerous_set_table_name(format!("{}._sqlx_migrations", schema.quoted()));
    scoped
}

/// Whether a migration failed the way Citus fails a message of several statements
/// on distributed tables (only its text tells).
fn several_statements(error: &sqlx::migrate::MigrateError) -> bool {
    error
        .to_string()
        .contains("cannot insert multiple commands into a prepared statement")
}
