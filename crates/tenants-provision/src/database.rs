//! Databases: a silo tenant's database, and the template it is copied from.

use std::collections::BTreeSet;

use tenants_core::SqlIdent;

use tenants_core::DataModel;

use super::engine::{SharedPlan, Storage, TenantPlan};
use super::file::TenantSpec;
use super::migration;
use super::plan::{Action, Change, On, Scope, Work};

/// Plans each server's template database, which silo databases are copied from:
/// created when the server has silo tenants, and migrated. Without migrations
/// there is no template.
pub(crate) fn plan_templates(t: &SharedPlan<'_>, specs: &[&TenantSpec], changes: &mut Vec<Change>) {
    if t.provisioner.migrator.is_none() {
        return;
    }
    for (name, server) in &t.provisioner.file.servers {
        let has_silos = specs
            .iter()
            .any(|s| s.server == *name && matches!(s.tenant.model, DataModel::Silo { .. }));
        let template = &server.template;
        let state = t.live.templates.get(name).cloned().flatten();
        if !has_silos && state.is_none() {
            continue;
        }
        if state.is_none() {
            let q = template.quoted();
            changes.push(
                Change::new(
                    Scope::Shared,
                    Action::Create,
                    format!("database {template}"),
                    Work::SqlEach(
                        On {
                            server: name.clone(),
                            database: None,
                        },
                        vec![
                            format!("CREATE DATABASE {q}"),
                            format!("REVOKE CONNECT, TEMPORARY ON DATABASE {q} FROM PUBLIC"),
                        ],
                    ),
                )
                .detail(format!("template of the silo databases on server {name}")),
            );
        }
        migration::plan_template(t, name, template, state.as_ref(), changes);
    }
}

/// Plans a silo tenant's database: created from the server's template (when there
/// are migrations) with `CONNECT` for the tenant's roles only, and the migrations
/// it has yet to run.
pub(crate) fn plan(t: &TenantPlan<'_>, database: &SqlIdent, changes: &mut Vec<Change>) -> Storage {
    let server = t.server();
    let exists = t.server_live.databases.contains(database.as_str());
    let template = &t.provisioner.file.servers[server].template;
    let migrated = t.provisioner.migrator.is_some();
    if !exists {
        let q = database.quoted();
        let create = if migrated {
            format!("CREATE DATABASE {q} TEMPLATE {}", template.quoted())
        } else {
            format!("CREATE DATABASE {q}")
        };
        changes.push(
            Change::new(
                t.scope,
                Action::Create,
                format!("database {database}"),
                Work::SqlEach(
                    t.on_server.clone(),
                    vec![
                        create,
                        format!("REVOKE CONNECT, TEMPORARY ON DATABASE {q} FROM PUBLIC"),
                        format!("GRANT CONNECT ON DATABASE {q} TO {}", t.role_list),
                    ],
                ),
            )
            .detail(if migrated {
                format!("silo model, copied from template {template}")
            } else {
                "silo model".to_owned()
            })
            .storage(),
        );
    }
    let state = t.live.silos.get(&(server.to_owned(), database.to_string()));
    let pending = match state {
        Some((applied, _)) => t
            .provisioner
            .pending(applied.as_ref().or(Some(&BTreeSet::new()))),
        None => Vec::new(),
    };
    Storage {
        created: !exists,
        pending,
    }
}
