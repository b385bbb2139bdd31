//! Grants: the privileges of a tenant's roles on its tables: what they hold
//! (read with the tables), what their kinds allow, and the grants and revokes
//! between the two.

use std::collections::{BTreeMap, BTreeSet};

use tenants_core::{DataModel, SqlIdent};
use tenants_db::TenantRole;

use super::context::{Storage, TenantPlan};
use super::file::TenantSpec;
use super::live;
use super::live::Live;
use super::live::{GrantRow, quote_ident};
use super::plan::{Action, Change, Work};
use super::policy::secure_tables;
use super::provisioner::{Provisioner, batch};
use sqlx::Connection;
use tenants_db::Error;

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

/// The grants diff of a tenant's relations, given their current grants.
pub(crate) fn tenant_grant_diff(spec: &TenantSpec, rows: &[GrantRow]) -> GrantDiff {
    let id = spec.tenant.id;
    let roles: Vec<(TenantRole, SqlIdent)> = TenantRole::ALL
        .iter()
        .map(|r| (*r, r.role_name(&id)))
        .collect();
    let foreign = |grantee: &str| {
        matches!(
            spec.tenant.model,
            DataModel::Bridge { .. } | DataModel::Silo { .. }
        ) && TenantRole::is_role_name(grantee)
            && !roles.iter().any(|(_, n)| n.as_str() == grantee)
    };
    diff_grants(rows, &roles, foreign)
}

/// The current grants on a tenant's relations, as read into `live`.
pub(crate) fn tenant_grant_rows<'a>(spec: &TenantSpec, live: &'a Live) -> &'a [GrantRow] {
    match &spec.tenant.model {
        DataModel::Pool => &live.pool_grants,
        DataModel::Bridge { schema } => live
            .bridge_grants
            .get(schema.as_str())
            .map_or(&[][..], Vec::as_slice),
        DataModel::Silo { database, .. } => live
            .silos
            .get(&(spec.server.clone(), database.to_string()))
            .map_or(&[][..], |(_, rows)| rows.as_slice()),
    }
}

/// The difference between the privileges a tenant's roles hold on its relations
/// and those their kinds allow.
#[derive(Debug, Default)]
pub(crate) struct GrantDiff {
    /// `(GRANT or REVOKE statement, summary)`.
    pub(crate) grants: Vec<(String, String)>,
    pub(crate) revokes: Vec<(String, String)>,
}

impl GrantDiff {
    pub(crate) fn is_empty(&self) -> bool {
        self.grants.is_empty() && self.revokes.is_empty()
    }

    pub(crate) fn statements(&self) -> Vec<String> {
        self.revokes
            .iter()
            .chain(&self.grants)
            .map(|(sql, _)| sql.clone())
            .collect()
    }

    pub(crate) fn summary(&self) -> String {
        let mut parts = Vec::new();
        if !self.grants.is_empty() {
            parts.push(format!("{} to grant", self.grants.len()));
        }
        if !self.revokes.is_empty() {
            let shown: Vec<&str> = self
                .revokes
                .iter()
                .take(3)
                .map(|(_, s)| s.as_str())
                .collect();
            parts.push(format!(
                "{} to revoke: {}",
                self.revokes.len(),
                shown.join("; ")
            ));
        }
        parts.join(", ")
    }
}

/// Privileges allowed to `role` on a relation of kind sequence or table.
fn allowed(role: TenantRole, sequence: bool) -> &'static [&'static str] {
    if sequence {
        if role.privileges().contains(&"INSERT") {
            &["USAGE"]
        } else {
            &[]
        }
    } else {
        role.privileges()
    }
}

/// The grants that make each of `roles` hold exactly what its kind allows on every
/// relation of `rows`, and the revokes of what a `foreign` grantee (another
/// tenant's role) holds there.
pub(crate) fn diff_grants(
    rows: &[GrantRow],
    roles: &[(TenantRole, SqlIdent)],
    foreign: impl Fn(&str) -> bool,
) -> GrantDiff {
    let mut diff = GrantDiff::default();
    for ((relation, sequence), held) in &held_by_relation(rows) {
        let kind = if *sequence { "SEQUENCE" } else { "TABLE" };
        for (role, name) in roles {
            role_diff(
                &mut diff,
                (relation, kind, *sequence),
                *role,
                name,
                held.get(name.as_str()),
            );
        }
        for (grantee, privileges) in held {
            if foreign(grantee) {
                diff.revokes
                    .push(foreign_revoke(relation, kind, grantee, privileges));
            }
        }
    }
    diff
}

