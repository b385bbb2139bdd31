//! The statements that confine a shared-database connection to one tenant, written
//! once for every driver.
//!
//! A tenant transaction opens with a single simple-query message, so isolation costs
//! no round trip of its own (it rides on the `BEGIN` every transaction sends anyway):
//!
//! ```sql
//! SET SESSION AUTHORIZATION DEFAULT; RESET ROLE; RESET ALL; -- settings an earlier user left
//! SET LOCAL ROLE "tenant_acme_customer";               -- only with a role
//! BEGIN;
//! DISCARD TEMP; DISCARD SEQUENCES; CLOSE ALL; UNLISTEN *; -- state an earlier user left
//! SET LOCAL tenants.tenant_id = 'acme';                -- pool and bridge
//! SET LOCAL search_path = "acme", "public"             -- bridge only
//! ```
//!
//! On a Citus coordinator the same statements go in two messages, a bare `BEGIN`
//! and then the rest (see [`Scope::begin`]), so what Citus forwards to its
//! workers holds no `BEGIN` of its own.
//!
//! A silo connection serves one tenant and is opened with its tenant setting (a
//! startup parameter), so its transactions set no tenant; behind a transaction
//! pooler, where no startup parameter can be trusted to arrive, they set it like
//! pool tenants do.
//!
//! The tenant's settings are transaction-local: `COMMIT` and `ROLLBACK` remove them.
//! What a handler leaves on the session inside its transaction or session hand-out
//! (`SET ROLE`, a plain `SET search_path`, `set_config(.., false)`, a temporary
//! table, a held cursor, a `LISTEN`) would outlive it, so every hand-out first puts
//! the session back as it connected, with what `DISCARD ALL` does that may run in a
//! transaction block (PostgreSQL documentation of `DISCARD`): `SET SESSION
//! AUTHORIZATION DEFAULT` and `RESET ROLE` (the role of the connection's start: `RESET
//! ALL` skips it, and a later `SET LOCAL ROLE` would end on the stored one), `RESET
//! ALL` (every other setting to its value at connection start, startup parameters
//! such as a URL's `options` or a silo connection's tenant included), `DISCARD TEMP`
//! (temporary tables come first on any search path), `DISCARD SEQUENCES`
//! (`currval`), `CLOSE ALL` (cursors `WITH HOLD`) and `UNLISTEN *`. These are utility
//! statements the server runs without planning, in the same message, so hygiene
//! costs no round trip either. Prepared statements stay: the drivers' caches own
//! them. Session advisory locks stay too (releasing them needs a `SELECT`).
//!
//! Where each statement goes, around `BEGIN`: PostgreSQL folds statements that
//! precede `BEGIN` in one message into the transaction, but if one of them fails no
//! transaction is opened and the rest of the message is skipped, while a failure
//! after `BEGIN` leaves the transaction aborted, so that every later statement of the
//! caller fails too. A driver that sends the opening ahead of the caller's first
//! statement without waiting for its answer (deadpool's `begin`) relies on that. So before
//! `BEGIN` come only the settings' resets, which cannot fail on a live connection,
//! and the role, whose refusal (the application role not a member of it) must not
//! leave an aborted transaction on a pooled connection of a driver that awaits the
//! opening; the rest follows `BEGIN`. `DISCARD TEMP` can fail: it locks each
//! temporary relation, and a handler that left more than the server's lock table
//! holds (`max_locks_per_transaction`) makes it fail with "out of shared memory";
//! had it preceded `BEGIN`, the caller's statements would have run outside any
//! transaction, without the tenant's settings, against the leftover temporary
//! tables. A session hand-out has no transaction to abort, so its opening is
//! always awaited ([`Scope::session`]). Whatever made an opening fail would make
//! the next one on that connection fail too (the hoard stays), so the drivers close
//! a connection whose opening failed, or was not waited for to the end, instead of
//! handing it out again (a refused role aside: refused before `BEGIN`, it leaves
//! the connection as it was). `SET` rather than `SELECT set_config(..)`: a utility
//! statement costs the server no planning and returns no row.
//!
//! The simple-query protocol has no parameters, so the values are literals and
//! identifiers. They only ever come from validated types, never from request text:
//! a [`TenantId`] (`a-z`, `0-9`, `-`) and [`SqlIdent`]s (`a-z`, `0-9`, `_`), and
//! [`literal`] and [`SqlIdent::quoted`] quote them anyway.

// Without a PostgreSQL driver only the setting's name is used.
#![cfg_attr(not(any(feature = "sqlx", feature = "deadpool")), allow(dead_code))]

use std::sync::Arc;

