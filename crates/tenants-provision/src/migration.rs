//! Migration history: the shared migrations a tenant's schema or database has yet
//! to run.

use super::engine::{TenantPlan, migrate_target, pending_detail};
use super::plan::{Action, Change, Work};

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