/// `(quoted relation, is a sequence)` → grantee → the privileges it holds.
type Held = BTreeMap<(String, bool), BTreeMap<String, BTreeSet<String>>>;

fn held_by_relation(rows: &[GrantRow]) -> Held {
    let mut relations = Held::new();
    for row in rows {
        let held = relations
            .entry((row.quoted(), row.is_sequence()))
            .or_default();
        if let (Some(grantee), Some(privilege)) = (&row.grantee, &row.privilege) {
            held.entry(grantee.clone())
                .or_default()
                .insert(privilege.clone());
        }
    }
    relations
}

/// What `name` (a role of kind `role`) lacks or holds beyond its kind on one
/// relation `(quoted name, TABLE or SEQUENCE, is a sequence)`.
fn role_diff(
    diff: &mut GrantDiff,
    (relation, kind, sequence): (&str, &str, bool),
    role: TenantRole,
    name: &SqlIdent,
    has: Option<&BTreeSet<String>>,
) {
    let allowed = allowed(role, sequence);
    let missing: Vec<&str> = allowed
        .iter()
        .copied()
        .filter(|p| !has.is_some_and(|h| h.contains(*p)))
        .collect();
    if !missing.is_empty() {
        diff.grants.push((
            format!(
                "GRANT {} ON {kind} {relation} TO {}",
                missing.join(", "),
                name.quoted()
            ),
            format!("{name}: {} on {relation}", missing.join(", ")),
        ));
    }
    let extra: Vec<&str> = has
        .into_iter()
        .flatten()
        .map(String::as_str)
        .filter(|p| !allowed.contains(p) && is_keyword(p))
        .collect();
    if !extra.is_empty() {
        diff.revokes.push((
            format!(
                "REVOKE {} ON {kind} {relation} FROM {}",
                extra.join(", "),
                name.quoted()
            ),
            format!(
                "{name}: {} on {}",
                extra.join(", "),
                relation.replace('"', "")
            ),
        ));
    }
}

/// The revoke of everything another tenant's role holds on a relation.
fn foreign_revoke(
    relation: &str,
    kind: &str,
    grantee: &str,
    privileges: &BTreeSet<String>,
) -> (String, String) {
    let privileges: Vec<&str> = privileges
        .iter()
        .map(String::as_str)
        .filter(|p| is_keyword(p))
        .collect();
    (
        format!(
            "REVOKE {} ON {kind} {relation} FROM {}",
            privileges.join(", "),
            quote_ident(grantee)
        ),
        format!(
            "{grantee}: {} on {} (another tenant's role)",
            privileges.join(", "),
            relation.replace('"', "")
        ),
    )
}

/// A privilege name as the server reports it: uppercase letters, safe to write back.
fn is_keyword(privilege: &str) -> bool {
    !privilege.is_empty() && privilege.bytes().all(|b| b.is_ascii_uppercase())
}

