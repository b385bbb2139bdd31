//! Catalog records: the tenant's row in `tenants.tenants`, written last so
//! applications see a tenant only once it is ready; a model change out of the
//! pool moves the tenant's rows with it.

use sqlx::PgPool;
use tenants_core::{DataModel, Tenant};
use tenants_db::Error;

use super::context::{SharedPlan, TenantPlan, changed_keys};
use super::live::Live;
use super::plan::Origin;
use super::plan::{Action, Change, Scope, Work};
use super::provisioner::Provisioner;
use tenants_db::PgCatalog;

/// Reads the catalog: whether it is installed, its records (and where each
/// tenant's storage is), which tenants were provisioned by whom, and whether the
/// application role may read it.
pub(crate) async fn read(
    provisioner: &Provisioner,
    shared: &PgPool,
    live: &mut Live,
) -> Result<(), Error> {
    let installed: (bool, bool) = sqlx::query_as(
        "SELECT to_regclass('tenants.tenants') IS NOT NULL, \
                to_regclass('tenants.provisioned') IS NOT NULL",
    )
    .fetch_one(shared)
    .await?;
    live.catalog = installed.0 && installed.1;
    if !live.catalog {
        return Ok(());
    }
    let records: Vec<(String, sqlx::types::Json<serde_json::Value>)> =
        sqlx::query_as("SELECT id, record FROM tenants.tenants")
            .fetch_all(shared)
            .await?;
    live.records = records.into_iter().map(|(id, r)| (id, r.0)).collect();
    for (id, record) in &live.records {
        if let Ok(tenant) = serde_json::from_value::<Tenant>(record.clone())
            && let Some(location) = provisioner.location(&tenant.model, None)
        {
            live.locations.insert(location, id.clone());
        }
    }
    let provisioned: Vec<(String, String)> =
        sqlx::query_as("SELECT id, origin FROM tenants.provisioned")
            .fetch_all(shared)
            .await?;
    live.provisioned = provisioned.into_iter().collect();
    let default = &provisioner.file.default_server;
    if let Some(app) = provisioner.app_role(default)
        && live.servers[default].has_role(app)
    {
        live.app_reads_catalog = sqlx::query_scalar(
            "SELECT has_schema_privilege($1, 'tenants', 'USAGE') \
             AND has_table_privilege($1, 'tenants.tenants', 'SELECT')",
        )
        .bind(app.as_str())
        .fetch_one(shared)
        .await?;
    }
    Ok(())
}

/// Plans the catalog table `tenants.tenants`, where applications read tenant
/// records, when it is missing.
pub(crate) fn plan_catalog(t: &SharedPlan<'_>, changes: &mut Vec<Change>) {
    if !t.live.catalog {
        changes.push(
            Change::new(
                Scope::Shared,
                Action::Create,
                "catalog tenants.tenants",
                Work::InstallCatalog,
            )
            .detail("where applications read tenant records"),
        );
    }
}

/// Plans the application role's right to read the catalog.
pub(crate) fn plan_app_reads_catalog(t: &SharedPlan<'_>, changes: &mut Vec<Change>) {
    let provisioner = t.provisioner;
    if let Some(app) = provisioner.app_role(&provisioner.file.default_server)
        && !t.live.app_reads_catalog
    {
        let app = app.quoted();
        changes.push(Change::new(
            Scope::Shared,
            Action::Update,
            format!("grants of {} on the catalog", app.trim_matches('"')),
            Work::Sql(
                t.shared.clone(),
                vec![
                    format!("GRANT USAGE ON SCHEMA tenants TO {app}"),
                    format!("GRANT SELECT ON tenants.tenants TO {app}"),
                ],
            ),
        ));
    }
}

