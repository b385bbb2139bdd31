//! `doctor`: isolation hazards of the live servers, checked against the tenants file.

use std::collections::HashSet;
use std::fmt;

use sqlx::Acquire;
use tenants_core::{DataModel, TenantId};

use super::citus;
use super::file::TenantSpec;
use super::grant::{tenant_grant_diff, tenant_grant_rows};
use super::live;
use super::live::Live;
use super::live::RoleLive;
use super::plan::Origin;
use super::provisioner::Provisioner;
use tenants_db::{Error, HAZARDS_SQL, Hazard, TenantRole};

/// Something `doctor` found that weakens tenant isolation or shows drift between
/// the file and the servers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Finding {
    /// A hazard of the application role or of a pool table ([`Hazard`]).
    Hazard(Hazard),
    /// The application role named in the file does not exist.
    AppRoleMissing {
        /// The role.
        role: String,
    },
    /// A declared pool table is missing, or lacks its `tenant_id` column or its
    /// policy.
    PoolTable {
        /// The table.
        table: String,
        /// What is wrong.
        problem: String,
    },
    /// A tenant of the file is missing from the database (not applied yet, or
    /// dropped by hand).
    NotProvisioned {
        /// The tenant.
        tenant: TenantId,
        /// What is missing.
        missing: String,
    },
    /// A tenant of the catalog is not in the file (and was not provisioned at
    /// runtime).
    NotDeclared {
        /// The tenant.
        tenant: TenantId,
    },
    /// A role holds privileges beyond its kind, or another tenant's.
    ExtraGrant {
        /// The tenant whose relations are concerned.
        tenant: TenantId,
        /// Role, privileges and relation.
        grant: String,
    },
    /// A row-level security policy of a pool table lets rows through when no tenant
    /// is set, or widens what every tenant sees.
    Policy {
        /// The table, schema-qualified.
        table: String,
        /// The policy.
        policy: String,
        /// What is wrong, and the fix.
        problem: &'static str,
    },
    /// A Citus object is not what the file's `citus = true` server needs: a pool
    /// table not distributed by `tenant_id` or not co-located with the others (its
    /// queries and joins then cross nodes), a shared schema's table that is not a
    /// reference table, a bridge schema that is not a distributed schema.
    Citus {
        /// The object: `pool table public.todos`, `schema acme`.
        object: String,
        /// What is wrong, and the fix.
        problem: String,
    },
    /// A tenant's group role or login user has an attribute it must not have.
    RoleAttribute {
        /// The role.
        role: String,
        /// The attribute: `LOGIN`, `SUPERUSER`, `BYPASSRLS`, `CREATEDB or CREATEROLE`.
        attribute: &'static str,
    },
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::Hazard(hazard) => hazard.fmt(f),
            Finding::AppRoleMissing { role } => {
                write!(f, "application role {role} does not exist: run apply")
            }
            Finding::PoolTable { table, problem } => write!(f, "pool table {table} {problem}"),
            Finding::Citus { object, problem } => write!(f, "on Citus, {object}: {problem}"),
            Finding::Policy {
                table,
                policy,
                problem,
            } => write!(f, "policy {policy} on pool table {table} {problem}"),
            Finding::NotProvisioned { tenant, missing } => write!(
                f,
                "tenant {tenant} is in the file but missing in the database ({missing}): run apply"
            ),
            Finding::NotDeclared { tenant } => write!(
                f,
                "tenant {tenant} is in the database but not in the file: declare it, or destroy it"
            ),
            Finding::ExtraGrant { tenant, grant } => write!(
                f,
                "tenant {tenant}: grant beyond the role: {grant}: run apply to revoke it"
            ),
            Finding::RoleAttribute { role, attribute } => {
                write!(
                    f,
                    "role {role} has {attribute}, which a tenant role must not have"
                )
            }
        }
    }
}

/// Every row-level security policy of the given tables (quoted names), as
/// `(table, policy, permissive, USING, WITH CHECK)` printed by PostgreSQL.
const POLICIES_SQL: &str = "\
SELECT format('%I.%I', n.nspname, c.relname), p.polname::text, p.polpermissive,
       coalesce(pg_get_expr(p.polqual, p.polrelid), ''),
       coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '')
FROM pg_policy p
JOIN pg_class c ON c.oid = p.polrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid IN (SELECT to_regclass(x) FROM unnest($1::text[]) AS x)
ORDER BY 1, 2";