use tenants_core::{SqlIdent, TenantId};

/// The setting that row-level security policies of pool-model tables read:
/// `current_setting('tenants.tenant_id', true)`.
///
/// The router sets it for every pool and bridge tenant transaction
/// (`BEGIN; SET LOCAL tenants.tenant_id = 'acme'`, in the message that opens it, so it
/// costs no round trip) and session, and opens every silo connection with it, so
/// the policies of a pool tenant moved to its own database keep working.
pub const TENANT_SETTING: &str = "tenants.tenant_id";

/// Puts a session's settings back as at its start: the role and session
/// authorization, every other setting. Every statement is allowed to any role
/// (`DEFAULT` is the role that logged in), in a transaction block or not, and none
/// can fail on a live connection outside an aborted transaction.
pub(crate) const RESET_SETTINGS: &str =
    "SET SESSION AUTHORIZATION DEFAULT; RESET ROLE; RESET ALL; ";

/// Drops what else a session keeps: temporary tables, sequence values, held
/// cursors, channels listened to. Allowed in a transaction block; `DISCARD TEMP` can
/// fail (see the module documentation), so it runs after `BEGIN`.
pub(crate) const DISCARD_STATE: &str = "DISCARD TEMP; DISCARD SEQUENCES; CLOSE ALL; UNLISTEN *; ";

/// On a Citus coordinator, what makes the tenant reach the workers in every
/// transaction, whatever the role's or the database's defaults say (any role may
/// change its own with `ALTER ROLE CURRENT_USER SET ..`, and a handler could):
/// Citus forwards a transaction's `SET LOCAL`s only with
/// `citus.propagate_set_commands = 'local'`, and only inside the `BEGIN` it sends a
/// worker, which a read-only statement gets only with
/// `citus.select_opens_transaction_block` on. Without either, the shards' policies
/// would read no tenant (no rows), or one a handler left on Citus's cached worker
/// connections.
const CITUS_FORWARDING: &str = "SET LOCAL citus.propagate_set_commands = 'local'; \
                                SET LOCAL citus.select_opens_transaction_block = on; ";

/// `sql` without the `; ` after its last statement, cut in place (this runs per
/// hand-out: no second allocation).
fn without_last_separator(mut sql: String) -> String {
    sql.truncate(sql.trim_end_matches([' ', ';']).len());
    sql
}

/// What a connection must carry for one tenant.
///
/// - a pool-model tenant on a shared connection: the tenant setting, which pool
///   tables' policies read;
/// - a bridge-model tenant on a shared connection: the tenant setting and a
///   `search_path` of quoted identifiers, the tenant's schema first;
/// - a silo tenant: its connections serve no one else. They carry the tenant
///   setting (so a pool tenant moved to its own database, policies and all, keeps
///   working) from their start on a direct server (no tenant to set), or set it in
///   each transaction behind a transaction pooler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scope {
    /// The tenant whose setting each hand-out makes, if it makes one.
    tenant: Option<TenantId>,
    /// A bridge tenant's `search_path`.
    search_path: Option<String>,
    /// A bridge tenant's schema's fingerprint, when schemas of one shape share
    /// statements.
    shape: Option<Arc<str>>,
    /// The server is a Citus coordinator: see [`Scope::begin`].
    citus: bool,
}

/// The messages that open a tenant transaction, sent one after the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Opening {
    /// Always sent; on a plain server, the only one.
    pub(crate) first: String,
    /// On a Citus coordinator, the reset and the settings, sent inside the
    /// transaction.
    pub(crate) then: Option<String>,
}

impl Scope {
    /// A pool-model tenant.
    pub(crate) fn pool(tenant: TenantId) -> Self {
        Scope {
            tenant: Some(tenant),
            search_path: None,
            shape: None,
            citus: false,
        }
    }

    /// A bridge-model tenant: its schema, then `shared_path` (the shared schemas,
    /// quoted, each after a `, `; built once per router).
    pub(crate) fn bridge(tenant: TenantId, schema: &SqlIdent, shared_path: &str) -> Self {
        let mut search_path = schema.quoted();
        search_path.push_str(shared_path);
        Scope {
            tenant: Some(tenant),
            search_path: Some(search_path),
            shape: None,
            citus: false,
        }
    }

    /// A silo tenant, whose transactions set `tenant` (behind a transaction
    /// pooler) or nothing (`None`: its connections carry it from their start).
    pub(crate) fn silo(tenant: Option<TenantId>) -> Self {
        Scope {
            tenant,
            search_path: None,
            shape: None,
            citus: false,
        }
    }