/// Plans the tenant's catalog record: created, updated when it or its origin
/// changed, or, when its model changed, the move (out of the pool) or the switch
/// (otherwise; the data is not copied).
pub(crate) fn plan(t: &TenantPlan<'_>, changes: &mut Vec<Change>) -> Result<(), Error> {
    let tenant = &t.spec.tenant;
    let record = serde_json::to_value(tenant)
        .map_err(|e| Error::Config(format!("tenant {}: {e}", tenant.id)))?;
    let registered = t.live.records.get(tenant.id.as_str());
    let model_now = registered.and_then(|r| serde_json::from_value::<DataModel>(r.clone()).ok());
    if let Some(from) = &model_now
        && *from != tenant.model
    {
        changes.push(model_change(t, from));
        return Ok(());
    }
    let register = Work::Register(Box::new(tenant.clone()), t.origin);
    let origin_now = t.live.provisioned.get(tenant.id.as_str());
    match registered {
        None => changes.push(Change::new(
            t.scope,
            Action::Create,
            "catalog entry",
            register,
        )),
        Some(old) if *old != record => changes.push(
            Change::new(t.scope, Action::Update, "catalog entry", register)
                .detail(changed_keys(old, &record)),
        ),
        Some(_) if origin_now.map(String::as_str) != Some(t.origin.as_str()) => {
            changes.push(
                Change::new(t.scope, Action::Update, "catalog entry", register)
                    .detail(format!("declared by the {}", t.origin.as_str())),
            );
        }
        Some(_) => {}
    }
    Ok(())
}

/// The change of a tenant whose model is no longer `from`: out of the pool, its
/// rows move with the record in one step (see `Work::Move`); otherwise only the
/// record switches.
fn model_change(t: &TenantPlan<'_>, from: &DataModel) -> Change {
    let tenant = &t.spec.tenant;
    if *from != DataModel::Pool {
        return Change::new(
            t.scope,
            Action::Update,
            "catalog entry",
            Work::Register(Box::new(tenant.clone()), t.origin),
        )
        .detail(format!(
            "model {} → {}: its data is NOT copied (only moves out of the pool copy rows)",
            from.name(),
            tenant.model.name()
        ));
    }
    let tables: Vec<String> = t
        .provisioner
        .file
        .shared
        .pool_tables
        .iter()
        .map(ToString::to_string)
        .collect();
    let detail = if tables.is_empty() {
        format!("pool → {}: no pool tables to copy", tenant.model.name())
    } else {
        format!(
            "pool → {}: copies its rows of {} there, then removes them from the shared tables",
            tenant.model.name(),
            tables.join(", ")
        )
    };
    Change::new(
        t.scope,
        Action::Update,
        "model",
        Work::Move(Box::new(tenant.clone()), t.origin),
    )
    .detail(detail)
}

/// Records a tenant (`$1`) as provisioned by its origin (`$2`), clearing the error
/// of an earlier failure.
pub(crate) const PROVISIONED_UPSERT: &str = "INSERT INTO tenants.provisioned (id, origin) \
     VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET origin = EXCLUDED.origin, error = NULL, \
     updated_at = now()";

/// Where the provisioning engine records each tenant: who declared it (`file` or
/// `runtime`) and the error of its last failed apply.
const PROVISIONED_SQL: &str = "
CREATE TABLE IF NOT EXISTS tenants.provisioned (
    id         text PRIMARY KEY,
    origin     text NOT NULL CHECK (origin IN ('file', 'runtime')),
    error      text,
    updated_at timestamptz NOT NULL DEFAULT now()
)";

/// Installs the catalog (`tenants.tenants`, [`PgCatalog::install`]) and the
/// engine's record of what it provisioned.
pub(crate) async fn install_catalog(provisioner: &Provisioner) -> Result<(), Error> {
    let pool = provisioner.shared_pool()?;
    PgCatalog::new(pool.clone()).install().await?;
    sqlx::raw_sql(PROVISIONED_SQL).execute(pool).await?;
    Ok(())
}

/// Writes the tenant's catalog record, and records it as provisioned by `origin`.
pub(crate) async fn register(
    provisioner: &Provisioner,
    tenant: &Tenant,
    origin: Origin,
) -> Result<(), Error> {
    let pool = provisioner.shared_pool()?;
    PgCatalog::new(pool.clone()).put(tenant).await?;
    sqlx::query(PROVISIONED_UPSERT)
        .bind(tenant.id.as_str())
        .bind(origin.as_str())
        .execute(pool)
        .await?;
    Ok(())
}