impl Provisioner {
    /// The problems of the pool tables' policies (see [`live::policy_problem`]).
    async fn policy_findings(&self) -> Result<Vec<Finding>, Error> {
        let tables: Vec<String> = self
            .file
            .shared
            .pool_tables
            .iter()
            .map(|t| t.quoted())
            .collect();
        let rows: Vec<(String, String, bool, String, String)> = sqlx::query_as(POLICIES_SQL)
            .bind(tables)
            .fetch_all(self.shared_pool()?)
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(table, policy, permissive, using, check)| {
                let problem = live::policy_problem(permissive, &[&using, &check])?;
                Some(Finding::Policy {
                    table,
                    policy,
                    problem,
                })
            })
            .collect())
    }

    /// Checks the live servers for isolation hazards: pool tables without
    /// row-level security enabled and forced (or without their policy, or with one
    /// that does not fail closed), policies that let rows through when no tenant is
    /// set or widen every tenant's view, an application role that is a superuser,
    /// has `BYPASSRLS`, owns a pool table or is a member of a bypassing role, views,
    /// materialized views and `SECURITY DEFINER` functions that read pool tables
    /// past row-level security ([`HAZARDS_SQL`]), tenants of the file missing in the
    /// database and tenants of the database missing in the file (tenants
    /// provisioned at runtime excepted), and roles holding grants beyond their
    /// kind. An empty list means nothing was found.
    pub async fn doctor(&self) -> Result<Vec<Finding>, Error> {
        let specs: Vec<&TenantSpec> = self.file.tenants.iter().collect();
        let live = self.read_live(&specs).await?;
        let mut findings = self.app_role_findings(&live);
        findings.extend(self.hazards_as_app(&live).await?);
        findings.extend(self.policy_findings().await?);
        findings.extend(self.pool_table_findings(&live));
        findings.extend(self.citus_findings(&live));
        // Drift between the file and the database.
        let users: HashSet<&str> = self
            .file
            .tenants
            .iter()
            .flat_map(|t| t.users.iter().map(|u| u.name.as_str()))
            .collect();
        for spec in &specs {
            findings.extend(tenant_findings(spec, &live, &users));
        }
        findings.extend(self.undeclared_records(&live));
        Ok(findings)
    }

    /// Each server's application role: missing, superuser or BYPASSRLS.
    fn app_role_findings(&self, live: &Live) -> Vec<Finding> {
        let mut findings = Vec::new();
        for (name, server) in &self.file.servers {
            let Some(app) = &server.app_role else {
                continue;
            };
            match live.servers[name].roles.get(app.as_str()) {
                None => findings.push(Finding::AppRoleMissing {
                    role: app.to_string(),
                }),
                Some(role) => {
                    if role.superuser {
                        findings.push(Finding::Hazard(Hazard::Superuser {
                            role: app.to_string(),
                        }));
                    }
                    if role.bypassrls {
                        findings.push(Finding::Hazard(Hazard::BypassRls {
                            role: app.to_string(),
                        }));
                    }
                }
            }
        }
        findings
    }

    /// The shared database's hazards ([`HAZARDS_SQL`]) as the application role sees
    /// them (in a transaction that `SET LOCAL ROLE`s to it, rolled back).
    async fn hazards_as_app(&self, live: &Live) -> Result<Vec<Finding>, Error> {
        let shared = self.shared_pool()?;
        let default = &self.file.default_server;
        let app = self
            .app_role(default)
            .filter(|app| live.servers[default].has_role(app));
        let mut conn = shared.acquire().await?;
        let mut tx = conn.begin().await?;
        if let Some(app) = app {
            sqlx::query("SELECT set_config('role', $1, true)")
                .bind(app.as_str())
                .execute(&mut *tx)
                .await?;
        }
        let rows: Vec<(String, String)> = sqlx::query_as(HAZARDS_SQL).fetch_all(&mut *tx).await?;
        tx.rollback().await?;
        let mut findings = Vec::new();
        for (kind, subject) in rows {
            match kind.as_str() {
                // The session's Citus setting is the admin's, not the application
                // role's: citus_findings reads the role's.
                "citus-settings-not-forwarded" => continue,
                "citus-coordinator" if !citus::declared(self) => {
                    let server = default.clone();
                    findings.push(Finding::Hazard(Hazard::UndeclaredCitus { server }));
                    continue;
                }
                "citus-coordinator" => continue,
                _ => {}
            }
            // Superuser and BYPASSRLS were checked for every server already.
            let table_hazard = matches!(
                kind.as_str(),
                "rls-disabled"
                    | "rls-not-forced"
                    | "view-bypasses-rls"
                    | "materialized-view"
                    | "security-definer"
            ) || (kind != "superuser" && kind != "bypassrls" && app.is_some());
            if table_hazard && let Some(hazard) = Hazard::from_row(&kind, subject) {
                findings.push(Finding::Hazard(hazard));
            }
        }
        Ok(findings)
    }

    /// Pool tables that are missing, unprotected, or keyed without `tenant_id`.
    fn pool_table_findings(&self, live: &Live) -> Vec<Finding> {
        let mut findings = Vec::new();
        for (table, state) in self.file.shared.pool_tables.iter().zip(&live.pool) {
            for key in &state.keys_without_tenant {
                findings.push(Finding::PoolTable {
                    table: table.to_string(),
                    problem: format!(
                        "has {key}, which does not lead with tenant_id: another tenant's \
                         insert of the same value fails (and learns it exists), or a \
                         reference reaches another tenant's row; lead it with tenant_id"
                    ),
                });
            }
            let problem = if !state.exists {
                "does not exist"
            } else if !state.tenant_column {
                "has no tenant_id column, so row-level security cannot filter it"
            } else if !state.policy {
                "has no tenant_isolation policy"
            } else if !state.policy_fails_closed {
                "has a tenant_isolation policy that is not the one apply writes: run apply"
            } else {
                continue;
            };
            findings.push(Finding::PoolTable {
                table: table.to_string(),
                problem: problem.into(),
            });
        }
        findings
    }

    /// On a server declared `citus = true`: an application role whose `SET
    /// LOCAL`s stay on the coordinator, pool tables not distributed by `tenant_id`
    /// and co-located, shared tables that are not reference tables, bridge schemas
    /// that are not distributed schemas.
    fn citus_findings(&self, live: &Live) -> Vec<Finding> {
        let Some(citus) = &live.citus else {
            return Vec::new();
        };
        let mut findings = Vec::new();
        if let Some(app) = self.app_role(&self.file.default_server)
            && !citus.forwarding.contains(app.as_str())
        {
            let role = app.to_string();
            findings.push(Finding::Hazard(Hazard::CitusSettingsNotForwarded { role }));
        }
        let tables = &self.file.shared.pool_tables;
        for table in tables {
            let first = tables.first().filter(|f| *f != table);
            if let Some(problem) = citus::pool_table_problem(citus, table, first) {
                let object = format!("pool table {table}");
                findings.push(Finding::Citus { object, problem });
            }
        }
        for name in &citus.local_shared {
            findings.push(Finding::Citus {
                object: format!("shared table {name}"),
                problem: "is not a reference table: run apply".into(),
            });
        }
        for spec in &self.file.tenants {
            if let DataModel::Bridge { schema } = &spec.tenant.model
                && live.schemas.contains(schema.as_str())
                && !citus.schemas.contains(schema.as_str())
            {
                findings.push(Finding::Citus {
                    object: format!("schema {schema}"),
                    problem: "is not a distributed schema: run apply".into(),
                });
            }
        }
        findings
    }

    /// Catalog records of tenants neither the file declares nor a runtime sign-up
    /// made.
    fn undeclared_records(&self, live: &Live) -> Vec<Finding> {
        let mut findings = Vec::new();
        for id in live.records.keys() {
            let declared = self.file.tenants.iter().any(|t| t.tenant.id == id.as_str());
            let runtime = live
                .provisioned
                .get(id)
                .is_some_and(|o| o == Origin::Runtime.as_str());
            if !declared
                && !runtime
                && let Ok(tenant) = id.parse()
            {
                findings.push(Finding::NotDeclared { tenant });
            }
        }
        findings
    }
}

