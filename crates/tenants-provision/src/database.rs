//! Databases: a silo tenant's database, and the template it is copied from.

use std::collections::BTreeSet;

use tenants_core::SqlIdent;

use futures_util::{StreamExt, TryStreamExt};
use tenants_core::DataModel;
use tenants_db::Error;

use super::context::{SharedPlan, Storage, TenantPlan};
use super::file::TenantSpec;
use super::live;
use super::live::{Live, SiloRead};
use super::migration;
use super::plan::{Action, Change, On, Scope, Work};
use super::provisioner::Provisioner;

/// Reads the migration history of each server's template database (`None` when
/// it does not exist); without migrations there are no templates.
pub(crate) async fn read_templates(
    provisioner: &Provisioner,
    live: &mut Live,
) -> Result<(), Error> {
    if provisioner.migrator.is_none() {
        return Ok(());
    }
    for (name, server) in &provisioner.file.servers {
        let exists = live.servers[name]
            .databases
            .contains(server.template.as_str());
        let applied = if exists {
            let options = provisioner.database(name, &server.template)?;
            let mut conn = live::connect(&options).await?;
            let applied = live::applied(&mut conn).await;
            live::close(conn, applied).await?.or(Some(BTreeSet::new()))
        } else {
            None
        };
        live.templates.insert(name.clone(), applied);
    }
    Ok(())
}

/// Reads the migration history and grants of the silo databases that exist, a
/// few at a time.
pub(crate) async fn read_silos(
    provisioner: &Provisioner,
    specs: &[&TenantSpec],
    live: &mut Live,
) -> Result<(), Error> {
    let silos: Vec<(String, SqlIdent)> = specs
        .iter()
        .filter_map(|s| match &s.tenant.model {
            DataModel::Silo { database, .. }
                if live.servers[&s.server]
                    .databases
                    .contains(database.as_str()) =>
            {
                Some((s.server.clone(), database.clone()))
            }
            _ => None,
        })
        .collect();
    let read = futures_util::stream::iter(silos)
        .map(|(server, database)| -> SiloRead<'_> {
            Box::pin(async move {
                let options = provisioner.database(&server, &database)?;
                let mut conn = live::connect(&options).await?;
                let state = async {
                    let applied = live::applied(&mut conn).await?;
                    let public = ["public".to_owned()];
                    let grants = live::grants_in_schemas(&mut conn, &public).await?;
                    Ok::<_, Error>((applied, grants))
                }
                .await;
                let state = live::close(conn, state).await?;
                Ok(((server, database.to_string()), state))
            })
        })
        .buffer_unordered(provisioner.parallel)
        .try_collect::<Vec<_>>()
        .await?;
    live.silos = read.into_iter().collect();
    Ok(())
}

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
