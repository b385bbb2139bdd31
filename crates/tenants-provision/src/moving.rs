//! Moving a tenant out of the pool: its rows go where its record goes.

use std::collections::BTreeSet;

use futures_util::StreamExt;
use sqlx::postgres::PgConnection;
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, Connection};
use tenants_core::{DataModel, Tenant, TenantId};

use super::file::{TableName, TenantSpec};
use super::live::{self, quote_ident};
use super::plan::Origin;
use super::provisioner::Provisioner;
use super::provisioner::batch;
use super::record::PROVISIONED_UPSERT;
use tenants_db::sql_literal as literal;
use tenants_db::{Error, TENANT_SETTING, TenantRole};

/// How long a move waits for the writes under way on the pool tables to finish.
const LOCK_TIMEOUT: &str = "30s";

impl Provisioner {
    /// The tenant's record in the catalog.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the tenant is not in the catalog (or there is none).
    pub(crate) async fn catalog_record(&self, tenant: TenantId) -> Result<Tenant, Error> {
        let shared = self.shared_pool()?;
        let installed: bool =
            sqlx::query_scalar("SELECT to_regclass('tenants.tenants') IS NOT NULL")
                .fetch_one(shared)
                .await?;
        let record: Option<Json<Tenant>> = if installed {
            sqlx::query_scalar("SELECT record FROM tenants.tenants WHERE id = $1")
                .bind(tenant.as_str())
                .fetch_optional(shared)
                .await?
        } else {
            None
        };
        match record {
            Some(Json(record)) => Ok(record),
            None => Err(Error::Config(format!(
                "tenant {tenant} is not in the catalog: provision it first"
            ))),
        }
    }

