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
use super::plan::{Action, Change, Scope, Work};

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