    /// The same scope, with the bridge schema's fingerprint (`None`: its
    /// statements are its own).
    pub(crate) fn with_shape(mut self, shape: Option<Arc<str>>) -> Self {
        self.shape = shape;
        self
    }

    /// What a bridge tenant's connection may keep statements for: its schema's
    /// fingerprint when schemas of one shape share them, else its `search_path`.
    #[cfg_attr(not(feature = "deadpool"), allow(dead_code))]
    pub(crate) fn statements_key(&self) -> Option<&str> {
        self.shape.as_deref().or(self.search_path.as_deref())
    }

    /// The same scope on a Citus coordinator (`citus`), or on a plain server.
    pub(crate) fn on_citus(mut self, citus: bool) -> Self {
        self.citus = citus;
        self
    }

    /// The `search_path` of a bridge tenant, as a list of quoted identifiers.
    pub(crate) fn search_path(&self) -> Option<&str> {
        self.search_path.as_deref()
    }

    /// Opens a transaction scoped to the tenant, optionally as `role`, on a session
    /// first put back as it connected: one message on a plain server.
    ///
    /// A Citus coordinator forwards a transaction's `SET LOCAL`s to the workers
    /// (with `citus.propagate_set_commands = 'local'`), but what it forwards is the
    /// whole text of the message that held them, and every worker connection that
    /// joins runs that text again after its own `BEGIN`: a `BEGIN` in it warns
    /// ("there is already a transaction in progress", relayed to the client), and
    /// each `SET` or `RESET` in it adds another copy. So on Citus the transaction
    /// opens with a bare `BEGIN`, and the reset and the settings follow in a
    /// second message, inside the transaction, which the workers then run once per
    /// statement: harmless repeats of settings and of a reset that has nothing
    /// left to reset there. It costs one round trip. The second message also makes
    /// Citus forward the settings for the transaction ([`CITUS_FORWARDING`]),
    /// whatever the role's own defaults.
    pub(crate) fn begin(&self, role: Option<&SqlIdent>) -> Opening {
        let mut sql = String::with_capacity(160);
        sql.push_str(RESET_SETTINGS);
        if self.citus {
            sql.push_str(DISCARD_STATE);
            sql.push_str(CITUS_FORWARDING);
            self.push_role(&mut sql, role);
            self.push_settings(&mut sql, "SET LOCAL ");
            return Opening {
                first: "BEGIN".into(),
                then: Some(without_last_separator(sql)),
            };
        }
        self.push_role(&mut sql, role);
        sql.push_str("BEGIN; ");
        sql.push_str(DISCARD_STATE);
        self.push_settings(&mut sql, "SET LOCAL ");
        Opening {
            first: without_last_separator(sql),
            then: None,
        }
    }

    /// Scopes a whole session (a connection handed out outside a transaction): the
    /// session put back as it connected, then the tenant's settings (none for a silo
    /// connection, which carries its tenant from the start). Every session hand-out
    /// runs it first and waits for its answer, so nothing a previous user left
    /// reaches the next: outside a transaction block nothing would make the caller's
    /// statements fail after a failed `DISCARD TEMP` (see the module documentation),
    /// and wrapping it in `BEGIN` .. `COMMIT` would commit a transaction a previous
    /// session user left open. (Citus forwards no session setting to its
    /// workers: the router refuses sessions of pool tenants there.)
    pub(crate) fn session(&self) -> String {
        let mut sql = String::with_capacity(160);
        sql.push_str(RESET_SETTINGS);
        sql.push_str(DISCARD_STATE);
        self.push_settings(&mut sql, "SET ");
        sql
    }

    fn push_role(&self, sql: &mut String, role: Option<&SqlIdent>) {
        if let Some(role) = role {
            sql.push_str("SET LOCAL ROLE ");
            sql.push_str(&role.quoted());
            sql.push_str("; ");
        }
    }

    fn push_settings(&self, sql: &mut String, set: &str) {
        let Some(tenant) = &self.tenant else { return };
        sql.push_str(set);
        sql.push_str(TENANT_SETTING);
        sql.push_str(" = ");
        push_literal(sql, tenant.as_str());
        if let Some(path) = self.search_path() {
            sql.push_str("; ");
            sql.push_str(set);
            sql.push_str("search_path = ");
            sql.push_str(path);
        }
    }
}

