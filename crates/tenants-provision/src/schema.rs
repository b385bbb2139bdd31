//! Schemas: a bridge tenant's schema in the shared database, and the schemas
//! every tenant shares.

use std::collections::BTreeSet;

use sqlx::PgPool;
use tenants_core::{DataModel, SqlIdent};
use tenants_db::Error;

use super::citus;
use super::context::{SharedPlan, Storage, TenantPlan};
use super::file::TenantSpec;
use super::live;
use super::live::Live;

/// Reads the migration history and grants of the bridge schemas that exist.
pub(crate) async fn read_bridges(
    shared: &PgPool,
    specs: &[&TenantSpec],
    live: &mut Live,
) -> Result<(), Error> {
    let bridge: Vec<SqlIdent> = specs
        .iter()
        .filter_map(|s| match &s.tenant.model {
            DataModel::Bridge { schema } if live.schemas.contains(schema.as_str()) => {
                Some(schema.clone())
            }
            _ => None,
        })
        .collect();
    if bridge.is_empty() {
        return Ok(());
    }
    live.bridge_applied = live::applied_in_schemas(shared, &bridge).await?;
    let names: Vec<String> = bridge.iter().map(ToString::to_string).collect();
    for row in live::grants_in_schemas(shared, &names).await? {
        live.bridge_grants
            .entry(row.schema.clone())
            .or_default()
            .push(row);
    }
    Ok(())
}
use super::plan::{Action, Change, Scope, Work};

/// Plans the schemas every tenant shares (`[shared] schemas`), readable by all.
pub(crate) fn plan_shared(t: &SharedPlan<'_>, changes: &mut Vec<Change>) {
    for schema in &t.provisioner.file.shared.schemas {
        if !t.live.schemas.contains(schema.as_str()) {
            let q = schema.quoted();
            changes.push(
                Change::new(
                    Scope::Shared,
                    Action::Create,
                    format!("schema {schema}"),
                    Work::Sql(
                        t.shared.clone(),
                        vec![
                            format!("CREATE SCHEMA IF NOT EXISTS {q}"),
                            format!("GRANT USAGE ON SCHEMA {q} TO PUBLIC"),
                        ],
                    ),
                )
                .detail("shared by every tenant"),
            );
        }
    }
}

/// Plans a bridge tenant's schema: created (with `USAGE` for the tenant's roles)
/// when missing, and the migrations it has yet to run.
pub(crate) fn plan(t: &TenantPlan<'_>, schema: &SqlIdent, changes: &mut Vec<Change>) -> Storage {
    let exists = t.live.schemas.contains(schema.as_str());
    if !exists {
        let q = schema.quoted();
        changes.push(
            Change::new(
                t.scope,
                Action::Create,
                format!("schema {schema}"),
                Work::Sql(
                    t.shared.clone(),
                    (citus::schema_sharding(t).into_iter())
                        .chain([
                            format!("CREATE SCHEMA {q}"),
                            format!("GRANT USAGE ON SCHEMA {q} TO {}", t.role_list),
                        ])
                        .collect(),
                ),
            )
            .detail(match citus::schema_sharding(t) {
                Some(_) => "bridge model, in the shared database: a distributed schema",
                None => "bridge model, in the shared database",
            })
            .storage(),
        );
    } else {
        citus::plan_bridge_schema(t, schema, changes);
    }
    let applied = t.live.bridge_applied.get(schema.as_str());
    let pending = if exists {
        t.provisioner.pending(applied.or(Some(&BTreeSet::new())))
    } else {
        t.provisioner.pending(None)
    };
    Storage {
        created: !exists,
        pending,
    }
}
