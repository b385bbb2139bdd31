//! What planning reads: one tenant's declaration and servers ([`TenantPlan`]),
//! or the shared objects' ([`SharedPlan`]), and the helpers the object modules
//! share.

use std::collections::BTreeSet;

use tenants_core::{DataModel, SqlIdent};
use tenants_db::TenantRole;

use super::file::TenantSpec;
use super::live::{Live, ServerLive};
use super::plan::{MigrateTarget, On, Origin, Scope};
use super::provisioner::Provisioner;

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
