//! Migration history: the shared migrations a tenant's schema or database has yet
//! to run.

use std::collections::BTreeSet;

use tenants_core::SqlIdent;

use super::context::{SharedPlan, TenantPlan, migrate_target, pending_detail};
use super::plan::{Action, Change, MigrateTarget, Scope, Work};

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