/// One declared tenant's drift: objects missing, roles with attributes they must
/// not have, and grants beyond what its roles allow (`users`: every declared login).
fn tenant_findings(spec: &TenantSpec, live: &Live, users: &HashSet<&str>) -> Vec<Finding> {
    let id = spec.tenant.id;
    let server = &live.servers[&spec.server];
    let mut findings = Vec::new();
    let mut missing = Vec::new();
    if !live.records.contains_key(id.as_str()) {
        missing.push("catalog entry".to_owned());
    }
    match &spec.tenant.model {
        DataModel::Bridge { schema } if !live.schemas.contains(schema.as_str()) => {
            missing.push(format!("schema {schema}"));
        }
        DataModel::Silo { database, .. } if !server.databases.contains(database.as_str()) => {
            missing.push(format!("database {database}"));
        }
        _ => {}
    }
    for role in TenantRole::ALL {
        let name = role.role_name(&id);
        match server.roles.get(name.as_str()) {
            None => missing.push(format!("role {name}")),
            Some(live_role) => findings.extend(attributes(name.as_str(), live_role, true)),
        }
    }
    for user in &spec.users {
        match server.roles.get(user.name.as_str()) {
            None => missing.push(format!("user {}", user.name)),
            Some(live_role) => findings.extend(attributes(user.name.as_str(), live_role, false)),
        }
    }
    if !missing.is_empty() {
        findings.push(Finding::NotProvisioned {
            tenant: id,
            missing: missing.join(", "),
        });
    }
    findings.extend(extra_grants(spec, live, users));
    findings
}

