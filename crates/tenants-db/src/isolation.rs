//! The statements that confine a shared-database connection to one tenant, written
//! once for every driver.
//!
//! A tenant transaction opens with a single simple-query message, so isolation costs
//! no round trip of its own (it rides on the `BEGIN` every transaction sends anyway):
//!
//! ```sql
//! SET LOCAL ROLE "tenant_acme_customer";               -- only with a role
//! BEGIN;
//! SET LOCAL tenants.tenant_id = 'acme';                -- every model
//! SET LOCAL search_path = "acme", "public"             -- bridge only
//! ```
//!
//! Every setting is transaction-local: `COMMIT` and `ROLLBACK` remove it, so a
//! connection goes back to its pool carrying nothing. The role is set before `BEGIN`
//! on purpose: PostgreSQL folds statements that precede `BEGIN` in one message into
//! the transaction, but if one of them fails no transaction is opened, so a refused
//! role can never leave an aborted transaction on a pooled connection. What follows
//! `BEGIN` cannot fail. `SET` rather than `SELECT set_config(..)`: a utility
//! statement costs the server no planning and returns no row.
//!
//! The simple-query protocol has no parameters, so the values are literals and
//! identifiers. They only ever come from validated types, never from request text:
//! a [`TenantId`] (`a-z`, `0-9`, `-`) and [`SqlIdent`]s (`a-z`, `0-9`, `_`), and
//! [`literal`] and [`SqlIdent::quoted`] quote them anyway.

// Without a PostgreSQL driver only the setting's name is used.
#![cfg_attr(not(any(feature = "sqlx", feature = "deadpool")), allow(dead_code))]

use tenants_core::{SqlIdent, TenantId};

/// The transaction setting that row-level security policies of pool-model tables read:
/// `current_setting('tenants.tenant_id', true)`. It is set for every pool and bridge
/// tenant transaction.
pub const TENANT_SETTING: &str = "tenants.tenant_id";

/// What a connection to a shared database must carry for one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scope {
    tenant: TenantId,
    /// The `search_path` value for bridge tenants: the tenant's schema first.
    search_path: Option<String>,
}

impl Scope {
    /// A pool-model or silo tenant: the tenant setting alone. Pool tables filter
    /// rows by it; silo databases carry it too, so a pool tenant moved to its own
    /// database (rows, policies and all) keeps working with no code change.
    pub(crate) fn tenant(tenant: TenantId) -> Self {
        Scope {
            tenant,
            search_path: None,
        }
    }

    /// A bridge-model tenant: its schema, then the shared schemas.
    pub(crate) fn bridge(tenant: TenantId, schema: &SqlIdent, shared: &[SqlIdent]) -> Self {
        let path = std::iter::once(schema)
            .chain(shared.iter().filter(|s| *s != schema))
            .map(SqlIdent::quoted)
            .collect::<Vec<_>>()
            .join(", ");
        Scope {
            tenant,
            search_path: Some(path),
        }
    }

    /// The `search_path` of a bridge tenant, as a list of quoted identifiers.
    #[cfg_attr(not(feature = "deadpool"), allow(dead_code))]
    pub(crate) fn search_path(&self) -> Option<&str> {
        self.search_path.as_deref()
    }

    /// Opens a transaction scoped to the tenant, optionally as `role`.
    pub(crate) fn begin(&self, role: Option<&SqlIdent>) -> String {
        let mut sql = String::with_capacity(128);
        if let Some(role) = role {
            sql.push_str("SET LOCAL ROLE ");
            sql.push_str(&role.quoted());
            sql.push_str("; ");
        }
        sql.push_str("BEGIN; ");
        self.push_settings(&mut sql, "SET LOCAL ");
        sql
    }

    /// Scopes a whole session (a connection handed out outside a transaction). Every
    /// hand-out from a shared pool runs one of these first, so a session value left
    /// by the previous user is replaced before anything else reaches the server.
    /// (Silo connections serve one tenant and get the setting when they connect.)
    pub(crate) fn session(&self) -> String {
        let mut sql = String::with_capacity(96);
        self.push_settings(&mut sql, "SET ");
        sql
    }

    fn push_settings(&self, sql: &mut String, set: &str) {
        sql.push_str(set);
        sql.push_str(TENANT_SETTING);
        sql.push_str(" = ");
        sql.push_str(&literal(self.tenant.as_str()));
        if let Some(path) = &self.search_path {
            sql.push_str("; ");
            sql.push_str(set);
            sql.push_str("search_path = ");
            sql.push_str(path);
        }
    }
}

/// `value` as a SQL string literal, correct whatever `standard_conforming_strings`
/// says: quotes are doubled, and a value with a backslash is written as an `E''`
/// literal with the backslash escaped.
pub(crate) fn literal(value: &str) -> String {
    let quoted = value.replace('\'', "''");
    if value.contains('\\') {
        format!("E'{}'", quoted.replace('\\', "\\\\"))
    } else {
        format!("'{quoted}'")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident(s: &str) -> SqlIdent {
        SqlIdent::new(s).unwrap()
    }

    #[test]
    fn pool_begin_sets_only_the_tenant() {
        let scope = Scope::tenant("acme".parse().unwrap());
        assert_eq!(
            scope.begin(None),
            "BEGIN; SET LOCAL tenants.tenant_id = 'acme'"
        );
        assert_eq!(scope.session(), "SET tenants.tenant_id = 'acme'");
    }

    #[test]
    fn bridge_begin_puts_the_tenant_schema_first_and_the_role_before_begin() {
        let scope = Scope::bridge(
            "acme".parse().unwrap(),
            &ident("acme"),
            &[ident("public"), ident("acme")],
        );
        assert_eq!(
            scope.begin(Some(&ident("tenant_acme_customer"))),
            "SET LOCAL ROLE \"tenant_acme_customer\"; BEGIN; \
             SET LOCAL tenants.tenant_id = 'acme'; SET LOCAL search_path = \"acme\", \"public\""
        );
        assert_eq!(
            scope.session(),
            "SET tenants.tenant_id = 'acme'; SET search_path = \"acme\", \"public\""
        );
    }

    #[test]
    fn literals_escape_quotes_and_backslashes() {
        assert_eq!(literal("a'b"), "'a''b'");
        assert_eq!(literal(r"a\'b"), r"E'a\\''b'");
        assert_eq!(literal(""), "''");
    }
}