impl Provisioner {
    pub(crate) async fn sync_grants(&self, spec: &TenantSpec) -> Result<(), Error> {
        let tenant = spec.tenant.id;
        let role_list = TenantRole::ALL
            .iter()
            .map(|r| r.role_name(&tenant).quoted())
            .collect::<Vec<_>>()
            .join(", ");
        let citus = self.on_citus(&self.file.default_server);
        match &spec.tenant.model {
            DataModel::Pool => {
                let pool = self.shared_pool()?;
                let mut tx = pool.begin().await?;
                // Concurrent grants on one table collide; pool tenants take turns.
                sqlx::query(
                    "SELECT pg_advisory_xact_lock(hashtextextended('tenants.pool-grants', 0))",
                )
                .execute(&mut *tx)
                .await?;
                let rows = live::grants_on_tables(&mut *tx, &self.file.shared.pool_tables).await?;
                let mut statements = tenant_grant_diff(spec, &rows).statements();
                let schemas: std::collections::BTreeSet<&SqlIdent> = self
                    .file
                    .shared
                    .pool_tables
                    .iter()
                    .map(|t| &t.schema)
                    .collect();
                for schema in schemas {
                    statements.push(format!(
                        "GRANT USAGE ON SCHEMA {} TO {role_list}",
                        schema.quoted()
                    ));
                }
                batch(&mut tx, &statements, citus).await?;
                tx.commit().await?;
            }
            DataModel::Bridge { schema } => {
                let pool = self.shared_pool()?;
                let mut tx = pool.begin().await?;
                let rows = live::grants_in_schemas(&mut *tx, &[schema.to_string()]).await?;
                let mut statements = tenant_grant_diff(spec, &rows).statements();
                statements.push(format!(
                    "GRANT USAGE ON SCHEMA {} TO {role_list}",
                    schema.quoted()
                ));
                batch(&mut tx, &statements, citus).await?;
                tx.commit().await?;
                // The tenant's copies of the pool tables carry the same policy, so a
                // tenant moved between models keeps working.
                let copies = self.tenant_tables(&spec.tenant.model);
                let mut conn = pool.acquire().await?;
                secure_tables(&mut conn, &copies, true, citus).await?;
            }
            DataModel::Silo { database, .. } => {
                let options = self.database(&spec.server, database)?;
                let mut conn = live::connect(&options).await?;
                let result = async {
                    let mut tx = conn.begin().await?;
                    let rows = live::grants_in_schemas(&mut *tx, &["public".into()]).await?;
                    let mut statements = tenant_grant_diff(spec, &rows).statements();
                    statements.push(format!("GRANT USAGE ON SCHEMA public TO {role_list}"));
                    batch(&mut tx, &statements, false).await?;
                    tx.commit().await?;
                    secure_tables(&mut conn, &self.file.shared.pool_tables, true, false).await
                }
                .await;
                live::close(conn, result).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenants_core::TenantId;

    fn row(relation: &str, kind: &str, grantee: Option<&str>, privilege: Option<&str>) -> GrantRow {
        GrantRow {
            schema: "s".into(),
            relation: relation.into(),
            kind: kind.into(),
            grantee: grantee.map(Into::into),
            privilege: privilege.map(Into::into),
        }
    }

    fn roles(id: &str) -> Vec<(TenantRole, SqlIdent)> {
        let id: TenantId = id.parse().unwrap();
        TenantRole::ALL
            .iter()
            .map(|r| (*r, r.role_name(&id)))
            .collect()
    }

    #[test]
    fn grants_become_exactly_those_of_each_role() {
        let mut rows = vec![
            row("orders", "r", None, None),
            row("orders_id_seq", "S", None, None),
            // The customer may read but was also given DELETE; another tenant's
            // role holds SELECT.
            row("orders", "r", Some("tenant_a_customer"), Some("SELECT")),
            row("orders", "r", Some("tenant_a_customer"), Some("DELETE")),
            row("orders", "r", Some("tenant_b_admin"), Some("SELECT")),
        ];
        for p in ["SELECT", "INSERT", "UPDATE", "DELETE"] {
            rows.push(row("orders", "r", Some("tenant_a_admin"), Some(p)));
        }
        let roles = roles("a");
        let foreign = |g: &str| TenantRole::is_role_name(g) && !g.starts_with("tenant_a_");
        let diff = diff_grants(&rows, &roles, foreign);
        let mut statements = diff.statements();
        statements.sort();
        assert_eq!(
            statements,
            [
                "GRANT SELECT, INSERT, UPDATE ON TABLE \"s\".\"orders\" TO \"tenant_a_developer\"",
                "GRANT USAGE ON SEQUENCE \"s\".\"orders_id_seq\" TO \"tenant_a_admin\"",
                "GRANT USAGE ON SEQUENCE \"s\".\"orders_id_seq\" TO \"tenant_a_developer\"",
                "REVOKE DELETE ON TABLE \"s\".\"orders\" FROM \"tenant_a_customer\"",
                "REVOKE SELECT ON TABLE \"s\".\"orders\" FROM \"tenant_b_admin\"",
            ]
        );
        assert!(diff.summary().contains("2 to revoke"), "{}", diff.summary());
        // In the pool, every tenant's roles share the tables: nobody is foreign.
        assert_eq!(diff_grants(&rows, &roles, |_| false).revokes.len(), 1);
    }
}
