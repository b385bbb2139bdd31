//! Roles: a tenant's group roles, its login users, and the application's
//! membership in the group roles.

use std::collections::{BTreeSet, HashSet};

use super::context::{SharedPlan, TenantPlan};
use super::file::Password;
use super::live::quote_ident;
use super::plan::{Action, Change, Scope, Work};
use super::provisioner::Provisioner;
use sqlx::AssertSqlSafe;
use tenants_core::SqlIdent;
use tenants_db::Error;
use tenants_db::sql_literal as literal;

/// Plans each server's application login role (the file's `app_role`) when it
/// does not exist.
pub(crate) fn plan_app_roles(t: &SharedPlan<'_>, changes: &mut Vec<Change>) {
    for (name, server) in &t.provisioner.file.servers {
        let Some(app) = &server.app_role else {
            continue;
        };
        if !t.live.servers[name].has_role(app) {
            changes.push(
                Change::new(
                    Scope::Shared,
                    Action::Create,
                    format!("role {app}"),
                    Work::CreateLogin {
                        server: name.clone(),
                        name: app.clone(),
                        member_of: None,
                        password: server
                            .app_password
                            .clone()
                            .or_else(|| server.app_password_env.clone().map(Password::Env)),
                        search_path: None,
                    },
                )
                .detail(format!("application login role on server {name}")),
            );
        }
    }
}

/// Plans the tenant's group roles (`tenant_{id}_admin`, `_developer`,
/// `_customer`) that do not exist yet.
pub(crate) fn plan_group_roles(t: &TenantPlan<'_>, changes: &mut Vec<Change>) {
    for (role, name) in &t.roles {
        if !t.server_live.has_role(name) {
            changes.push(
                Change::new(
                    t.scope,
                    Action::Create,
                    format!("role {name}"),
                    Work::Sql(
                        t.on_server.clone(),
                        vec![format!("CREATE ROLE {} NOLOGIN", name.quoted())],
                    ),
                )
                .detail(format!("{role}: {}", role.privileges().join(", "))),
            );
        }
    }
}

/// Plans the tenant's login users: the declared ones created, or put in exactly
/// their group role; logins in its group roles that the file no longer declares
/// dropped (never the application role).
pub(crate) fn plan_users(t: &TenantPlan<'_>, changes: &mut Vec<Change>) {
    let mut declared = HashSet::new();
    for user in &t.spec.users {
        declared.insert(user.name.as_str());
        if let Some(change) = user_change(t, user) {
            changes.push(change);
        }
    }
    let app = t.provisioner.app_role(t.server());
    let mut stale: BTreeSet<&String> = BTreeSet::new();
    for (_, name) in &t.roles {
        for member in t
            .server_live
            .members
            .get(name.as_str())
            .into_iter()
            .flatten()
        {
            let login = t.server_live.roles.get(member).is_some_and(|r| r.login);
            let is_app = app.is_some_and(|a| a.as_str() == member);
            if login && !is_app && !declared.contains(member.as_str()) {
                stale.insert(member);
            }
        }
    }
    for user in stale {
        changes.push(
            Change::new(
                t.scope,
                Action::Drop,
                format!("user {user}"),
                Work::Sql(
                    t.on_server.clone(),
                    vec![format!("DROP ROLE IF EXISTS {}", quote_ident(user))],
                ),
            )
            .detail("no longer declared"),
        );
    }
}

/// A declared user created, or moved to exactly its group role.
fn user_change(t: &TenantPlan<'_>, user: &super::file::UserSpec) -> Option<Change> {
    let group = user.role.role_name(&t.spec.tenant.id);
    if !t.server_live.has_role(&user.name) {
        let search_path = match &t.spec.tenant.model {
            tenants_core::DataModel::Bridge { schema } => Some(schema.quoted()),
            _ => None,
        };
        return Some(
            Change::new(
                t.scope,
                Action::Create,
                format!("user {}", user.name),
                Work::CreateLogin {
                    server: t.server().to_owned(),
                    name: user.name.clone(),
                    member_of: Some(group),
                    password: Some(user.password.clone()),
                    search_path,
                },
            )
            .detail(format!("login, {}", user.role)),
        );
    }
    let mut sql = Vec::new();
    for (_, other) in t.roles.iter().filter(|(_, n)| *n != group) {
        if t.server_live.is_member(&user.name, other) {
            sql.push(format!(
                "REVOKE {} FROM {}",
                other.quoted(),
                user.name.quoted()
            ));
        }
    }
    if !t.server_live.is_member(&user.name, &group) {
        sql.push(format!(
            "GRANT {} TO {}",
            group.quoted(),
            user.name.quoted()
        ));
    }
    (!sql.is_empty()).then(|| {
        Change::new(
            t.scope,
            Action::Update,
            format!("user {}", user.name),
            Work::Sql(t.on_server.clone(), sql),
        )
        .detail(format!("role {}", user.role))
    })
}

/// Plans the application role's membership in the tenant's group roles, so the
/// router's `begin_as` may `SET ROLE` to them.
pub(crate) fn plan_app_membership(t: &TenantPlan<'_>, changes: &mut Vec<Change>) {
    if let Some(app) = t.provisioner.app_role(t.server())
        && t.roles
            .iter()
            .any(|(_, n)| !t.server_live.is_member(app, n))
    {
        changes.push(
            Change::new(
                t.scope,
                Action::Create,
                format!("membership of {app} in the tenant roles"),
                Work::Sql(
                    t.on_server.clone(),
                    vec![format!("GRANT {} TO {}", t.role_list, app.quoted())],
                ),
            )
            .detail("so the application may SET ROLE to them"),
        );
    }
}

impl Provisioner {
    pub(crate) async fn create_login(
        &self,
        server: &str,
        name: &SqlIdent,
        member_of: Option<&SqlIdent>,
        password: Option<&Password>,
        search_path: Option<&str>,
    ) -> Result<(), Error> {
        let mut sql = format!("CREATE ROLE {} LOGIN", name.quoted());
        if let Some(password) = password {
            let password = password
                .resolve(&self.env)
                .map_err(|var| Error::MissingEnv(vec![var]))?;
            // The server stores only this salted verifier; the password itself
            // never reaches it, nor any log.
            let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
            sql.push_str(" PASSWORD ");
            sql.push_str(&literal(&verifier));
        }
        if let Some(group) = member_of {
            sql.push_str(" IN ROLE ");
            sql.push_str(&group.quoted());
        }
        let pool = self.pool(server)?;
        sqlx::raw_sql(AssertSqlSafe(sql)).execute(pool).await?;
        if let Some(path) = search_path {
            let sql = format!("ALTER ROLE {} SET search_path TO {path}", name.quoted());
            sqlx::raw_sql(AssertSqlSafe(sql)).execute(pool).await?;
        }
        Ok(())
    }
}
