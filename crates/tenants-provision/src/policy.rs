//! Policies: row-level security on the pool tables (enabled, forced, the
//! `tenant_isolation` policy failing closed) and the views over them reading as
//! their caller.

use sqlx::PgPool;
use tenants_db::Error;

use super::context::SharedPlan;
use super::live::Live;
use super::live::{self, PoolTableLive};
use super::provisioner::Provisioner;

/// Reads the pool tables' protection and grants, and the shared database's
/// migration history.
pub(crate) async fn read(
    provisioner: &Provisioner,
    shared: &PgPool,
    live: &mut Live,
) -> Result<(), Error> {
    let pool_tables = &provisioner.file.shared.pool_tables;
    if pool_tables.is_empty() {
        return Ok(());
    }
    live.pool = live::pool_tables(shared, pool_tables).await?;
    live.pool_grants = live::grants_on_tables(shared, pool_tables).await?;
    if provisioner.migrator.is_some() {
        let mut conn = shared.acquire().await?;
        live.shared_applied = live::applied(&mut conn).await?;
    }
    Ok(())
}
use super::file::TableName;
use super::live::{POLICY, POLICY_CHECK};
use super::plan::{Action, Change, Scope, Work};
use super::provisioner::batch;
use sqlx::Connection;
use tenants_db::TENANT_SETTING;

/// Plans securing each pool table that lacks part of its protection; with
/// migrations pending (`migrating`), every pool table is checked again after them.
pub(crate) fn plan_pool_tables(t: &SharedPlan<'_>, migrating: bool, changes: &mut Vec<Change>) {
    let tables = &t.provisioner.file.shared.pool_tables;
    for (table, state) in tables.iter().zip(&t.live.pool) {
        let mut missing = missing_protection(state);
        if state.exists && missing.is_empty() && migrating {
            // The pending migrations may add columns, keys or views over it:
            // checked again once they ran.
            missing.push("check again after the migrations".into());
        }
        if !missing.is_empty() {
            changes.push(
                Change::new(
                    Scope::Shared,
                    Action::Update,
                    format!("pool table {table}"),
                    Work::SecurePoolTables(vec![table.clone()]),
                )
                .detail(missing.join(", ")),
            );
        }
    }
}

/// What a pool table lacks, in the words the plan shows.
fn missing_protection(state: &PoolTableLive) -> Vec<String> {
    if !state.exists {
        return vec!["table missing: expected from the migrations".to_owned()];
    }
    let mut missing = Vec::new();
    if !state.tenant_column {
        missing.push("add column tenant_id".into());
    } else if !state.tenant_default {
        missing.push("default tenant_id to the tenant setting".into());
    }
    if !state.rls {
        missing.push("enable row-level security".into());
    }
    if !state.forced {
        missing.push("force row-level security".into());
    }
    if !state.policy {
        missing.push(format!("create policy {}", live::POLICY));
    } else if !state.policy_fails_closed {
        missing.push(format!(
            "make policy {} refuse rows with no tenant ({})",
            live::POLICY,
            live::POLICY_CHECK
        ));
    }
    if !state.definer_views.is_empty() {
        missing.push(format!(
            "make views {} read it as their caller (security_invoker)",
            state.definer_views.join(", ")
        ));
    }
    missing
}

/// Gives `tables` a `tenant_id` column (when missing), row-level security enabled
/// and forced, the tenant isolation policy, and their views `security_invoker`;
/// then refuses keys that do not lead with `tenant_id`. With `copies` (a tenant's
/// own copies of the pool tables, in its schema or database), missing tables are
/// skipped, and keys are not checked: one tenant's rows cannot collide with
/// another's there. On a Citus coordinator (`citus`), one statement per message
/// (see [`batch`]).
pub(crate) async fn secure_tables(
    conn: &mut sqlx::PgConnection,
    tables: &[TableName],
    copies: bool,
    citus: bool,
) -> Result<(), Error> {
    let state = live::pool_tables(&mut *conn, tables).await?;
    let mut tx = conn.begin().await?;
    // Owned: a borrowed iterator held across an await would make the future not
    // provably `Send`.
    let all = tables.to_vec();
    let tables: Vec<(TableName, live::PoolTableLive)> = tables.iter().cloned().zip(state).collect();
    for (table, live) in tables {
        if !live.exists {
            if copies {
                continue;
            }
            return Err(Error::Config(format!(
                "pool table {table} does not exist: create it in the shared migrations"
            )));
        }
        let t = table.quoted();
        let mut statements = Vec::new();
        if !live.tenant_column {
            statements.push(format!(
                "ALTER TABLE {t} ADD COLUMN tenant_id text \
                 DEFAULT current_setting('{TENANT_SETTING}', true)"
            ));
        }
        if live.tenant_column && !live.tenant_default {
            statements.push(format!(
                "ALTER TABLE {t} ALTER COLUMN tenant_id \
                 SET DEFAULT current_setting('{TENANT_SETTING}', true)"
            ));
        }
        if !live.rls {
            statements.push(format!("ALTER TABLE {t} ENABLE ROW LEVEL SECURITY"));
        }
        if !live.forced {
            statements.push(format!("ALTER TABLE {t} FORCE ROW LEVEL SECURITY"));
        }
        if !live.policy {
            statements.push(format!(
                "CREATE POLICY {POLICY} ON {t} USING ({POLICY_CHECK}) WITH CHECK ({POLICY_CHECK})"
            ));
        } else if !live.policy_fails_closed {
            // An earlier version's policy, or one edited by hand: made to fail
            // closed in place, so the table is never without a policy.
            statements.push(format!("DROP POLICY {POLICY} ON {t}"));
            statements.push(format!(
                "CREATE POLICY {POLICY} ON {t} USING ({POLICY_CHECK}) WITH CHECK ({POLICY_CHECK})"
            ));
        }
        // A view runs with its owner's rights (the migrating superuser's, which
        // row-level security never filters) unless it is security_invoker
        // (PostgreSQL 15 and later).
        for view in &live.definer_views {
            statements.push(format!("ALTER VIEW {view} SET (security_invoker = true)"));
        }
        batch(&mut tx, &statements, citus).await?;
    }
    tx.commit().await?;
    if copies {
        return Ok(());
    }
    // Checked once the tables are secured: a key the migrations just created
    // fails the apply, with the tables' row-level security already in place.
    let state = live::pool_tables(&mut *conn, &all).await?;
    tenant_scoped_keys(&all, &state)
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
