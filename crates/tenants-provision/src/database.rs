//! Databases: a silo tenant's database, copied from its server's template.

use std::collections::BTreeSet;

use tenants_core::SqlIdent;

use super::engine::{Storage, TenantPlan};
use super::plan::{Action, Change, Work};

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
