//! Grants: the privileges of a tenant's roles on its tables.

use tenants_core::DataModel;

use super::engine::{Storage, TenantPlan, tenant_grant_diff, tenant_grant_rows};
use super::plan::{Action, Change, Work};

/// Plans syncing the tenant's table grants: when its storage or roles are new,
/// migrations will add tables, or the live grants differ from what the roles'
/// kinds allow.
pub(crate) fn plan_tenant(t: &TenantPlan<'_>, storage: &Storage, changes: &mut Vec<Change>) {
    let provisioner = t.provisioner;
    let diff = tenant_grant_diff(t.spec, tenant_grant_rows(t.spec, t.live));
    let new_roles = t.roles.iter().any(|(_, n)| !t.server_live.has_role(n));
    let shared_pending = t.spec.tenant.model == DataModel::Pool
        && !provisioner.file.shared.pool_tables.is_empty()
        && !provisioner
            .pending(t.live.shared_applied.as_ref())
            .is_empty();
    if storage.created
        || new_roles
        || shared_pending
        || !storage.pending.is_empty()
        || !diff.is_empty()
    {
        let detail = if diff.is_empty() {
            "after migrations".to_owned()
        } else {
            diff.summary()
        };
        changes.push(
            Change::new(
                t.scope,
                Action::Update,
                "table grants",
                Work::SyncGrants(Box::new(t.spec.clone())),
            )
            .detail(detail),
        );
    }
}