/// `value` as a SQL string literal, correct whatever `standard_conforming_strings`
/// says: quotes are doubled, and a value with a backslash is written as an `E''`
/// literal with the backslash escaped ([PostgreSQL 4.1.2.2]). The router writes
/// its literals this way in place; the provisioning engine uses this.
///
/// ```
/// assert_eq!(tenants_db::sql_literal("it's"), "'it''s'");
/// assert_eq!(tenants_db::sql_literal(r"a\b"), r"E'a\\b'");
/// ```
///
/// [PostgreSQL 4.1.2.2]: https://www.postgresql.org/docs/current/sql-syntax-lexical.html#SQL-SYNTAX-STRINGS-ESCAPE
pub fn sql_literal(value: &str) -> String {
    let mut sql = String::with_capacity(value.len() + 3);
    push_literal(&mut sql, value);
    sql
}

/// Appends [`sql_literal`]`(value)` to `sql`.
fn push_literal(sql: &mut String, value: &str) {
    if value.contains('\\') {
        sql.push('E');
    }
    sql.push('\'');
    for c in value.chars() {
        match c {
            '\'' => sql.push_str("''"),
            '\\' => sql.push_str("\\\\"),
            c => sql.push(c),
        }
    }
    sql.push('\'');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident(s: &str) -> SqlIdent {
        SqlIdent::new(s).unwrap()
    }

    const RESET: &str = "SET SESSION AUTHORIZATION DEFAULT; RESET ROLE; RESET ALL; ";
    const DISCARD: &str = "DISCARD TEMP; DISCARD SEQUENCES; CLOSE ALL; UNLISTEN *";

    #[test]
    fn pool_begin_resets_the_session_and_sets_only_the_tenant() {
        let scope = Scope::pool("acme".parse().unwrap());
        assert_eq!(
            scope.begin(None).first,
            format!("{RESET}BEGIN; {DISCARD}; SET LOCAL tenants.tenant_id = 'acme'")
        );
        assert_eq!(scope.begin(None).then, None);
        assert_eq!(
            scope.session(),
            format!("{RESET}{DISCARD}; SET tenants.tenant_id = 'acme'")
        );
    }

    #[test]
    fn silo_sets_the_tenant_only_behind_a_pooler() {
        assert_eq!(
            Scope::silo(None).begin(None).first,
            format!("{RESET}BEGIN; {DISCARD}")
        );
        assert_eq!(
            Scope::silo(None)
                .begin(Some(&ident("tenant_acme_admin")))
                .first,
            format!("{RESET}SET LOCAL ROLE \"tenant_acme_admin\"; BEGIN; {DISCARD}")
        );
        assert_eq!(Scope::silo(None).session(), format!("{RESET}{DISCARD}; "));
        assert_eq!(
            Scope::silo(Some("acme".parse().unwrap())).begin(None).first,
            format!("{RESET}BEGIN; {DISCARD}; SET LOCAL tenants.tenant_id = 'acme'")
        );
    }

    #[test]
    fn bridge_begin_puts_the_tenant_schema_first_and_the_role_before_begin() {
        let scope = Scope::bridge("acme".parse().unwrap(), &ident("acme"), ", \"public\"");
        assert_eq!(
            scope.begin(Some(&ident("tenant_acme_customer"))).first,
            format!(
                "{RESET}SET LOCAL ROLE \"tenant_acme_customer\"; BEGIN; {DISCARD}; \
                 SET LOCAL tenants.tenant_id = 'acme'; SET LOCAL search_path = \"acme\", \"public\""
            )
        );
        assert_eq!(
            scope.session(),
            format!(
                "{RESET}{DISCARD}; SET tenants.tenant_id = 'acme'; \
                 SET search_path = \"acme\", \"public\""
            )
        );
    }

    #[test]
    fn citus_begins_bare_and_sets_inside_the_transaction() {
        let bridge = Scope::bridge("acme".parse().unwrap(), &ident("acme"), "").on_citus(true);
        let opening = bridge.begin(Some(&ident("tenant_acme_customer")));
        assert_eq!(opening.first, "BEGIN");
        assert_eq!(
            opening.then.as_deref(),
            Some(
                format!(
                    "{RESET}{DISCARD}; {CITUS_FORWARDING}SET LOCAL ROLE \"tenant_acme_customer\"; \
                     SET LOCAL tenants.tenant_id = 'acme'; SET LOCAL search_path = \"acme\""
                )
                .as_str()
            )
        );
        let pool = Scope::pool("acme".parse().unwrap()).on_citus(true);
        assert!(!pool.begin(None).then.unwrap().contains("BEGIN"));
    }

    #[test]
    fn literals_escape_quotes_and_backslashes() {
        assert_eq!(sql_literal("a'b"), "'a''b'");
        assert_eq!(sql_literal(r"a\'b"), r"E'a\\''b'");
        assert_eq!(sql_literal(""), "''");
    }
}