    /// Moves a tenant out of the pool into `to` (a database of its own, or a schema),
    /// with its rows: the step that turns a growing free-tier tenant into a silo one.
    ///
    /// The tenant's new storage is created as [`provision`](Self::provision) creates
    /// it (a database copied from the migrated template, or a migrated schema, with
    /// the tenant's grants and the pool tables' row-level security). Then, in one
    /// transaction of the shared database:
    ///
    /// 1. the pool tables are locked against writes (`SHARE ROW EXCLUSIVE`: reads go
    ///    on, writes of every tenant wait, at most 30 s, until the move commits);
    /// 2. the tenant's rows of every `[shared] pool_tables` table are copied
    ///    (`COPY`, streamed) into the new storage's copies of those tables, which are
    ///    emptied first, and their serial and identity sequences set past the
    ///    copied ids; the copy commits on the new storage;
    /// 3. the tenant's catalog record is switched to `to` (every instance watching
    ///    the catalog drops its cached record on the `NOTIFY` this sends);
    /// 4. the rows are deleted from the shared tables, and the tenant's roles lose
    ///    their privileges on them: a transaction begun as one of those roles
    ///    ([`begin_as`](tenants_db::TenantRouter::begin_as)) by an instance still
    ///    holding the old record fails, rather than writing rows nobody will read.
    ///
    /// Nothing of the tenant is ever readable by another tenant: the copies carry
    /// the same `tenant_id` and policies, and the new storage belongs to this tenant
    /// alone (a move into a database or schema another record names is refused).
    ///
    /// It is safe to run again after an interruption: until step 3 commits, the
    /// record still says pool, the shared rows are untouched and a new run copies
    /// again from scratch; once it has committed, the move is done and running
    /// again changes nothing.
    ///
    /// A tenant the tenants file declares is moved by writing its new model in the
    /// file and running [`apply`](Self::apply), which plans this same move
    /// (`~ model (pool → silo: copies its rows ...)`); calling this for such a
    /// tenant with another model than the file's is refused, so the next plan
    /// does not undo it.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the tenant is not in the catalog, does not live in
    /// the pool, is declared otherwise in the tenants file, when `to` is the pool,
    /// or when the new storage lacks a pool table. Any database error of the steps
    /// (the move is then left as described above, and can be run again).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(provisioner: tenants_provision::Provisioner) -> Result<(), Box<dyn std::error::Error>> {
    /// use tenants_core::{DataModel, SqlIdent};
    ///
    /// let to = DataModel::Silo { database: SqlIdent::new("acme")?, server: None };
    /// provisioner.move_tenant("acme".parse()?, to).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn move_tenant(&self, tenant: TenantId, to: DataModel) -> Result<(), Error> {
        let current = self.catalog_record(tenant).await?;
        if current.model == to {
            return Ok(());
        }
        if current.model != DataModel::Pool {
            return Err(Error::Config(format!(
                "tenant {tenant} lives in the {} model: only tenants in the pool can be \
                 moved with their rows",
                current.model.name()
            )));
        }
        if to == DataModel::Pool {
            return Err(Error::Config(format!(
                "tenant {tenant} is in the pool already"
            )));
        }
        let spec = match self.file.tenant(&tenant) {
            Some(declared) if declared.tenant.model == to => declared.clone(),
            Some(declared) => {
                return Err(Error::Config(format!(
                    "tenant {tenant} is declared in {} as {}: write its new model there and \
                     run apply, which moves its rows the same way",
                    declared.origin,
                    declared.tenant.model.name()
                )));
            }
            None => {
                let mut moved = current;
                moved.model = to;
                TenantSpec::new(moved)
            }
        };
        self.provision(&spec).await
    }

    /// Executes a planned move: copies the rows, switches the record, removes the
    /// rows from the pool. See [`move_tenant`](Self::move_tenant).
    pub(crate) async fn move_rows(&self, tenant: &Tenant, origin: Origin) -> Result<(), Error> {
        let id = tenant.id;
        let shared = self.file.default_server.as_str();
        let shared_options = self.server_options(shared)?;
        let target_options = match &tenant.model {
            DataModel::Silo { database, .. } => {
                self.database(self.server_of(&tenant.model), database)?
            }
            DataModel::Bridge { .. } => shared_options.clone(),
            DataModel::Pool => {
                return Err(Error::Config(format!(
                    "tenant {id}: a move needs another model than pool"
                )));
            }
        };
        let target_tables = self.tenant_tables(&tenant.model);
        let mut source = live::connect(&shared_options).await?;
        let result = self
            .switch(&mut source, &target_options, tenant, origin, &target_tables)
            .await;
        live::close(source, result).await
    }

    /// Copies the rows and switches the record, in one transaction of `source` (a
    /// connection to the shared database).
    async fn switch(
        &self,
        source: &mut PgConnection,
        target_options: &sqlx::postgres::PgConnectOptions,
        tenant: &Tenant,
        origin: Origin,
        target_tables: &[TableName],
    ) -> Result<(), Error> {
        let id = tenant.id;
        let tables = &self.file.shared.pool_tables;
        let mut tx = source.begin().await?;
        let present = lock_pool_tables(&mut tx, id, tables, target_tables).await?;
        // Under the lock, the record is read again: another run may have moved the
        // tenant meanwhile.
        if !still_in_pool(&mut tx, tenant).await? {
            return Ok(());
        }
        let mut target = live::connect(target_options).await?;
        let copied = copy_rows(&mut tx, &mut target, id, &present).await;
        live::close(target, copied).await?;
        let record =
            serde_json::to_value(tenant).map_err(|e| Error::Config(format!("tenant {id}: {e}")))?;
        sqlx::query("UPDATE tenants.tenants SET record = $2, updated_at = now() WHERE id = $1")
            .bind(id.as_str())
            .bind(record)
            .execute(&mut *tx)
            .await?;
        for (table, _) in &present {
            let sql = format!("DELETE FROM {} WHERE tenant_id = $1", table.quoted());
            sqlx::query(AssertSqlSafe(sql))
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
        }
        let citus = self.on_citus(&self.file.default_server);
        revoke_pool_grants(&mut tx, id, tables, citus).await?;
        sqlx::query(PROVISIONED_UPSERT)
            .bind(id.as_str())
            .bind(origin.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Scopes the transaction to the tenant and locks the pool tables that exist with
/// a `tenant_id` column (`SHARE ROW EXCLUSIVE`: no writes until the switch);
/// returns them, each with its table in the target.
async fn lock_pool_tables<'t>(
    tx: &mut PgConnection,
    id: TenantId,
    tables: &'t [TableName],
    target_tables: &'t [TableName],
) -> Result<Vec<(&'t TableName, &'t TableName)>, Error> {
    // Settings, not DDL: Citus forwards them whole, which does no harm.
    batch(
        &mut *tx,
        &[
            format!("SET LOCAL lock_timeout = {}", literal(LOCK_TIMEOUT)),
            format!("SET LOCAL {TENANT_SETTING} = {}", literal(id.as_str())),
        ],
        false,
    )
    .await?;
    let state = live::pool_tables(&mut *tx, tables).await?;
    let present: Vec<(&TableName, &TableName)> = tables
        .iter()
        .zip(target_tables)
        .zip(state)
        .filter(|(_, live)| live.exists && live.tenant_column)
        .map(|(pair, _)| pair)
        .collect();
    if !present.is_empty() {
        let list: Vec<String> = present.iter().map(|(t, _)| t.quoted()).collect();
        let lock = format!("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE", list.join(", "));
        sqlx::raw_sql(AssertSqlSafe(lock)).execute(&mut *tx).await?;
    }
    Ok(present)
}

/// Whether the tenant's record (locked) still says pool: `false` when another run
/// already moved it to `tenant`'s model; an error when it changed otherwise.
async fn still_in_pool(tx: &mut PgConnection, tenant: &Tenant) -> Result<bool, Error> {
    let id = tenant.id;
    let record: Option<Json<Tenant>> =
        sqlx::query_scalar("SELECT record FROM tenants.tenants WHERE id = $1 FOR UPDATE")
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
    match record {
        Some(Json(now)) if now.model == DataModel::Pool => Ok(true),
        Some(Json(now)) if now.model == tenant.model => Ok(false),
        _ => Err(Error::Config(format!(
            "tenant {id} changed while it was being moved: run the move again"
        ))),
    }
}

/// Revokes what the tenant's roles held on the pool tables (and their sequences):
/// its rows are no longer there. One statement per message on Citus (see
/// [`batch`]).
async fn revoke_pool_grants(
    tx: &mut PgConnection,
    id: TenantId,
    tables: &[TableName],
    citus: bool,
) -> Result<(), Error> {
    let roles: Vec<String> = TenantRole::ALL
        .iter()
        .map(|r| r.role_name(&id).to_string())
        .collect();
    let revokes: BTreeSet<String> = live::grants_on_tables(&mut *tx, tables)
        .await?
        .into_iter()
        .filter_map(|row| {
            let grantee = row.grantee.as_ref().filter(|g| roles.contains(g))?;
            let kind = if row.is_sequence() {
                "SEQUENCE"
            } else {
                "TABLE"
            };
            Some(format!(
                "REVOKE ALL ON {kind} {} FROM {}",
                row.quoted(),
                quote_ident(grantee)
            ))
        })
        .collect();
    batch(tx, &revokes.into_iter().collect::<Vec<_>>(), citus).await
}

/// The columns of `table` a copy can write, in order (none when it does not exist).
async fn columns(conn: &mut PgConnection, table: &TableName) -> Result<Vec<String>, Error> {
    Ok(sqlx::query_scalar(
        "SELECT a.attname::text FROM pg_attribute a \
         WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped \
           AND a.attgenerated = '' ORDER BY a.attnum",
    )
    .bind(table.quoted())
    .fetch_all(conn)
    .await?)
}

/// Copies the tenant's rows of each `(source, target)` table, in one transaction
/// of the target that empties the targets first (an earlier, interrupted move may
/// have left rows there) and sets their sequences past the copied values.
async fn copy_rows(
    source: &mut PgConnection,
    target: &mut PgConnection,
    tenant: TenantId,
    tables: &[(&TableName, &TableName)],
) -> Result<(), Error> {
    let mut tx = target.begin().await?;
    let scope = format!("SET LOCAL {TENANT_SETTING} = {}", literal(tenant.as_str()));
    sqlx::raw_sql(AssertSqlSafe(scope))
        .execute(&mut *tx)
        .await?;
    let mut plans = Vec::new();
    for (from, to) in tables {
        let wanted = columns(&mut tx, to).await?;
        if wanted.is_empty() {
            return Err(Error::Config(format!(
                "tenant {tenant}: table {to} is missing from its new storage; the shared \
                 migrations must create every pool table"
            )));
        }
        let have = columns(source, from).await?;
        let list: Vec<String> = have
            .iter()
            .filter(|c| wanted.contains(c))
            .map(|c| quote_ident(c))
            .collect();
        plans.push((*from, *to, list.join(", ")));
    }
    for (_, to, _) in plans.iter().rev() {
        let sql = format!("DELETE FROM {}", to.quoted());
        sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *tx).await?;
    }
    for (from, to, list) in &plans {
        let out = format!(
            "COPY (SELECT {list} FROM {} WHERE tenant_id = {}) TO STDOUT",
            from.quoted(),
            literal(tenant.as_str())
        );
        let into = format!("COPY {} ({list}) FROM STDIN", to.quoted());
        let mut rows = source.copy_out_raw(&out).await?;
        let mut sink = tx.copy_in_raw(&into).await?;
        while let Some(chunk) = rows.next().await {
            match chunk {
                Ok(chunk) => {
                    sink.send(chunk).await?;
                }
                Err(error) => {
                    // The source failed: the copy is abandoned, and with it the
                    // target's transaction.
                    let _ = sink.abort("the source of the copy failed").await;
                    return Err(error.into());
                }
            }
        }
        sink.finish().await?;
        drop(rows);
        let sequences: Vec<(String, String)> = sqlx::query_as(
            "SELECT a.attname::text, pg_get_serial_sequence($1, a.attname) FROM pg_attribute a \
             WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped \
               AND pg_get_serial_sequence($1, a.attname) IS NOT NULL",
        )
        .bind(to.quoted())
        .fetch_all(&mut *tx)
        .await?;
        for (column, sequence) in sequences {
            let sql = format!(
                "SELECT setval($1::regclass, m) FROM (SELECT max({})::bigint AS m FROM {}) x \
                 WHERE m IS NOT NULL",
                quote_ident(&column),
                to.quoted()
            );
            sqlx::query(AssertSqlSafe(sql))
                .bind(sequence)
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}