/// The attributes a tenant role or user must not have (`LOGIN` only for a group
/// role: users log in).
fn attributes(role: &str, live_role: &RoleLive, group: bool) -> Vec<Finding> {
    [
        (group && live_role.login, "LOGIN"),
        (live_role.superuser, "SUPERUSER"),
        (live_role.bypassrls, "BYPASSRLS"),
        (live_role.creates, "CREATEDB or CREATEROLE"),
    ]
    .into_iter()
    .filter(|(has, _)| *has)
    .map(|(_, attribute)| Finding::RoleAttribute {
        role: role.to_owned(),
        attribute,
    })
    .collect()
}

/// Privileges beyond what the tenant's roles allow, and privileges a declared
/// user holds directly instead of through its role.
fn extra_grants(spec: &TenantSpec, live: &Live, users: &HashSet<&str>) -> Vec<Finding> {
    let id = spec.tenant.id;
    let rows = tenant_grant_rows(spec, live);
    let mut findings: Vec<Finding> = tenant_grant_diff(spec, rows)
        .revokes
        .into_iter()
        .map(|(_, grant)| Finding::ExtraGrant { tenant: id, grant })
        .collect();
    for row in rows {
        if let (Some(grantee), Some(privilege)) = (&row.grantee, &row.privilege)
            && users.contains(grantee.as_str())
        {
            findings.push(Finding::ExtraGrant {
                tenant: id,
                grant: format!(
                    "user {grantee} holds {privilege} on {}.{} directly, not through its role",
                    row.schema, row.relation
                ),
            });
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str =
        "(tenant_id = NULLIF(current_setting('tenants.tenant_id'::text, true), ''::text))";

    #[test]
    fn policies_that_fail_open_or_widen_are_found() {
        assert_eq!(live::policy_problem(true, &[GOOD, GOOD]), None);
        assert_eq!(live::policy_problem(false, &["(x > 0)", ""]), None);
        // Other tests for NULL in a policy (soft deletion) are not the setting's.
        let soft_delete = "((tenant_id = NULLIF(current_setting('tenants.tenant_id'::text, true), ''::text)) AND (deleted_at IS NULL))";
        assert_eq!(live::policy_problem(true, &[soft_delete, GOOD]), None);
        // A varchar tenant_id prints a cast around the column, not the setting.
        let varchar = "((tenant_id)::text = NULLIF(current_setting('tenants.tenant_id'::text, true), ''::text))";
        assert_eq!(live::policy_problem(true, &[varchar, varchar]), None);
        let raw = "(tenant_id = current_setting('tenants.tenant_id'::text, true))";
        assert!(
            live::policy_problem(true, &[raw, raw])
                .unwrap()
                .contains("NULLIF")
        );
        let cast = "(tenant_id = (current_setting('tenants.tenant_id'::text))::uuid)";
        assert!(
            live::policy_problem(true, &[cast, ""])
                .unwrap()
                .contains("NULLIF")
        );
        let widening = "((current_setting('tenants.tenant_id'::text, true) IS NULL) OR (tenant_id = current_setting('tenants.tenant_id'::text, true)))";
        assert!(
            live::policy_problem(true, &[widening, ""])
                .unwrap()
                .contains("no tenant")
        );
        let empty = "((NULLIF(current_setting('tenants.tenant_id'::text, true), ''::text) IS NULL) OR (tenant_id = NULLIF(current_setting('tenants.tenant_id'::text, true), ''::text)))";
        assert!(
            live::policy_problem(true, &[empty, ""])
                .unwrap()
                .contains("no tenant")
        );
        assert!(
            live::policy_problem(true, &["true", ""])
                .unwrap()
                .contains("ORed")
        );
    }
}
